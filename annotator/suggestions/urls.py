"""API of label suggestions, included under /api/."""

from django.urls import path

from annotator.suggestions import api, views

urlpatterns = [
    path("projects/<int:pk>/label-head", api.LabelHeadDetail.as_view(), name="label-head"),
    path("projects/<int:pk>/label-head/train", api.LabelHeadTrain.as_view(), name="label-head-train"),
    path("label-heads/<int:pk>/promote", api.LabelHeadPromote.as_view(), name="label-head-promote"),
    path("projects/<int:pk>/find", api.ProjectFind.as_view(), name="project-find"),
    path("images/<int:pk>/suggestions", api.ImageSuggestions.as_view(), name="image-suggestions"),
    path("images/<int:pk>/find", api.ImageFind.as_view(), name="image-find"),
]

pages = [
    path("projects/<int:pk>/label-head/train", views.train_label_head_page, name="label-head-train-page"),
]
