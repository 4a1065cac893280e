"""REST views of label suggestions. Thin: access checks, parsing, then services / find."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.images.models import Image
from annotator.masks.models import Mask, MaskStatus
from annotator.projects.access import EDITORS, MANAGERS, get_checked, get_project
from annotator.suggestions import find, selectors, services
from annotator.suggestions.models import LabelHeadVersion
from engine.labels import LabelHeadError
from engine.masks import decode_rle

# Suggestions for an image's proposed masks are computed per request: bounded.
MAX_MASKS_PER_REQUEST = 300


class FindRequest(serializers.Serializer):
    label = serializers.CharField(help_text="a label name of the project, or a synonym of one")


class ProjectFindRequest(FindRequest):
    split = serializers.ChoiceField(choices=["train", "val", "test"], required=False)
    image_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, max_length=10000
    )


def _validation_response(exc: ValidationError) -> Response:
    detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
    return Response(detail, status=status.HTTP_400_BAD_REQUEST)


class LabelHeadDetail(APIView):
    """The project's label heads: the active one with its val metrics, recent candidates, and how
    often suggestions were kept."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk)
        return Response({**selectors.head_summary(project), "kept": selectors.kept_rates(project)})


class LabelHeadTrain(APIView):
    """Train and gate a head now (managers); answers the new head, or 409 with what is missing."""

    @extend_schema(request=None, responses={201: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        try:
            row = services.train_head(project)
        except LabelHeadError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(
            {"id": row.pk, "status": row.status, "metrics": row.metrics, "reason": row.reason},
            status=status.HTTP_201_CREATED,
        )


class LabelHeadPromote(APIView):
    """Make a head the active one by hand (managers), whatever the gate said."""

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        row = get_checked(LabelHeadVersion.objects.defer("data"), request.user, MANAGERS, pk=pk)
        services.activate(row)
        return Response({"id": row.pk, "status": row.status})


class ImageSuggestions(APIView):
    """Label suggestions for the image's proposed masks (or ``?mask=<id>`` ones), top 3 each."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        image = get_checked(Image.objects.select_related("project"), request.user, EDITORS, pk=pk)
        masks = Mask.objects.filter(image=image).order_by("id")
        wanted = request.query_params.getlist("mask")
        if wanted:
            ids = [int(v) for v in wanted if v.isascii() and v.isdigit() and len(v) < 19]
            masks = masks.filter(pk__in=ids)
        else:
            masks = masks.filter(status=MaskStatus.PROPOSED)
        rows = list(masks.values_list("id", "segmentation")[:MAX_MASKS_PER_REQUEST])
        project = image.project
        version = services.feature_version(project)
        try:
            head = services.head_for(project, version)
        except services.SuggestionsUnavailable as exc:
            return Response({"available": False, "reason": str(exc), "masks": {}})
        from annotator.suggestions.features import image_features

        source = image_features(image, version)
        if source is None:
            return Response(
                {"available": False, "reason": "the image's embedding is not ready yet", "masks": {}}
            )
        labels = services.current_labels(project)
        answers = services.suggest(head, source, [decode_rle(rle) for _, rle in rows], labels)
        return Response({"available": True, "masks": {str(mid): a for (mid, _), a in zip(rows, answers)}})


class ImageFind(APIView):
    """Find every mask of a label on this image: the automatic generator's masks whose suggested
    label matches become proposed masks for review (the project's labels and synonyms only)."""

    @extend_schema(request=FindRequest, responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        image = get_checked(Image.objects.select_related("project"), request.user, EDITORS, pk=pk)
        data = request.data if isinstance(request.data, dict) else {}
        try:
            label = find.resolve_label(image.project, data.get("label"))
            result = find.find_in_image(image, label)
        except ValidationError as exc:
            return _validation_response(exc)
        except services.SuggestionsUnavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(result.as_dict())


class ProjectFind(APIView):
    """Find a label on a set of the project's images as a job on the ``train`` queue (managers)."""

    @extend_schema(request=ProjectFindRequest, responses={202: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        body = ProjectFindRequest(data=request.data if isinstance(request.data, dict) else {})
        body.is_valid(raise_exception=True)
        try:
            label = find.resolve_label(project, body.validated_data["label"])
        except ValidationError as exc:
            return _validation_response(exc)
        images = Image.objects.filter(project=project)
        if "split" in body.validated_data:
            images = images.filter(split=body.validated_data["split"])
        if "image_ids" in body.validated_data:
            images = images.filter(pk__in=body.validated_data["image_ids"])
        image_ids = list(images.order_by("id").values_list("id", flat=True)[:10000])
        from annotator.suggestions.tasks import find_label_task

        find_label_task.delay(label.pk, image_ids)
        return Response({"queued": len(image_ids), "label": label.name}, status=status.HTTP_202_ACCEPTED)
