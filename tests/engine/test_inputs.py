import pytest

from orchestrator.engine import DefinitionError, coerce_inputs, load_definition

SPEC = load_definition(
    {
        "slug": "wf",
        "inputs": {
            "service": {"type": "string", "required": True},
            "pool": {"type": "string", "default": "linux"},
            "count": {"type": "integer", "default": 1},
            "ratio": {"type": "number"},
            "force": {"type": "boolean", "default": False},
            "env": {"type": "string", "enum": ["dev", "prod"]},
            "level": {"type": "integer", "enum": [1, 2, 3]},
            "labels": {"type": "object"},
            "hosts": {"type": "array", "default": ["a"]},
            "note": {"type": "string"},
        },
        "nodes": [{"id": "a", "action": "shell", "with": {"command": "true"}}],
    }
)


def coerce(**provided):
    return coerce_inputs(SPEC, {"service": "web", **provided})


def issues(provided):
    with pytest.raises(DefinitionError) as info:
        coerce_inputs(SPEC, provided)
    return {issue.path: issue.message for issue in info.value.issues}


def test_defaults_applied_and_optional_left_out():
    assert coerce() == {
        "service": "web",
        "pool": "linux",
        "count": 1,
        "force": False,
        "hosts": ["a"],
    }


def test_defaults_are_copies():
    coerce()["hosts"].append("b")
    assert coerce()["hosts"] == ["a"]


def test_required():
    assert issues({}) == {"inputs.service": "required"}
    assert issues(None) == {"inputs.service": "required"}
    assert issues({"service": None}) == {"inputs.service": "required"}


def test_unknown_input():
    assert "unknown input" in issues({"service": "x", "servce": "y"})["inputs.servce"]


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("count", "3", 3),
        ("count", " -7 ", -7),
        ("count", 4.0, 4),
        ("count", 5, 5),
        ("ratio", "1.5", 1.5),
        ("ratio", "2", 2),
        ("ratio", 3, 3),
        ("force", "true", True),
        ("force", "False", False),
        ("force", "yes", True),
        ("force", "0", False),
        ("force", True, True),
        ("labels", {"a": 1}, {"a": 1}),
        ("labels", '{"a": 1}', {"a": 1}),
        ("hosts", ["x", "y"], ["x", "y"]),
        ("hosts", '["x"]', ["x"]),
        ("note", 42, "42"),
        ("env", "prod", "prod"),
        ("level", "2", 2),
    ],
)
def test_coercion(name, given, expected):
    value = coerce(**{name: given})[name]
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "given", "message"),
    [
        ("count", "abc", "expected integer, got 'abc'"),
        ("count", "1.5", "expected integer, got '1.5'"),
        ("count", 1.5, "expected integer, got 1.5"),
        ("count", True, "expected integer, got True"),
        ("ratio", "nan", "expected number, got 'nan'"),
        ("ratio", "x", "expected number"),
        ("force", "maybe", "expected boolean, got 'maybe'"),
        ("force", 1, "expected boolean, got 1"),
        ("labels", "[1]", "expected object"),
        ("hosts", "a,b", "expected array"),
        ("note", ["x"], "expected string"),
        ("env", "staging", "must be one of: 'dev', 'prod'"),
        ("level", 4, "must be one of"),
    ],
)
def test_rejections(name, given, message):
    found = issues({"service": "web", name: given})
    assert message in found[f"inputs.{name}"]


def test_all_problems_reported_together():
    found = issues({"count": "x", "force": "y", "nope": 1})
    assert set(found) == {"inputs.service", "inputs.count", "inputs.force", "inputs.nope"}


def test_inputs_must_be_a_mapping():
    assert "expected a mapping" in issues(["service"])["inputs"]
