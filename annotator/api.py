"""Project-wide API pieces: error responses and the base view that resolves objects through the
user's projects."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from annotator.masks.services import StaleVersion
from annotator.params import BadNumber


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus model/service validation errors as 400 and stale versions as 409."""
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Response(detail, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, StaleVersion):
        return Response({"detail": str(exc), "current_version": exc.current}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, BadNumber):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    return drf_exception_handler(exc, context)


class Pagination(PageNumberPagination):
    """``{count, next, previous, results}``; clients may ask for ``?page_size=`` up to 500."""

    page_size_query_param = "page_size"
    max_page_size = 500
