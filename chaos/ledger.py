"""The effects ledger: every job of a chaos workflow appends (job_id, attempt, pid) with psql.

No unique constraint on purpose: a job that ran twice leaves two rows for one job id, so
duplicate effects are countable instead of being hidden by the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

TABLE = "chaos_ledger"
APPEND = (
    'psql "$CHAOS_LEDGER_URL" -qAtX -v ON_ERROR_STOP=1 -c "INSERT INTO chaos_ledger '
    "(job_id, node_id, attempt, pid) VALUES ('$SWITCHYARD_JOB_ID', '$SWITCHYARD_NODE_ID', "
    '$SWITCHYARD_ATTEMPT, $$)"'
)


@dataclass
class Ledger:
    url: str

    def create(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {TABLE} (job_id uuid NOT NULL, node_id text NOT NULL,"
                " attempt int NOT NULL, pid int NOT NULL, at timestamptz NOT NULL DEFAULT now())"
            )

    def rows(self) -> list[tuple[str, str, int, int, datetime]]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(
                f"SELECT job_id::text, node_id, attempt, pid, at FROM {TABLE}"
            ).fetchall()

    def first_effect_after(self, moment: datetime) -> datetime | None:
        with psycopg.connect(self.url) as conn:
            row = conn.execute(f"SELECT min(at) FROM {TABLE} WHERE at > %s", [moment]).fetchone()
        return row[0]
