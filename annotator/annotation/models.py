"""The annotation app keeps no tables of its own: visits are ``stages.AnnotationSession``, leases
live on ``images.Image``, and the claim on computing an embedding is ``images.EmbeddingClaim``
(the images app owns embeddings; the claim was here before)."""
