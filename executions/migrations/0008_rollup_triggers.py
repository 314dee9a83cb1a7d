"""Triggers that keep the analytics rollups (see `executions.rollup_models`); PostgreSQL only.

Each trigger appends ±1 deltas when a row becomes terminal, changes while terminal, or is
deleted while terminal, so the rollups always equal the terminal rows that exist. Setting
`switchyard.rollups_off = 'on'` in a session skips them (bulk loaders that rebuild after).
"""

from django.db import migrations

EXECUTION_TERMINAL = "('completed', 'failed', 'cancelled', 'timed_out')"
JOB_TERMINAL = "('completed', 'failed', 'timeout', 'cancelled')"
ENABLED = "current_setting('switchyard.rollups_off', true) IS DISTINCT FROM 'on'"

FORWARD = f"""
CREATE FUNCTION switchyard_duration_bucket(ms double precision) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ms IS NULL THEN -1 WHEN ms < 1 THEN 0
                ELSE 1 + floor(ln(ms) / ln(2) * 8)::int END::smallint
$$;

CREATE FUNCTION switchyard_execution_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ms double precision;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.status IN {EXECUTION_TERMINAL} THEN
        ms := EXTRACT(EPOCH FROM OLD.finished_at - OLD.started_at) * 1000;
        INSERT INTO executions_executionrollupdelta
            (day, workflow_id, status, bucket, runs, duration_ms_sum)
        VALUES ((OLD.created_at AT TIME ZONE 'UTC')::date, OLD.workflow_id, OLD.status,
                switchyard_duration_bucket(ms), -1, -coalesce(ms, 0));
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status IN {EXECUTION_TERMINAL} THEN
        ms := EXTRACT(EPOCH FROM NEW.finished_at - NEW.started_at) * 1000;
        INSERT INTO executions_executionrollupdelta
            (day, workflow_id, status, bucket, runs, duration_ms_sum)
        VALUES ((NEW.created_at AT TIME ZONE 'UTC')::date, NEW.workflow_id, NEW.status,
                switchyard_duration_bucket(ms), 1, coalesce(ms, 0));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER execution_rollup_insert AFTER INSERT ON executions_execution
FOR EACH ROW WHEN (NEW.status IN {EXECUTION_TERMINAL} AND {ENABLED})
EXECUTE FUNCTION switchyard_execution_rollup();

CREATE TRIGGER execution_rollup_update AFTER UPDATE ON executions_execution
FOR EACH ROW WHEN (
    (OLD.status IN {EXECUTION_TERMINAL} OR NEW.status IN {EXECUTION_TERMINAL})
    AND (OLD.status, OLD.workflow_id, OLD.created_at, OLD.started_at, OLD.finished_at)
        IS DISTINCT FROM (NEW.status, NEW.workflow_id, NEW.created_at, NEW.started_at,
                          NEW.finished_at)
    AND {ENABLED})
EXECUTE FUNCTION switchyard_execution_rollup();

CREATE TRIGGER execution_rollup_delete AFTER DELETE ON executions_execution
FOR EACH ROW WHEN (OLD.status IN {EXECUTION_TERMINAL} AND {ENABLED})
EXECUTE FUNCTION switchyard_execution_rollup();

CREATE FUNCTION switchyard_job_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    created timestamptz;
    workflow bigint;
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.status IN {JOB_TERMINAL} AND OLD.agent_id IS NOT NULL THEN
        SELECT created_at, workflow_id INTO created, workflow
        FROM executions_execution WHERE id = OLD.execution_id;
        IF FOUND THEN
            INSERT INTO executions_jobrollupdelta
                (hour, workflow_id, agent_id, pool, jobs, failed, busy_ms)
            VALUES (date_trunc('hour', created, 'UTC'), workflow, OLD.agent_id, OLD.pool, -1,
                    -(OLD.status IN ('failed', 'timeout'))::int, -coalesce(OLD.duration_ms, 0));
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.status IN {JOB_TERMINAL} AND NEW.agent_id IS NOT NULL THEN
        SELECT created_at, workflow_id INTO created, workflow
        FROM executions_execution WHERE id = NEW.execution_id;
        INSERT INTO executions_jobrollupdelta
            (hour, workflow_id, agent_id, pool, jobs, failed, busy_ms)
        VALUES (date_trunc('hour', created, 'UTC'), workflow, NEW.agent_id, NEW.pool, 1,
                (NEW.status IN ('failed', 'timeout'))::int, coalesce(NEW.duration_ms, 0));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_rollup_insert AFTER INSERT ON executions_job
FOR EACH ROW WHEN (NEW.status IN {JOB_TERMINAL} AND NEW.agent_id IS NOT NULL AND {ENABLED})
EXECUTE FUNCTION switchyard_job_rollup();

CREATE TRIGGER job_rollup_update AFTER UPDATE ON executions_job
FOR EACH ROW WHEN (
    (OLD.status IN {JOB_TERMINAL} OR NEW.status IN {JOB_TERMINAL})
    AND (OLD.status, OLD.agent_id, OLD.pool, OLD.duration_ms, OLD.execution_id)
        IS DISTINCT FROM (NEW.status, NEW.agent_id, NEW.pool, NEW.duration_ms,
                          NEW.execution_id)
    AND {ENABLED})
EXECUTE FUNCTION switchyard_job_rollup();

CREATE TRIGGER job_rollup_delete AFTER DELETE ON executions_job
FOR EACH ROW WHEN (OLD.status IN {JOB_TERMINAL} AND OLD.agent_id IS NOT NULL AND {ENABLED})
EXECUTE FUNCTION switchyard_job_rollup();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS job_rollup_delete ON executions_job;
DROP TRIGGER IF EXISTS job_rollup_update ON executions_job;
DROP TRIGGER IF EXISTS job_rollup_insert ON executions_job;
DROP FUNCTION IF EXISTS switchyard_job_rollup();
DROP TRIGGER IF EXISTS execution_rollup_delete ON executions_execution;
DROP TRIGGER IF EXISTS execution_rollup_update ON executions_execution;
DROP TRIGGER IF EXISTS execution_rollup_insert ON executions_execution;
DROP FUNCTION IF EXISTS switchyard_execution_rollup();
DROP FUNCTION IF EXISTS switchyard_duration_bucket(double precision);
"""


def on_postgresql(sql: str):
    def run(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("executions", "0007_rollups")]

    operations = [migrations.RunPython(on_postgresql(FORWARD), on_postgresql(BACKWARD))]
