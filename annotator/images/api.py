"""REST views for images: list/filter, multipart ingest, detail, and the file behind access checks."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from annotator.images import files, selectors, services
from annotator.images.models import Image, ImageStatus, Split
from annotator.params import BadNumber, parse_int
from annotator.parsers import JSONParser
from annotator.projects.access import ALL_ROLES, MANAGERS, check_project_access, get_project
from annotator.projects.models import Stage


class ImageSerializer(serializers.ModelSerializer):
    file_url = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=ImageStatus.choices, required=False)
    split = serializers.ChoiceField(choices=Split.choices, required=False)
    stage = serializers.ChoiceField(
        choices=[("", "the project's"), *Stage.choices], required=False, allow_blank=True
    )

    class Meta:
        model = Image
        fields = [
            "id", "project", "width", "height", "status", "split", "stage", "file_url", "sha256",
            "original_name", "source_url", "size_bytes", "created_at",
        ]  # fmt: skip
        read_only_fields = [f for f in fields if f not in ("status", "split", "stage")]

    def get_file_url(self, image: Image) -> str:
        return reverse("image-file", kwargs={"pk": image.pk}, request=self.context.get("request"))


class UploadSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(allow_empty_file=True), allow_empty=False)


class ImageList(generics.ListCreateAPIView):
    serializer_class = ImageSerializer
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        roles = ALL_ROLES if request.method in SAFE_METHODS else MANAGERS
        self.project = get_project(request.user, kwargs["pk"], roles)

    @extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, description="comma-separated statuses"),
            OpenApiParameter("split", OpenApiTypes.STR),
        ]
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = self.request.query_params
        return selectors.images_of(self.project.pk, status=params.get("status"), split=params.get("split"))

    @extend_schema(request={"multipart/form-data": UploadSerializer}, responses={201: OpenApiTypes.OBJECT})
    def post(self, request: Request, *args, **kwargs) -> Response:
        uploads = request.FILES.getlist("files")
        if not uploads:
            raise ValidationError({"files": 'send one or more image files in the multipart field "files"'})
        result = services.ingest_files(self.project, uploads, request.user)
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(result.as_dict(), status=code)


class ImageDetail(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = ImageSerializer
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_object(self) -> Image:
        image = get_object_or_404(Image, pk=self.kwargs["pk"])
        check_project_access(
            self.request.user,
            image.project_id,
            ALL_ROLES if self.request.method in SAFE_METHODS else MANAGERS,
        )
        return image

    def perform_destroy(self, instance: Image) -> None:
        instance.delete()  # its file and embeddings' files go once committed (annotator.images.signals)


class ImageFile(APIView):
    """The image's bytes for members only; ``?size=N`` gives a JPEG thumbnail (N px, at most 1024)."""

    @extend_schema(
        parameters=[OpenApiParameter("size", OpenApiTypes.INT, description="thumbnail size in px")],
        responses={(200, "image/*"): OpenApiTypes.BINARY},
    )
    def get(self, request: Request, pk: int):
        image = get_object_or_404(Image, pk=pk)
        check_project_access(request.user, image.project_id, ALL_ROLES)
        size = request.query_params.get("size")
        if size is None:
            return files.original_response(image)
        try:
            pixels = parse_int(size, 1, files.MAX_THUMBNAIL_REQUEST)
        except BadNumber as exc:
            raise ValidationError({"size": f"thumbnail size in pixels: {exc}"}) from None
        return files.thumbnail_response(image, pixels)
