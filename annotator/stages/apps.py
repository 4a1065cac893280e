from django.apps import AppConfig


class StagesConfig(AppConfig):
    name = "annotator.stages"
    label = "stages"

    def ready(self) -> None:
        from annotator.stages import signals  # noqa: F401 (connects the receivers)
