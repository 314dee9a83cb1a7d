"""Content-Security-Policy for every response: no inline scripts, styles or event handlers.

The UI keeps all of its JavaScript and CSS in static files and passes data to scripts through
`json_script` blocks (`type="application/json"`, never executed), so the policy needs neither
`unsafe-inline` nor `unsafe-eval`. The WebSocket endpoint is same-origin; `connect-src` names the
ws/wss origin explicitly because older browsers do not extend `'self'` to WebSocket schemes.

Only the third-party API documentation pages (Swagger UI, Redoc) ship inline bootstrap scripts;
they keep a policy that allows exactly that and nothing else from elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

HEADER = "Content-Security-Policy"

# Pages rendered by drf-spectacular's own templates, which contain inline bootstrap scripts.
DOCS_PREFIXES = ("/api/docs/", "/api/redoc/")


def policy_for(request: HttpRequest) -> str:
    host = request.get_host()
    ws_origin = f"{'wss' if request.is_secure() else 'ws'}://{host}"
    if request.path.startswith(DOCS_PREFIXES):
        return (
            "default-src 'self'; script-src 'self' 'unsafe-inline'; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; "
            "object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
        )
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self' {ws_origin}",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if HEADER not in response:
            response[HEADER] = policy_for(request)
        response.setdefault("Referrer-Policy", "same-origin")
        response.setdefault("X-Content-Type-Options", "nosniff")
        return response
