"""Images of a project and the image-encoder embeddings cached for them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from annotator.projects.models import Stage


class Split(models.TextChoices):
    TRAIN = "train", "Train"
    VAL = "val", "Validation"
    TEST = "test", "Test"


class ImageStatus(models.TextChoices):
    NEW = "new", "New"  # waiting for an annotator
    IN_PROGRESS = "in_progress", "In progress"  # leased to an annotator
    ANNOTATED = "annotated", "Annotated"  # annotator is done, waiting for review
    NEEDS_REWORK = "needs_rework", "Needs rework"  # a reviewer rejected a mask: back to the queue
    REVIEWED = "reviewed", "Reviewed"


# Statuses the annotator queue hands out as the next image to annotate.
QUEUE_STATUSES = (ImageStatus.NEEDS_REWORK, ImageStatus.NEW)


def image_upload_path(image: Image, filename: str) -> str:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else "bin"
    return f"projects/{image.project_id}/images/{image.sha256[:2]}/{image.sha256}.{suffix}"


class Image(models.Model):
    # No single-column index: (project, status, id) and (project, sha256) serve project lookups.
    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="images", db_index=False
    )
    file = models.FileField(upload_to=image_upload_path, max_length=500)
    original_name = models.CharField(max_length=500, blank=True)
    source_url = models.URLField(max_length=2000, blank=True)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField(default=0)
    width = models.PositiveIntegerField(help_text="after EXIF orientation")
    height = models.PositiveIntegerField(help_text="after EXIF orientation")
    split = models.CharField(max_length=8, choices=Split.choices, default=Split.TRAIN)
    status = models.CharField(max_length=16, choices=ImageStatus.choices, default=ImageStatus.NEW)
    # A manager may move a filtered set of images to another stage than the project's; blank = the
    # project's stage.
    stage = models.CharField(max_length=32, choices=Stage.choices, blank=True, default="")
    leased_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="leased_images",
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "sha256"], name="image_sha256_unique_in_project"),
            # Target of the (image, project) composite foreign key from masks.
            models.UniqueConstraint(fields=["id", "project"], name="image_id_project"),
            models.CheckConstraint(condition=models.Q(split__in=Split.values), name="image_split_valid"),
            models.CheckConstraint(
                condition=models.Q(status__in=ImageStatus.values), name="image_status_valid"
            ),
            models.CheckConstraint(condition=models.Q(width__gt=0, height__gt=0), name="image_has_pixels"),
            models.CheckConstraint(
                condition=models.Q(stage__in=["", *Stage.values]), name="image_stage_valid"
            ),
        ]
        indexes = [
            # Next image to annotate: WHERE project=? AND status IN (...) ORDER BY id.
            models.Index(fields=["project", "status", "id"], name="image_queue"),
            models.Index(fields=["project", "split", "id"], name="image_project_split"),
            models.Index(fields=["lease_expires_at"], name="image_lease_expiry"),
        ]

    def __str__(self) -> str:
        return self.original_name or f"image {self.pk}"

    @property
    def effective_stage(self) -> str:
        return self.stage or self.project.stage

    def lease_is_active(self, now: timezone.datetime | None = None) -> bool:
        now = now or timezone.now()
        return (
            self.leased_by_id is not None
            and self.lease_expires_at is not None
            and self.lease_expires_at > now
        )


def embedding_upload_path(embedding: Embedding, filename: str) -> str:
    return f"embeddings/{embedding.model_version_id}/{embedding.image_id}.npy"


class Embedding(models.Model):
    """The image encoder's output for one image under one model version (fp16 .npy in storage)."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="embeddings")
    model_version = models.ForeignKey(
        "training.ModelVersion", on_delete=models.CASCADE, related_name="embeddings"
    )
    file = models.FileField(upload_to=embedding_upload_path, max_length=500)
    dtype = models.CharField(max_length=16, default="float16")
    shape = models.JSONField(default=list, blank=True)
    input_size = models.JSONField(default=list, blank=True, help_text="[h, w] after resizing to the encoder")
    seconds = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model_version"], name="embedding_one_per_image_and_model"
            )
        ]


class EmbeddingClaim(models.Model):
    """A claim on computing the embedding of (image, model version); unique, so exactly one process
    holds it however many ask at once (the ingest's ``embed`` task, a prefetch, an annotator
    opening the image). A claim past its ``expires_at`` belongs to a process that died and may be
    taken over."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey("training.ModelVersion", on_delete=models.CASCADE, related_name="+")
    owner = models.CharField(max_length=200, help_text="host:pid:thread of the claimant")
    claimed_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model_version"], name="embedding_claim_one_per_image_and_model"
            )
        ]
