"""Approvals API: list (by status), one request, approve / reject with a note."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework import generics
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals.models import ApprovalRequest, ApprovalStatus
from approvals.serializers import ApprovalSerializer, DecisionSerializer
from approvals.services import DecisionRefused, decide
from executions.advancing import ExecutionConflict
from orchestrator.api_errors import Conflict

QUERYSET = ApprovalRequest.objects.select_related("execution__workflow", "decided_by")


class ApprovalCursorPagination(CursorPagination):
    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"
    ordering = ("-created_at", "-id")


class ApprovalListView(generics.ListAPIView):
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
        return queryset


class ApprovalDetailView(APIView):
    def get(self, request, approval_id: int):
        return Response(ApprovalSerializer(get_object_or_404(QUERYSET, pk=approval_id)).data)


class DecisionView(APIView):
    approve = True

    def post(self, request, approval_id: int):
        serializer = DecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            decide(
                approval_id,
                request.user,
                approve=self.approve,
                note=serializer.validated_data["note"],
                via="api",
            )
        except ApprovalRequest.DoesNotExist as error:
            raise NotFound("No such approval request.") from error
        except DecisionRefused as error:
            raise PermissionDenied(str(error)) from error
        except ExecutionConflict as error:
            raise Conflict(str(error)) from error
        return Response(ApprovalSerializer(get_object_or_404(QUERYSET, pk=approval_id)).data)


class ApproveView(DecisionView):
    approve = True


class RejectView(DecisionView):
    approve = False
