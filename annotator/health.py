"""Liveness for load balancers and the compose health check: the process answers and its
database does. No authentication, no data in the answer. And the favicon address browsers guess."""

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponseRedirect, JsonResponse
from django.templatetags.static import static


def healthz(request: HttpRequest) -> JsonResponse:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return JsonResponse({"status": "database unavailable"}, status=503)
    return JsonResponse({"status": "ok"})


def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """``/favicon.ico``, which browsers ask for on pages that name no icon (admin, API docs)."""
    return HttpResponseRedirect(static("maskmill/favicon.svg"))
