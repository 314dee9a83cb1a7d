import json

import pytest
import yaml

from orchestrator.engine import (
    ACTION_TYPES,
    ActionSchema,
    DefinitionError,
    InputSpec,
    ParamSpec,
    RetryPolicy,
    ValidationIssue,
    WorkflowSpec,
    load_definition,
    register_action,
)

DESIGN_EXAMPLE = """\
slug: restart-service
name: Restart a service after approval
inputs:
  service: {type: string, required: true}
  pool: {type: string, default: linux}
timeout: 30m                       # execution-level; exceeded → timed_out
nodes:
  - id: check
    action: shell                  # action types below
    pool: "{{ inputs.pool }}"      # or agent: web-01
    with: {command: "systemctl is-active {{ inputs.service | shell_quote }}"}
    timeout: 30s
    retries: {max: 2, delay: 5s, backoff: 2.0}
    on: {success: approve, error: report}
  - id: approve
    type: approval
    message: "Restart {{ inputs.service }}? check said {{ nodes.check.output.stdout }}"
    approvers: {users: [alice], groups: [sre]}
    quorum: 1
    timeout: 1h                    # 0 = wait forever; expiry follows `rejected`
    on: {approved: restart, rejected: report}
  - id: restart
    action: shell
    with: {command: "systemctl restart {{ inputs.service | shell_quote }}"}
    on: {success: [verify_a, verify_b]}        # fan-out
  - {id: verify_a, action: http, with: {url: "http://a/health"}, on: {success: done}}
  - {id: verify_b, action: http, with: {url: "http://b/health"}, on: {success: done}}
  - {id: done, type: join, wait_for: all}
  - id: report
    action: http
    run_if: "{{ trigger.kind != 'manual' }}"
    with: {method: POST, url: "{{ secrets.chat_webhook }}", json: {text: "failed"}}
outputs:
  state: "{{ nodes.check.output.stdout | trim }}"
triggers:
  - {type: cron, cron: "0 3 * * *", timezone: Europe/Berlin}
  - {type: webhook}
  - {type: event, event: incident.created, if: "{{ event.data.severity == 'critical' }}"}
"""


def shell(node_id, **extra):
    return {"id": node_id, "action": "shell", "with": {"command": "true"}, **extra}


def definition(*nodes, **top):
    return {"slug": "wf", "nodes": list(nodes) or [shell("a")], **top}


def issues_of(source):
    with pytest.raises(DefinitionError) as info:
        load_definition(source)
    return info.value.issues


def issue_map(source):
    return {issue.path: issue.message for issue in issues_of(source)}


def assert_issue(source, path, fragment):
    issues = issue_map(source)
    assert path in issues, issues
    assert fragment in issues[path], issues[path]


class TestDesignExample:
    def test_loads(self):
        spec = load_definition(DESIGN_EXAMPLE)
        assert isinstance(spec, WorkflowSpec)
        assert spec.slug == "restart-service"
        assert spec.name == "Restart a service after approval"
        assert spec.timeout == 1800
        assert list(spec.nodes) == [
            "check",
            "approve",
            "restart",
            "verify_a",
            "verify_b",
            "done",
            "report",
        ]
        assert spec.entry_nodes() == ("check",)
        assert spec.inputs["service"] == InputSpec("service", "string", True, None, "", None)
        assert spec.inputs["pool"].default == "linux"
        assert len(spec.triggers) == 3
        assert spec.outputs == {"state": "{{ nodes.check.output.stdout | trim }}"}

    def test_nodes(self):
        spec = load_definition(DESIGN_EXAMPLE)
        check = spec.nodes["check"]
        assert check.type == "action"
        assert check.action == "shell"
        assert check.pool == "{{ inputs.pool }}"
        assert check.params == {"command": "systemctl is-active {{ inputs.service | shell_quote }}"}
        assert check.timeout == 30
        assert check.retries == RetryPolicy(max=2, delay=5.0, backoff=2.0, max_delay=None)
        assert check.on == {"success": ("approve",), "error": ("report",)}
        assert check.wait_for == "all"
        approve = spec.nodes["approve"]
        assert approve.type == "approval"
        assert approve.timeout == 3600
        assert approve.raw["quorum"] == 1
        assert spec.nodes["restart"].on == {"success": ("verify_a", "verify_b")}
        assert spec.nodes["done"].type == "join"
        assert spec.nodes["report"].run_if == "{{ trigger.kind != 'manual' }}"
        assert spec.nodes["report"].params["json"] == {"text": "failed"}

    def test_predecessors(self):
        spec = load_definition(DESIGN_EXAMPLE)
        assert spec.predecessors("done") == (("verify_a", "success"), ("verify_b", "success"))
        assert spec.predecessors("report") == (("check", "error"), ("approve", "rejected"))
        assert spec.predecessors("check") == ()

    def test_raw_is_json_and_reloads_to_the_same_spec(self):
        spec = load_definition(DESIGN_EXAMPLE)
        text = json.dumps(spec.raw)
        assert load_definition(text) == spec
        assert load_definition(spec.raw) == spec
        assert load_definition(DESIGN_EXAMPLE.encode()) == spec

    def test_stock_yaml_loader_on_key_is_understood(self):
        data = yaml.safe_load(DESIGN_EXAMPLE)
        assert True in data["nodes"][0]
        assert load_definition(data) == load_definition(DESIGN_EXAMPLE)


class TestParsing:
    def test_json_text(self):
        spec = load_definition(json.dumps(definition()))
        assert spec.slug == "wf"
        assert spec.name == "wf"

    @pytest.mark.parametrize("source", ["", "  \n", "# only a comment\n", b""])
    def test_empty(self, source):
        assert issues_of(source) == [ValidationIssue("", "definition is empty")]

    def test_unparseable_yaml_names_the_line(self):
        [issue] = issues_of("slug: x\nnodes: [\n  - a\n")
        assert issue.path == ""
        assert "line" in issue.message

    def test_duplicate_keys(self):
        [issue] = issues_of("slug: x\nslug: y\nnodes: []\n")
        assert "duplicate key 'slug'" in issue.message
        assert "line 2" in issue.message

    def test_top_level_must_be_a_mapping(self):
        assert issues_of("- a\n- b\n") == [
            ValidationIssue("", "definition must be a mapping, got list")
        ]

    def test_bad_utf8(self):
        assert "UTF-8" in issues_of(b"\xff\xfe")[0].message

    def test_yaml_12_scalars(self):
        spec = load_definition(
            "slug: wf\nvars: {a: yes, b: off, c: 2024-01-02, d: 1:30, e: 0755, f: true}\n"
            "nodes: [{id: a, action: shell, with: {command: ls}}]\n"
        )
        assert spec.vars == {
            "a": "yes",
            "b": "off",
            "c": "2024-01-02",
            "d": "1:30",
            "e": "0755",
            "f": True,
        }

    def test_non_json_values_rejected(self):
        assert_issue(definition(vars={"x": {1, 2}}), "vars.x", "unsupported value")

    def test_error_str_joins_issues(self):
        error = DefinitionError([ValidationIssue("a", "bad"), ValidationIssue("b.c", "worse")])
        assert str(error) == "a: bad; b.c: worse"


class TestTopLevel:
    def test_slug_required(self):
        assert_issue({"nodes": [shell("a")]}, "slug", "required")

    @pytest.mark.parametrize("slug", ["Bad", "-x", "", "a b", "x" * 64, 5])
    def test_slug_format(self, slug):
        assert_issue(definition(slug=slug), "slug", "invalid slug")

    def test_name_defaults_to_slug(self):
        spec = load_definition(definition())
        assert spec.name == "wf"
        assert spec.raw["name"] == "wf"

    def test_unknown_top_level_key(self):
        assert_issue(definition(nodez=[]), "nodez", "did you mean 'nodes'")

    def test_nodes_required_and_non_empty(self):
        assert_issue({"slug": "wf"}, "nodes", "required")
        assert_issue({"slug": "wf", "nodes": []}, "nodes", "non-empty list")
        assert_issue({"slug": "wf", "nodes": {"a": 1}}, "nodes", "non-empty list")

    def test_node_must_be_mapping(self):
        assert_issue(definition(shell("a"), "b"), "nodes[1]", "expected a mapping")

    def test_workflow_timeout(self):
        assert load_definition(definition(timeout="1h")).timeout == 3600
        assert load_definition(definition(timeout=0)).timeout is None
        assert_issue(definition(timeout="soon"), "timeout", "invalid duration")

    def test_vars_outputs_mappings(self):
        assert_issue(definition(vars=[1]), "vars", "expected a mapping")
        assert_issue(definition(outputs="x"), "outputs", "expected a mapping")

    def test_templates_in_vars_and_outputs(self):
        assert_issue(definition(vars={"v": "{{ x"}), "vars.v", "template syntax error")
        assert_issue(definition(outputs={"o": {"p": "{% for %}"}}), "outputs.o.p", "syntax")


class TestNodes:
    def test_id_required(self):
        assert_issue(
            definition({"action": "shell", "with": {"command": "x"}}), "nodes[0].id", "required"
        )

    @pytest.mark.parametrize("node_id", ["1a", "a b", "a.b", "", 3])
    def test_id_format(self, node_id):
        assert_issue(definition(shell(node_id)), "nodes[0].id", "invalid node id")

    def test_id_unique(self):
        assert_issue(definition(shell("a"), shell("a")), "nodes[1].id", "duplicate node id 'a'")

    def test_hyphen_and_underscore_ids(self):
        spec = load_definition(definition(shell("_a-1", on={"success": "b-2"}), shell("b-2")))
        assert list(spec.nodes) == ["_a-1", "b-2"]

    def test_type_inference_and_errors(self):
        assert load_definition(definition(shell("a"))).nodes["a"].type == "action"
        assert_issue(definition({"id": "a"}), "nodes[0].type", "required")
        assert_issue(
            definition({"id": "a", "type": "jion"}), "nodes[0].type", "did you mean 'join'"
        )
        assert_issue(definition({"id": "a", "type": "action"}), "nodes[0].action", "required")
        assert_issue(
            definition({"id": "a", "type": "join", "action": "shell"}),
            "nodes[0].action",
            "only valid on action nodes",
        )

    def test_unknown_node_keys(self):
        assert_issue(definition(shell("a", colour="red")), "nodes[0].colour", "unknown key")
        assert_issue(definition(shell("a", wth={})), "nodes[0].wth", "did you mean 'with'")
        assert_issue(
            definition({"id": "a", "type": "join", "with": {}}),
            "nodes[0].with",
            "not valid on join nodes",
        )
        assert_issue(
            definition({"id": "a", "type": "join", "run_if": "x"}),
            "nodes[0].run_if",
            "not valid on join nodes",
        )

    def test_wait_for(self):
        spec = load_definition(definition(shell("a", wait_for="any")))
        assert spec.nodes["a"].wait_for == "any"
        assert_issue(definition(shell("a", wait_for="some")), "nodes[0].wait_for", "'all' or 'any'")

    def test_node_timeout(self):
        assert load_definition(definition(shell("a", timeout="2m"))).nodes["a"].timeout == 120
        assert load_definition(definition(shell("a", timeout=0))).nodes["a"].timeout is None
        assert_issue(definition(shell("a", timeout="-1s")), "nodes[0].timeout", "negative")

    def test_retries(self):
        node = load_definition(
            definition(
                shell("a", retries={"max": 3, "delay": "1s", "backoff": 2, "max_delay": "5s"})
            )
        ).nodes["a"]
        assert node.retries == RetryPolicy(3, 1.0, 2.0, 5.0)
        assert [node.retries.delay_for(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
        assert load_definition(definition(shell("a", retries=2))).nodes["a"].retries == RetryPolicy(
            2
        )

    @pytest.mark.parametrize(
        ("retries", "path", "fragment"),
        [
            ({"max": -1}, "nodes[0].retries.max", ">= 0"),
            ({"max": "2"}, "nodes[0].retries.max", ">= 0"),
            ({"max": 1.5}, "nodes[0].retries.max", ">= 0"),
            ({"delay": "fast"}, "nodes[0].retries.delay", "invalid duration"),
            ({"max_delay": "x"}, "nodes[0].retries.max_delay", "invalid duration"),
            ({"backoff": 0.5}, "nodes[0].retries.backoff", ">= 1"),
            ({"tries": 1}, "nodes[0].retries.tries", "unknown key"),
            ("lots", "nodes[0].retries", "expected a mapping"),
        ],
    )
    def test_retry_errors(self, retries, path, fragment):
        assert_issue(definition(shell("a", retries=retries)), path, fragment)

    def test_run_if(self):
        spec = load_definition(definition(shell("a", run_if="inputs.x == 1")))
        assert spec.nodes["a"].run_if == "inputs.x == 1"
        assert load_definition(definition(shell("a", run_if=False))).nodes["a"].run_if == "false"
        assert_issue(definition(shell("a", run_if="x ==")), "nodes[0].run_if", "syntax error")
        assert_issue(
            definition(shell("a", run_if="{{ a }} or {{ b }}")),
            "nodes[0].run_if",
            "single expression",
        )
        assert_issue(
            definition(shell("a", run_if=[1])), "nodes[0].run_if", "expected an expression"
        )

    def test_condition_node(self):
        spec = load_definition(
            definition(
                {
                    "id": "c",
                    "type": "condition",
                    "if": "{{ inputs.n > 1 }}",
                    "on": {"true": "a", "false": "b"},
                },
                shell("a"),
                shell("b"),
            )
        )
        assert spec.nodes["c"].condition == "{{ inputs.n > 1 }}"
        assert spec.nodes["c"].on == {"true": ("a",), "false": ("b",)}
        assert_issue(definition({"id": "c", "type": "condition"}), "nodes[0].if", "required")
        assert_issue(
            definition({"id": "c", "type": "condition", "if": None}), "nodes[0].if", "required"
        )
        assert_issue(
            definition({"id": "c", "type": "condition", "if": "a =="}), "nodes[0].if", "syntax"
        )

    def test_condition_edges_in_yaml(self):
        spec = load_definition(
            "slug: wf\nnodes:\n"
            "  - {id: c, type: condition, if: x, on: {true: a, false: b}}\n"
            "  - {id: a, type: join}\n  - {id: b, type: join}\n"
        )
        assert spec.nodes["c"].on == {"true": ("a",), "false": ("b",)}

    def test_wait_node(self):
        spec = load_definition(definition({"id": "w", "type": "wait", "duration": "90s"}))
        assert spec.nodes["w"].duration == 90
        assert_issue(definition({"id": "w", "type": "wait"}), "nodes[0].duration", "required")
        assert_issue(
            definition({"id": "w", "type": "wait", "duration": "later"}),
            "nodes[0].duration",
            "invalid duration",
        )

    def test_approval_node(self):
        node = {"id": "ok", "type": "approval", "approvers": {"users": "alice"}, "quorum": 0}
        issues = issue_map(definition(node))
        assert "list of names" in issues["nodes[0].approvers.users"]
        assert ">= 1" in issues["nodes[0].quorum"]
        spec = load_definition(definition({"id": "ok", "type": "approval", "timeout": 0}))
        assert spec.nodes["ok"].timeout is None

    def test_workflow_node(self):
        spec = load_definition(
            definition({"id": "child", "type": "workflow", "workflow": "other", "with": {"x": 1}})
        )
        assert spec.nodes["child"].params == {"x": 1}
        assert_issue(definition({"id": "c", "type": "workflow"}), "nodes[0].workflow", "required")
        assert_issue(
            definition({"id": "c", "type": "workflow", "workflow": "Not A Slug"}),
            "nodes[0].workflow",
            "invalid workflow slug",
        )

    def test_pool_and_agent(self):
        spec = load_definition(definition(shell("a", pool="{{ inputs.pool }}", agent="web-01")))
        assert (spec.nodes["a"].pool, spec.nodes["a"].agent) == ("{{ inputs.pool }}", "web-01")
        assert_issue(definition(shell("a", pool=["x"])), "nodes[0].pool", "expected a string")
        assert_issue(definition(shell("a", pool="{{ x")), "nodes[0].pool", "template syntax error")

    def test_templates_anywhere_in_a_node(self):
        node = {"id": "ok", "type": "approval", "message": "Restart {{ inputs.service ?"}
        assert_issue(definition(node), "nodes[0].message", "template syntax error")


class TestEdges:
    def test_single_target_normalised_to_tuple(self):
        spec = load_definition(
            definition(shell("a", on={"success": "b", "always": ["c"]}), shell("b"), shell("c"))
        )
        assert spec.nodes["a"].on == {"success": ("b",), "always": ("c",)}

    def test_unknown_edge_kind(self):
        assert_issue(
            definition(shell("a", on={"sucess": "b"}), shell("b")),
            "nodes[0].on.sucess",
            "did you mean 'success'",
        )

    @pytest.mark.parametrize(
        ("node", "kind"),
        [
            (shell("a"), "approved"),
            (shell("a"), "true"),
            ({"id": "a", "type": "join"}, "error"),
            ({"id": "a", "type": "condition", "if": "x"}, "success"),
            ({"id": "a", "type": "approval"}, "error"),
            ({"id": "a", "type": "wait", "duration": 1}, "rejected"),
        ],
    )
    def test_edge_kind_not_valid_for_type(self, node, kind):
        node = {**node, "on": {kind: "b"}}
        assert_issue(definition(node, shell("b")), f"nodes[0].on.{kind}", "not valid for")

    def test_unknown_target(self):
        assert_issue(
            definition(
                shell("build", on={"success": ["deploy", "verfy"]}),
                shell("deploy"),
                shell("verify"),
            ),
            "nodes[0].on.success[1]",
            "unknown node 'verfy' (did you mean 'verify'?)",
        )

    def test_self_edge(self):
        assert_issue(definition(shell("a", on={"error": "a"})), "nodes[0].on.error", "itself")

    def test_bad_target_types(self):
        assert_issue(definition(shell("a", on={"success": 3})), "nodes[0].on.success", "node id")
        assert_issue(
            definition(shell("a", on={"success": [3]})), "nodes[0].on.success[0]", "node id"
        )
        assert_issue(
            definition(shell("a", on="b"), shell("b")), "nodes[0].on", "expected a mapping"
        )

    def test_duplicate_target(self):
        assert_issue(
            definition(shell("a", on={"success": ["b", "b"]}), shell("b")),
            "nodes[0].on.success[1]",
            "duplicate target",
        )

    def test_cycle(self):
        source = definition(
            shell("start", on={"success": "a"}),
            shell("a", on={"success": "b"}),
            shell("b", on={"success": "a"}),
        )
        assert_issue(source, "nodes[1]", "cycle: a -> b -> a")

    def test_cycle_without_entry(self):
        issues = issue_map(
            definition(shell("a", on={"success": "b"}), shell("b", on={"error": "a"}))
        )
        assert "no entry node" in issues["nodes"]
        assert issues["nodes[0]"] == "cycle: a -> b -> a"

    def test_unreachable_cycle(self):
        issues = issues_of(
            definition(
                shell("start"),
                shell("x", on={"success": "y"}),
                shell("y", on={"success": "z"}),
                shell("z", on={"success": "x"}),
            )
        )
        assert ValidationIssue("nodes[1]", "cycle: x -> y -> z -> x") in issues
        unreachable = [issue.path for issue in issues if "unreachable" in issue.message]
        assert unreachable == ["nodes[1]", "nodes[2]", "nodes[3]"]

    def test_graph_checks_survive_other_node_errors(self):
        issues = issue_map(
            definition(
                shell("a", on={"success": "b"}),
                {"id": "b", "action": "shell", "with": {}, "on": {"success": "a"}},
            )
        )
        assert issues["nodes[1].with.command"] == "required"
        assert issues["nodes[0]"] == "cycle: a -> b -> a"


class TestActions:
    def test_registry(self):
        assert {"shell", "script", "http", "ssh", "notify"} <= set(ACTION_TYPES)

    def test_unknown_action_type(self):
        assert_issue(
            definition({"id": "a", "action": "teleport"}),
            "nodes[0].action",
            "unknown action type 'teleport' (known: http, notify, script, shell, ssh",
        )

    def test_shell_schema(self):
        ok = {
            "command": "ls",
            "env": {"A": "1", "B": "{{ inputs.b }}"},
            "cwd": "/tmp",
            "shell": "/bin/bash",
        }
        assert load_definition(definition({"id": "a", "action": "shell", "with": ok}))
        issues = issue_map(
            definition(
                {"id": "a", "action": "shell", "with": {"env": {"PORT": 80}, "cwd": 1, "x": 1}}
            )
        )
        assert issues["nodes[0].with.command"] == "required"
        assert issues["nodes[0].with.env.PORT"] == "expected a string, got integer"
        assert issues["nodes[0].with.cwd"] == "expected a string, got integer"
        assert "unknown parameter 'x' for shell action" in issues["nodes[0].with.x"]

    def test_with_must_be_a_mapping(self):
        assert_issue(
            definition({"id": "a", "action": "shell", "with": "ls"}), "nodes[0].with", "mapping"
        )

    def test_templates_satisfy_any_param_type(self):
        node = {
            "id": "a",
            "action": "http",
            "with": {"url": "x", "expect_status": "{{ inputs.code }}", "headers": "{{ vars.h }}"},
        }
        assert load_definition(definition(node))

    def test_http_schema(self):
        good = {
            "url": "https://x",
            "method": "post",
            "headers": {"X": "y"},
            "json": {"a": [1]},
            "expect_status": [200, 201],
            "timeout": "10s",
            "follow_redirects": False,
        }
        assert load_definition(definition({"id": "a", "action": "http", "with": good}))
        bad = {
            "method": "FETCH",
            "expect_status": 99,
            "timeout": "soon",
            "follow_redirects": "yes",
            "json": {},
            "body": "",
        }
        issues = issue_map(definition({"id": "a", "action": "http", "with": bad}))
        assert issues["nodes[0].with.url"] == "required"
        assert "one of" in issues["nodes[0].with.method"]
        assert "HTTP status" in issues["nodes[0].with.expect_status"]
        assert "invalid duration" in issues["nodes[0].with.timeout"]
        assert "boolean" in issues["nodes[0].with.follow_redirects"]
        assert "either 'json' or 'body'" in issues["nodes[0].with"]

    def test_script_ssh_notify(self):
        assert_issue(
            definition({"id": "a", "action": "script", "with": {}}),
            "nodes[0].with.body",
            "required",
        )
        assert_issue(
            definition({"id": "a", "action": "ssh", "with": {"command": "x", "port": "22"}}),
            "nodes[0].with.port",
            "integer",
        )
        assert_issue(
            definition({"id": "a", "action": "notify", "with": {}}),
            "nodes[0].with.message",
            "required",
        )

    def test_parse_json(self):
        assert load_definition(
            definition({"id": "a", "action": "shell", "with": {"command": "x", "parse": "json"}})
        )
        assert_issue(
            definition({"id": "a", "action": "shell", "with": {"command": "x", "parse": "xml"}}),
            "nodes[0].with.parse",
            "one of",
        )

    def test_register_action(self):
        schema = ActionSchema("k8s-test", {"manifest": ParamSpec("mapping", required=True)})
        register_action(schema)
        try:
            assert load_definition(
                definition({"id": "a", "action": "k8s-test", "with": {"manifest": {}}})
            )
            assert_issue(
                definition({"id": "a", "action": "k8s-test", "with": {"manifest": "x"}}),
                "nodes[0].with.manifest",
                "mapping",
            )
        finally:
            del ACTION_TYPES["k8s-test"]


class TestInputs:
    def test_input_specs(self):
        spec = load_definition(
            definition(
                inputs={
                    "name": "string",
                    "count": {"type": "integer", "default": 2, "description": "how many"},
                    "env": {"type": "string", "enum": ["dev", "prod"], "default": "dev"},
                    "flag": {"type": "boolean", "default": False},
                    "opt": None,
                }
            )
        )
        assert spec.inputs["name"] == InputSpec("name")
        assert spec.inputs["count"] == InputSpec("count", "integer", False, 2, "how many", None)
        assert spec.inputs["env"].enum == ("dev", "prod")
        assert spec.inputs["flag"].default is False
        assert spec.inputs["opt"].type == "string"

    @pytest.mark.parametrize(
        ("declared", "path", "fragment"),
        [
            ({"type": "str"}, "inputs.x.type", "unknown input type 'str'"),
            ({"type": "integer", "default": "3"}, "inputs.x.default", "expected integer"),
            ({"type": "integer", "default": True}, "inputs.x.default", "expected integer"),
            ({"type": "number", "default": "1.5"}, "inputs.x.default", "expected number"),
            ({"type": "boolean", "default": "true"}, "inputs.x.default", "expected boolean"),
            ({"type": "object", "default": []}, "inputs.x.default", "expected object"),
            ({"type": "array", "default": {}}, "inputs.x.default", "expected array"),
            ({"required": "yes"}, "inputs.x.required", "boolean"),
            ({"enum": []}, "inputs.x.enum", "non-empty list"),
            ({"type": "integer", "enum": [1, "2"]}, "inputs.x.enum[1]", "expected integer"),
            ({"enum": ["a"], "default": "b"}, "inputs.x.default", "not one of"),
            ({"secret": True}, "inputs.x.secret", "unknown key"),
            ({"description": 5}, "inputs.x.description", "expected a string"),
            (5, "inputs.x", "expected a mapping"),
        ],
    )
    def test_input_errors(self, declared, path, fragment):
        assert_issue(definition(inputs={"x": declared}), path, fragment)

    def test_input_name(self):
        assert_issue(
            definition(inputs={"bad-name": "string"}), "inputs.bad-name", "invalid input name"
        )


class TestTriggers:
    def test_valid(self):
        triggers = [
            {"type": "manual"},
            {"type": "webhook", "secret": "{{ secrets.hook }}"},
            {
                "type": "webhook",
                "secret": "{{secrets.hook_v2}}",
                "secret_previous": "{{ secrets.hook }}",
                "if": "{{ trigger.data.status == 'firing' }}",
                "inputs": {"service": "{{ trigger.data.service }}"},
            },
            {"type": "cron", "cron": "*/5 1-3,7 * jan-mar mon-fri"},
            {"type": "cron", "cron": "@daily", "timezone": "UTC", "misfire": "run_once"},
            {"type": "cron", "cron": "0 3 * * *", "timezone": "Europe/Berlin", "misfire": "skip"},
            {"type": "event", "event": "incident.created", "if": "event.data.x == 1"},
            {"type": "event", "event": "incident.*", "source": "pagerduty", "name": "pages"},
        ]
        assert load_definition(definition(triggers=triggers)).triggers == tuple(triggers)

    @pytest.mark.parametrize(
        ("trigger", "path", "fragment"),
        [
            ({}, "triggers[0].type", "required"),
            ({"type": "timer"}, "triggers[0].type", "unknown trigger type"),
            ({"type": "cron"}, "triggers[0].cron", "required"),
            ({"type": "cron", "cron": "* * * *"}, "triggers[0].cron", "expected 5 fields"),
            ({"type": "cron", "cron": "60 * * * *"}, "triggers[0].cron", "out of range"),
            ({"type": "cron", "cron": "* 24 * * *"}, "triggers[0].cron", "hour"),
            ({"type": "cron", "cron": "* * 0 * *"}, "triggers[0].cron", "day-of-month"),
            ({"type": "cron", "cron": "* * * foo *"}, "triggers[0].cron", "month"),
            ({"type": "cron", "cron": "*/0 * * * *"}, "triggers[0].cron", "step"),
            ({"type": "cron", "cron": "5-1 * * * *"}, "triggers[0].cron", "range start"),
            ({"type": "cron", "cron": "@often"}, "triggers[0].cron", "expected 5 fields"),
            ({"type": "event", "if": "x =="}, "triggers[0].if", "syntax"),
            ({"type": "event", "inputs": {"a": "{{ x"}}, "triggers[0].inputs.a", "syntax"),
            ({"type": "cron", "cron": "0 0 31 2 *"}, "triggers[0].cron", "never fires"),
            ({"type": "event"}, "triggers[0].event", "required"),
            ({"type": "event", "event": ""}, "triggers[0].event", "required"),
            ({"type": "event", "event": "a", "inputs": [1]}, "triggers[0].inputs", "mapping"),
            (
                {"type": "cron", "cron": "* * * * *", "timezone": "Mars/Olympus"},
                "triggers[0].timezone",
                "unknown timezone",
            ),
            (
                {"type": "cron", "cron": "* * * * *", "misfire": "catch_up"},
                "triggers[0].misfire",
                "skip, run_once",
            ),
            ({"type": "cron", "cron": "* * * * *", "secret": "x"}, "triggers[0].secret", "unknown"),
            ({"type": "webhook", "secret": "hunter2"}, "triggers[0].secret", "stored secret"),
            (
                {"type": "webhook", "secret": "{{ secrets.a }}x"},
                "triggers[0].secret",
                "never put a secret value",
            ),
            (
                {"type": "webhook", "secret_previous": "{{ secrets.a }}"},
                "triggers[0].secret_previous",
                "together with 'secret'",
            ),
            ({"type": "webhook", "cron": "* * * * *"}, "triggers[0].cron", "unknown key"),
            ({"type": "manual", "if": "true"}, "triggers[0].if", "unknown key"),
            ("cron", "triggers[0]", "expected a mapping"),
        ],
    )
    def test_invalid(self, trigger, path, fragment):
        assert_issue(definition(triggers=[trigger]), path, fragment)

    def test_triggers_must_be_a_list(self):
        assert_issue(definition(triggers={"type": "manual"}), "triggers", "expected a list")


def test_all_issues_are_collected():
    issues = issues_of(
        {
            "slug": "BAD",
            "extra": 1,
            "inputs": {"x": {"type": "nope"}},
            "nodes": [
                {"id": "a", "action": "shell", "with": {}, "on": {"success": "zz"}},
                {"id": "a", "type": "join"},
            ],
            "outputs": {"o": "{{ x"},
        }
    )
    assert {issue.path for issue in issues} == {
        "slug",
        "extra",
        "inputs.x.type",
        "nodes[0].with.command",
        "nodes[0].on.success",
        "nodes[1].id",
        "outputs.o",
    }
