"""Property tests: random acyclic workflows driven to the end with random node outcomes."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.engine import (
    EDGES_BY_TYPE,
    OUTCOMES_BY_TYPE,
    RESOLVED_STATUSES,
    NodeState,
    NodeStatus,
    WorkflowSpec,
    load_definition,
    plan_execution,
    resolve_node,
)

NODE_TEMPLATES = {
    "action": {"action": "shell", "with": {"command": "true"}},
    "join": {"type": "join"},
    "condition": {"type": "condition", "if": "inputs.x"},
    "approval": {"type": "approval"},
    "wait": {"type": "wait", "duration": "1s"},
    "workflow": {"type": "workflow", "workflow": "child"},
}
PENDING = NodeState(NodeStatus.PENDING)
EMITTING = (NodeStatus.COMPLETED, NodeStatus.FAILED)


@st.composite
def workflows(draw, max_nodes=12):
    """Edges only point to later nodes, so every generated graph is acyclic."""
    count = draw(st.integers(min_value=1, max_value=max_nodes))
    nodes = []
    for i in range(count):
        node_type = draw(st.sampled_from(["action", "action", "action", *NODE_TEMPLATES]))
        later = [f"n{j}" for j in range(i + 1, count)]
        on = {}
        if later:
            for kind in EDGES_BY_TYPE[node_type]:
                targets = draw(st.lists(st.sampled_from(later), unique=True, max_size=3))
                if targets:
                    on[kind] = targets
        node = {"id": f"n{i}", **NODE_TEMPLATES[node_type], "on": on}
        node["wait_for"] = draw(st.sampled_from(["all", "all", "any"]))
        nodes.append(node)
    return load_definition({"slug": "random", "nodes": nodes})


def edge_taken(states, source, kind):
    state = states.get(source, PENDING)
    return state.status in EMITTING and kind in state.taken


def simulate(spec: WorkflowSpec, data, outcomes_for):
    """Plan, resolve a non-empty random subset of the running nodes, repeat until an outcome."""
    states: dict[str, NodeState] = {}
    started: list[str] = []
    skipped: set[str] = set()
    failed: list[str] = []
    running: list[str] = []
    for _ in range(len(spec.nodes) + 1):
        plan = plan_execution(spec, states)
        for node_id, state in plan.resolved.items():
            assert states.get(node_id, PENDING).status == NodeStatus.PENDING
            if state.status == NodeStatus.SKIPPED:
                skipped.add(node_id)
                preds = spec.predecessors(node_id)
                assert preds
                assert not any(edge_taken(states, src, kind) for src, kind in preds)
            else:
                assert spec.nodes[node_id].type == "join"
            states[node_id] = state
        if plan.outcome is not None:
            return plan, states, started, skipped, failed
        for node_id in plan.start:
            assert node_id not in started, f"{node_id} started twice"
            preds = spec.predecessors(node_id)
            if preds:
                assert any(edge_taken(states, src, kind) for src, kind in preds)
                if spec.nodes[node_id].wait_for == "all":
                    assert all(
                        states.get(src, PENDING).status in RESOLVED_STATUSES for src, _ in preds
                    )
            started.append(node_id)
            running.append(node_id)
            states[node_id] = NodeState(NodeStatus.RUNNING)
        assert running, "no outcome, nothing started and nothing running"
        order = data.draw(st.permutations(running))
        chosen = order[: data.draw(st.integers(min_value=1, max_value=len(order)))]
        for node_id in chosen:
            running.remove(node_id)
            outcome = data.draw(st.sampled_from(outcomes_for(spec.nodes[node_id].type)))
            states[node_id] = resolve_node(spec, node_id, outcome)
            if outcome == "error":
                failed.append(node_id)
    raise AssertionError(f"no outcome within {len(spec.nodes) + 1} rounds")


PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(spec=workflows(), data=st.data())
def test_random_outcomes(spec, data):
    plan, states, started, skipped, failed = simulate(
        spec, data, lambda node_type: OUTCOMES_BY_TYPE[node_type]
    )
    assert not set(started) & skipped
    unhandled = [node_id for node_id in failed if not spec.nodes[node_id].on.get("error")]
    assert (plan.outcome == "failed") == bool(unhandled)
    if plan.outcome == "failed":
        assert plan.start == []
        assert plan.failed_nodes == [n for n in spec.nodes if n in unhandled]
    else:
        assert all(states[n].status in RESOLVED_STATUSES for n in spec.nodes)


@PROPERTY_SETTINGS
@given(spec=workflows(), data=st.data())
def test_without_failures_the_run_completes(spec, data):
    plan, states, started, skipped, failed = simulate(
        spec,
        data,
        lambda node_type: [o for o in OUTCOMES_BY_TYPE[node_type] if o != "error"],
    )
    assert plan.outcome == "completed"
    assert failed == []
    assert plan.failed_nodes == []
    assert not set(started) & skipped
    assert all(states[n].status in RESOLVED_STATUSES for n in spec.nodes)
    assert set(spec.entry_nodes()) <= set(started) | {
        n for n in spec.nodes if spec.nodes[n].type == "join"
    }


@settings(max_examples=100, deadline=None)
@given(spec=workflows(max_nodes=20))
def test_all_success_plan_matches_a_reference_walk(spec):
    """With every node succeeding at once, the set of nodes that run is exactly the set
    reachable through taken edges (success/true/approved/always)."""
    positive = {"success", "true", "approved", "always"}
    states: dict[str, NodeState] = {}
    ran: set[str] = set()
    while True:
        plan = plan_execution(spec, states)
        states.update(plan.resolved)
        ran |= {n for n, s in plan.resolved.items() if s.status == NodeStatus.COMPLETED}
        if plan.outcome is not None:
            break
        for node_id in plan.start:
            ran.add(node_id)
            outcome = {"condition": "true", "approval": "approved"}.get(
                spec.nodes[node_id].type, "success"
            )
            states[node_id] = resolve_node(spec, node_id, outcome)
    expected = set(spec.entry_nodes())
    for node_id in spec.nodes:
        if node_id in expected:
            for kind, targets in spec.nodes[node_id].on.items():
                if kind in positive:
                    expected.update(targets)
    assert ran == expected
