"""``/ls/<project id>/…`` (the ML backend Label Studio calls), the sync API and the page."""

from django.urls import include, path

from annotator import params  # noqa: F401 - registers the <id:...> converter
from annotator.labelstudio import api, views

backend = [
    path("", api.Health.as_view(), name="ls-root"),
    path("health", api.Health.as_view(), name="ls-health"),
    path("setup", api.Setup.as_view(), name="ls-setup"),
    path("predict", api.Predict.as_view(), name="ls-predict"),
    path("webhook", api.Webhook.as_view(), name="ls-webhook"),
    path("metrics", api.Metrics.as_view(), name="ls-metrics"),
]

api_urls = [
    path("projects/<id:pk>/labelstudio", api.ConnectionView.as_view(), name="ls-connection"),
    path("projects/<id:pk>/labelstudio/push", api.Push.as_view(), name="ls-push"),
    path("projects/<id:pk>/labelstudio/pull", api.Pull.as_view(), name="ls-pull"),
]

urlpatterns = [
    path("ls/<id:project_id>/", include(backend)),
    path("api/", include(api_urls)),
    path("projects/<id:pk>/labelstudio/", views.labelstudio_page, name="labelstudio-page"),
]
