"""Label Studio's "basic auth" ML-backend setting: the Maskmill username and the user's API token
(the one ``POST /api/auth/token/`` gives), never the password."""

from __future__ import annotations

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
