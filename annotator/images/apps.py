from django.apps import AppConfig


class ImagesConfig(AppConfig):
    name = "annotator.images"
    label = "images"

    def ready(self) -> None:
        from annotator.images import signals  # noqa: F401 (connects the receivers)
