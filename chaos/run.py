"""`make chaos` / `python -m chaos.run [--long] [--only NAME ...]`: run the fault scenarios
against real processes, print one line of figures per scenario, write them as JSON
(default `var/chaos-results.json`), and exit 1 if anything was lost, duplicated or left
non-terminal."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from chaos.harness import LONG, QUICK, Context, Verdict
from chaos.scenarios import agents, approvals, brokers, poison, processes
from orchestrator.localstack import ROOT, Postgres

SCENARIOS = {
    **processes.SCENARIOS,
    **agents.SCENARIOS,
    **brokers.SCENARIOS,
    **poison.SCENARIOS,
    **approvals.SCENARIOS,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--long", action="store_true", help="hundreds of faults")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), default=[])
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--verbose", action="store_true", help="print process logs")
    parser.add_argument("--output", type=Path, default=ROOT / "var" / "chaos-results.json")
    args = parser.parse_args(argv)
    profile = LONG if args.long else QUICK
    postgres = Postgres.from_url(
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    )
    print(f"chaos profile={profile.name} seed={args.seed}", flush=True)
    began = time.monotonic()
    results = []
    with tempfile.TemporaryDirectory(prefix="switchyard-chaos-") as workdir:
        ctx = Context(Path(workdir), postgres, random.Random(args.seed), profile, args.verbose)
        for name in args.only or list(SCENARIOS):
            started = time.monotonic()
            try:
                verdict = SCENARIOS[name](ctx)
            except Exception as error:
                traceback.print_exc()
                verdict = Verdict(name, problems=[f"{type(error).__name__}: {error}"])
            verdict.extra["took_s"] = round(time.monotonic() - started, 1)
            print(verdict.line(), flush=True)
            for problem in verdict.problems[:10]:
                print(f"  problem: {problem}", flush=True)
            results.append({"line": verdict.line(), "ok": verdict.ok, "problems": verdict.problems})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "profile": profile.name,
                "seed": args.seed,
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
                "took_s": round(time.monotonic() - began, 1),
                "scenarios": results,
            },
            indent=2,
        )
    )
    failed = [r["line"] for r in results if not r["ok"]]
    print(f"chaos {'FAILED' if failed else 'passed'} in {time.monotonic() - began:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
