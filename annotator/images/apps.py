from django.apps import AppConfig


class ImagesConfig(AppConfig):
    name = "annotator.images"
    label = "images"
