"""API routes of training (included under /api/ by annotator.urls)."""

from django.urls import path

from annotator.training import api

urlpatterns = [
    path("projects/<id:pk>/training", api.TrainingOverview.as_view(), name="training-overview"),
    path("projects/<id:pk>/training-runs/", api.TrainingRunList.as_view(), name="training-run-list"),
    path("training-runs/<id:pk>/", api.TrainingRunDetail.as_view(), name="training-run-detail"),
    path("training-runs/<id:pk>/cancel", api.TrainingRunCancel.as_view(), name="training-run-cancel"),
    path("projects/<id:pk>/model-versions/", api.ModelVersionList.as_view(), name="model-version-list"),
    path(
        "projects/<id:pk>/model-versions/<id:version>/promote",
        api.ModelVersionPromote.as_view(),
        name="model-version-promote",
    ),
    path("projects/<id:pk>/rollback", api.ProjectRollback.as_view(), name="project-rollback"),
    path("projects/<id:pk>/training-schedule", api.TrainingSchedule.as_view(), name="training-schedule"),
]
