"""Label Studio's "basic auth" ML-backend setting: the Maskmill username and the user's API token
(the one ``POST /api/auth/token/`` gives), never the password."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication
from rest_framework.authtoken.models import Token


class UsernameTokenAuthentication(BasicAuthentication):
    www_authenticate_realm = "Maskmill (username and API token)"

    def authenticate_credentials(self, userid, password, request=None):
        token = Token.objects.select_related("user").filter(key=password).first()
        if token is None or token.user.get_username() != userid or not token.user.is_active:
            raise exceptions.AuthenticationFailed(
                "invalid username or API token (Label Studio's basic auth: your Maskmill username "
                "and API token)"
            )
        return token.user, token


class UsernameTokenScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes the backend's authentication: HTTP basic, username and token."""

    target_class = "annotator.labelstudio.auth.UsernameTokenAuthentication"
    name = "labelStudioBasicAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "basic",
            "description": "Maskmill username and API token (Label Studio's ML-backend basic auth)",
        }
