from django.apps import AppConfig


class LabelStudioConfig(AppConfig):
    """Label Studio interop: Maskmill as a Label Studio ML backend, and push/pull sync."""

    name = "annotator.labelstudio"
    label = "labelstudio"
    verbose_name = "Label Studio"
