"""URL map: the small server-rendered UI, the admin, the REST API and its schema."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from annotator import params  # noqa: F401 - registers the <id:...> converter
from annotator.accounts.api import ObtainToken
from annotator.accounts.forms import AdminLoginForm, LoginForm
from annotator.health import favicon, healthz
from annotator.images import api as images_api
from annotator.masks import api as masks_api
from annotator.projects import api as projects_api
from annotator.projects import views as project_views
from annotator.suggestions.urls import pages as suggestion_pages

admin.site.login_form = AdminLoginForm

api = [
    path("auth/token/", ObtainToken.as_view(), name="api-token"),
    path("projects/", projects_api.ProjectList.as_view(), name="project-list"),
    path("projects/<id:pk>/", projects_api.ProjectDetail.as_view(), name="project-detail"),
    path("projects/<id:pk>/labels/", projects_api.LabelList.as_view(), name="label-list"),
    path("labels/<id:pk>/", projects_api.LabelDetail.as_view(), name="label-detail"),
    path("projects/<id:pk>/memberships/", projects_api.MembershipList.as_view(), name="membership-list"),
    path("memberships/<id:pk>/", projects_api.MembershipDetail.as_view(), name="membership-detail"),
    path("projects/<id:pk>/images/", images_api.ImageList.as_view(), name="image-list"),
    path("images/<id:pk>/", images_api.ImageDetail.as_view(), name="image-detail"),
    path("images/<id:pk>/file", images_api.ImageFile.as_view(), name="image-file"),
    path("images/<id:pk>/masks/", masks_api.MaskList.as_view(), name="mask-list"),
    path("masks/<id:pk>/", masks_api.MaskDetail.as_view(), name="mask-detail"),
    path("", include("annotator.stages.urls")),
    path("", include("annotator.exports.urls")),
    path("", include("annotator.training.urls")),
    path("", include("annotator.suggestions.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
]

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon),
    path("", project_views.projects_page, name="projects-page"),
    path("projects/<id:pk>/", project_views.project_page, name="project-page"),
    path("", include("annotator.stages.pages")),
    path("", include("annotator.exports.pages")),
    path("", include(suggestion_pages)),
    path("", include("annotator.training.pages")),
    path("accounts/login/", auth_views.LoginView.as_view(form_class=LoginForm), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include(api)),
    path("", include("annotator.annotation.urls")),  # stage 1 pages and API
    path("", include("annotator.labelstudio.urls")),  # Label Studio: ML backend, sync API, page
]
