from django.apps import AppConfig


class StagesConfig(AppConfig):
    name = "annotator.stages"
    label = "stages"
