"""REST views of training: runs (start, watch, cancel), versions (lineage, promote, roll back) and
the schedule. Thin: access (non-member 404, wrong role 403), validation, then services."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.api import Pagination
from annotator.projects.access import ALL_ROLES, MANAGERS, check_project_access, get_project
from annotator.training import promotion, runs, schedule, selectors
from annotator.training.models import TrainingRun, TrainingTrigger


class TrainingRunCreateSerializer(serializers.Serializer):
    parameters = serializers.JSONField(
        required=False, help_text="overrides of the project's training settings for this run"
    )


class ScheduleSerializer(serializers.Serializer):
    crontab = serializers.CharField(required=False, max_length=200, help_text="'m h dom mon dow', UTC")
    every_seconds = serializers.IntegerField(required=False, min_value=60, max_value=366 * 86400)
    enabled = serializers.BooleanField(default=True)


def busy_response(exc: runs.TrainingBusy) -> Response:
    return Response(
        {"detail": str(exc), "run": exc.run.pk if exc.run else None}, status=status.HTTP_409_CONFLICT
    )


class TrainingOverview(APIView):
    """GET /api/projects/{id}/training: data available vs needed, schedule, active version."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, ALL_ROLES)
        return Response(
            {
                "project": project.pk,
                "data": runs.data_status(project),
                "schedule": schedule.describe(schedule.get_schedule(project)),
                "active_version": project.active_model_version_id,
            }
        )


class TrainingRunList(APIView):
    """GET (members) / POST (managers) /api/projects/{id}/training-runs/."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, ALL_ROLES)
        paginator = Pagination()
        page = paginator.paginate_queryset(
            TrainingRun.objects.filter(project=project).order_by("-id"), request, view=self
        )
        return paginator.get_paginated_response([selectors.run_summary(r, with_log=False) for r in page])

    @extend_schema(request=TrainingRunCreateSerializer, responses={201: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        body = TrainingRunCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            run = runs.request_training_run(
                project,
                trigger=TrainingTrigger.MANUAL,
                user=request.user,
                parameters=body.validated_data.get("parameters"),
            )
        except runs.TrainingBusy as exc:
            return busy_response(exc)
        return Response(selectors.run_summary(run), status=status.HTTP_201_CREATED)


def run_for(request: Request, pk: int, roles: tuple[str, ...]) -> TrainingRun:
    run = get_object_or_404(TrainingRun, pk=pk)
    check_project_access(request.user, run.project_id, roles)
    return run


class TrainingRunDetail(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        return Response(selectors.run_summary(run_for(request, pk, ALL_ROLES)))


class TrainingRunCancel(APIView):
    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        run = run_for(request, pk, MANAGERS)
        runs.cancel_run(run)
        return Response(selectors.run_summary(run))


class ModelVersionList(APIView):
    """GET /api/projects/{id}/model-versions/: the lineage (parent, encoder, data size, metrics)."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, ALL_ROLES)
        return Response({"results": selectors.lineage(project)})


class ModelVersionPromote(APIView):
    """POST /api/projects/{id}/model-versions/{version}/promote (managers)."""

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int, version: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        found = selectors.version_of_project(project, version)
        if found is None:
            return Response({"detail": "no such model version in this project"}, status=404)
        done = promotion.promote(project, found, user=request.user)
        return Response(
            {"project": project.pk, "active_version": done.version_id, "previous": done.previous_id}
        )


class ProjectRollback(APIView):
    """POST /api/projects/{id}/rollback (managers): back to the version active before this one."""

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        done = promotion.rollback(project, user=request.user)
        return Response(
            {"project": project.pk, "active_version": done.version_id, "previous": done.previous_id}
        )


class TrainingSchedule(APIView):
    """GET (members) / PUT / DELETE (managers) /api/projects/{id}/training-schedule."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, ALL_ROLES)
        return Response({"schedule": schedule.describe(schedule.get_schedule(project))})

    @extend_schema(request=ScheduleSerializer, responses={200: OpenApiTypes.OBJECT})
    def put(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        body = ScheduleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        task = schedule.set_schedule(
            project,
            crontab=data.get("crontab"),
            every_seconds=data.get("every_seconds"),
            enabled=data["enabled"],
        )
        return Response({"schedule": schedule.describe(task)})

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        schedule.delete_schedule(project)
        return Response(status=status.HTTP_204_NO_CONTENT)
