"""`Authorization: Bearer <agent token>` for the agent protocol."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions, permissions

from agents.models import Agent
from agents.services import authenticate_agent


class AgentTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != b"bearer":
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Invalid authorization header.")
        agent = authenticate_agent(header[1].decode(errors="replace"))
        if agent is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked agent token.")
        return AnonymousUser(), agent

    def authenticate_header(self, request) -> str:
        return self.keyword


class IsAgent(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, Agent)
