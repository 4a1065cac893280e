"""REST views for masks: RLE in and out, geometry computed by the service, version checks."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response

from annotator.images.models import Image
from annotator.masks import services
from annotator.masks.models import Mask, MaskSource, MaskStatus
from annotator.projects.access import ALL_ROLES, EDITORS, check_project_access
from annotator.projects.models import Label, Role
from annotator.training.models import ModelVersion
from annotator.training.services import model_version_for

REVIEWER_FIELDS = {"status", "review_note"}


class MaskSerializer(serializers.ModelSerializer):
    annotator_name = serializers.SerializerMethodField(
        help_text="username of the annotator who made the mask (null for model-made masks)"
    )

    class Meta:
        model = Mask
        fields = [
            "id", "image", "segmentation", "bbox", "area", "predicted_iou", "stability_score", "point_coords",
            "crop_box", "label", "suggested_label", "suggestion_probability", "source", "status",
            "model_version", "annotator", "annotator_name",
            "seconds", "clicks", "version", "review_note", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_annotator_name(self, mask: Mask) -> str | None:
        # Querysets that list masks select the annotator with them (no query per mask).
        return mask.annotator.get_username() if mask.annotator_id is not None else None


class MaskWriteSerializer(serializers.Serializer):
    segmentation = serializers.JSONField(help_text='COCO RLE {"size": [h, w], "counts": str or [int]}')
    label = serializers.PrimaryKeyRelatedField(queryset=Label.objects.all(), allow_null=True, required=False)
    suggested_label = serializers.PrimaryKeyRelatedField(
        queryset=Label.objects.all(),
        allow_null=True,
        required=False,
        help_text="the label the page suggested for this mask (kept when it equals label)",
    )
    suggestion_probability = serializers.FloatField(min_value=0, max_value=1, allow_null=True, required=False)
    source = serializers.ChoiceField(choices=MaskSource.choices, required=False)
    status = serializers.ChoiceField(choices=MaskStatus.choices, required=False)
    predicted_iou = serializers.FloatField(allow_null=True, required=False)
    stability_score = serializers.FloatField(allow_null=True, required=False)
    point_coords = serializers.JSONField(allow_null=True, required=False)
    crop_box = serializers.JSONField(allow_null=True, required=False)
    model_version = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(), allow_null=True, required=False
    )
    seconds = serializers.FloatField(min_value=0, allow_null=True, required=False)
    clicks = serializers.IntegerField(min_value=0, allow_null=True, required=False)
    review_note = serializers.CharField(allow_blank=True, required=False)


class MaskUpdateSerializer(MaskWriteSerializer):
    version = serializers.IntegerField(min_value=1, help_text="the version you edited; 409 when stale")
    segmentation = serializers.JSONField(required=False)

    def validate(self, attrs: dict) -> dict:
        for field in ("source", "model_version"):
            if field in attrs:
                raise ValidationError({field: "cannot be changed after creation"})
        return attrs


class MaskList(generics.ListCreateAPIView):
    serializer_class = MaskSerializer
    pagination_class = None

    def initial(self, request: Request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        self.image = get_object_or_404(Image, pk=kwargs["pk"])
        check_project_access(
            request.user, self.image.project_id, ALL_ROLES if request.method in SAFE_METHODS else EDITORS
        )

    def get_queryset(self):
        return Mask.objects.filter(image=self.image).select_related("annotator").order_by("id")

    @extend_schema(request=MaskWriteSerializer, responses={201: MaskSerializer})
    def post(self, request: Request, *args, **kwargs) -> Response:
        payload = MaskWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = dict(payload.validated_data)
        if "model_version" not in data and data.get("source", MaskSource.MANUAL) == MaskSource.MANUAL:
            # The model that helped the annotator: the dashboard's time per mask by model version.
            data["model_version"] = model_version_for(self.image.project)
        key = request.headers.get("Idempotency-Key")
        if key is None:
            mask, created = services.create_mask(self.image, annotator=request.user, **data), True
        else:
            mask, created = services.create_mask_once(
                self.image, idempotency_key=key, annotator=request.user, **data
            )
        response = Response(
            MaskSerializer(mask).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response


class MaskDetail(generics.RetrieveAPIView):
    serializer_class = MaskSerializer

    def get_object(self) -> Mask:
        mask = get_object_or_404(Mask.objects.select_related("image", "annotator"), pk=self.kwargs["pk"])
        roles = {"GET": ALL_ROLES, "HEAD": ALL_ROLES, "OPTIONS": ALL_ROLES, "PATCH": ALL_ROLES}.get(
            self.request.method, EDITORS
        )
        self.role = check_project_access(self.request.user, mask.project_id, roles)
        return mask

    @extend_schema(request=MaskUpdateSerializer, responses={200: MaskSerializer, 409: None})
    def patch(self, request: Request, *args, **kwargs) -> Response:
        mask = self.get_object()
        payload = MaskUpdateSerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        changes = dict(payload.validated_data)
        if "version" not in changes:
            raise ValidationError({"version": "send the version you edited (optimistic locking)"})
        version = changes.pop("version")
        if self.role == Role.REVIEWER and set(changes) - REVIEWER_FIELDS:
            raise PermissionDenied("Reviewers may change only a mask's status and review note.")
        mask = services.update_mask(mask, version=version, user=request.user, **changes)
        return Response(MaskSerializer(mask).data)

    @extend_schema(responses={204: None, 409: None})
    def delete(self, request: Request, *args, **kwargs) -> Response:
        mask = self.get_object()
        raw = request.query_params.get("version")
        if raw is None and isinstance(request.data, dict):
            raw = request.data.get("version")
        try:
            version = int(raw)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                {"version": "send the version you are deleting (?version=N or in the body)"}
            ) from exc
        services.delete_mask(mask, version=version)
        return Response(status=status.HTTP_204_NO_CONTENT)
