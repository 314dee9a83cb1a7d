"""`switchyard` command line: log in, apply workflows, run and follow executions, approve.

    switchyard login --url https://switchyard.example.com --token <api token>
    switchyard workflows list
    switchyard apply -f deploy.yaml --publish
    switchyard run deploy --input service=web --input replicas=3 --follow
    switchyard executions list --status failed
    switchyard executions show <id> | cancel <id> [--kill] | rerun <id> [--follow]
    switchyard approvals list | approve <id> [--note ...] | reject <id> [--note ...]

The URL and token come from `--url`/`--token`, else `SWITCHYARD_URL`/`SWITCHYARD_TOKEN`, else
the file `switchyard login` wrote (`~/.config/switchyard/cli.json`, mode 0600).

Exit codes: 0 success (with `--follow`: the execution completed); 1 the followed execution
failed, was cancelled or timed out; 2 usage, connection or API errors.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

import httpx

VERSION = "0.1.0"
CONFIG_ENV = "SWITCHYARD_CONFIG"
TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out"})
JOB_TERMINAL = frozenset({"completed", "failed", "timeout", "cancelled"})
POLL_INTERVAL = 0.5
LINE_END = re.compile(r"(?<=\n)")
EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


class CliError(Exception):
    """A problem to report on stderr (exit code 2)."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


# -- configuration ------------------------------------------------------------------------------


def config_path(explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    return Path.home() / ".config" / "switchyard" / "cli.json"


def load_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise CliError(f"cannot read {path}: {error}") from error


def save_config(path: Path, config: dict[str, Any]) -> None:
    """Write the config readable by its owner only (0600, directory 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(config, handle, indent=2)
        handle.write("\n")
    os.chmod(path, 0o600)


def settings_from(args: argparse.Namespace) -> tuple[str, str]:
    stored = load_config(config_path(args.config))
    url = args.url or os.environ.get("SWITCHYARD_URL") or stored.get("url")
    token = args.token or os.environ.get("SWITCHYARD_TOKEN") or stored.get("token")
    if not url or not token:
        raise CliError(
            "not logged in: run `switchyard login --url URL --token TOKEN` "
            "or set SWITCHYARD_URL and SWITCHYARD_TOKEN"
        )
    return url.rstrip("/"), token


# -- HTTP ---------------------------------------------------------------------------------------


class Api:
    """A thin client: JSON in and out, API errors turned into CliError."""

    def __init__(
        self, url: str, token: str, timeout: float = 30.0, unavailable_budget: float = 60.0
    ) -> None:
        self.url = url
        self.unavailable_budget = unavailable_budget
        self.http = httpx.Client(
            base_url=url,
            headers={
                "Authorization": f"Token {token}",
                "X-Switchyard-Channel": "cli",
                "Accept": "application/json",
                "User-Agent": f"switchyard-cli/{VERSION}",
            },
            timeout=timeout,
        )

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        allow: tuple[int, ...] = (),
        headers: dict[str, str] | None = None,
        retry_lost_connection: bool = False,
    ) -> httpx.Response:
        deadline = time.monotonic() + self.unavailable_budget
        connection_retries = 2 if retry_lost_connection else 0
        while True:
            try:
                response = self.http.request(
                    method,
                    path,
                    json=json_body,
                    params={k: v for k, v in (params or {}).items() if v not in (None, "")},
                    headers=headers,
                )
            except httpx.HTTPError as error:
                if connection_retries <= 0 or time.monotonic() + 1 > deadline:
                    raise CliError(f"cannot reach {self.url}: {error}") from error
                connection_retries -= 1
                time.sleep(1)
                continue
            wait = retry_after(response)
            if wait is None or time.monotonic() + wait > deadline:
                break
            time.sleep(wait)
        if response.status_code >= 400 and response.status_code not in allow:
            raise api_error(response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """POST; with an `Idempotency-Key` header a lost connection is retried, since the
        server starts nothing twice for one key."""
        payload = {} if body is None else body
        retry = bool(headers and "Idempotency-Key" in headers)
        return self.request(
            "POST", path, json_body=payload, headers=headers, retry_lost_connection=retry
        ).json()


def retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait before repeating a request the server answered 503 (database restart,
    maintenance) with `Retry-After`; None when the answer is final."""
    if response.status_code != 503:
        return None
    try:
        return min(max(float(response.headers.get("Retry-After", "1")), 0.0), 30.0)
    except ValueError:
        return 1.0


def api_error(response: httpx.Response) -> CliError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    detail = body.get("detail") or response.reason_phrase or "request failed"
    details = [
        f"{item.get('path') or '(request)'}: {item.get('message')}"
        for item in body.get("errors") or []
        if isinstance(item, dict)
    ]
    return CliError(f"{response.status_code} {detail}", details)


# -- output -------------------------------------------------------------------------------------


def emit_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, indent=2, sort_keys=False) + "\n")


def table(rows: list[list[Any]], headers: list[str], out: TextIO) -> None:
    text_rows = [[("" if cell is None else str(cell)) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    out.write("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    out.write("\n")
    for row in text_rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def short_time(value: str | None) -> str:
    if not value:
        return ""
    return value.replace("T", " ")[:19]


def duration(ms: int | None) -> str:
    if ms is None:
        return ""
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def trigger_text(trigger: dict[str, Any] | None) -> str:
    trigger = trigger or {}
    kind = trigger.get("kind", "")
    extra = trigger.get("user") or trigger.get("event_type") or trigger.get("schedule") or ""
    channel = trigger.get("channel")
    return f"{kind}" + (f" ({extra}{', ' + channel if channel else ''})" if extra else "")


def parse_pairs(pairs: list[str], what: str) -> dict[str, Any]:
    """`k=v` (a string; the server coerces it to the input's type) or `k:=<json>`."""
    values: dict[str, Any] = {}
    for pair in pairs:
        index = pair.find("=")
        if index <= 0 or (index == 1 and pair[0] == ":"):
            raise CliError(f"--{what} {pair!r}: expected key=value (or key:=<json>)")
        if pair[index - 1] == ":":
            key, raw = pair[: index - 1], pair[index + 1 :]
            try:
                values[key] = json.loads(raw)
            except ValueError as error:
                raise CliError(f"--{what} {pair!r}: not valid JSON after ':=': {error}") from error
        else:
            values[pair[:index]] = pair[index + 1 :]
    return values


# -- following an execution --------------------------------------------------------------------


class Follower:
    """Polls an execution and its jobs' output (`?after=<seq>`), printing job status changes and
    output as they arrive, until the execution is terminal."""

    def __init__(self, api: Api, execution_id: str, out: TextIO, err: TextIO) -> None:
        self.api = api
        self.execution_id = execution_id
        self.out = out
        self.err = err
        self.job_status: dict[str, str] = {}
        self.after: dict[str, int] = {}
        self.drained: set[str] = set()
        self.line_start: dict[tuple[str, str], bool] = {}
        self.announced_approvals: set[Any] = set()

    def write_output(self, job: dict[str, Any], stream: str, data: str) -> None:
        """Write output with a `[node] ` prefix at the start of every line."""
        if not data:
            return
        target = self.out if stream == "stdout" else self.err
        key = (job["id"], stream)
        at_start = self.line_start.get(key, True)
        parts = []
        for line in LINE_END.split(data):
            if not line:
                continue
            if at_start:
                parts.append(f"[{job['node_id']}] ")
            parts.append(line)
            at_start = line.endswith("\n")
        self.line_start[key] = at_start
        target.write("".join(parts))
        target.flush()

    def end_lines(self, job: dict[str, Any]) -> None:
        for stream, target in (("stdout", self.out), ("stderr", self.err)):
            if not self.line_start.get((job["id"], stream), True):
                target.write("\n")
                self.line_start[(job["id"], stream)] = True

    def pull_output(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        if job_id in self.drained or job["status"] in ("pending", "dispatched"):
            return
        after = self.after.get(job_id, 0)
        body = self.api.get(
            f"/api/v1/executions/{self.execution_id}/jobs/{job_id}/output/", after=after
        )
        for chunk in body.get("chunks") or []:
            self.write_output(job, chunk["stream"], chunk["data"])
        self.after[job_id] = body.get("last_seq") or after
        if body.get("status") in JOB_TERMINAL:
            if after == 0 and not body.get("chunks"):
                # Never streamed: the final report's stdout/stderr are all there is.
                for stream in ("stdout", "stderr"):
                    if body.get(stream):
                        self.write_output(job, stream, body[stream])
            self.end_lines(job)
            self.drained.add(job_id)

    def report_job(self, job: dict[str, Any]) -> None:
        status = job["status"]
        if self.job_status.get(job["id"]) == status:
            return
        self.job_status[job["id"]] = status
        label = f"[{job['node_id']}#{job.get('attempt', 1)}]"
        details = []
        if status == "running" and job.get("agent"):
            details.append(f"on {job['agent']}")
        if status in JOB_TERMINAL:
            if job.get("exit_code") is not None:
                details.append(f"exit {job['exit_code']}")
            if job.get("duration_ms") is not None:
                details.append(duration(job["duration_ms"]))
            if job.get("error"):
                details.append(job["error"])
        self.out.write(f"{label} {status}" + (f" ({', '.join(details)})" if details else "") + "\n")
        self.out.flush()

    def report_approvals(self, execution: dict[str, Any]) -> None:
        for approval in execution.get("approvals") or []:
            if approval.get("status") == "pending" and approval["id"] not in (
                self.announced_approvals
            ):
                self.announced_approvals.add(approval["id"])
                self.out.write(
                    f"waiting for approval {approval['id']} ({approval.get('node_id')}): "
                    f"{approval.get('message') or ''}\n"
                    f"  switchyard approvals approve {approval['id']}\n"
                )
                self.out.flush()

    def poll(self) -> dict[str, Any]:
        execution = self.api.get(f"/api/v1/executions/{self.execution_id}/")
        for job in execution.get("jobs") or []:
            if job["status"] in JOB_TERMINAL:
                self.pull_output(job)
                self.report_job(job)
            else:
                self.report_job(job)
                self.pull_output(job)
        self.report_approvals(execution)
        return execution

    def run(self) -> int:
        while True:
            execution = self.poll()
            if execution["status"] in TERMINAL:
                break
            time.sleep(POLL_INTERVAL)
        final = execution
        status = final["status"]
        summary = f"execution {final['id']} {status}"
        if final.get("duration_ms") is not None:
            summary += f" in {duration(final['duration_ms'])}"
        self.out.write(summary + "\n")
        if final.get("error"):
            self.err.write(f"error: {final['error']}\n")
        if final.get("outputs"):
            self.out.write("outputs: " + json.dumps(final["outputs"]) + "\n")
        self.out.flush()
        return EXIT_OK if status == "completed" else EXIT_FAILED


# -- commands -----------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace, out: TextIO) -> int:
    path = config_path(args.config)
    stored = load_config(path)
    url = args.url or os.environ.get("SWITCHYARD_URL") or stored.get("url")
    if not url:
        raise CliError("--url is required (or set SWITCHYARD_URL)")
    token = args.token or os.environ.get("SWITCHYARD_TOKEN")
    if not token:
        if not sys.stdin.isatty():
            raise CliError("--token is required (or set SWITCHYARD_TOKEN)")
        token = getpass.getpass("API token: ").strip()
    url = url.rstrip("/")
    api = Api(url, token)
    try:
        response = api.request("GET", "/api/v1/workflows/", allow=(401, 403))
    finally:
        api.close()
    if response.status_code in (401, 403):
        raise CliError(f"{url} rejected the token ({response.status_code})")
    save_config(path, {"url": url, "token": token})
    out.write(f"logged in to {url}; credentials saved to {path}\n")
    return EXIT_OK


def cmd_workflows_list(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    body = api.get("/api/v1/workflows/")
    if args.json:
        emit_json(body, out)
        return EXIT_OK
    rows = [
        [
            w["slug"],
            w.get("name", ""),
            "yes" if w.get("is_active") else "no",
            w.get("published_version"),
            w.get("latest_version"),
            ",".join(sorted({t.get("type", "") for t in w.get("triggers") or []})),
        ]
        for w in body.get("results", [])
    ]
    table(rows, ["slug", "name", "active", "published", "latest", "triggers"], out)
    return EXIT_OK


def read_definition(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except OSError as error:
        raise CliError(f"cannot read {path}: {error}") from error


def cmd_apply(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    text = read_definition(args.file)
    checked = api.post("/api/v1/workflows/validate/", {"definition": text})
    if not checked.get("valid"):
        raise CliError(
            f"{args.file} is not a valid workflow definition",
            [f"{e.get('path') or '(definition)'}: {e.get('message')}" for e in checked["errors"]],
        )
    slug = checked["slug"]
    existing = api.request("GET", f"/api/v1/workflows/{slug}/", allow=(404,))
    if existing.status_code == 404:
        created = api.post("/api/v1/workflows/", {"definition": text})
        result = {"slug": slug, "version": created.get("latest_version"), "published": True}
        message = f"created {slug} v{result['version']} (published)"
    else:
        version = api.post(f"/api/v1/workflows/{slug}/versions/", {"definition": text})
        number = version["number"]
        result = {"slug": slug, "version": number, "published": False}
        message = f"saved {slug} v{number}"
        if args.publish:
            api.post(f"/api/v1/workflows/{slug}/publish/", {"version": number})
            result["published"] = True
            message += " (published)"
        else:
            message += " (draft; publish with --publish)"
    if args.json:
        emit_json(result, out)
    else:
        out.write(message + "\n")
    return EXIT_OK


def follow_or_print(
    api: Api, execution: dict[str, Any], args: argparse.Namespace, out: TextIO, err: TextIO
) -> int:
    if args.json and not getattr(args, "follow", False):
        emit_json(execution, out)
        return EXIT_OK
    out.write(
        f"execution {execution['id']} of {execution['workflow']} v{execution['version']} "
        f"started ({execution['status']})\n"
    )
    out.flush()
    if getattr(args, "follow", False):
        return Follower(api, execution["id"], out, err).run()
    return EXIT_OK


def cmd_run(api: Api, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    body: dict[str, Any] = {
        "inputs": parse_pairs(args.input, "input"),
        "labels": {k: str(v) for k, v in parse_pairs(args.label, "label").items()},
    }
    if args.version:
        body["version"] = args.version
    if args.each:
        return run_each(api, args, body, out)
    execution = api.post(
        f"/api/v1/workflows/{args.slug}/execute/",
        body,
        headers={"Idempotency-Key": f"cli-{uuid.uuid4()}"},
    )
    return follow_or_print(api, execution, args, out, err)


RUNS_PER_REQUEST = 1000
RUN_INDEX = re.compile(r"^runs\[(\d+)\]")


def run_each(api: Api, args: argparse.Namespace, common: dict[str, Any], out: TextIO) -> int:
    """One run per line of `--each` (a JSON object of inputs over the `--input` values),
    started up to 1,000 per request (`execute-batch`). Every run carries its own idempotency
    key, so a request whose answer was lost is repeated without starting anything twice."""
    if args.follow:
        raise CliError("--follow follows one run; it cannot be used with --each")
    each = read_each(args.each)
    prefix = f"cli-{uuid.uuid4()}"
    results: list[dict[str, Any]] = []
    for first in range(0, len(each), RUNS_PER_REQUEST):
        chunk = each[first : first + RUNS_PER_REQUEST]
        runs = [
            {
                "inputs": common["inputs"] | inputs,
                "labels": common["labels"],
                "idempotency_key": f"{prefix}-{first + offset}",
            }
            for offset, (_, inputs) in enumerate(chunk)
        ]
        body = {"runs": runs} | ({"version": common["version"]} if "version" in common else {})
        try:
            response = api.request(
                "POST",
                f"/api/v1/workflows/{args.slug}/execute-batch/",
                json_body=body,
                retry_lost_connection=True,
            )
        except CliError as error:
            error.details = [with_line_numbers(detail, chunk) for detail in error.details]
            if results:
                error.args = (f"{error} (after starting {len(results)} of {len(each)} runs)",)
            raise
        results += response.json()["results"]
    if args.json:
        emit_json({"results": results}, out)
        return EXIT_OK
    for run in results:
        out.write(f"execution {run['id']} of {run['workflow']} started ({run['status']})\n")
    return EXIT_OK


def with_line_numbers(detail: str, chunk: list[tuple[int, dict[str, Any]]]) -> str:
    """A server's `runs[i]…` problem as the `--each` line it came from (`line 7…`)."""
    found = RUN_INDEX.match(detail)
    if found is None or int(found[1]) >= len(chunk):
        return detail
    rest = detail[found.end() :]
    return f"line {chunk[int(found[1])][0]}" + (rest if rest.startswith(":") else f": {rest[1:]}")


def read_each(path: str) -> list[tuple[int, dict[str, Any]]]:
    """JSON Lines, one object of inputs per non-blank line (`-` reads standard input), as
    (line number, inputs) pairs."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as error:
        raise CliError(f"--each {path}: {error.strerror or error}") from error
    each = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            inputs = json.loads(line)
        except ValueError as error:
            raise CliError(f"--each {path}, line {number}: not JSON: {error}") from error
        if not isinstance(inputs, dict):
            raise CliError(f"--each {path}, line {number}: expected an object of inputs")
        each.append((number, inputs))
    if not each:
        raise CliError(f"--each {path}: no runs (one JSON object of inputs per line)")
    return each


def cmd_executions_list(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    body = api.get(
        "/api/v1/executions/",
        workflow=args.workflow,
        status=args.status,
        trigger=args.trigger,
        page_size=args.limit,
    )
    if args.json:
        emit_json(body, out)
        return EXIT_OK
    rows = [
        [
            e["id"],
            e["workflow"],
            e["status"],
            trigger_text(e.get("trigger")),
            short_time(e.get("created_at")),
            duration(e.get("duration_ms")),
        ]
        for e in body.get("results", [])
    ]
    table(rows, ["id", "workflow", "status", "trigger", "created", "duration"], out)
    return EXIT_OK


def cmd_executions_show(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    execution = api.get(f"/api/v1/executions/{args.id}/")
    if args.json:
        emit_json(execution, out)
        return EXIT_OK
    lines = [
        f"id:        {execution['id']}",
        f"workflow:  {execution['workflow']} v{execution['version']}",
        f"status:    {execution['status']}",
        f"trigger:   {json.dumps(execution.get('trigger') or {})}",
        f"inputs:    {json.dumps(execution.get('inputs') or {})}",
        f"created:   {short_time(execution.get('created_at'))}",
        f"finished:  {short_time(execution.get('finished_at'))}",
        f"duration:  {duration(execution.get('duration_ms'))}",
    ]
    if execution.get("error"):
        lines.append(f"error:     {execution['error']}")
    if execution.get("outputs"):
        lines.append(f"outputs:   {json.dumps(execution['outputs'])}")
    out.write("\n".join(lines) + "\n\n")
    table(
        [[n["id"], n.get("type"), n["status"], n.get("reason", "")] for n in execution["nodes"]],
        ["node", "type", "status", "reason"],
        out,
    )
    if execution.get("jobs"):
        out.write("\n")
        table(
            [
                [
                    j["id"],
                    j["node_id"],
                    j.get("attempt"),
                    j["status"],
                    j.get("agent"),
                    j.get("exit_code"),
                    duration(j.get("duration_ms")),
                ]
                for j in execution["jobs"]
            ],
            ["job", "node", "attempt", "status", "agent", "exit", "duration"],
            out,
        )
    return EXIT_OK


def cmd_executions_cancel(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    action = "kill" if args.kill else "cancel"
    execution = api.post(f"/api/v1/executions/{args.id}/{action}/")
    if args.json:
        emit_json(execution, out)
    else:
        out.write(f"execution {execution['id']}: {action} requested ({execution['status']})\n")
    return EXIT_OK


def cmd_executions_rerun(api: Api, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    execution = api.post(f"/api/v1/executions/{args.id}/rerun/")
    return follow_or_print(api, execution, args, out, err)


def cmd_executions_follow(api: Api, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return Follower(api, args.id, out, err).run()


def cmd_approvals_list(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    status = None if args.status == "all" else args.status
    body = api.get("/api/v1/approvals/", status=status)
    if args.json:
        emit_json(body, out)
        return EXIT_OK
    rows = [
        [
            a["id"],
            a.get("workflow"),
            a.get("execution"),
            a.get("node_id"),
            a.get("status"),
            (a.get("message") or "").replace("\n", " ")[:60],
        ]
        for a in body.get("results", [])
    ]
    table(rows, ["id", "workflow", "execution", "node", "status", "message"], out)
    return EXIT_OK


def cmd_approvals_decide(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    action = "approve" if args.approvals_command == "approve" else "reject"
    approval = api.post(f"/api/v1/approvals/{args.id}/{action}/", {"note": args.note or ""})
    if args.json:
        emit_json(approval, out)
    else:
        out.write(f"approval {approval['id']}: {approval.get('status')}\n")
    return EXIT_OK


def cmd_triggers_list(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    body = api.get(f"/api/v1/workflows/{args.slug}/triggers/")
    if args.json:
        emit_json(body, out)
        return EXIT_OK
    rows = []
    for trigger in body.get("results", []):
        if trigger.get("webhook"):
            detail = trigger["webhook"]["url"]
            if trigger["webhook"].get("secret"):
                detail += f" (signed with secret {trigger['webhook']['secret']})"
        elif trigger.get("cron"):
            cron = trigger["cron"]
            upcoming = ", ".join(short_time(t) for t in cron["next_fires"][:3])
            detail = f"{cron['cron']} {cron['timezone']}; next: {upcoming}"
        else:
            detail = (trigger.get("event") or {}).get("event", "")
        rows.append([trigger["id"], trigger["kind"], detail])
    table(rows, ["id", "kind", "detail"], out)
    return EXIT_OK


def cmd_events_send(api: Api, args: argparse.Namespace, out: TextIO) -> int:
    try:
        data = json.loads(args.data) if args.data else {}
    except ValueError as error:
        raise CliError(f"--data is not valid JSON: {error}") from error
    event = api.post(
        "/api/v1/events/",
        {"type": args.type, "source": args.source, "dedup_key": args.dedup_key, "data": data},
    )
    if args.json:
        emit_json(event, out)
        return EXIT_OK
    state = "duplicate of a stored event" if event.get("duplicate") else "stored"
    out.write(f"event {event['id']} {state}; started {len(event['executions'])} run(s)\n")
    for execution in event["executions"]:
        out.write(f"  {execution['id']} {execution['workflow']} ({execution['status']})\n")
    return EXIT_OK


# -- argument parsing ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="control plane URL")
    common.add_argument("--token", default=argparse.SUPPRESS, help="API token")
    common.add_argument("--config", default=argparse.SUPPRESS, help="config file path")
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print raw JSON"
    )

    parser = argparse.ArgumentParser(
        prog="switchyard",
        description="Switchyard command line client.",
        parents=[common],
        epilog="Exit codes: 0 ok, 1 followed execution did not complete, 2 error.",
    )
    parser.add_argument("--version", action="version", version=f"switchyard {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser(
        "login", parents=[common], help="store the URL and token in ~/.config/switchyard"
    )

    workflows = commands.add_parser("workflows", parents=[common], help="workflows")
    workflow_commands = workflows.add_subparsers(dest="workflows_command", required=True)
    workflow_commands.add_parser("list", parents=[common], help="list workflows")

    apply = commands.add_parser(
        "apply", parents=[common], help="create a workflow or save a new version"
    )
    apply.add_argument("-f", "--file", required=True, help="YAML/JSON definition ('-': stdin)")
    apply.add_argument("--publish", action="store_true", help="publish the new version")

    run = commands.add_parser("run", parents=[common], help="start an execution")
    run.add_argument("slug")
    run.add_argument(
        "-i",
        "--input",
        action="append",
        default=[],
        metavar="K=V",
        help="an input (repeatable); K:=<json> for a JSON value",
    )
    run.add_argument(
        "-l", "--label", action="append", default=[], metavar="K=V", help="a label (repeatable)"
    )
    run.add_argument("--version", type=int, dest="version", help="run this version")
    run.add_argument(
        "-f", "--follow", action="store_true", help="follow until it ends; exit 1 unless completed"
    )
    run.add_argument(
        "--each",
        metavar="FILE",
        help=(
            "start one run per line of FILE (JSON Lines, '-' for stdin): each line an object of "
            "inputs over the --input values; up to 1,000 runs per request"
        ),
    )

    executions = commands.add_parser("executions", parents=[common], help="executions")
    execution_commands = executions.add_subparsers(dest="executions_command", required=True)
    listing = execution_commands.add_parser("list", parents=[common], help="newest first")
    listing.add_argument("--workflow")
    listing.add_argument("--status")
    listing.add_argument("--trigger")
    listing.add_argument("--limit", type=int, default=20)
    show = execution_commands.add_parser("show", parents=[common], help="one execution")
    show.add_argument("id")
    cancel = execution_commands.add_parser("cancel", parents=[common], help="cancel a run")
    cancel.add_argument("id")
    cancel.add_argument("--kill", action="store_true", help="also kill in-flight jobs")
    rerun = execution_commands.add_parser("rerun", parents=[common], help="run it again")
    rerun.add_argument("id")
    rerun.add_argument("-f", "--follow", action="store_true")
    follow = execution_commands.add_parser("follow", parents=[common], help="follow a run")
    follow.add_argument("id")

    approvals = commands.add_parser("approvals", parents=[common], help="approval requests")
    approval_commands = approvals.add_subparsers(dest="approvals_command", required=True)
    pending = approval_commands.add_parser("list", parents=[common], help="pending by default")
    pending.add_argument(
        "--status",
        default="pending",
        help="pending (default), approved, rejected, expired, cancelled or all",
    )
    for name in ("approve", "reject"):
        decide = approval_commands.add_parser(name, parents=[common], help=f"{name} a request")
        decide.add_argument("id", type=int)
        decide.add_argument("--note", default="")

    triggers = commands.add_parser("triggers", parents=[common], help="a workflow's triggers")
    trigger_commands = triggers.add_subparsers(dest="triggers_command", required=True)
    trigger_list = trigger_commands.add_parser("list", parents=[common])
    trigger_list.add_argument("slug")

    events = commands.add_parser("events", parents=[common], help="incident/alert events")
    event_commands = events.add_subparsers(dest="events_command", required=True)
    send = event_commands.add_parser("send", parents=[common], help="send an event")
    send.add_argument("type")
    send.add_argument("--source", default="cli")
    send.add_argument("--dedup-key", dest="dedup_key")
    send.add_argument("--data", help="JSON object")
    return parser


def dispatch(api: Api, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    command = args.command
    if command == "workflows":
        return cmd_workflows_list(api, args, out)
    if command == "apply":
        return cmd_apply(api, args, out)
    if command == "run":
        return cmd_run(api, args, out, err)
    if command == "executions":
        sub = args.executions_command
        if sub == "list":
            return cmd_executions_list(api, args, out)
        if sub == "show":
            return cmd_executions_show(api, args, out)
        if sub == "cancel":
            return cmd_executions_cancel(api, args, out)
        if sub == "rerun":
            return cmd_executions_rerun(api, args, out, err)
        return cmd_executions_follow(api, args, out, err)
    if command == "approvals":
        if args.approvals_command == "list":
            return cmd_approvals_list(api, args, out)
        return cmd_approvals_decide(api, args, out)
    if command == "triggers":
        return cmd_triggers_list(api, args, out)
    return cmd_events_send(api, args, out)


def main(
    argv: list[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    for name in ("url", "token", "config"):
        setattr(args, name, getattr(args, name, None))
    args.json = getattr(args, "json", False)
    try:
        if args.command == "login":
            return cmd_login(args, out)
        url, token = settings_from(args)
        api = Api(url, token)
        try:
            return dispatch(api, args, out, err)
        finally:
            api.close()
    except CliError as error:
        err.write(f"error: {error}\n")
        for line in error.details:
            err.write(f"  {line}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
