"""REST views of stage 1: predict/prepare, the annotator queue and leases, review. Thin: they
check access, validate and call ``services``."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.annotation import selectors, services
from annotator.annotation.interactive import MAX_POINTS, PromptError
from annotator.images.api import ImageSerializer
from annotator.images.models import Image
from annotator.masks.api import MaskSerializer
from annotator.masks.models import Mask
from annotator.projects.access import EDITORS, check_project_access, get_checked, get_project
from annotator.projects.models import Role

REVIEWERS = (Role.MANAGER, Role.REVIEWER)


def editable_image(request: Request, pk: int) -> Image:
    """The image if the user may annotate it (404 for non-members, 403 for other roles), with its
    project: one query, the access check included (a click is one of these per request)."""
    return get_checked(Image.objects.select_related("project"), request.user, EDITORS, pk=pk)


class PredictRequest(serializers.Serializer):
    """The predict body, for the API schema only: ``interactive.parse_prompts`` validates it (the
    JSON's shape) with ``engine.prompts`` (what the numbers may be, the rule both predictors apply);
    a bad field is a 400 naming it and why."""

    points = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2),
        required=False,
        max_length=MAX_POINTS,
        help_text="[[x, y], ...] in image pixels, inside the image (0 <= x <= width, 0 <= y <= height)",
    )
    labels = serializers.ListField(
        child=serializers.ChoiceField(choices=[0, 1]),
        required=False,
        help_text="one per point: 1 (object) or 0 (background)",
    )
    box = serializers.ListField(
        child=serializers.FloatField(),
        allow_null=True,
        required=False,
        min_length=4,
        max_length=4,
        help_text="[x0, y0, x1, y1] inside the image, x0 <= x1 and y0 <= y1",
    )
    mask_input = serializers.CharField(
        allow_null=True,
        required=False,
        help_text='the previous round\'s mask: a logits_handle from an earlier answer, or "mask:<id>"',
    )
    mask_index = serializers.IntegerField(
        allow_null=True, required=False, min_value=0, max_value=15, help_text="which candidate of the handle"
    )
    multimask = serializers.BooleanField(required=False, default=True, help_text="three candidates, or one")


class Predict(APIView):
    """Masks for clicks/box/mask prompt, decoded in this process from the cached embedding."""

    @extend_schema(request=PredictRequest, responses={200: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        image = editable_image(request, pk)
        try:
            answer = services.predict(image, request.user, request.data)
        except PromptError as exc:
            return Response(exc.errors, status=status.HTTP_400_BAD_REQUEST)
        timing = answer.get("timing_ms")
        response = Response(answer)
        if timing:
            response["Server-Timing"] = ", ".join(f"{k};dur={v}" for k, v in timing.items())
        return response


class Prepare(APIView):
    """``{state: ready}`` once clicks on the image can be decoded; ``preparing`` while its
    embedding is computed (poll again)."""

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        image = editable_image(request, pk)
        state = services.prepare(image)
        services.note_activity(image, request.user)
        return Response({"state": state})


class Lease(APIView):
    """POST renews the caller's lease on the image (409 when someone else holds it); DELETE gives
    the image back to the queue unfinished."""

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        image = editable_image(request, pk)
        holder = services.open_image(image, request.user)
        if holder is not None:
            return Response(
                {
                    "detail": f"{holder.get_username()} is annotating this image "
                    f"(lease until {image.lease_expires_at:%H:%M:%S} UTC)."
                },
                status=status.HTTP_409_CONFLICT,
            )
        return Response(
            {"image": image.pk, "lease_expires_at": image.lease_expires_at, "status": image.status}
        )

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        image = editable_image(request, pk)
        services.release_lease(image, request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class Heartbeat(APIView):
    """The open annotation page renews its lease while its annotator is active (every third of
    the lease); 409 with the reason when the image is no longer theirs. A closed tab sends nothing
    and the lease lapses."""

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT, 409: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        image = editable_image(request, pk)
        try:
            expires = services.heartbeat(image, request.user)
        except services.LeaseLost as lost:
            return Response(
                {"detail": lost.detail, "holder": lost.holder.get_username() if lost.holder else None},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(
            {
                "image": image.pk,
                "lease_expires_at": expires,
                "lease_seconds": int(services.lease_duration().total_seconds()),
            }
        )


class Finish(APIView):
    """The annotator is done with the image: annotated, lease released, visit ended."""

    @extend_schema(request=None, responses={200: ImageSerializer, 409: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        image = editable_image(request, pk)
        if not services.finish_image(image, request.user):
            return Response(
                {"detail": "you no longer hold this image (your lease expired); nothing was changed"},
                status=status.HTTP_409_CONFLICT,
            )
        image.refresh_from_db()
        return Response(ImageSerializer(image, context={"request": request}).data)


class NextImage(APIView):
    """Lease and return the next image of the caller's queue (204 when the queue is empty)."""

    @extend_schema(request=None, responses={200: ImageSerializer, 204: None})
    def post(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, EDITORS)
        image = services.next_image(project, request.user)
        if image is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(ImageSerializer(image, context={"request": request}).data)


class RejectRequest(serializers.Serializer):
    note = serializers.CharField(allow_blank=True, help_text="what is wrong, shown to the annotator")
    version = serializers.IntegerField(min_value=1, help_text="the version you reviewed; 409 when stale")


class RejectMask(APIView):
    """A reviewer rejects a mask with a note; its image returns to the annotator queue."""

    @extend_schema(request=RejectRequest, responses={200: MaskSerializer, 409: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        mask = get_object_or_404(Mask, pk=pk)
        check_project_access(request.user, mask.project_id, REVIEWERS)
        payload = RejectRequest(data=request.data)
        payload.is_valid(raise_exception=True)
        mask = services.reject_mask(
            mask, request.user, note=payload.validated_data["note"], version=payload.validated_data["version"]
        )
        return Response(MaskSerializer(mask).data)


class ApproveImage(APIView):
    """A reviewer approves an annotated image (no mask rejected): it becomes reviewed."""

    @extend_schema(request=None, responses={200: ImageSerializer})
    def post(self, request: Request, pk: int) -> Response:
        image = get_object_or_404(Image, pk=pk)
        check_project_access(request.user, image.project_id, REVIEWERS)
        image = services.approve_image(image, request.user)
        return Response(ImageSerializer(image, context={"request": request}).data)


class ReviewQueue(APIView):
    """Annotated images waiting for review, oldest first, with their accepted-mask counts."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, REVIEWERS)
        rows = selectors.review_queue(project)[:500]
        return Response({"results": [{"image": r.pk, "accepted_masks": r.accepted_masks} for r in rows]})


class Dashboard(APIView):
    """The dashboard's figures as JSON (progress, masks per image, effort by model and annotator)."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk)
        return Response(selectors.dashboard(project))
