"""API routes of training (included under /api/ by annotator.urls)."""

from django.urls import path

from annotator.training import api

urlpatterns = [
    path("projects/<int:pk>/training", api.TrainingOverview.as_view(), name="training-overview"),
    path("projects/<int:pk>/training-runs/", api.TrainingRunList.as_view(), name="training-run-list"),
    path("training-runs/<int:pk>/", api.TrainingRunDetail.as_view(), name="training-run-detail"),
    path("training-runs/<int:pk>/cancel", api.TrainingRunCancel.as_view(), name="training-run-cancel"),
    path("projects/<int:pk>/model-versions/", api.ModelVersionList.as_view(), name="model-version-list"),
    path(
        "projects/<int:pk>/model-versions/<int:version>/promote",
        api.ModelVersionPromote.as_view(),
        name="model-version-promote",
    ),
    path("projects/<int:pk>/rollback", api.ProjectRollback.as_view(), name="project-rollback"),
    path("projects/<int:pk>/training-schedule", api.TrainingSchedule.as_view(), name="training-schedule"),
]
