"""Wrong passwords are limited on every way in: the login page, the admin login and the API token
(a lockout per username and per address, and a DRF throttle on the token endpoint)."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def limits(settings):
    settings.MASKMILL_LOGIN_MAX_FAILURES = 3
    settings.MASKMILL_LOGIN_LOCKOUT_SECONDS = 600
    return settings


def page_login(client: Client, url: str, username: str, password: str):
    return client.post(url, {"username": username, "password": password})


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_pages_lock_a_username_after_too_many_wrong_passwords(users, limits, url):
    client = Client()
    for _ in range(3):
        response = page_login(client, url, "root", "wrong")
        assert response.status_code == 200 and "_auth_user_id" not in client.session
    locked = page_login(client, url, "root", "root-pw-123")  # even the right password
    assert locked.status_code == 200 and "_auth_user_id" not in client.session
    assert "Too many failed logins" in locked.content.decode()
    limits.MASKMILL_LOGIN_LOCKOUT_SECONDS = 1  # not a clock: the counters are cleared instead
    from django.core.cache import cache

    cache.clear()
    assert page_login(client, url, "root", "root-pw-123").status_code == 302


def test_lockout_counts_per_address_across_usernames(users, limits):
    client = Client(REMOTE_ADDR="10.0.0.7")
    for name in ("a", "b", "c"):
        page_login(client, "/accounts/login/", name, "wrong")
    response = page_login(client, "/accounts/login/", "manager", "manager-pw-123")
    assert "Too many failed logins" in response.content.decode()
    other = Client(REMOTE_ADDR="10.0.0.8")
    assert page_login(other, "/accounts/login/", "manager", "manager-pw-123").status_code == 302


def test_a_success_clears_the_username_count(users, limits):
    client = Client()
    for _ in range(2):
        page_login(client, "/accounts/login/", "manager", "wrong")
    assert page_login(client, "/accounts/login/", "manager", "manager-pw-123").status_code == 302
    other = Client(REMOTE_ADDR="10.0.0.9")
    for _ in range(2):
        page_login(other, "/accounts/login/", "manager", "wrong")
    assert page_login(other, "/accounts/login/", "manager", "manager-pw-123").status_code == 302


def test_token_endpoint_locks_out_and_throttles(users, limits):
    client = APIClient()
    for _ in range(3):
        bad = client.post("/api/auth/token/", {"username": "manager", "password": "x"}, format="json")
        assert bad.status_code == 400
    right = {"username": "manager", "password": "manager-pw-123"}
    locked = client.post("/api/auth/token/", right, format="json")
    assert locked.status_code == 403 and "Too many failed logins" in locked.json()["detail"]


def test_token_endpoint_has_a_rate_per_address(users, settings):
    from rest_framework.throttling import ScopedRateThrottle

    rates = {"auth-token": "4/hour"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    ScopedRateThrottle.THROTTLE_RATES = rates  # DRF reads the rates once at import
    try:
        client = APIClient()
        right = {"username": "manager", "password": "manager-pw-123"}
        codes = [client.post("/api/auth/token/", right, format="json") for _ in range(5)]
        assert [c.status_code for c in codes] == [200, 200, 200, 200, 429]
        assert "Retry-After" in codes[-1]
    finally:
        from rest_framework.settings import api_settings

        ScopedRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
