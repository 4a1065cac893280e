from django.apps import AppConfig


class MasksConfig(AppConfig):
    name = "annotator.masks"
    label = "masks"
