"""Throttled logins: after ``MASKMILL_LOGIN_MAX_FAILURES`` wrong passwords for one username, or
from one client address, within ``MASKMILL_LOGIN_LOCKOUT_SECONDS``, further attempts are refused
(even with the right password) until the window passes. The counters live in Django's cache
(Redis when there is one, so every web process sees them). One authentication backend applies it
to every form of login: the login page, the admin and ``/api/auth/token/``."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

KEY_PREFIX = "maskmill:login-failures:"


class LockedOut(PermissionDenied):
    """Too many failed logins; ``authenticate`` stops at this backend and answers no user."""


def client_address(request: HttpRequest | None) -> str:
    return (request.META.get("REMOTE_ADDR") or "unknown") if request is not None else "unknown"


def _keys(username: str | None, request: HttpRequest | None) -> list[str]:
    name = hashlib.sha256((username or "").strip().lower().encode()).hexdigest()[:32]
    return [f"{KEY_PREFIX}user:{name}", f"{KEY_PREFIX}addr:{client_address(request)}"]


def is_locked(username: str | None, request: HttpRequest | None) -> bool:
    limit = settings.MASKMILL_LOGIN_MAX_FAILURES
    counts = cache.get_many(_keys(username, request))
    return any(count >= limit for count in counts.values())


def record_failure(username: str | None, request: HttpRequest | None) -> None:
    window = settings.MASKMILL_LOGIN_LOCKOUT_SECONDS
    for key in _keys(username, request):
        if cache.add(key, 1, timeout=window):
            continue
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=window)


def clear_failures(username: str | None) -> None:
    cache.delete(_keys(username, None)[0])


def lockout_message() -> str:
    minutes = max(1, round(settings.MASKMILL_LOGIN_LOCKOUT_SECONDS / 60))
    return f"Too many failed logins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."


class LockoutBackend(ModelBackend):
    """ModelBackend that counts failures and refuses attempts while locked out."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ):
        if username is None:
            username = kwargs.get(self._username_field())
        if is_locked(username, request):
            raise LockedOut(lockout_message())
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            record_failure(username, request)
        else:
            clear_failures(username)
        return user

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD
