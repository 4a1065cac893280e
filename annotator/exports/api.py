"""REST views of exports and imports (managers only; others get 404 or 403 from the project's
access rules). Thin: the filter and options are parsed by ``selectors`` / ``services``, the work
is the ``export`` task's; downloads stream the export's own files after the same check."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.exports import imports, services
from annotator.exports.models import Export, ExportFormat
from annotator.projects.access import MANAGERS, get_checked, get_project


class ExportSerializer(serializers.ModelSerializer):
    class Meta:
        model = Export
        fields = [
            "id", "project", "format", "filter", "options", "status", "progress", "images_total",
            "images_done", "masks_done", "files", "manifest", "error", "created_by", "created_at",
            "started_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class ExportCreateSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=ExportFormat.choices)
    filter = serializers.JSONField(required=False, help_text="mask_status, source, labels, split, ...")
    options = serializers.JSONField(required=False, help_text="shard_size, max_side, blur_faces, ...")


def _validation(exc: ValidationError) -> DRFValidationError:
    return DRFValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages})


class ExportList(generics.ListAPIView):
    """GET (list) / POST (start) /api/projects/{id}/exports/."""

    serializer_class = ExportSerializer

    def get_queryset(self):
        project = get_project(self.request.user, self.kwargs["pk"], MANAGERS)
        return Export.objects.filter(project=project).order_by("-id")

    @extend_schema(request=ExportCreateSerializer, responses={201: ExportSerializer})
    def post(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        body = ExportCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            export = services.create_export(
                project,
                body.validated_data["format"],
                filter_data=body.validated_data.get("filter"),
                options=body.validated_data.get("options"),
                user=request.user,
            )
        except ValidationError as exc:
            raise _validation(exc) from exc
        return Response(ExportSerializer(export).data, status=status.HTTP_201_CREATED)


def checked_export(request: Request, pk: int) -> Export:
    return get_checked(Export.objects.all(), request.user, MANAGERS, pk=pk)


class ExportDetail(APIView):
    @extend_schema(responses={200: ExportSerializer})
    def get(self, request: Request, pk: int) -> Response:
        return Response(ExportSerializer(checked_export(request, pk)).data)


class ExportCancel(APIView):
    @extend_schema(request=None, responses={200: ExportSerializer})
    def post(self, request: Request, pk: int) -> Response:
        return Response(ExportSerializer(services.cancel_export(checked_export(request, pk))).data)


class ExportResume(APIView):
    @extend_schema(request=None, responses={200: ExportSerializer})
    def post(self, request: Request, pk: int) -> Response:
        try:
            export = services.resume_export(checked_export(request, pk))
        except ValidationError as exc:
            raise _validation(exc) from exc
        return Response(ExportSerializer(export).data)


class ExportFile(APIView):
    """GET /api/exports/{id}/files/{name}: one file of a finished export."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, pk: int, name: str) -> FileResponse:
        return download_response(checked_export(request, pk), name)


def download_response(export: Export, name: str) -> FileResponse:
    path = services.download_path(export, name)
    if path is None:
        raise Http404("No such file in this export (is it finished?).")
    return FileResponse(open(path, "rb"), as_attachment=True, filename=name)


class ImportSerializer(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=[(f, f) for f in imports.FORMATS])
    status = serializers.ChoiceField(choices=["accepted", "proposed"], default="accepted")


class ImportAnnotations(APIView):
    """POST /api/projects/{id}/imports (multipart: file, format, status): all or nothing; images are
    matched by file name, so they must be in the project already."""

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request={"multipart/form-data": ImportSerializer}, responses={201: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        body = ImportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        upload = body.validated_data["file"]
        if upload.size > settings.MASKMILL_IMPORT_MAX_BYTES:
            raise DRFValidationError({"file": f"at most {settings.MASKMILL_IMPORT_MAX_BYTES} bytes"})
        try:
            result = imports.import_bytes(
                project, upload.read(), body.validated_data["format"], source=upload.name or "<upload>",
                user=request.user, status=body.validated_data["status"],
            )  # fmt: skip
        except imports.ImportRefused as refused:
            return Response(
                {"detail": "nothing was imported", "problems": refused.problems[:500]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        return Response(result.as_dict(), status=status.HTTP_201_CREATED)
