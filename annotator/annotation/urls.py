"""URLs of stage 1, included once at the root: pages, and the API under /api/."""

from django.urls import include, path

from annotator import params  # noqa: F401 - registers the <id:...> converter
from annotator.annotation import api, views

pages = [
    path("projects/<id:pk>/annotate/", views.annotate_next, name="annotate-next"),
    path("images/<id:pk>/annotate/", views.annotate_image, name="annotate-image"),
    path("projects/<id:pk>/review/", views.review_page, name="review-page"),
    path("projects/<id:pk>/dashboard/", views.dashboard_page, name="dashboard-page"),
]

api_urls = [
    path("images/<id:pk>/predict", api.Predict.as_view(), name="image-predict"),
    path("images/<id:pk>/prepare", api.Prepare.as_view(), name="image-prepare"),
    path("images/<id:pk>/lease", api.Lease.as_view(), name="image-lease"),
    path("images/<id:pk>/heartbeat", api.Heartbeat.as_view(), name="image-heartbeat"),
    path("images/<id:pk>/finish", api.Finish.as_view(), name="image-finish"),
    path("images/<id:pk>/approve", api.ApproveImage.as_view(), name="image-approve"),
    path("masks/<id:pk>/reject", api.RejectMask.as_view(), name="mask-reject"),
    path("projects/<id:pk>/queue/next", api.NextImage.as_view(), name="queue-next"),
    path("projects/<id:pk>/review/queue", api.ReviewQueue.as_view(), name="review-queue"),
    path("projects/<id:pk>/dashboard", api.Dashboard.as_view(), name="dashboard-api"),
]

urlpatterns = [*pages, path("api/", include(api_urls))]
