"""HTTP: the ML backend Label Studio calls (``/ls/<project id>/…``) and the sync API
(``/api/projects/<id>/labelstudio…``). Thin: access checks, errors as 4xx with the reason, the
work in ``backend`` and ``sync``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import ParseError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotator.annotation.interactive import PromptError
from annotator.labelstudio import backend, client, sync
from annotator.labelstudio.auth import UsernameTokenAuthentication
from annotator.labelstudio.models import Connection
from annotator.labelstudio.regions import RegionError
from annotator.projects.access import ALL_ROLES, EDITORS, MANAGERS, get_project


def answer(work: Callable[[], Any]) -> Response:
    """Run ``work``; bad input → 400, an image that cannot be fetched or Label Studio refusing → 422,
    an action this Maskmill cannot do → 409 (all with the reason)."""
    try:
        return Response(work())
    except (RegionError, PromptError) as error:
        detail = error.errors if isinstance(error, PromptError) else str(error)
        return Response({"detail": detail}, status=status.HTTP_400_BAD_REQUEST)
    except (client.FetchError, sync.SyncError) as error:
        return Response({"detail": str(error)}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    except backend.NotAvailable as error:
        return Response({"status": "not started", "detail": str(error)}, status=status.HTTP_409_CONFLICT)
    except IntegrityError:  # the same task or region written at the same moment by another request
        return Response(
            {"detail": "another request was writing the same Label Studio task or region; send it again"},
            status=status.HTTP_409_CONFLICT,
        )


def body_of(request: Request) -> Any:
    try:
        return request.data
    except ParseError as error:
        raise RegionError(f"the body is not valid JSON ({error.detail})") from None


class BackendView(APIView):
    """Basic auth with the Maskmill username and API token (Label Studio's ML-backend setting);
    token and session auth work too (curl, the browser)."""

    authentication_classes = [UsernameTokenAuthentication, TokenAuthentication, SessionAuthentication]
    roles: tuple[str, ...] = ALL_ROLES


class Health(BackendView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, project_id: int) -> Response:
        return Response(backend.health(get_project(request.user, project_id)))


class Setup(BackendView):
    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, project_id: int) -> Response:
        return Response(backend.setup(get_project(request.user, project_id)))


class Predict(BackendView):
    """Interactive (``params.context``) or batch pre-annotation; see ``backend``."""

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, project_id: int) -> Response:
        project = get_project(request.user, project_id, EDITORS)
        return answer(lambda: backend.predict(project, request.user, body_of(request)))


class Webhook(BackendView):
    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, project_id: int) -> Response:
        project = get_project(request.user, project_id, EDITORS)
        return answer(lambda: backend.webhook(project, request.user, body_of(request)))


class Metrics(BackendView):
    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, project_id: int) -> Response:
        return Response(backend.metrics_snapshot(get_project(request.user, project_id)))


# ------------------------------------------------------------------------------------------------
# Sync API (managers)


class ConnectionRequest(serializers.Serializer):
    url = serializers.CharField(required=False, help_text="Label Studio's base URL")
    token = serializers.CharField(
        required=False, write_only=True, help_text="Label Studio API token (never shown again)"
    )
    ls_project = serializers.IntegerField(required=False, allow_null=True, min_value=1)


def describe(connection: Connection | None) -> dict[str, Any]:
    if connection is None:
        return {"connected": False}
    return {
        "connected": True,
        "url": connection.url,
        "ls_project": connection.ls_project_id,
        "has_token": bool(connection.token),
        "linked_tasks": connection.tasks.count(),
        "linked_masks": connection.masks.count(),
        "last_push_at": connection.last_push_at,
        "last_pull_at": connection.last_pull_at,
        "backend_url": f"/ls/{connection.project_id}/",
    }


def _connect(request: Request, project: Any) -> Connection:
    data = request.data if isinstance(request.data, dict) else None
    if data is None:
        raise ValidationError({"body": "send a JSON object {url, token, ls_project}"})
    unknown = sorted(set(data) - {"url", "token", "ls_project", "as_annotations"})
    if unknown:
        raise ValidationError({"body": f"unknown field(s) {', '.join(unknown)}"})
    if not {"url", "token", "ls_project"} & set(data):
        connection = Connection.objects.filter(project=project).first()
        if connection is None:
            raise ValidationError({"url": "connect the project first: send url and token"})
        return connection
    return client.save_connection(
        project,
        url=data.get("url"),
        token=data.get("token"),
        ls_project_id=data.get("ls_project"),
        user=request.user,
    )


class ConnectionView(APIView):
    """The project's Label Studio connection (the token is stored, never returned)."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        return Response(describe(Connection.objects.filter(project=project).first()))

    @extend_schema(request=ConnectionRequest, responses={200: OpenApiTypes.OBJECT})
    def put(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        return Response(describe(_connect(request, project)))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        Connection.objects.filter(project=project).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class Push(APIView):
    """Push the project (body: optional url/token/ls_project to connect, ``as_annotations``)."""

    @extend_schema(request=ConnectionRequest, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        connection = _connect(request, project)
        as_annotations = request.data.get("as_annotations", False)
        if not isinstance(as_annotations, bool):
            raise ValidationError({"as_annotations": "must be true or false"})
        return answer(lambda: sync.push(connection, as_annotations=as_annotations))


class Pull(APIView):
    """Pull the Label Studio project's annotations into masks."""

    @extend_schema(request=ConnectionRequest, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, pk: int) -> Response:
        project = get_project(request.user, pk, MANAGERS)
        connection = _connect(request, project)
        return answer(lambda: sync.pull(connection, request.user))
