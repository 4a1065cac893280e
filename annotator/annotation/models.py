"""What the annotation app stores beyond the platform's tables: who is computing which missing
embedding right now, so several web processes asking for the same image compute it once."""

from __future__ import annotations

from django.db import models


class EmbeddingClaim(models.Model):
    """A claim on computing the embedding of (image, model version); unique, so exactly one process
    holds it. A claim older than its ``expires_at`` belongs to a process that died and may be taken."""

    image = models.ForeignKey("images.Image", on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey("training.ModelVersion", on_delete=models.CASCADE, related_name="+")
    owner = models.CharField(max_length=200, help_text="host:pid:thread of the claimant")
    claimed_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "model_version"], name="embedding_claim_unique")
        ]
