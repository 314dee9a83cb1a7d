"""Outbound HTTP for the ``http`` and ``notify`` actions, guarded against SSRF.

httpx would resolve host names itself and follow redirects to anywhere, so neither is left to
it: each hop's host is resolved and vetted by ``netguard``, the request goes to the vetted IP
(with the real ``Host`` header, and the real name as TLS SNI and for certificate
verification), and redirects are followed here, one checked hop at a time.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from agents.agent import __version__
from agents.agent.actions import ActionResult, JobContext
from agents.agent.actions.shell import format_seconds
from agents.agent.netguard import BlockedAddress, NetworkPolicy, ResolutionError, resolve_vetted

DEFAULT_TIMEOUT_S = 30.0
MAX_REDIRECTS = 10
BODY_LIMIT = 1024 * 1024
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")


class HttpFailure(Exception):
    """The exchange failed in a way that has a ready-made, user-facing message."""


@dataclass
class HttpRequest:
    """One logical request; ``content`` is the encoded body (``json`` already serialised)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    content: bytes | None = None
    follow_redirects: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def with_json(cls, method: str, url: str, payload: Any, **kwargs: Any) -> HttpRequest:
        request = cls(method, url, content=json.dumps(payload).encode(), **kwargs)
        if not any(name.lower() == "content-type" for name in request.headers):
            request.headers["Content-Type"] = "application/json"
        return request


@dataclass(frozen=True)
class StatusExpectation:
    """Which response statuses count as success: a set of codes, or any 2xx when empty."""

    codes: frozenset[int] = frozenset()

    @classmethod
    def parse(cls, value: Any) -> StatusExpectation:
        if value is None or value == []:
            return cls()
        items = value if isinstance(value, list) else [value]
        codes: set[int] = set()
        for item in items:
            try:
                code = int(item) if not isinstance(item, bool) else 0
            except (TypeError, ValueError):
                code = 0
            if not 100 <= code <= 599:
                raise ValueError("params.expect_status must be an HTTP status or a list of them")
            codes.add(code)
        return cls(frozenset(codes))

    def matches(self, status: int) -> bool:
        return status in self.codes if self.codes else 200 <= status < 300

    def __str__(self) -> str:
        return ", ".join(str(code) for code in sorted(self.codes)) if self.codes else "2xx"


def _default_port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


async def _send_pinned(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    headers: Mapping[str, str],
    content: bytes | None,
    policy: NetworkPolicy,
) -> httpx.Response:
    """Vet ``url``'s host and send to one of its vetted addresses (never re-resolving it)."""
    if url.scheme not in ("http", "https"):
        raise HttpFailure(f"unsupported URL scheme '{url.scheme}' (use http or https)")
    if not url.host:
        raise HttpFailure(f"URL has no host: {url}")
    host = url.raw_host.decode("ascii")
    addresses = await resolve_vetted(host, _default_port(url), policy)
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    # The Host header always names the vetted host (a params header cannot redirect it).
    request_headers = {key: value for key, value in headers.items() if key.lower() != "host"}
    request_headers["Host"] = url.netloc.decode("ascii")
    error: httpx.ConnectError | None = None
    for address in addresses:
        request = client.build_request(
            method,
            url.copy_with(host=address),
            headers=request_headers,
            content=content,
            extensions=extensions,
        )
        try:
            return await client.send(request, stream=True)
        except httpx.ConnectError as exc:
            error = exc  # nothing was sent yet: the next vetted address is safe to try
    assert error is not None
    raise error


def _redirect(
    method: str, status: int, content: bytes | None, headers: dict[str, str]
) -> tuple[str, bytes | None, dict[str, str]]:
    """Method and body for the next hop, as browsers and httpx do it."""
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        dropped = ("content-type", "content-length", "transfer-encoding")
        headers = {key: value for key, value in headers.items() if key.lower() not in dropped}
        return "GET", None, headers
    return method, content, headers


async def _read_result(response: httpx.Response, url: httpx.URL) -> dict[str, Any]:
    body = bytearray()
    truncated = False
    try:
        async for chunk in response.aiter_bytes():
            room = BODY_LIMIT - len(body)
            if len(chunk) > room:
                body += chunk[:room]
                truncated = True
                break
            body += chunk
    finally:
        await response.aclose()
    try:
        text = body.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:
        text = body.decode("utf-8", errors="replace")
    parsed = None
    if not truncated and "json" in response.headers.get("content-type", "").lower():
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
    if truncated:
        text += f"\n[switchyard: body truncated after {BODY_LIMIT} bytes]"
    headers: dict[str, str] = {}
    for name, value in response.headers.multi_items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return {
        "status": response.status_code,
        "headers": headers,
        "body": text,
        "json": parsed,
        "url": str(url),
    }


async def fetch(request: HttpRequest, policy: NetworkPolicy) -> dict[str, Any]:
    """Perform ``request`` (following vetted redirects); returns the ``http`` result object."""
    url = httpx.URL(request.url)
    if request.query:
        url = url.copy_merge_params(request.query)
    method, content = request.method.upper(), request.content
    headers = {"User-Agent": f"switchyard-agent/{__version__}", **request.headers}
    async with httpx.AsyncClient(
        verify=httpx.create_ssl_context(),  # honours SSL_CERT_FILE / SSL_CERT_DIR
        trust_env=False,  # a proxy would resolve names itself, defeating the checks
        follow_redirects=False,
        timeout=httpx.Timeout(request.timeout_s),
    ) as client:
        previous: httpx.URL | None = None
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                response = await _send_pinned(client, method, url, headers, content, policy)
            except BlockedAddress as exc:
                if previous is None:
                    raise
                raise BlockedAddress(f"{exc} (redirected from {previous})") from None
            location = response.headers.get("location")
            if not (request.follow_redirects and response.status_code in _REDIRECTS and location):
                return await _read_result(response, url)
            await response.aclose()
            try:
                next_url = url.join(location)
            except httpx.InvalidURL as exc:
                raise HttpFailure(f"invalid redirect location {location!r}: {exc}") from exc
            method, content, headers = _redirect(method, response.status_code, content, headers)
            if (next_url.scheme, next_url.host, _default_port(next_url)) != (
                url.scheme,
                url.host,
                _default_port(url),
            ):
                headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIAL_HEADERS}
            previous, url = url, next_url
    raise HttpFailure(f"too many redirects (more than {MAX_REDIRECTS})")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def classify_error(exc: BaseException, timeout_s: float) -> str:
    """A short, stable description of a transport failure: what an operator needs to act."""
    for cause in _causes(exc):
        if isinstance(cause, httpx.TimeoutException | TimeoutError):
            return f"timeout after {format_seconds(timeout_s)}s"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS: {cause.verify_message or cause.reason}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS: {cause.reason or cause}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"DNS: {cause.strerror}"
    text = str(exc) or type(exc).__name__
    if "Connection refused" in text:
        return "connection refused"
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed: {text}"
    return f"{type(exc).__name__}: {text}"


async def perform(
    ctx: JobContext,
    request: HttpRequest,
    expect: StatusExpectation,
    *,
    parse_json: bool = False,
) -> ActionResult:
    """Run ``request`` for a job and turn the outcome into an ``ActionResult`` with ``http``.

    The request's own timeout yields ``failed`` ("timeout after Ns"); when the job's timeout is
    the shorter one and expires, the job is ``timeout`` like any other action.
    """
    started = time.monotonic()
    job_bound = ctx.timeout_s is not None and ctx.timeout_s < request.timeout_s
    if job_bound and ctx.timeout_s is not None:
        request.timeout_s = ctx.timeout_s
    policy = NetworkPolicy.for_job(ctx.network_allow)

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        async with asyncio.timeout(request.timeout_s):
            http = await fetch(request, policy)
    except (BlockedAddress, HttpFailure) as exc:
        return ActionResult.failure(str(exc), duration_ms=elapsed())
    except ResolutionError as exc:
        return ActionResult.failure(f"DNS: {exc}", duration_ms=elapsed())
    except (httpx.HTTPError, TimeoutError, OSError) as exc:
        error = classify_error(exc, request.timeout_s)
        if job_bound and error.startswith("timeout after"):
            seconds = format_seconds(request.timeout_s)
            return ActionResult(status="timeout", error=f"timed out after {seconds}s")
        return ActionResult.failure(error, duration_ms=elapsed())
    result = ActionResult(status="completed", http=http, duration_ms=elapsed())
    if not expect.matches(http["status"]):
        result.status = "failed"
        result.error = f"HTTP {http['status']} (expected {expect})"
    if parse_json:
        if http["json"] is None:
            try:
                http_json = json.loads(http["body"])
            except ValueError as exc:
                if result.status == "completed":
                    result.status = "failed"
                    result.error = f"parse: json: the response body is not JSON ({exc})"
                return result
            result.outputs["json"] = http_json
        else:
            result.outputs["json"] = http["json"]
    return result
