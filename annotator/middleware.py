"""Request-level middleware: JSON errors on the API's paths and the Content-Security-Policy header."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIX = "/api/"


class ApiErrorsMiddleware:
    """On ``/api/`` paths, errors raised or answered by Django itself (outside DRF's handler) answer
    JSON: a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is 413, other suspicious requests 400, and
    Django's HTML error pages (a URL that matches no route) become ``{"detail": ...}``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith(API_PREFIX)
            and response.status_code >= 400
            and response.get("Content-Type", "").startswith("text/html")
        ):
            return json_error(response.status_code, HTTPStatus(response.status_code).phrase)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        if isinstance(exception, RequestDataTooBig):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return json_error(413, f"request body over the {limit} byte limit (files: multipart field)")
        if isinstance(exception, SuspiciousOperation):
            return json_error(400, str(exception) or "bad request")
        return None


def json_error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


class ContentSecurityPolicyMiddleware:
    """``Content-Security-Policy`` (setting ``MASKMILL_CSP``) on every response that has none: pages
    run only Maskmill's own scripts and load only its own styles, images and API. Empty disables."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy = settings.MASKMILL_CSP

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        return response
