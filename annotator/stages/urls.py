"""API routes of the stages (included under /api/ by annotator.urls)."""

from django.urls import path

from annotator import params  # noqa: F401 - registers the <id:...> converter
from annotator.stages import api

urlpatterns = [
    path("projects/<id:pk>/stage", api.ProjectStage.as_view(), name="project-stage"),
    path("projects/<id:pk>/generation-runs/", api.GenerationRunList.as_view(), name="generation-run-list"),
    path("generation-runs/<id:pk>/", api.GenerationRunDetail.as_view(), name="generation-run-detail"),
    path("generation-runs/<id:pk>/cancel", api.GenerationRunCancel.as_view(), name="generation-run-cancel"),
    path("generation-runs/<id:pk>/resume", api.GenerationRunResume.as_view(), name="generation-run-resume"),
    path(
        "projects/<id:pk>/prefill-report/", api.ProjectPrefillReport.as_view(), name="project-prefill-report"
    ),
    path("images/<id:pk>/prefill-report", api.ImagePrefillReport.as_view(), name="image-prefill-report"),
]
