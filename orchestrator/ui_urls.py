"""Routes of the web UI (server-rendered pages; live updates come over `/ws/live/`)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from agents import views as agent_views
from approvals import views as approval_views
from executions import views

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="/login/"), name="logout"),
    path("executions/", views.executions_list, name="executions"),
    path("executions/views/", views.saved_view_create, name="saved-view-create"),
    path(
        "executions/views/<int:view_id>/delete/",
        views.saved_view_delete,
        name="saved-view-delete",
    ),
    path("executions/<str:execution_id>/", views.execution_detail, name="execution"),
    path("executions/<str:execution_id>/state/", views.execution_state_json),
    path("executions/<str:execution_id>/diff/", views.execution_diff, name="execution-diff"),
    path(
        "executions/<str:execution_id>/diagnosis/",
        views.execution_diagnosis,
        name="execution-diagnosis",
    ),
    path("executions/<str:execution_id>/events/", views.execution_events_json),
    path("workflows/", views.workflows_list, name="workflows"),
    path("workflows/new/", views.workflow_editor, name="workflow-new"),
    path("workflows/<slug:slug>/", views.workflow_detail, name="workflow"),
    path("workflows/<slug:slug>/edit/", views.workflow_editor, name="workflow-edit"),
    path("agents/", agent_views.agents_list, name="agents"),
    path("agents/<str:name>/", agent_views.agent_detail, name="agent"),
    path("approvals/", approval_views.approvals_list, name="approvals"),
    path("approvals/pending.json", approval_views.approvals_json),
    path("analytics/", views.analytics, name="analytics"),
    path("settings/", views.settings_page, name="settings"),
]
