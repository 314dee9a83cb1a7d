"""Item 2: an agent killed mid-job (and restarted), SIGSTOPped past its lease then resumed, and
cut off from the control plane (a TCP proxy that silently drops, like iptables DROP) for shorter
and longer than its lease. Proves DESIGN §5.3 and §5.5: a lost lease fails the job as "agent
lost" and the retry runs once; the late report is refused (409) and the stale child is killed;
a short partition costs nothing."""

from __future__ import annotations

import os
import signal
import time

from chaos.harness import (
    HEARTBEAT_INTERVAL,
    ChaosStack,
    Context,
    Supervisor,
    TcpProxy,
    Verdict,
    chain,
    now,
)
from chaos.services import RedisServer
from orchestrator.localstack import wait_for

LEASE_S = 3 * HEARTBEAT_INTERVAL


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def running_effect(chaos: ChaosStack, execution_id: str) -> tuple[str, int]:
    """Wait until the execution's first job has written its effect; return (job id, pid)."""

    def effect():
        job_ids = {j["id"] for j in chaos.detail(execution_id)["jobs"]}
        rows = [row for row in chaos.ledger.rows() if row[0] in job_ids]
        return rows[0] if rows else None

    row = wait_for(effect, 60, "the job to start", 0.1)
    return row[0], row[3]


def agent_faults(ctx: Context) -> Verdict:
    verdict = Verdict("agent_faults")
    redis = RedisServer(appendonly=True).start()
    try:
        with ChaosStack(ctx, "agents", redis.url) as chaos, Supervisor(chaos.stack) as sup:
            proxy = TcpProxy(int(chaos.stack.url.rsplit(":", 1)[1]))
            chaos.stack.start_agent("agent-a", ["a"], concurrency=2)
            chaos.stack.start_agent("agent-b", ["b"], concurrency=2, url=proxy.url)
            slow_a = chaos.create_workflow(chain("slow-a", 1, sleep=8, pool="a"))
            slow_b = chaos.create_workflow(chain("slow-b", 1, sleep=8, pool="b"))
            quick_b = chaos.create_workflow(chain("quick-b", 4, sleep=0.3, pool="b"))
            refused, killed, spared = 0, 0, 0
            for _ in range(ctx.profile.agent_rounds):
                runs: list[str] = []

                # kill -9 mid-job: the restarted agent no longer lists the job → lost → retried.
                [execution_id] = chaos.submit(slow_a, 1)
                runs.append(execution_id)
                running_effect(chaos, execution_id)
                moment = now()
                os.kill(sup.process("agent-a").popen.pid, signal.SIGKILL)
                verdict.faults += 1
                verdict.recoveries.append(chaos.recovered_after(moment, 60, sup, "agent-a"))

                # SIGSTOP past the lease, then SIGCONT: late report refused, stale child killed.
                [execution_id] = chaos.submit(slow_a, 1)
                runs.append(execution_id)
                _, child = running_effect(chaos, execution_id)
                agent = sup.process("agent-a").popen.pid
                moment = now()
                os.kill(agent, signal.SIGSTOP)
                time.sleep(LEASE_S + 2)
                os.kill(agent, signal.SIGCONT)
                verdict.faults += 1
                verdict.recoveries.append(chaos.recovered_after(moment, 60))
                killed += wait_gone(child)

                # Partition shorter than the lease: nothing fails, nothing retries.
                [execution_id] = chaos.submit(quick_b, 1)
                runs.append(execution_id)
                running_effect(chaos, execution_id)
                proxy.partition()
                time.sleep(LEASE_S * 0.4)
                proxy.heal()
                verdict.faults += 1
                short = chaos.settle([execution_id], 60)[execution_id]
                spared += all(job["attempt"] == 1 for job in short["jobs"])

                # Partition longer than the lease: lost, retried after healing, child killed.
                [execution_id] = chaos.submit(slow_b, 1)
                runs.append(execution_id)
                _, child = running_effect(chaos, execution_id)
                moment = now()
                proxy.partition()
                time.sleep(LEASE_S + 3)
                proxy.heal()
                verdict.faults += 1
                verdict.recoveries.append(chaos.recovered_after(moment, 60))
                killed += wait_gone(child)

                results = chaos.settle(runs, timeout=120)
                chaos.judge(verdict, results)
                refused += sum(
                    job["status"] == "failed" and job["error"].startswith("agent lost")
                    for body in results.values()
                    for job in body["jobs"]
                )
            rounds = ctx.profile.agent_rounds
            verdict.extra |= {
                "lost_leases": refused,
                "stale_children_killed": f"{killed}/{2 * rounds}",
                "short_partitions_without_retry": f"{spared}/{rounds}",
            }
            if killed < 2 * rounds:
                verdict.problems.append("a job whose lease was lost kept running on its agent")
            if refused < 3 * rounds:
                verdict.problems.append(f"expected {3 * rounds} lost leases, saw {refused}")
    finally:
        redis.stop()
    verdict.recoveries = [r for r in verdict.recoveries if r is not None]
    return verdict


def wait_gone(pid: int, timeout: float = 20) -> int:
    """1 if the process `pid` ends within `timeout` (before its own sleep would), else 0."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not pid_alive(pid):
            return 1
        time.sleep(0.1)
    return 0


SCENARIOS = {"agent_faults": agent_faults}
