"""Approvals API: list (by status), one request, approve / reject with a note."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals.models import ApprovalRequest, ApprovalStatus
from approvals.serializers import ApprovalSerializer, DecisionSerializer
from approvals.services import DecisionRefused, decide, may_decide
from executions.advancing import ExecutionConflict
from orchestrator.api_errors import Conflict
from orchestrator.roles import READ_ONLY, Action
from orchestrator.schema import error_responses

TAGS = ["approvals"]
NO_APPROVAL = {"e404": "No such approval request."}

QUERYSET = ApprovalRequest.objects.select_related("execution__workflow", "decided_by")


class ApprovalCursorPagination(CursorPagination):
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = ("-created_at", "-id")


def waiting_on(user, queryset):
    """Pending requests this user may decide and has not voted on yet."""
    pending = list(queryset.filter(status=ApprovalStatus.PENDING).select_related("execution"))
    ids = [
        request.pk
        for request in pending
        if may_decide(request, user) is None
        and not any(vote["user"] == user.username for vote in request.votes)
    ]
    return queryset.filter(pk__in=ids)


@extend_schema_view(
    get=extend_schema(
        operation_id="approvals_list",
        summary="List approval requests, newest first",
        tags=TAGS,
        parameters=[
            OpenApiParameter(
                "status",
                str,
                OpenApiParameter.QUERY,
                enum=list(ApprovalStatus.values),
                description="Only requests with this status.",
            ),
            OpenApiParameter(
                "mine",
                bool,
                OpenApiParameter.QUERY,
                description="Only pending requests the caller may decide and has not voted on.",
            ),
            OpenApiParameter("workflow", str, OpenApiParameter.QUERY, description="Workflow slug."),
        ],
        responses={
            200: ApprovalSerializer(many=True),
            **error_responses(400, 401, 404, e404="Invalid cursor."),
        },
    )
)
class ApprovalListView(generics.ListAPIView):
    role_rules = READ_ONLY
    serializer_class = ApprovalSerializer
    pagination_class = ApprovalCursorPagination

    def get_queryset(self):
        queryset = QUERYSET.all()
        wanted = self.request.query_params.get("status")
        if wanted:
            if wanted not in ApprovalStatus.values:
                raise ValidationError(
                    {"status": [f"must be one of {', '.join(ApprovalStatus.values)}"]}
                )
            queryset = queryset.filter(status=wanted)
        if self.request.query_params.get("mine") in ("1", "true"):
            queryset = waiting_on(self.request.user, queryset)
        workflow = self.request.query_params.get("workflow")
        if workflow:
            queryset = queryset.filter(execution__workflow__slug=workflow)
        return queryset


class ApprovalDetailView(APIView):
    role_rules = READ_ONLY

    @extend_schema(
        operation_id="approvals_retrieve",
        summary="Get an approval request",
        tags=TAGS,
        request=None,
        responses={200: ApprovalSerializer, **error_responses(401, 404, **NO_APPROVAL)},
    )
    def get(self, request, approval_id: int):
        return Response(ApprovalSerializer(get_object_or_404(QUERYSET, pk=approval_id)).data)


def decision_channel(request) -> str:
    """`web` for the UI (session-authenticated calls), `api` for token-authenticated clients."""
    return "web" if isinstance(request.successful_authenticator, SessionAuthentication) else "api"


class DecisionView(APIView):
    role_rules = {"POST": Action.APPROVE}
    approve = True

    @extend_schema(
        operation_id="approvals_decide",
        tags=TAGS,
        request=DecisionSerializer,
        responses={
            200: ApprovalSerializer,
            **error_responses(
                400,
                401,
                403,
                404,
                409,
                e403="You may not decide this request (not an approver, or self-approval).",
                e409="The request is no longer pending, or you already voted.",
                **NO_APPROVAL,
            ),
        },
    )
    def post(self, request, approval_id: int):
        serializer = DecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            decide(
                approval_id,
                request.user,
                approve=self.approve,
                note=serializer.validated_data["note"],
                via=decision_channel(request),
            )
        except ApprovalRequest.DoesNotExist as error:
            raise NotFound("No such approval request.") from error
        except DecisionRefused as error:
            raise PermissionDenied(str(error)) from error
        except ExecutionConflict as error:
            raise Conflict(str(error)) from error
        return Response(ApprovalSerializer(get_object_or_404(QUERYSET, pk=approval_id)).data)


@extend_schema_view(
    post=extend_schema(operation_id="approvals_approve", summary="Approve (vote for) a request")
)
class ApproveView(DecisionView):
    approve = True


@extend_schema_view(post=extend_schema(operation_id="approvals_reject", summary="Reject a request"))
class RejectView(DecisionView):
    approve = False
