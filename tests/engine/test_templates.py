import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.engine import (
    TemplateError,
    check_expression,
    check_syntax,
    contains_template,
    evaluate_expression,
    is_template,
    render_value,
    shell_quote,
)

CONTEXT = {
    "inputs": {"n": 3, "service": "web api", "flag": False, "tags": ["a", "b"], "conf": {"k": 1}},
    "nodes": {
        "build": {"status": "completed", "output": {"stdout": "1.2.3\n", "exit_code": 0}},
        "deploy-prod": {"status": "pending"},
    },
    "vars": {"items": [{"name": "x"}, {"name": "y"}], "keys": {"items": "shadowed"}},
    "trigger": {"kind": "manual"},
}


def render(value, path=""):
    return render_value(value, CONTEXT, path)


def error_of(value, path=""):
    with pytest.raises(TemplateError) as info:
        render(value, path)
    return info.value


class TestRenderValue:
    def test_plain_values_pass_through(self):
        value = {"a": 1, "b": [True, None, 2.5], "c": "no markup {ok}"}
        assert render(value) == value

    def test_single_expression_keeps_native_type(self):
        assert render("{{ inputs.n }}") == 3
        assert render("  {{ inputs.n }}\n") == 3
        assert render("{{ inputs.flag }}") is False
        assert render("{{ inputs.tags }}") == ["a", "b"]
        assert render("{{ inputs.conf }}") == {"k": 1}
        assert render("{{ inputs.n + 1 }}") == 4

    def test_native_results_are_plain_containers(self):
        value = render("{{ inputs.conf }}")
        assert type(value) is dict
        assert type(render("{{ vars.items }}")[0]) is dict

    def test_strings_are_not_literal_evaluated(self):
        assert render_value("{{ x }}", {"x": "123"}) == "123"
        assert render_value("{{ x }}", {"x": "[1, 2]"}) == "[1, 2]"

    def test_nested_structures_render_recursively(self):
        value = {"json": {"count": "{{ inputs.n }}", "list": ["{{ inputs.service }}", 7]}}
        assert render(value) == {"json": {"count": 3, "list": ["web api", 7]}}

    def test_mixed_strings_render_to_text(self):
        assert render("n={{ inputs.n }}") == "n=3"
        assert render("{{ inputs.n }}{{ inputs.n }}") == "33"
        assert render("{% if inputs.n > 2 %}big{% endif %}") == "big"

    def test_trailing_newline_is_kept(self):
        assert render("echo {{ inputs.n }}\n") == "echo 3\n"

    def test_tuples_stay_tuples(self):
        assert render(("{{ inputs.n }}", "x")) == (3, "x")

    def test_mapping_keys_win_over_dict_methods(self):
        assert render("{{ vars.keys.items }}") == "shadowed"

    def test_dict_methods_still_work(self):
        assert render("{% for k, v in inputs.conf.items() %}{{ k }}={{ v }}{% endfor %}") == "k=1"

    def test_hyphenated_node_ids_via_item_access(self):
        assert render("{{ nodes['deploy-prod'].status }}") == "pending"

    def test_context_is_not_mutated(self):
        context = {"inputs": {"conf": {"k": 1}}}
        render_value("{{ inputs.conf.k }}", context)
        assert type(context["inputs"]) is dict
        assert type(context["inputs"]["conf"]) is dict


class TestUndefined:
    @pytest.mark.parametrize(
        ("template", "missing"),
        [
            ("{{ nodes.build.output.version }}", "nodes.build.output.version"),
            ("{{ inputs.nope }}", "inputs.nope"),
            ("{{ inputs['nope'] }}", "inputs.nope"),
            ("{{ foo }}", "foo"),
            ("{{ foo.bar }}", "foo"),
            ("{{ nodes.missing.output.x }}", "nodes.missing"),
            ("{{ vars.items[5] }}", "vars.items[5]"),
            ("{{ vars.items[1].age }}", "vars.items[1].age"),
            ("{{ nodes['deploy-prod'].output }}", "nodes['deploy-prod'].output"),
            ("prefix {{ inputs.nope }} suffix", "inputs.nope"),
            ("{{ inputs.nope | upper }}", "inputs.nope"),
            ("{{ inputs.nope | shell_quote }}", "inputs.nope"),
            ("{{ inputs.nope | tojson }}", "inputs.nope"),
            ("{{ [inputs.nope] }}", "inputs.nope"),
            ("{{ {'a': inputs.nope} }}", "inputs.nope"),
            ("{% if inputs.nope %}x{% endif %}", "inputs.nope"),
            ("{% for v in vars.items %}{{ v.age }}{% endfor %}", "vars.items[0].age"),
        ],
    )
    def test_error_names_the_full_missing_path(self, template, missing):
        error = error_of({"command": template}, "with")
        assert missing in error.message
        assert error.path == "with.command"
        assert "with.command" in str(error)

    def test_never_renders_empty_string(self):
        with pytest.raises(TemplateError):
            render("a{{ nope }}b")

    def test_default_filter_works_on_undefined(self):
        assert render("{{ inputs.x | default('y') }}") == "y"
        assert render("{{ nodes.build.output.version | default('none') }}") == "none"
        assert render("{{ inputs.n | default(9) }}") == 3

    def test_defined_test(self):
        assert render("{{ inputs.x is defined }}") is False
        assert render("{{ inputs.n is defined }}") is True

    def test_attribute_of_a_scalar(self):
        assert "has no attribute 'foo'" in error_of("{{ inputs.service.foo }}").message

    def test_list_paths(self):
        assert error_of(["ok", "{{ nope }}"], "with.args").path == "with.args[1]"


class TestFilters:
    def test_shell_quote(self):
        assert render("ls {{ inputs.service | shell_quote }}") == "ls 'web api'"
        assert (
            render_value("{{ x | shell_quote }}", {"x": "a'; rm -rf /"}) == "'a'\"'\"'; rm -rf /'"
        )
        assert render_value("{{ x | shell_quote }}", {"x": 5}) == "5"
        assert "injection" in shell_quote.__doc__

    def test_tojson_keeps_key_order_and_does_not_escape_html(self):
        rendered = render_value("{{ x | tojson }}", {"x": {"b": 1, "a": "<&>"}})
        assert rendered == '{"b": 1, "a": "<&>"}'
        assert render("{{ inputs.conf | tojson(indent=2) }}") == json.dumps({"k": 1}, indent=2)

    def test_fromjson(self):
        assert render_value("{{ s | fromjson }}", {"s": '{"a": [1]}'}) == {"a": [1]}
        assert "JSON" in error_of("{{ 'nope' | fromjson }}").message

    def test_base64(self):
        assert render("{{ 'héllo' | b64encode }}") == base64.b64encode("héllo".encode()).decode()
        assert render("{{ 'aGk=' | b64decode }}") == "hi"
        assert render("{{ 'x y' | b64encode | b64decode }}") == "x y"
        assert "b64decode" in error_of("{{ '***' | b64decode }}").message

    def test_builtin_filters(self):
        assert render("{{ nodes.build.output.stdout | trim }}") == "1.2.3"
        assert render("{{ inputs.tags | join(',') }}") == "a,b"


class TestSandbox:
    @pytest.mark.parametrize(
        "template",
        [
            "{{ ''.__class__.__mro__ }}",
            "{{ ''.__class__ }}",
            "{{ inputs.__class__ }}",
            "{{ cycler.__init__.__globals__ }}",
            "{{ inputs.update({'n': 1}) }}",
            "{{ inputs.tags.append(1) }}",
            "{{ 'a' * 100000000 }}",
            "{{ 2 ** 10000000 }}",
            "{{ range(10000000) | list }}",
        ],
    )
    def test_unsafe_access_is_a_template_error(self, template):
        with pytest.raises(TemplateError):
            render(template)

    def test_security_error_message(self):
        message = error_of("{{ ''.__class__.__mro__ }}").message
        assert "unsafe" in message

    def test_runtime_errors_are_template_errors(self):
        assert "ZeroDivisionError" in error_of("{{ 1 / 0 }}", "x").message


class TestSyntax:
    def test_syntax_error_while_rendering(self):
        error = error_of({"url": "{{ x"}, "with")
        assert error.path == "with.url"
        assert error.message.startswith("template syntax error")

    def test_check_syntax_reports_every_bad_string(self):
        value = {
            "ok": "{{ inputs.n }}",
            "plain": "no templates here",
            "bad": "{{ x",
            "list": ["fine", "{% if %}", {"deep": "{{ x | no_such_filter }}"}],
        }
        problems = check_syntax(value, "nodes[0].with")
        assert [path for path, _ in problems] == [
            "nodes[0].with.bad",
            "nodes[0].with.list[1]",
            "nodes[0].with.list[2].deep",
        ]
        assert "no_such_filter" in problems[2][1]

    def test_check_syntax_multiline_mentions_line(self):
        [(path, message)] = check_syntax("line one\nline two {{ x", "body")
        assert path == "body"
        assert "line 2" in message

    def test_is_template(self):
        assert is_template("{{ x }}")
        assert is_template("{% if x %}{% endif %}")
        assert not is_template("{ x }")
        assert not is_template(3)


class TestExpressions:
    def test_bare_and_wrapped_expressions(self):
        assert evaluate_expression("inputs.n == 3", CONTEXT) is True
        assert evaluate_expression("{{ inputs.n == 3 }}", CONTEXT) is True
        assert evaluate_expression(" {{ trigger.kind != 'manual' }} ", CONTEXT) is False
        assert evaluate_expression("inputs.tags", CONTEXT) == ["a", "b"]
        assert evaluate_expression("inputs.n * 2", CONTEXT) == 6

    def test_non_strings_pass_through(self):
        assert evaluate_expression(True, CONTEXT) is True

    def test_undefined_in_expression(self):
        with pytest.raises(TemplateError, match=r"inputs\.nope"):
            evaluate_expression("inputs.nope == 1", CONTEXT)

    def test_invalid_expressions(self):
        for expression in ["", "x ==", "{{ a }} and {{ b }}", "{% if x %}y{% endif %}"]:
            with pytest.raises(TemplateError):
                evaluate_expression(expression, CONTEXT)

    def test_check_expression(self):
        assert check_expression("a == 1", "run_if") == []
        assert check_expression("{{ a == 1 }}", "run_if") == []
        [(path, message)] = check_expression("a ==", "run_if")
        assert path == "run_if"
        assert "syntax" in message
        assert check_expression("{{ a }} {{ b }}", "if")[0][1].endswith(
            "expected a single expression such as '{{ x == 1 }}'"
        )


JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet="{}%# ab$x.\n", max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON_LIKE)
def test_values_without_templates_render_to_equal_copies_whatever_the_context(value):
    """What lets the engine skip building a context for plain steps."""
    if contains_template(value):
        assert any(is_template(s) for s in strings_in(value))
        return
    plain = render_value(value, {}, "with")
    assert plain == render_value(value, CONTEXT, "with") == value
    if isinstance(value, dict | list) and value:
        assert plain is not value, "a copy: a job must not share the cached spec's containers"


def strings_in(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def test_templates_are_found_at_any_depth():
    assert contains_template({"a": [1, {"b": ("x", "{{ inputs.n }}")}]})
    assert contains_template(["{% if true %}y{% endif %}"])
    assert not contains_template({"a": [1, {"b": ("x", "{ not } %}")}], "{{": None})
