"""API routes of exports and imports (included under /api/ by annotator.urls)."""

from django.urls import path

from annotator import params  # noqa: F401 - registers the <id:...> converter
from annotator.exports import api

urlpatterns = [
    path("projects/<id:pk>/exports/", api.ExportList.as_view(), name="export-list"),
    path("projects/<id:pk>/imports", api.ImportAnnotations.as_view(), name="import-annotations"),
    path("exports/<id:pk>/", api.ExportDetail.as_view(), name="export-detail"),
    path("exports/<id:pk>/cancel", api.ExportCancel.as_view(), name="export-cancel"),
    path("exports/<id:pk>/resume", api.ExportResume.as_view(), name="export-resume"),
    path("exports/<id:pk>/files/<str:name>", api.ExportFile.as_view(), name="export-file"),
]
