"""``POST /api/auth/token/``: DRF's token view with the project's parsers (bounded JSON) and a
throttle per client address, on top of the login lockout every authentication goes through."""

from __future__ import annotations

from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle

from annotator.accounts.lockout import is_locked, lockout_message


class ObtainToken(ObtainAuthToken):
    parser_classes = api_settings.DEFAULT_PARSER_CLASSES
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth-token"

    def post(self, request: Request, *args, **kwargs) -> Response:
        username = request.data.get("username") if hasattr(request.data, "get") else None
        if is_locked(username if isinstance(username, str) else None, request._request):
            raise PermissionDenied(lockout_message())
        return super().post(request, *args, **kwargs)
