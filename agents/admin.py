from django.contrib import admin
from django.utils import timezone

from agents.models import Agent, AgentPool, EnrollmentToken


@admin.register(AgentPool)
class AgentPoolAdmin(admin.ModelAdmin):
    list_display = ["name", "description"]


@admin.action(description="Revoke the selected agents' tokens")
def revoke_agents(modeladmin, request, queryset) -> None:
    queryset.update(revoked_at=timezone.now())


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "pools", "version", "last_heartbeat", "is_disabled", "revoked_at"]
    readonly_fields = ["token_digest", "token_prefix", "registered_at", "last_heartbeat"]
    actions = [revoke_agents]


@admin.action(description="Revoke the selected enrollment tokens")
def revoke_enrollment_tokens(modeladmin, request, queryset) -> None:
    queryset.update(revoked_at=timezone.now())


@admin.register(EnrollmentToken)
class EnrollmentTokenAdmin(admin.ModelAdmin):
    list_display = [
        "prefix",
        "description",
        "pools",
        "uses",
        "max_uses",
        "expires_at",
        "revoked_at",
    ]
    readonly_fields = ["digest", "prefix", "uses", "created_at"]
    actions = [revoke_enrollment_tokens]
