"""URL map: REST API v1, agent protocol v1, probes, schema and admin."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from agents import api as agent_api
from approvals import api as approval_api
from approvals.links import DecisionLinkView
from executions import analytics_api, diff_api
from executions import api as execution_api
from orchestrator import api as workflow_api
from orchestrator import secrets_api, triggers_api
from orchestrator.health import healthz, readyz
from orchestrator.hooks import webhook
from orchestrator.metrics import metrics

api_v1 = [
    path("workflows/", workflow_api.WorkflowListView.as_view()),
    path("workflows/validate/", workflow_api.ValidateView.as_view()),
    path("workflows/<slug:slug>/", workflow_api.WorkflowDetailView.as_view()),
    path("workflows/<slug:slug>/versions/", workflow_api.VersionListView.as_view()),
    path("workflows/<slug:slug>/publish/", workflow_api.PublishView.as_view()),
    path("workflows/<slug:slug>/execute/", workflow_api.ExecuteView.as_view()),
    path("workflows/<slug:slug>/execute-batch/", workflow_api.ExecuteBatchView.as_view()),
    path("workflows/<slug:slug>/triggers/", triggers_api.TriggerListView.as_view()),
    path(
        "workflows/<slug:slug>/triggers/<int:trigger_id>/regenerate-key/",
        triggers_api.RegenerateKeyView.as_view(),
    ),
    path(
        "workflows/<slug:slug>/triggers/<int:trigger_id>/deliveries/",
        triggers_api.DeliveryListView.as_view(),
    ),
    path(
        "workflows/<slug:slug>/triggers/<int:trigger_id>/deliveries/<str:delivery_id>/",
        triggers_api.DeliveryDetailView.as_view(),
    ),
    path(
        "workflows/<slug:slug>/triggers/<int:trigger_id>/deliveries/<str:delivery_id>/redeliver/",
        triggers_api.RedeliverView.as_view(),
    ),
    path("events/", triggers_api.EventListView.as_view()),
    path("events/<str:event_id>/", triggers_api.EventDetailView.as_view()),
    path("executions/", execution_api.ExecutionListView.as_view()),
    path("executions/export/", execution_api.ExportView.as_view()),
    path("executions/bulk/", execution_api.BulkView.as_view()),
    path("executions/<str:execution_id>/", execution_api.ExecutionDetailView.as_view()),
    path("executions/<str:execution_id>/rerun/", execution_api.RerunView.as_view()),
    path("executions/<str:execution_id>/replay/", execution_api.ReplayView.as_view()),
    path("executions/<str:execution_id>/log/", execution_api.ExecutionLogView.as_view()),
    path(
        "executions/<str:execution_id>/jobs/<str:job_id>/output/",
        execution_api.JobOutputView.as_view(),
    ),
    path("executions/<str:execution_id>/cancel/", execution_api.CancelView.as_view()),
    path("executions/<str:execution_id>/kill/", execution_api.KillView.as_view()),
    path("executions/<str:execution_id>/evaluate/", execution_api.EvaluateView.as_view()),
    path("executions/<str:execution_id>/diagnose/", analytics_api.DiagnoseView.as_view()),
    path("executions/<str:execution_id>/diff/", diff_api.RunDiffView.as_view()),
    path("analytics/summary", analytics_api.SummaryNoSlashView.as_view()),
    path("analytics/summary/", analytics_api.SummaryView.as_view()),
    path("analytics/flaky", analytics_api.FlakyNoSlashView.as_view()),
    path("analytics/flaky/", analytics_api.FlakyView.as_view()),
    path("approvals/", approval_api.ApprovalListView.as_view()),
    path("approvals/<int:approval_id>/", approval_api.ApprovalDetailView.as_view()),
    path("approvals/<int:approval_id>/approve/", approval_api.ApproveView.as_view()),
    path("approvals/<int:approval_id>/reject/", approval_api.RejectView.as_view()),
    path("secrets/", secrets_api.SecretListView.as_view()),
    path("secrets/<str:name>/", secrets_api.SecretDetailView.as_view()),
    path("agents/", agent_api.AgentListView.as_view()),
    path("agents/enrollment-tokens/", agent_api.EnrollmentTokenListView.as_view()),
    path(
        "agents/enrollment-tokens/<int:token_id>/revoke/",
        agent_api.EnrollmentTokenRevokeView.as_view(),
    ),
    path("agents/<str:name>/revoke/", agent_api.AgentRevokeView.as_view()),
    path("pools/", agent_api.PoolListView.as_view()),
]

agent_v1 = [
    path("register", agent_api.RegisterView.as_view()),
    path("heartbeat", agent_api.HeartbeatView.as_view()),
    path("jobs/<str:job_id>/claim", agent_api.ClaimView.as_view()),
    path("jobs/<str:job_id>/output", agent_api.OutputView.as_view()),
    path("jobs/<str:job_id>/complete", agent_api.CompleteView.as_view()),
    path("reports", agent_api.ReportBatchView.as_view()),
]

urlpatterns = [
    path("", RedirectView.as_view(url="/executions/", permanent=False)),
    path("healthz", healthz),
    path("approvals/link/<str:token>/", DecisionLinkView.as_view(), name="approval-link"),
    path("readyz", readyz),
    path("metrics", metrics),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema")),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema")),
    path("api/v1/", include(api_v1)),
    path("api/agent/v1/", include(agent_v1)),
    path("hooks/<str:key>", webhook, name="webhook"),
    path("", include("orchestrator.ui_urls")),
]

handler404 = "orchestrator.api_errors.not_found"
