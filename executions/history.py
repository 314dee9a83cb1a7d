"""Synthetic execution history for analytics and big-history benchmarks (`generate_history`).

The rows are produced inside PostgreSQL with `INSERT … SELECT … FROM generate_series`, so a
million executions and five million jobs take minutes rather than hours: nothing crosses the
wire but the statements. Distributions aim at something that looks like a real fleet:

- 90 days (by default) of creation times, uniform, ending now;
- workflows skewed (a few busy ones, a long tail), each with a few versions and its own pool
  and typical duration (log-normal spread around it);
- ~88% completed, ~7% failed, ~2% timed out, ~3% cancelled; ~3% of completed runs had one
  step fail and pass on a retry (flaky); failures retry the failing step until the job budget
  is used up;
- triggers: schedule 50%, manual 30%, webhook 15%, event 5%;
- every execution has exactly `jobs_per_execution` job rows, spread over the pool's agents.

Small-scale runs are used by the tests; `bench/history.py` uses the full scale. The bulk
inserts switch the rollup triggers off for their transaction; the command rebuilds the
rollups of the generated days afterwards (`executions.rollups.rebuild`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.db import connection, transaction

from agents.models import Agent, AgentPool
from executions.models import Execution, Job
from orchestrator.models import Workflow, WorkflowVersion

PREFIX = "hist"
WIDE_LABEL = "wide"


@dataclass(frozen=True)
class HistorySpec:
    executions: int = 1000
    jobs_per_execution: int = 5
    workflows: int = 40
    pools: int = 4
    agents_per_pool: int = 5
    days: int = 90
    wide_jobs: int = 200
    seed: float = 0.42


def definition(slug: str, steps: int, version: int) -> dict:
    nodes = []
    for index in range(1, steps + 1):
        node = {"id": f"step{index}", "action": "shell", "with": {"command": f"echo v{version}"}}
        if index < steps:
            node["on"] = {"success": f"step{index + 1}"}
        nodes.append(node)
    return {"slug": slug, "nodes": nodes}


def ensure_fleet(spec: HistorySpec) -> tuple[list[tuple[int, int, list[int], str, int]], list]:
    """Workflows (with versions), pools and agents the history refers to; idempotent."""
    pools = [f"{PREFIX}-pool-{p}" for p in range(spec.pools)]
    for name in pools:
        AgentPool.objects.get_or_create(name=name)
    agents = []
    for p, pool in enumerate(pools):
        for a in range(spec.agents_per_pool):
            name = f"{PREFIX}-agent-{p}-{a}"
            agent, _ = Agent.objects.get_or_create(
                name=name,
                defaults={
                    "pools": [pool],
                    "token_digest": hashlib.sha256(name.encode()).hexdigest(),
                    "token_prefix": name[:16],
                    "hostname": f"{name}.example.internal",
                },
            )
            agents.append((p * spec.agents_per_pool + a, agent.pk, pool))
    workflows = []
    for w in range(spec.workflows):
        slug = f"{PREFIX}-wf-{w:03d}"
        workflow, _ = Workflow.objects.get_or_create(slug=slug, defaults={"name": slug})
        version_ids = []
        for number in (1, 2, 3):
            version, _ = WorkflowVersion.objects.get_or_create(
                workflow=workflow,
                number=number,
                defaults={"definition": definition(slug, spec.jobs_per_execution, number)},
            )
            version_ids.append(version.pk)
        if workflow.latest_version_number != 3:
            Workflow.objects.filter(pk=workflow.pk).update(
                latest_version_number=3, published_version_id=version_ids[-1]
            )
        base_ms = 2000 + (w * 7919) % 120000
        workflows.append((w, workflow.pk, version_ids, pools[w % spec.pools], base_ms))
    return workflows, agents


PLAN_SQL = """
CREATE TEMP TABLE hist_plan ON COMMIT DROP AS
SELECT g,
       gen_random_uuid() AS id,
       w.workflow_id, w.version_ids, w.pool_idx, w.pool,
       CASE WHEN r_status < 0.88 THEN 'completed' WHEN r_status < 0.95 THEN 'failed'
            WHEN r_status < 0.97 THEN 'timed_out' ELSE 'cancelled' END AS status,
       CASE WHEN r_trigger < 0.5 THEN 'schedule' WHEN r_trigger < 0.8 THEN 'manual'
            WHEN r_trigger < 0.95 THEN 'webhook' ELSE 'event' END AS trigger_kind,
       1 + floor(r_fail * %(k)s)::int AS fail_at,
       (r_flaky < 0.03 AND %(k)s > 1) AS flaky,
       1 + floor(r_fail * (%(k)s - 1))::int AS flaky_at,
       created,
       created + interval '1 second' * (r_queue * 5) AS started,
       greatest(50, (w.base_ms * exp(r_norm * 0.5)))::int AS duration_ms,
       floor(r_agent * %(agents_per_pool)s)::int AS agent_slot,
       r_version
FROM (
    SELECT g, random() AS r_wf, random() AS r_status, random() AS r_trigger,
           random() AS r_fail, random() AS r_flaky, random() AS r_queue, random() AS r_agent,
           random() AS r_version,
           sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS r_norm,
           now() - interval '1 second' * (random() * %(days)s * 86400) AS created
    FROM generate_series(1, %(n)s) AS g
) AS r
JOIN hist_workflow w ON w.idx = floor(%(workflows)s * power(r.r_wf, 2.2))::int
"""

EXECUTIONS_SQL = """
INSERT INTO {execution} (id, workflow_id, version_id, status, trigger, trigger_kind, inputs,
    vars, outputs, labels, nodes, error, parent_node_id, created_at, started_at, finished_at)
SELECT p.id, p.workflow_id,
       p.version_ids[1 + floor(power(p.r_version, 0.5) * 3)::int],
       p.status,
       jsonb_build_object('kind', p.trigger_kind),
       p.trigger_kind,
       jsonb_build_object('env', CASE WHEN p.g %% 4 = 0 THEN 'staging' ELSE 'prod' END,
                          'build', p.g %% 1000),
       '{{}}'::jsonb, '{{}}'::jsonb,
       jsonb_build_object('team', 'team-' || (p.g %% 7)),
       (SELECT jsonb_object_agg('step' || i, jsonb_build_object('status',
            CASE WHEN p.status = 'completed' THEN 'completed'
                 WHEN i < p.fail_at THEN 'completed'
                 WHEN i = p.fail_at AND p.status = 'cancelled' THEN 'cancelled'
                 WHEN i = p.fail_at THEN 'failed'
                 ELSE 'skipped' END, 'taken', '[]'::jsonb))
        FROM generate_series(1, CASE WHEN p.flaky AND p.status = 'completed'
                                     THEN %(k)s - 1 ELSE %(k)s END) AS i),
       CASE p.status WHEN 'failed' THEN 'node step' || p.fail_at || ' failed'
                     WHEN 'timed_out' THEN 'execution deadline exceeded' ELSE '' END,
       '', p.created, p.started, p.started + interval '1 millisecond' * p.duration_ms
FROM hist_plan p
"""

# One row per (execution, slot); `slot` decides the node, attempt and status (see module doc).
JOBS_SQL = """
INSERT INTO {job} (id, execution_id, node_id, action, attempt, status, pool, queue, agent_id,
    params, labels, secrets, exit_code, stdout, stderr, outputs, error, error_kind, assertions,
    wait_reason, duration_ms, output_seq, output_bytes, output_truncated, queued_at,
    dispatched_at, started_at, finished_at)
SELECT gen_random_uuid(), p.id, 'step' || s.node, 'shell', s.attempt, s.status, p.pool,
       'pool.' || p.pool, a.agent_id,
       '{{"command": "echo"}}'::jsonb, '{{}}'::jsonb, '[]'::jsonb,
       CASE s.status WHEN 'completed' THEN 0 WHEN 'failed' THEN
            CASE WHEN p.g %% 3 = 0 THEN 7 ELSE 1 END END,
       'ok' || chr(10), CASE WHEN s.status = 'failed' AND p.g %% 3 = 0
                             THEN 'curl: (7) Failed to connect: Connection refused' || chr(10)
                             WHEN s.status = 'failed' THEN 'error: step failed' || chr(10)
                             ELSE '' END,
       '{{}}'::jsonb,
       CASE s.status WHEN 'failed' THEN 'exit status ' || CASE WHEN p.g %% 3 = 0 THEN 7 ELSE 1 END
                     WHEN 'timeout' THEN 'timed out' ELSE '' END,
       CASE s.status WHEN 'failed' THEN 'exit_code' WHEN 'timeout' THEN 'timeout' ELSE '' END,
       '[]'::jsonb, '', s.job_ms, 1, 3, false,
       p.started + interval '1 millisecond' * s.offset_ms,
       p.started + interval '1 millisecond' * s.offset_ms,
       p.started + interval '1 millisecond' * s.offset_ms,
       p.started + interval '1 millisecond' * (s.offset_ms + s.job_ms)
FROM hist_plan p
CROSS JOIN LATERAL (
    SELECT slot,
           CASE WHEN p.status = 'completed' AND p.flaky THEN
                    CASE WHEN slot <= p.flaky_at THEN slot ELSE slot - 1 END
                WHEN p.status IN ('failed', 'timed_out') AND slot > p.fail_at THEN p.fail_at
                ELSE slot END AS node,
           CASE WHEN p.status = 'completed' AND p.flaky AND slot = p.flaky_at + 1 THEN 2
                WHEN p.status IN ('failed', 'timed_out') AND slot >= p.fail_at
                    THEN slot - p.fail_at + 1
                ELSE 1 END AS attempt,
           CASE WHEN p.status = 'completed' AND p.flaky AND slot = p.flaky_at THEN 'failed'
                WHEN p.status = 'completed' THEN 'completed'
                WHEN slot < p.fail_at THEN 'completed'
                WHEN p.status = 'cancelled' THEN 'cancelled'
                WHEN p.status = 'timed_out' AND slot = %(k)s THEN 'timeout'
                ELSE 'failed' END AS status,
           (p.duration_ms / %(k)s) * (slot - 1) AS offset_ms,
           greatest(1, p.duration_ms / %(k)s) AS job_ms
    FROM generate_series(1, %(k)s) AS slot
) AS s
JOIN hist_agent a ON a.idx = p.pool_idx * %(agents_per_pool)s
    + ((p.agent_slot + s.slot) %% %(agents_per_pool)s)
"""


def generate(spec: HistorySpec) -> dict[str, int]:
    """Add `spec.executions` executions (and their jobs) plus one wide execution; returns counts."""
    workflows, agents = ensure_fleet(spec)
    table = {"execution": Execution._meta.db_table, "job": Job._meta.db_table}
    params = {
        "n": spec.executions,
        "k": spec.jobs_per_execution,
        "days": spec.days,
        "workflows": spec.workflows,
        "agents_per_pool": spec.agents_per_pool,
    }
    pool_index = {pool: p for p, pool in enumerate(sorted({w[3] for w in workflows}))}
    with transaction.atomic(), connection.cursor() as cursor:
        # ON COMMIT DROP does not fire inside an outer transaction (tests): drop them here too.
        cursor.execute("DROP TABLE IF EXISTS hist_workflow, hist_agent, hist_plan")
        cursor.execute("SELECT setseed(%s)", [spec.seed])
        cursor.execute("SELECT set_config('switchyard.rollups_off', 'on', true)")
        cursor.execute(
            "CREATE TEMP TABLE hist_workflow (idx int, workflow_id bigint, version_ids bigint[], "
            "pool_idx int, pool text, base_ms int) ON COMMIT DROP"
        )
        cursor.executemany(
            "INSERT INTO hist_workflow VALUES (%s, %s, %s, %s, %s, %s)",
            [(w, wid, ids, pool_index[pool], pool, base) for w, wid, ids, pool, base in workflows],
        )
        cursor.execute(
            "CREATE TEMP TABLE hist_agent (idx int, agent_id bigint, pool text) ON COMMIT DROP"
        )
        cursor.executemany("INSERT INTO hist_agent VALUES (%s, %s, %s)", agents)
        cursor.execute(PLAN_SQL, params)
        cursor.execute(EXECUTIONS_SQL.format(**table), params)
        executions = cursor.rowcount
        cursor.execute(JOBS_SQL.format(**table), params)
        jobs = cursor.rowcount
        cursor.execute("SELECT set_config('switchyard.rollups_off', 'off', true)")
    wide = generate_wide(spec.wide_jobs) if spec.wide_jobs else 0
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table['execution']}")
        cursor.execute(f"ANALYZE {table['job']}")
    return {"executions": executions + (1 if wide else 0), "jobs": jobs + wide}


def generate_wide(jobs: int) -> int:
    """One completed execution with `jobs` jobs (the W5 detail benchmark), labelled `bench=wide`."""
    from django.utils import timezone

    workflow = Workflow.objects.get(slug=f"{PREFIX}-wf-000")
    version = WorkflowVersion.objects.get(workflow=workflow, number=3)
    now = timezone.now()
    execution = Execution.objects.create(
        workflow=workflow,
        version=version,
        status="completed",
        trigger={"kind": "manual"},
        trigger_kind="manual",
        labels={"bench": WIDE_LABEL},
        nodes={f"n{i}": {"status": "completed", "taken": []} for i in range(jobs)},
        started_at=now,
        finished_at=now,
    )
    agent = Agent.objects.filter(name__startswith=f"{PREFIX}-agent-").first()
    Job.objects.bulk_create(
        Job(
            execution=execution,
            node_id=f"n{i}",
            action="shell",
            status="completed",
            pool=f"{PREFIX}-pool-0",
            queue=f"pool.{PREFIX}-pool-0",
            agent=agent,
            exit_code=0,
            stdout=f"line {i}\n",
            duration_ms=10,
            started_at=now,
            finished_at=now,
        )
        for i in range(jobs)
    )
    return jobs
