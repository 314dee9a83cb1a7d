"""Item 1: kill -9 of the web process and of the control worker (parent or its beat child) at
random moments of a burst; the supervisor restarts them. Proves the outbox + sweeper (DESIGN §5.1)
and the claim protocol (§5.3): nothing lost, nothing run twice, every run terminal."""

from __future__ import annotations

import os
import signal

from chaos.harness import ChaosStack, Context, Supervisor, Verdict, chain, children_of, now
from chaos.services import RedisServer


def process_kills(ctx: Context) -> Verdict:
    verdict = Verdict("process_kills")
    redis = RedisServer(appendonly=True).start()
    try:
        with ChaosStack(ctx, "processes", redis.url) as chaos, Supervisor(chaos.stack) as sup:
            chaos.stack.start_agent("agent-1", ["default"], concurrency=4)
            slug = chaos.create_workflow(chain("kills", 3, sleep=0.6))
            for _ in range(ctx.profile.bursts):
                ids = chaos.submit(slug, ctx.profile.burst_size)
                for _ in range(ctx.profile.kills_per_burst):
                    ctx.rng_sleep(0.2, 1.2)
                    target = ctx.rng.choice(["web", "control", "control-child"])
                    process = sup.process(target.removesuffix("-child"))
                    pid = process.popen.pid
                    if target == "control-child":
                        pid = (children_of(pid) or [pid])[0]
                    moment = now()
                    os.kill(pid, signal.SIGKILL)
                    verdict.faults += 1
                    recovery = chaos.recovered_after(moment, 60, sup, process.name)
                    if recovery is not None:
                        verdict.recoveries.append(recovery)
                chaos.judge(verdict, chaos.settle(ids, timeout=240))
            verdict.extra["restarts"] = sum(sup.restarts.values())
    finally:
        redis.stop()
    return verdict


SCENARIOS = {"process_kills": process_kills}
