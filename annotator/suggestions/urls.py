"""API of label suggestions, included under /api/."""

from django.urls import path

from annotator import params  # noqa: F401 - registers the <id:...> converter
from annotator.suggestions import api, views

urlpatterns = [
    path("projects/<id:pk>/label-head", api.LabelHeadDetail.as_view(), name="label-head"),
    path("projects/<id:pk>/label-head/train", api.LabelHeadTrain.as_view(), name="label-head-train"),
    path("label-heads/<id:pk>/promote", api.LabelHeadPromote.as_view(), name="label-head-promote"),
    path("projects/<id:pk>/find", api.ProjectFind.as_view(), name="project-find"),
    path("images/<id:pk>/suggestions", api.ImageSuggestions.as_view(), name="image-suggestions"),
    path("images/<id:pk>/find", api.ImageFind.as_view(), name="image-find"),
]

pages = [
    path("projects/<id:pk>/label-head/train", views.train_label_head_page, name="label-head-train-page"),
]
