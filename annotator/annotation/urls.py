"""URLs of stage 1, included once at the root: pages, and the API under /api/."""

from django.urls import include, path

from annotator.annotation import api, views

pages = [
    path("projects/<int:pk>/annotate/", views.annotate_next, name="annotate-next"),
    path("images/<int:pk>/annotate/", views.annotate_image, name="annotate-image"),
    path("projects/<int:pk>/review/", views.review_page, name="review-page"),
    path("projects/<int:pk>/dashboard/", views.dashboard_page, name="dashboard-page"),
]

api_urls = [
    path("images/<int:pk>/predict", api.Predict.as_view(), name="image-predict"),
    path("images/<int:pk>/prepare", api.Prepare.as_view(), name="image-prepare"),
    path("images/<int:pk>/lease", api.Lease.as_view(), name="image-lease"),
    path("images/<int:pk>/heartbeat", api.Heartbeat.as_view(), name="image-heartbeat"),
    path("images/<int:pk>/finish", api.Finish.as_view(), name="image-finish"),
    path("images/<int:pk>/approve", api.ApproveImage.as_view(), name="image-approve"),
    path("masks/<int:pk>/reject", api.RejectMask.as_view(), name="mask-reject"),
    path("projects/<int:pk>/queue/next", api.NextImage.as_view(), name="queue-next"),
    path("projects/<int:pk>/review/queue", api.ReviewQueue.as_view(), name="review-queue"),
    path("projects/<int:pk>/dashboard", api.Dashboard.as_view(), name="dashboard-api"),
]

urlpatterns = [*pages, path("api/", include(api_urls))]
