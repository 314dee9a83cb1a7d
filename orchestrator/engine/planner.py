"""The pure graph engine: given a workflow and its node states, decide what happens next.

The planner is structural only: it never renders templates or evaluates `run_if` (the caller does,
and may skip a started node). It is deterministic and keeps no state between calls, so the caller
can persist node states anywhere and plan again after every change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .definition import WorkflowSpec

__all__ = [
    "OUTCOMES_BY_TYPE",
    "RESOLVED_STATUSES",
    "EngineEvent",
    "NodeState",
    "NodeStatus",
    "Plan",
    "plan_execution",
    "resolve_node",
]


class NodeStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


RESOLVED_STATUSES = frozenset({NodeStatus.COMPLETED, NodeStatus.FAILED, NodeStatus.SKIPPED})
_EMITTING = frozenset({NodeStatus.COMPLETED, NodeStatus.FAILED})
_NO_EDGE_TAKEN = "no incoming edge was taken"

OUTCOMES_BY_TYPE: dict[str, tuple[str, ...]] = {
    "action": ("success", "error"),
    "workflow": ("success", "error"),
    "wait": ("success", "error"),
    "join": ("success", "error"),
    "condition": ("true", "false", "error"),
    "approval": ("approved", "rejected", "error"),
}


@dataclass(frozen=True)
class NodeState:
    """A node's state in one execution; `taken` holds the edge kinds it emits once resolved."""

    status: NodeStatus
    taken: frozenset[str] = frozenset()
    reason: str = ""


_PENDING = NodeState(NodeStatus.PENDING)
_JOIN_TAKEN = frozenset({"success", "always"})


@dataclass(frozen=True)
class EngineEvent:
    """One engine decision, for the execution log."""

    level: str
    message: str
    node_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """What one planning step decided. `start` is in definition order."""

    start: list[str] = field(default_factory=list)
    resolved: dict[str, NodeState] = field(default_factory=dict)
    outcome: str | None = None
    failed_nodes: list[str] = field(default_factory=list)
    events: list[EngineEvent] = field(default_factory=list)


def resolve_node(spec: WorkflowSpec, node_id: str, outcome: str, reason: str = "") -> NodeState:
    """The state of a node that finished with `outcome`: `error` fails it, anything else
    completes it; either way it emits the `outcome` and `always` edges."""
    node = spec.nodes.get(node_id)
    if node is None:
        raise ValueError(f"unknown node '{node_id}'")
    allowed = OUTCOMES_BY_TYPE.get(node.type, ("success", "error"))
    if outcome not in allowed:
        raise ValueError(
            f"invalid outcome '{outcome}' for {node.type} node '{node_id}' "
            f"(allowed: {', '.join(allowed)})"
        )
    status = NodeStatus.FAILED if outcome == "error" else NodeStatus.COMPLETED
    return NodeState(status, frozenset({outcome, "always"}), reason)


@dataclass(frozen=True)
class _Topology:
    """Per-spec facts the planner needs on every call, computed once."""

    order: tuple[str, ...]
    index: dict[str, int]
    predecessors: dict[str, tuple[tuple[str, str], ...]]
    topological: tuple[str, ...]
    acyclic: bool
    joins: frozenset[str]
    wait_any: frozenset[str]
    handled: frozenset[str]
    types: dict[str, str]


_TOPOLOGY_ATTRIBUTE = "_planner_topology"


def _topology(spec: WorkflowSpec) -> _Topology:
    """Cached in the (frozen) spec's `__dict__`, like `functools.cached_property` does."""
    cached = spec.__dict__.get(_TOPOLOGY_ATTRIBUTE)
    if cached is None:
        graph = spec._graph
        nodes = spec.nodes
        cached = _Topology(
            order=graph.order,
            index=graph.index,
            predecessors=graph.predecessors,
            topological=graph.topological,
            acyclic=graph.acyclic,
            joins=frozenset(n for n, node in nodes.items() if node.type == "join"),
            wait_any=frozenset(n for n, node in nodes.items() if node.wait_for == "any"),
            handled=frozenset(n for n, node in nodes.items() if node.on.get("error")),
            types={n: node.type for n, node in nodes.items()},
        )
        spec.__dict__[_TOPOLOGY_ATTRIBUTE] = cached
    return cached


def plan_execution(spec: WorkflowSpec, states: Mapping[str, NodeState]) -> Plan:
    """Decide the next step: nodes to start, joins and skips resolved here, and the outcome.

    `states` maps node ids to their state (missing means pending). See DESIGN §3-4.
    """
    topo = _topology(spec)
    status: dict[str, str] = {}
    taken: dict[str, frozenset[str]] = {}
    for node_id in topo.order:
        state = states.get(node_id, _PENDING)
        status[node_id] = state.status
        taken[node_id] = state.taken

    unhandled = [
        node_id
        for node_id in topo.order
        if status[node_id] == NodeStatus.FAILED and node_id not in topo.handled
    ]
    if unhandled:
        names = ", ".join(f"'{node_id}'" for node_id in unhandled)
        event = EngineEvent(
            "error",
            f"execution failed: unhandled failure of node {names}",
            unhandled[0] if len(unhandled) == 1 else None,
            {"outcome": "failed", "failed_nodes": unhandled},
        )
        return Plan(outcome="failed", failed_nodes=unhandled, events=[event])

    plan = Plan()
    changed = True
    while changed:
        changed = False
        for node_id in topo.topological:
            if status[node_id] == NodeStatus.PENDING and _step(topo, node_id, status, taken, plan):
                changed = True
        if topo.acyclic:
            break

    plan.start.sort(key=topo.index.__getitem__)
    if all(status[node_id] in RESOLVED_STATUSES for node_id in topo.order):
        plan.outcome = "completed"
        skipped = [n for n in topo.order if status[n] == NodeStatus.SKIPPED]
        plan.events.append(
            EngineEvent(
                "info", "execution completed", None, {"outcome": "completed", "skipped": skipped}
            )
        )
    return plan


def _step(
    topo: _Topology,
    node_id: str,
    status: dict[str, str],
    taken: dict[str, frozenset[str]],
    plan: Plan,
) -> bool:
    """Decide one pending node: start it, resolve it (joins), skip it, or leave it; True if
    anything changed."""
    predecessors = topo.predecessors[node_id]
    arrived: list[tuple[str, str]] = []
    settled = True
    for source, kind in predecessors:
        source_status = status[source]
        if source_status in _EMITTING:
            if kind in taken[source]:
                arrived.append((source, kind))
        elif source_status != NodeStatus.SKIPPED:
            settled = False
    if predecessors:
        if not arrived:
            if not settled:
                return False
            state = NodeState(NodeStatus.SKIPPED, reason=_NO_EDGE_TAKEN)
            status[node_id], taken[node_id] = state.status, state.taken
            plan.resolved[node_id] = state
            plan.events.append(
                EngineEvent(
                    "info",
                    f"node '{node_id}' skipped: {_NO_EDGE_TAKEN}",
                    node_id,
                    {"reason": _NO_EDGE_TAKEN},
                )
            )
            return True
        if not settled and node_id not in topo.wait_any:
            return False
    for source, kind in arrived:
        plan.events.append(
            EngineEvent(
                "info",
                f"edge taken: {source} --{kind}--> {node_id}",
                node_id,
                {"from": source, "kind": kind, "to": node_id},
            )
        )
    if node_id in topo.joins:
        state = NodeState(NodeStatus.COMPLETED, _JOIN_TAKEN)
        status[node_id], taken[node_id] = state.status, state.taken
        plan.resolved[node_id] = state
        plan.events.append(
            EngineEvent(
                "info",
                f"join '{node_id}' resolved",
                node_id,
                {"type": "join", "arrived": [source for source, _ in arrived]},
            )
        )
        return True
    status[node_id] = NodeStatus.RUNNING
    plan.start.append(node_id)
    entry = " (entry node)" if not predecessors else ""
    plan.events.append(
        EngineEvent(
            "info",
            f"node '{node_id}' is ready{entry}",
            node_id,
            {"type": topo.types[node_id], "entry": not predecessors},
        )
    )
    return True
