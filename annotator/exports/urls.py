"""API routes of exports and imports (included under /api/ by annotator.urls)."""

from django.urls import path

from annotator.exports import api

urlpatterns = [
    path("projects/<int:pk>/exports/", api.ExportList.as_view(), name="export-list"),
    path("projects/<int:pk>/imports", api.ImportAnnotations.as_view(), name="import-annotations"),
    path("exports/<int:pk>/", api.ExportDetail.as_view(), name="export-detail"),
    path("exports/<int:pk>/cancel", api.ExportCancel.as_view(), name="export-cancel"),
    path("exports/<int:pk>/resume", api.ExportResume.as_view(), name="export-resume"),
    path("exports/<int:pk>/files/<str:name>", api.ExportFile.as_view(), name="export-file"),
]
