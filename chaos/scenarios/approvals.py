"""Item 6: executions wait on an approval with a timeout while every process (web, control
worker, agent) is killed -9 and restarted. The approval still expires on time from PostgreSQL
timestamps and the run follows `rejected` (DESIGN §5.5: timeouts are enforced by the sweeper
from the database, never by in-process state)."""

from __future__ import annotations

import os
import signal
import time

from chaos.harness import ChaosStack, Context, Supervisor, Verdict, now
from chaos.ledger import APPEND
from chaos.services import RedisServer

TIMEOUT_S = 8


def approval_timeout_restart(ctx: Context) -> Verdict:
    verdict = Verdict("approval_timeout_restart")
    redis = RedisServer(appendonly=True).start()
    try:
        with ChaosStack(ctx, "approvals", redis.url) as chaos, Supervisor(chaos.stack) as sup:
            chaos.stack.start_agent("agent-1", ["default"], concurrency=2)
            step = {"action": "shell", "with": {"command": APPEND}}
            chaos.create_workflow(
                {
                    "slug": "gated",
                    "nodes": [
                        {"id": "before", **step, "on": {"success": "gate"}},
                        {
                            "id": "gate",
                            "type": "approval",
                            "message": "go?",
                            "approvers": {"users": ["admin"]},
                            "timeout": f"{TIMEOUT_S}s",
                            "on": {"approved": "went", "rejected": "expired"},
                        },
                        {"id": "went", **step},
                        {"id": "expired", **step},
                    ],
                }
            )
            ids = chaos.submit("gated", ctx.profile.approval_runs)
            started = time.monotonic()
            time.sleep(2)
            moment = now()
            for name in ("web", "control", "agent-1"):
                os.kill(sup.process(name).popen.pid, signal.SIGKILL)
                verdict.faults += 1
            recovery = chaos.recovered_after(moment, 60, sup, "web")
            runs = chaos.settle(ids, timeout=90)
            chaos.judge(verdict, runs)
            for body in runs.values():
                states = {node["id"]: node["status"] for node in body["nodes"]}
                if states.get("expired") != "completed" or states.get("went") != "skipped":
                    verdict.problems.append(f"{body['id']} nodes {states}")
            verdict.extra["waited_s"] = round(time.monotonic() - started, 1)
            if recovery is not None:
                verdict.recoveries.append(recovery)
    finally:
        redis.stop()
    return verdict


SCENARIOS = {"approval_timeout_restart": approval_timeout_restart}
