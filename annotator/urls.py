"""URL map: the small server-rendered UI, the admin, the REST API and its schema."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.authtoken.views import obtain_auth_token

from annotator.health import healthz
from annotator.images import api as images_api
from annotator.masks import api as masks_api
from annotator.projects import api as projects_api
from annotator.projects import views as project_views

api = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("projects/", projects_api.ProjectList.as_view(), name="project-list"),
    path("projects/<int:pk>/", projects_api.ProjectDetail.as_view(), name="project-detail"),
    path("projects/<int:pk>/labels/", projects_api.LabelList.as_view(), name="label-list"),
    path("labels/<int:pk>/", projects_api.LabelDetail.as_view(), name="label-detail"),
    path("projects/<int:pk>/memberships/", projects_api.MembershipList.as_view(), name="membership-list"),
    path("memberships/<int:pk>/", projects_api.MembershipDetail.as_view(), name="membership-detail"),
    path("projects/<int:pk>/images/", images_api.ImageList.as_view(), name="image-list"),
    path("images/<int:pk>/", images_api.ImageDetail.as_view(), name="image-detail"),
    path("images/<int:pk>/file", images_api.ImageFile.as_view(), name="image-file"),
    path("images/<int:pk>/masks/", masks_api.MaskList.as_view(), name="mask-list"),
    path("masks/<int:pk>/", masks_api.MaskDetail.as_view(), name="mask-detail"),
    path("", include("annotator.stages.urls")),
    path("", include("annotator.exports.urls")),
    path("", include("annotator.suggestions.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("", project_views.projects_page, name="projects-page"),
    path("projects/<int:pk>/", project_views.project_page, name="project-page"),
    path("", include("annotator.stages.pages")),
    path("", include("annotator.exports.pages")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include(api)),
    path("", include("annotator.annotation.urls")),  # stage 1 pages and API
]
