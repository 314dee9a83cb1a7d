"""Item 5: a poison job that kills its agent on every attempt (the supervisor restarts the agent)
must stop at its attempt limit with one effect per attempt; and broker redeliveries of already
finished jobs (the duplicates a visibility-timeout redelivery produces) must run nothing.
Proves DESIGN §5.3 (exactly one claim wins) and §5.5 (retry policy from PostgreSQL)."""

from __future__ import annotations

from celery import Celery

from chaos.harness import ChaosStack, Context, Supervisor, Verdict, chain
from chaos.ledger import APPEND
from chaos.services import RedisServer

RETRIES = 2


def poison_and_redelivery(ctx: Context) -> Verdict:
    verdict = Verdict("poison_and_redelivery")
    redis = RedisServer(appendonly=True).start()
    try:
        with ChaosStack(ctx, "poison", redis.url) as chaos, Supervisor(chaos.stack) as sup:
            chaos.stack.start_agent("agent-1", ["default"], concurrency=2)
            poison = {
                "slug": "poison",
                "nodes": [
                    {
                        "id": "poison",
                        "action": "shell",
                        "with": {"command": f"{APPEND} && kill -9 $PPID; sleep 30"},
                        "retries": {"max": RETRIES, "delay": "0s"},
                    }
                ],
            }
            chaos.create_workflow(poison)
            ids = chaos.submit("poison", ctx.profile.poison_runs)
            runs = chaos.settle(ids, timeout=60 + 30 * ctx.profile.poison_runs)
            chaos.judge(verdict, runs, expect="failed")
            verdict.problems = [p for p in verdict.problems if "failed" not in p]
            for body in runs.values():
                attempts = sorted(job["attempt"] for job in body["jobs"])
                if attempts != list(range(1, RETRIES + 2)):
                    verdict.problems.append(f"{body['id']} attempts {attempts}")
            verdict.faults += sup.restarts.get("agent-1", 0)

            slug = chaos.create_workflow(chain("redelivered", 2, sleep=0.1))
            done = chaos.settle(chaos.submit(slug, ctx.profile.burst_size), timeout=120)
            broker = Celery(broker=redis.url, set_as_current=False)
            redelivered = 0
            for body in done.values():
                for job in body["jobs"]:
                    for _ in range(2):
                        broker.send_task(
                            "switchyard.run_job", args=[job["id"]], queue="pool.default"
                        )
                        redelivered += 1
            verdict.faults += redelivered
            chaos.settle(chaos.submit(slug, 1), timeout=60)  # the agent has drained the queue
            chaos.judge(verdict, {k: chaos.detail(k) for k in done})
            verdict.runs -= len(done)
            verdict.extra |= {"agent_restarts": sup.restarts.get("agent-1", 0)}
            verdict.extra |= {"redelivered_messages": redelivered}
    finally:
        redis.stop()
    return verdict


SCENARIOS = {"poison_and_redelivery": poison_and_redelivery}
