import pytest

from orchestrator.engine import (
    NodeState,
    NodeStatus,
    Plan,
    load_definition,
    plan_execution,
    resolve_node,
)

DEFAULT_OUTCOME = {"condition": "true", "approval": "approved"}


def action(node_id, **extra):
    return {"id": node_id, "action": "shell", "with": {"command": "true"}, **extra}


def join(node_id, **extra):
    return {"id": node_id, "type": "join", **extra}


def spec_of(*nodes):
    return load_definition({"slug": "wf", "nodes": list(nodes)})


def run(spec, outcomes=None, max_rounds=100):
    """Drive a spec to its end, resolving each started node with `outcomes` (default success)."""
    outcomes = outcomes or {}
    states: dict[str, NodeState] = {}
    started: list[str] = []
    plans: list[Plan] = []
    for _ in range(max_rounds):
        plan = plan_execution(spec, states)
        plans.append(plan)
        states.update(plan.resolved)
        if plan.outcome is not None:
            return plan, states, started, plans
        assert plan.start, "planner made no progress"
        for node_id in plan.start:
            started.append(node_id)
            node_type = spec.nodes[node_id].type
            outcome = outcomes.get(node_id, DEFAULT_OUTCOME.get(node_type, "success"))
            states[node_id] = resolve_node(spec, node_id, outcome)
    raise AssertionError("did not finish")


def statuses(states):
    return {node_id: str(state.status) for node_id, state in states.items()}


class TestResolveNode:
    def test_success_and_error(self):
        spec = spec_of(action("a"))
        assert resolve_node(spec, "a", "success") == NodeState(
            NodeStatus.COMPLETED, frozenset({"success", "always"})
        )
        failed = resolve_node(spec, "a", "error", "exit code 1")
        assert failed == NodeState(NodeStatus.FAILED, frozenset({"error", "always"}), "exit code 1")

    def test_condition_and_approval_outcomes(self):
        spec = spec_of(
            {"id": "c", "type": "condition", "if": "x", "on": {"true": "g"}},
            {"id": "g", "type": "approval"},
        )
        assert resolve_node(spec, "c", "false").taken == {"false", "always"}
        assert resolve_node(spec, "g", "rejected").status == NodeStatus.COMPLETED
        assert resolve_node(spec, "c", "error").status == NodeStatus.FAILED

    def test_invalid_outcomes(self):
        spec = spec_of(action("a"))
        with pytest.raises(ValueError, match="invalid outcome 'approved'"):
            resolve_node(spec, "a", "approved")
        with pytest.raises(ValueError, match="unknown node"):
            resolve_node(spec, "zz", "success")


class TestPlanner:
    def test_entry_nodes_start_first(self):
        spec = spec_of(action("a", on={"success": "c"}), action("b"), action("c"))
        plan = plan_execution(spec, {})
        assert plan.start == ["a", "b"]
        assert plan.resolved == {}
        assert plan.outcome is None
        assert [e.message for e in plan.events] == [
            "node 'a' is ready (entry node)",
            "node 'b' is ready (entry node)",
        ]

    def test_running_nodes_are_not_restarted(self):
        spec = spec_of(action("a", on={"success": "b"}), action("b"))
        plan = plan_execution(spec, {"a": NodeState(NodeStatus.RUNNING)})
        assert plan.start == []
        assert plan.outcome is None
        assert plan.events == []

    def test_chain(self):
        spec = spec_of(
            action("a", on={"success": "b"}), action("b", on={"success": "c"}), action("c")
        )
        plan, states, started, _ = run(spec)
        assert started == ["a", "b", "c"]
        assert plan.outcome == "completed"
        assert plan.failed_nodes == []
        assert set(statuses(states).values()) == {"completed"}

    def test_edge_event(self):
        spec = spec_of(action("a", on={"success": "b"}), action("b"))
        plan = plan_execution(spec, {"a": resolve_node(spec, "a", "success")})
        assert plan.start == ["b"]
        edge, ready = plan.events
        assert edge.data == {"from": "a", "kind": "success", "to": "b"}
        assert edge.node_id == "b"
        assert edge.level == "info"
        assert ready.message == "node 'b' is ready"

    def test_fan_out_and_join_all(self):
        spec = spec_of(
            action("a", on={"success": ["b", "c"]}),
            action("b", on={"success": "j"}),
            action("c", on={"success": "j"}),
            join("j", on={"success": "d"}),
            action("d"),
        )
        states = {"a": resolve_node(spec, "a", "success")}
        assert plan_execution(spec, states).start == ["b", "c"]
        states |= {"b": resolve_node(spec, "b", "success"), "c": NodeState(NodeStatus.RUNNING)}
        plan = plan_execution(spec, states)
        assert plan.start == [] and plan.resolved == {}
        states["c"] = resolve_node(spec, "c", "success")
        plan = plan_execution(spec, states)
        assert plan.resolved == {
            "j": NodeState(NodeStatus.COMPLETED, frozenset({"success", "always"}))
        }
        assert plan.start == ["d"]
        assert "join 'j' resolved" in [e.message for e in plan.events]

    def test_join_any_fires_on_first_arrival(self):
        spec = spec_of(
            action("a", on={"success": ["b", "c"]}),
            action("b", on={"success": "j"}),
            action("c", on={"success": "j"}),
            join("j", wait_for="any", on={"success": "d"}),
            action("d"),
        )
        states = {
            "a": resolve_node(spec, "a", "success"),
            "b": resolve_node(spec, "b", "success"),
            "c": NodeState(NodeStatus.RUNNING),
        }
        plan = plan_execution(spec, states)
        assert set(plan.resolved) == {"j"}
        assert plan.start == ["d"]
        states |= plan.resolved | {"d": NodeState(NodeStatus.RUNNING)}
        states["c"] = resolve_node(spec, "c", "success")
        later = plan_execution(spec, states)
        assert later.start == [] and later.resolved == {}

    def test_action_with_wait_for_any(self):
        spec = spec_of(
            action("a", on={"success": "c"}),
            action("b", on={"success": "c"}),
            action("c", wait_for="any"),
        )
        states = {"a": resolve_node(spec, "a", "success"), "b": NodeState(NodeStatus.RUNNING)}
        assert plan_execution(spec, states).start == ["c"]

    def test_wait_for_any_skipped_when_nothing_arrives(self):
        spec = spec_of(
            action("a", on={"success": "j"}),
            action("b", on={"success": "j"}),
            join("j", wait_for="any"),
        )
        plan, states, _, _ = run(spec, {"a": "error", "b": "error"})
        assert plan.outcome == "failed"
        states = {"a": NodeState(NodeStatus.SKIPPED), "b": NodeState(NodeStatus.SKIPPED)}
        plan = plan_execution(spec, states)
        assert plan.resolved["j"].status == NodeStatus.SKIPPED
        assert plan.outcome == "completed"

    def test_error_edge_is_handled(self):
        spec = spec_of(
            action("a", on={"success": "ok", "error": "cleanup"}),
            action("ok"),
            action("cleanup"),
        )
        plan, states, started, _ = run(spec, {"a": "error"})
        assert plan.outcome == "completed"
        assert started == ["a", "cleanup"]
        assert statuses(states) == {"a": "failed", "ok": "skipped", "cleanup": "completed"}
        assert states["ok"].reason == "no incoming edge was taken"

    def test_unhandled_failure_fails_at_once(self):
        spec = spec_of(
            action("a", on={"success": "c"}),
            action("b", on={"success": "c"}),
            action("c"),
            action("d"),
        )
        states = {
            "a": resolve_node(spec, "a", "error", "boom"),
            "b": NodeState(NodeStatus.RUNNING),
        }
        plan = plan_execution(spec, states)
        assert plan.outcome == "failed"
        assert plan.failed_nodes == ["a"]
        assert plan.start == []
        assert plan.resolved == {}
        [event] = plan.events
        assert event.level == "error"
        assert event.data == {"outcome": "failed", "failed_nodes": ["a"]}

    def test_always_edge_does_not_handle_failure(self):
        spec = spec_of(action("a", on={"always": "b"}), action("b"))
        plan, _, started, _ = run(spec, {"a": "error"})
        assert plan.outcome == "failed"
        assert started == ["a"]

    def test_always_edge_runs_after_success_and_failure(self):
        spec = spec_of(action("a", on={"always": "b", "error": "c"}), action("b"), action("c"))
        plan, _, started, _ = run(spec, {"a": "error"})
        assert plan.outcome == "completed"
        assert started == ["a", "b", "c"]
        plan, states, started, _ = run(spec)
        assert started == ["a", "b"]
        assert states["c"].status == NodeStatus.SKIPPED

    def test_skip_propagates_through_a_chain_and_into_a_join(self):
        spec = spec_of(
            action("a", on={"success": ["b", "x"], "error": "e"}),
            action("x", on={"success": "j"}),
            action("e", on={"success": "f"}),
            action("f", on={"success": "g"}),
            action("g", on={"success": "j"}),
            join("j", on={"success": "done"}),
            action("done"),
            action("b"),
        )
        states = {"a": resolve_node(spec, "a", "success")}
        plan = plan_execution(spec, states)
        assert plan.start == ["x", "b"]
        assert {n: s.status for n, s in plan.resolved.items()} == {
            "e": NodeStatus.SKIPPED,
            "f": NodeStatus.SKIPPED,
            "g": NodeStatus.SKIPPED,
        }
        skipped = [e.message for e in plan.events if "skipped" in e.message]
        assert skipped == [f"node '{n}' skipped: no incoming edge was taken" for n in "efg"]
        states |= plan.resolved | {
            "x": resolve_node(spec, "x", "success"),
            "b": NodeState(NodeStatus.RUNNING),
        }
        plan = plan_execution(spec, states)
        assert plan.resolved["j"].status == NodeStatus.COMPLETED
        assert plan.start == ["done"]

    def test_join_skipped_when_all_inputs_skipped(self):
        spec = spec_of(
            action("a", on={"error": ["b", "c"]}),
            action("b", on={"success": "j"}),
            action("c", on={"success": "j"}),
            join("j", on={"success": "d"}),
            action("d"),
        )
        plan, states, started, _ = run(spec)
        assert started == ["a"]
        assert plan.outcome == "completed"
        assert statuses(states) == {
            "a": "completed",
            "b": "skipped",
            "c": "skipped",
            "j": "skipped",
            "d": "skipped",
        }

    def test_condition_true_false(self):
        spec = spec_of(
            {"id": "c", "type": "condition", "if": "x", "on": {"true": "yes", "false": "no"}},
            action("yes", on={"success": "after"}),
            action("no", on={"success": "after"}),
            join("after"),
        )
        plan, states, started, _ = run(spec, {"c": "false"})
        assert started == ["c", "no"]
        assert plan.outcome == "completed"
        assert states["yes"].status == NodeStatus.SKIPPED
        assert states["after"].status == NodeStatus.COMPLETED

    def test_approval_rejected_path(self):
        spec = spec_of(
            {"id": "gate", "type": "approval", "on": {"approved": "go", "rejected": "report"}},
            action("go"),
            action("report"),
        )
        _, states, started, _ = run(spec, {"gate": "rejected"})
        assert started == ["gate", "report"]
        assert states["go"].status == NodeStatus.SKIPPED

    def test_caller_skipped_node_emits_no_edges(self):
        spec = spec_of(action("a", on={"success": "b", "always": "c"}), action("b"), action("c"))
        states = {"a": NodeState(NodeStatus.SKIPPED, reason="run_if is false")}
        plan = plan_execution(spec, states)
        assert plan.start == []
        assert set(plan.resolved) == {"b", "c"}
        assert plan.outcome == "completed"

    def test_waiting_nodes_block_completion(self):
        spec = spec_of({"id": "gate", "type": "approval"})
        assert plan_execution(spec, {"gate": NodeState(NodeStatus.WAITING)}).outcome is None

    def test_completion_event(self):
        spec = spec_of(action("a"))
        plan = plan_execution(spec, {"a": resolve_node(spec, "a", "success")})
        assert plan.outcome == "completed"
        assert plan.events[-1].message == "execution completed"

    def test_start_is_in_definition_order(self):
        spec = spec_of(
            action("z", on={"success": ["m", "b"]}),
            action("b"),
            action("m"),
        )
        plan = plan_execution(spec, {"z": resolve_node(spec, "z", "success")})
        assert plan.start == ["b", "m"]

    def test_entry_join_resolves_immediately(self):
        spec = spec_of(join("j", on={"success": "a"}), action("a"))
        plan = plan_execution(spec, {})
        assert set(plan.resolved) == {"j"}
        assert plan.start == ["a"]

    def test_string_statuses_are_accepted(self):
        spec = spec_of(action("a", on={"success": "b"}), action("b"))
        states = {"a": NodeState("completed", frozenset({"success"}))}
        assert plan_execution(spec, states).start == ["b"]

    def test_unknown_state_ids_are_ignored(self):
        spec = spec_of(action("a"))
        assert plan_execution(spec, {"gone": NodeState(NodeStatus.FAILED)}).start == ["a"]

    def test_deterministic(self):
        spec = spec_of(
            action("a", on={"success": ["b", "c"]}),
            action("b", on={"success": "j"}),
            action("c", on={"error": "j"}),
            join("j"),
        )
        states = {"a": resolve_node(spec, "a", "success")}
        first = plan_execution(spec, states)
        assert all(plan_execution(spec, states) == first for _ in range(5))


def test_hundred_node_graph_starts_exactly_the_unlocked_nodes():
    """Planning speed is measured in bench/; here the large graph's decisions are checked."""
    nodes = []
    for i in range(100):
        targets = [f"n{j}" for j in (i + 1, i + 7, i + 13) if j < 100]
        nodes.append(action(f"n{i}", on={"success": targets} if targets else {}))
    spec = spec_of(*nodes)
    states = {f"n{i}": resolve_node(spec, f"n{i}", "success") for i in range(50)}
    plan = plan_execution(spec, states)
    assert plan.start == ["n50"]
    assert plan.outcome is None and not plan.resolved
