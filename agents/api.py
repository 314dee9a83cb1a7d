"""The agent protocol (`/api/agent/v1/…`) and the agent registry API (`/api/v1/agents/…`)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.authentication import AgentTokenAuthentication, IsAgent
from agents.models import Agent, AgentPool, EnrollmentToken
from agents.serializers import (
    AgentListResponseSerializer,
    AgentPoolListResponseSerializer,
    AgentPoolSerializer,
    AgentRegisteredSerializer,
    AgentSerializer,
    CompleteSerializer,
    EnrollmentTokenCreatedSerializer,
    EnrollmentTokenListResponseSerializer,
    EnrollmentTokenSerializer,
    HeartbeatAckSerializer,
    HeartbeatSerializer,
    JobOutputAckSerializer,
    JobResultAckSerializer,
    JobSpecSerializer,
    OutputSerializer,
    RegisterSerializer,
    ReportBatchAckSerializer,
    ReportBatchSerializer,
)
from agents.services import (
    AgentNameTaken,
    EnrollmentRefused,
    create_enrollment_token,
    record_heartbeat,
    register_agent,
    revoke_agent,
)
from executions.advancing import ExecutionConflict
from executions.jobs import (
    JobNotFound,
    JobReport,
    OutputChunk,
    ReportOutcome,
    append_output,
    claim_job,
    job_spec,
    jobs_to_kill,
)
from executions.report_batch import (
    BatchedReport,
    apply_report_batch,
    report_and_take_next,
    report_job_result,
)
from orchestrator.api_errors import Conflict
from orchestrator.parsers import SanitisingJSONParser
from orchestrator.roles import READ_ONLY, Action
from orchestrator.schema import error_responses

PROTOCOL = ["agent-protocol"]
REGISTRY = ["agents"]
STALE_LEASE = {"e409": "The lease is stale or superseded, or the job is in another state."}
NO_JOB = {"e404": "No such job."}
ADMIN_ONLY = {"e403": "Only admins may do this."}
JOB_ID = OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


def parse_job_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as error:
        raise NotFound("No such job.") from error


class AgentView(APIView):
    authentication_classes = [AgentTokenAuthentication]
    permission_classes = [IsAgent]
    parser_classes = [SanitisingJSONParser]


class RegisterView(APIView):
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        operation_id="agent_register",
        summary="Register an agent with an enrollment token",
        tags=PROTOCOL,
        request=RegisterSerializer,
        responses={
            201: AgentRegisteredSerializer,
            **error_responses(
                400,
                403,
                409,
                e403="The enrollment token is invalid, expired, used up or revoked.",
                e409="An agent with that name is already registered.",
            ),
        },
    )
    def post(self, request):
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            agent, token = register_agent(
                enrollment_token=data["enrollment_token"],
                name=data["name"],
                pools=data["pools"],
                labels=data["labels"],
                version=data["version"],
                hostname=data["hostname"],
            )
        except EnrollmentRefused as error:
            raise PermissionDenied(str(error)) from error
        except AgentNameTaken as error:
            raise Conflict(str(error)) from error
        return Response(
            {
                "name": agent.name,
                "token": token,
                "pools": agent.pools,
                "labels": agent.labels,
                "queues": agent.queues,
                "broker_url": settings.SWITCHYARD_AGENT_BROKER_URL,
                "heartbeat_interval": settings.SWITCHYARD_HEARTBEAT_INTERVAL,
            },
            status=status.HTTP_201_CREATED,
        )


class HeartbeatView(AgentView):
    @extend_schema(
        operation_id="agent_heartbeat",
        summary="Report liveness; learn which running jobs to kill",
        tags=PROTOCOL,
        request=HeartbeatSerializer,
        responses={200: HeartbeatAckSerializer, **error_responses(400, 401)},
    )
    def post(self, request):
        serializer = HeartbeatSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        record_heartbeat(request.auth, data["running_jobs"], data["version"], data["load"])
        return Response({"ok": True, "cancel": jobs_to_kill(request.auth, data["running_jobs"])})


class ClaimView(AgentView):
    @extend_schema(
        operation_id="agent_job_claim",
        summary="Claim a job; exactly one claim wins",
        tags=PROTOCOL,
        parameters=[JOB_ID],
        request=None,
        responses={
            200: JobSpecSerializer,
            **error_responses(
                401,
                404,
                409,
                e409="Already claimed, not due yet, for another queue, or cannot run.",
                **NO_JOB,
            ),
        },
    )
    def post(self, request, job_id: str):
        try:
            job = claim_job(request.auth, parse_job_id(job_id))
        except JobNotFound as error:
            raise NotFound("No such job.") from error
        except ExecutionConflict as error:
            raise Conflict(str(error)) from error
        return Response(job_spec(job))


class OutputView(AgentView):
    @extend_schema(
        operation_id="agent_job_output",
        summary="Append live output chunks of a running job",
        tags=PROTOCOL,
        parameters=[JOB_ID],
        request=OutputSerializer,
        responses={
            200: JobOutputAckSerializer,
            **error_responses(400, 401, 404, 409, **NO_JOB, **STALE_LEASE),
        },
    )
    def post(self, request, job_id: str):
        serializer = OutputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        chunks = [OutputChunk(**chunk) for chunk in data["chunks"]]
        try:
            result = append_output(request.auth, parse_job_id(job_id), data["lease"], chunks)
        except JobNotFound as error:
            raise NotFound("No such job.") from error
        except ExecutionConflict as error:
            raise Conflict(str(error)) from error
        return Response(result)


def report_answer(agent, job_id: uuid.UUID, data: dict) -> dict:
    """Apply one final report and shape the answer (`next` with `accept_next`); raises
    JobNotFound / ExecutionConflict."""
    data = dict(data)
    accept_next = data.pop("accept_next", False)
    report = JobReport(**data)
    if accept_next:
        outcome = report_and_take_next(agent, job_id, report)
    else:
        outcome = ReportOutcome(*report_job_result(agent, job_id, report))
    return report_body(outcome)


def report_body(outcome: ReportOutcome) -> dict:
    job = outcome.job
    return {
        "job_id": str(job.pk),
        "status": job.status,
        "applied": outcome.applied,
        "next": job_spec(outcome.next_job) if outcome.next_job else None,
    }


class CompleteView(AgentView):
    @extend_schema(
        operation_id="agent_job_complete",
        summary="Report a job's final result",
        tags=PROTOCOL,
        parameters=[JOB_ID],
        request=CompleteSerializer,
        responses={
            200: JobResultAckSerializer,
            **error_responses(400, 401, 404, 409, **NO_JOB, **STALE_LEASE),
        },
    )
    def post(self, request, job_id: str):
        serializer = CompleteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            return Response(
                report_answer(request.auth, parse_job_id(job_id), serializer.validated_data)
            )
        except JobNotFound as error:
            raise NotFound("No such job.") from error
        except ExecutionConflict as error:
            raise Conflict(str(error)) from error


class ReportBatchView(AgentView):
    """Final reports of several jobs in one request. An agent whose slots finish together sends
    them at once (group commit), which saves a request per job under load; each report is
    applied, fenced and idempotent exactly as `…/jobs/{id}/complete`, and its outcome (or its
    404/409) is returned in the same order."""

    @extend_schema(
        operation_id="agent_reports",
        summary="Report several jobs' final results",
        tags=PROTOCOL,
        request=ReportBatchSerializer,
        responses={200: ReportBatchAckSerializer, **error_responses(400, 401)},
    )
    def post(self, request):
        serializer = ReportBatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        entries = []
        for data in serializer.validated_data["reports"]:
            data = dict(data)
            job_id, accept_next = data.pop("job_id"), data.pop("accept_next", False)
            entries.append(BatchedReport(job_id, JobReport(**data), accept_next))
        results = []
        for entry, outcome in zip(entries, apply_report_batch(request.auth, entries), strict=True):
            if isinstance(outcome, JobNotFound):
                error = {"status": 404, "detail": "No such job."}
                results.append({"job_id": str(entry.job_id), "error": error})
            elif isinstance(outcome, ExecutionConflict):
                error = {"status": 409, "detail": str(outcome)}
                results.append({"job_id": str(entry.job_id), "error": error})
            else:
                results.append(report_body(outcome))
        return Response({"results": results})


class AgentListView(APIView):
    role_rules = READ_ONLY

    @extend_schema(
        operation_id="agents_list",
        summary="List agents",
        tags=REGISTRY,
        request=None,
        responses={200: AgentListResponseSerializer, **error_responses(401)},
    )
    def get(self, request):
        return Response({"results": AgentSerializer(Agent.objects.all(), many=True).data})


class PoolListView(APIView):
    role_rules = READ_ONLY

    @extend_schema(
        operation_id="pools_list",
        summary="List agent pools with their members",
        tags=REGISTRY,
        request=None,
        responses={200: AgentPoolListResponseSerializer, **error_responses(401)},
    )
    def get(self, request):
        agents = list(Agent.objects.all())
        pools = AgentPool.objects.all()
        data = AgentPoolSerializer(pools, many=True, context={"agents": agents}).data
        return Response({"results": data})


class AgentRevokeView(APIView):
    """Revoke an agent's token: its next call (claim, report, heartbeat) is refused."""

    role_rules = {"POST": Action.ADMIN}

    @extend_schema(
        operation_id="agents_revoke",
        summary="Revoke an agent's token",
        tags=REGISTRY,
        request=None,
        responses={
            200: AgentSerializer,
            **error_responses(401, 403, 404, e404="No such agent.", **ADMIN_ONLY),
        },
    )
    def post(self, request, name: str):
        agent = Agent.objects.filter(name=name).first()
        if agent is None:
            raise NotFound("No such agent.")
        revoke_agent(agent)
        return Response(AgentSerializer(Agent.objects.get(pk=agent.pk)).data)


class EnrollmentTokenRevokeView(APIView):
    role_rules = {"POST": Action.ADMIN}

    @extend_schema(
        operation_id="agents_enrollment_tokens_revoke",
        summary="Revoke an enrollment token",
        tags=REGISTRY,
        request=None,
        responses={
            200: EnrollmentTokenSerializer,
            **error_responses(401, 403, 404, e404="No such enrollment token.", **ADMIN_ONLY),
        },
    )
    def post(self, request, token_id: int):
        token = EnrollmentToken.objects.filter(pk=token_id).first()
        if token is None:
            raise NotFound("No such enrollment token.")
        EnrollmentToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        return Response(EnrollmentTokenSerializer(EnrollmentToken.objects.get(pk=token.pk)).data)


class EnrollmentTokenListView(APIView):
    role_rules = {"GET": Action.ADMIN, "POST": Action.ADMIN}

    @extend_schema(
        operation_id="agents_enrollment_tokens_list",
        summary="List enrollment tokens",
        tags=REGISTRY,
        request=None,
        responses={
            200: EnrollmentTokenListResponseSerializer,
            **error_responses(401, 403, **ADMIN_ONLY),
        },
    )
    def get(self, request):
        tokens = EnrollmentToken.objects.all()
        return Response({"results": EnrollmentTokenSerializer(tokens, many=True).data})

    @extend_schema(
        operation_id="agents_enrollment_tokens_create",
        summary="Create an enrollment token",
        description="The raw token is in the response only; it cannot be read again.",
        tags=REGISTRY,
        request=EnrollmentTokenSerializer,
        responses={
            201: EnrollmentTokenCreatedSerializer,
            **error_responses(400, 401, 403, **ADMIN_ONLY),
        },
    )
    def post(self, request):
        serializer = EnrollmentTokenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        token, raw = create_enrollment_token(
            description=data.get("description", ""),
            pools=data.get("pools"),
            max_uses=data.get("max_uses"),
            expires_at=data.get("expires_at"),
            user=request.user,
        )
        body = EnrollmentTokenSerializer(token).data | {"token": raw}
        return Response(body, status=status.HTTP_201_CREATED)
