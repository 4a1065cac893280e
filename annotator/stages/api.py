"""REST views for the stages: move a project (or some of its images) to a stage, start / watch /
cancel / resume generation runs, and the semi-automatic report. Thin: validate, check access
(non-member 404, wrong role 403), call services and selectors."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import generics, serializers, status
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.api import Pagination
from annotator.images.models import Image
from annotator.projects.access import ALL_ROLES, MANAGERS, check_project_access, get_project
from annotator.projects.models import Stage
from annotator.stages import selectors, services
from annotator.stages.models import GenerationMode, GenerationRun


class GenerationRunSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()

    class Meta:
        model = GenerationRun
        fields = [
            "id", "project", "mode", "status", "model_version", "parameters", "filter", "total", "done",
            "failed", "error", "created_by", "created_at", "started_at", "finished_at", "progress",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_progress(self, run: GenerationRun) -> dict:
        progress = selectors.run_progress(run)
        if self.context.get("with_failures"):
            progress["failed_items"] = selectors.failed_items(run)
        return progress


class StageChangeSerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=Stage.choices)
    filter = serializers.JSONField(required=False, help_text="{status, split, ids}: only these images")
    generate = serializers.BooleanField(default=True, help_text="start the stage's generation run")


class RunCreateSerializer(serializers.Serializer):
    mode = serializers.ChoiceField(choices=GenerationMode.choices, default=GenerationMode.AUTO)
    filter = serializers.JSONField(required=False)


class ResumeSerializer(serializers.Serializer):
    retry_failed = serializers.BooleanField(default=False)


class ProjectStage(APIView):
    """POST /api/projects/{id}/stage (managers)."""

    @extend_schema(request=StageChangeSerializer, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        body = StageChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = services.set_stage(
            project,
            body.validated_data["stage"],
            user=request.user,
            image_filter=body.validated_data.get("filter"),
            generate=body.validated_data["generate"],
        )
        project.refresh_from_db()
        return Response(
            {
                "project": project.pk,
                "stage": project.stage,
                "run": GenerationRunSerializer(run).data if run is not None else None,
            }
        )


class GenerationRunList(generics.ListCreateAPIView):
    """GET (members) / POST (managers) /api/projects/{id}/generation-runs/."""

    serializer_class = GenerationRunSerializer

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        roles = ALL_ROLES if request.method in SAFE_METHODS else MANAGERS
        self.project = get_project(request.user, kwargs["pk"], roles)

    def get_queryset(self):
        return GenerationRun.objects.filter(project=self.project).order_by("-id")

    @extend_schema(
        request=RunCreateSerializer,
        responses={201: GenerationRunSerializer, 200: OpenApiTypes.OBJECT},
        description='201 with the new run, or 200 {"detail": "nothing to do: ..."} when every matching '
        "image is already done or queued for the project's model version (no run is created).",
    )
    def post(self, request: Request, *args, **kwargs) -> Response:
        body = RunCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = services.start_run(
            self.project,
            body.validated_data["mode"],
            image_filter=body.validated_data.get("filter"),
            user=request.user,
        )
        if run is None:
            return Response({"detail": services.NOTHING_TO_DO, "run": None}, status=status.HTTP_200_OK)
        return Response(GenerationRunSerializer(run).data, status=status.HTTP_201_CREATED)


def run_for(request: Request, pk: int, roles: tuple[str, ...]) -> GenerationRun:
    run = get_object_or_404(GenerationRun, pk=pk)
    check_project_access(request.user, run.project_id, roles)
    return run


class GenerationRunDetail(APIView):
    """GET /api/generation-runs/{id}/: status, progress (done/failed/total, images per hour, ETA)
    and the first failed items with their errors."""

    @extend_schema(responses={200: GenerationRunSerializer})
    def get(self, request: Request, pk: int) -> Response:
        run = run_for(request, pk, ALL_ROLES)
        return Response(GenerationRunSerializer(run, context={"with_failures": True}).data)


class GenerationRunCancel(APIView):
    @extend_schema(request=None, responses={200: GenerationRunSerializer})
    def post(self, request: Request, pk: int) -> Response:
        run = services.cancel_run(run_for(request, pk, MANAGERS))
        return Response(GenerationRunSerializer(run).data)


class GenerationRunResume(APIView):
    @extend_schema(request=ResumeSerializer, responses={200: GenerationRunSerializer})
    def post(self, request: Request, pk: int) -> Response:
        run = run_for(request, pk, MANAGERS)
        body = ResumeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.resume_run(run, retry_failed=body.validated_data["retry_failed"])
        run.refresh_from_db()
        return Response(GenerationRunSerializer(run).data)


class ProjectPrefillReport(APIView):
    """GET /api/projects/{id}/prefill-report/: per pre-filled image (paginated) how many masks were
    pre-filled, kept, fixed, rejected, still pending and added, plus project totals."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, ALL_ROLES)
        image_ids = list(selectors.prefilled_image_ids(project.pk))
        paginator = Pagination()
        page = paginator.paginate_queryset(image_ids, request, view=self)
        rows = selectors.prefill_report(page)
        totals = selectors.report_totals(selectors.prefill_report(image_ids))
        response = paginator.get_paginated_response([{"image": i, **rows[i]} for i in page])
        response.data["totals"] = totals
        return response


class ImagePrefillReport(APIView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        image = get_object_or_404(Image, pk=pk)
        check_project_access(request.user, image.project_id, ALL_ROLES)
        return Response({"image": image.pk, **selectors.prefill_report([image.pk])[image.pk]})
