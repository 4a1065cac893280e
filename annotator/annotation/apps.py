from django.apps import AppConfig


class AnnotationConfig(AppConfig):
    """Stage 1 (assisted-manual): the annotator queue, interactive prediction, review, dashboard."""

    name = "annotator.annotation"
    label = "annotation"
    verbose_name = "Annotation"
