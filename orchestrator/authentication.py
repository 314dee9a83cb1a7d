"""`Authorization: Token <key>` for users, checked against hashed `ApiToken` rows."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from rest_framework import authentication, exceptions

from orchestrator.models import ApiToken
from orchestrator.row_loading import ModelColumns
from orchestrator.tokens import hash_token

# last_used_at is informational; writing it on every request would put a write on the hot path.
LAST_USED_RESOLUTION_S = 60


TOKEN = ModelColumns(ApiToken, "t")
USER = ModelColumns(get_user_model(), "u")
LIVE_TOKEN_SQL = (
    f"SELECT {TOKEN.sql}, {USER.sql} FROM {TOKEN.table} JOIN {USER.table}"
    f' ON u."{USER.model._meta.pk.column}" = t."{ApiToken._meta.get_field("user").column}"'
    " WHERE t.digest = %s AND t.revoked_at IS NULL"
)


def live_token(digest: str) -> ApiToken | None:
    """The unrevoked token with this digest, with its user. Every API request pays this, so it
    is one hand-written query (see `orchestrator.row_loading`): the ORM spent longer compiling
    it than PostgreSQL spent running it."""
    with connection.cursor() as cursor:
        cursor.execute(LIVE_TOKEN_SQL, [digest])
        row = cursor.fetchone()
    if row is None:
        return None
    token = TOKEN.load(row, 0, connection)
    token.user = USER.load(row, len(TOKEN), connection)
    return token


class ApiTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header.")
        try:
            raw = header[1].decode()
        except UnicodeDecodeError as error:
            raise exceptions.AuthenticationFailed("Invalid token header.") from error
        token = live_token(hash_token(raw))
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        now = timezone.now()
        if (
            token.last_used_at is None
            or (now - token.last_used_at).total_seconds() > LAST_USED_RESOLUTION_S
        ):
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request) -> str:
        return self.keyword


def create_api_token(user, name: str = "") -> str:
    """Issue a new API token for `user` and return the raw key (shown once)."""
    from orchestrator.tokens import issue_token

    issued = issue_token("u")
    ApiToken.objects.create(user=user, name=name, prefix=issued.prefix, digest=issued.digest)
    return issued.raw
