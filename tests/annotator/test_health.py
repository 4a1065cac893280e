from unittest import mock

import pytest
from django.db import DatabaseError
from django.test import Client

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_login():
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_healthz_says_when_the_database_is_down():
    with mock.patch("annotator.health.connection.cursor", side_effect=DatabaseError("gone")):
        response = Client().get("/healthz")
    assert response.status_code == 503 and response.json() == {"status": "database unavailable"}
