"""Run jobs through the real agent code in this process and print its peak RSS (KiB).

``python -m tests.agent.memprobe URL WARMUP_JOB BIG_JOB``: the warm-up job loads every module
and fills the fixed-size buffers; the peak RSS is then reset, so the peak after the big job
shows what it added.
"""

from __future__ import annotations

import json
import sys

from agents.agent.client import AgentClient
from agents.agent.runner import Runner, execute_job


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise LookupError(field)


def _reset_peak() -> None:
    """Reset VmHWM (Linux >= 4.0) so the peak measures the big job alone."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def main() -> None:
    url, warmup, big = sys.argv[1:4]
    with AgentClient(url, "token", claim_retry_budget=5, report_retry_budget=5) as client:
        runner = Runner()
        execute_job(warmup, client, runner)
        _reset_peak()
        before = _status_kb("VmRSS")
        execute_job(big, client, runner)
        after = _status_kb("VmHWM")
    print(json.dumps({"before_kb": before, "after_kb": after}))


if __name__ == "__main__":
    main()
