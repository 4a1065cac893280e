"""API routes of the stages (included under /api/ by annotator.urls)."""

from django.urls import path

from annotator.stages import api

urlpatterns = [
    path("projects/<int:pk>/stage", api.ProjectStage.as_view(), name="project-stage"),
    path("projects/<int:pk>/generation-runs/", api.GenerationRunList.as_view(), name="generation-run-list"),
    path("generation-runs/<int:pk>/", api.GenerationRunDetail.as_view(), name="generation-run-detail"),
    path("generation-runs/<int:pk>/cancel", api.GenerationRunCancel.as_view(), name="generation-run-cancel"),
    path("generation-runs/<int:pk>/resume", api.GenerationRunResume.as_view(), name="generation-run-resume"),
    path(
        "projects/<int:pk>/prefill-report/", api.ProjectPrefillReport.as_view(), name="project-prefill-report"
    ),
    path("images/<int:pk>/prefill-report", api.ImagePrefillReport.as_view(), name="image-prefill-report"),
]
