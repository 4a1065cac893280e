"""Real-browser tests: Debian's Chromium driven by Playwright against a live Django server on
127.0.0.1 (SQLite, media in a temporary folder, Celery eager). Each test leaves a screenshot in
test-artifacts/e2e/<test>.png, and <test>-failure.png when it fails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.required import skip_or_fail

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"


def chromium_path() -> str | None:
    """MASKMILL_CHROMIUM when set (a wrong path is reported, not replaced), else Debian's Chromium."""
    configured = os.environ.get("MASKMILL_CHROMIUM")
    candidates = (configured,) if configured else ("/usr/bin/chromium", shutil.which("chromium"))
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    """Chromium for this module's tests; closed with the module so Playwright's event loop does not
    outlive the e2e tests (Django refuses ORM calls while a loop runs in the thread)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        skip_or_fail(f"playwright for Python is not installed ({exc}); pip install -r requirements-test.txt")
    executable = chromium_path()
    if executable is None:
        where = os.environ.get("MASKMILL_CHROMIUM") or "/usr/bin/chromium"
        skip_or_fail(f"Chromium is not installed ({where}); on Debian: apt-get install chromium")
    # Playwright's sync API runs an event loop in the test thread; the tests' ORM calls between
    # browser steps (and the database flush after each test) are still plain synchronous calls.
    # Only while this module's browser runs: never in deployment.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def server(django_db_setup, django_db_blocker):
    """A threaded live server on 127.0.0.1 (an ephemeral port) for the whole e2e session."""
    from pytest_django.live_server_helper import LiveServer

    with django_db_blocker.unblock():
        live = LiveServer("127.0.0.1:0")
    yield live
    live.stop()


@pytest.fixture(autouse=True)
def _e2e_platform(settings, tmp_path, transactional_db):
    from annotator.annotation import services
    from annotator.celery import app
    from annotator.suggestions.services import forget_heads
    from annotator.training.services import forget_loaded_models

    forget_heads()
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.MASKMILL_LOGITS_DIR = tmp_path / "logits"
    settings.MASKMILL_MODEL_TYPE = ""
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    services.reset_caches()
    forget_loaded_models()
    yield
    app.conf.task_always_eager = eager
    services.reset_caches()
    forget_loaded_models()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.e2e_failed = report.failed


@pytest.fixture
def context(browser, request, server):
    """A fresh browser context (own cookies and localStorage); screenshots of every page at the end.
    An exception the page's scripts did not catch fails the test: most would otherwise only show as
    a key or click that silently did nothing."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=server.url)
    ctx.set_default_timeout(15_000)
    page_errors: list[str] = []

    def watch(page) -> None:
        page.on("pageerror", lambda error: page_errors.append(f"{page.url}: {error}"))

    ctx.on("page", watch)
    yield ctx
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    failed = getattr(request.node, "e2e_failed", False)
    for index, page in enumerate(ctx.pages):
        suffix = "" if index == 0 else f"-{index + 1}"
        try:
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}{suffix}.png"), full_page=True)
            if failed:
                page.screenshot(
                    path=str(ARTIFACTS / f"{request.node.name}{suffix}-failure.png"), full_page=True
                )
        except Exception as exc:  # a crashed page must not hide the test's own error
            print(f"screenshot of {request.node.name}{suffix} failed: {exc}")
    ctx.close()
    assert not page_errors, "uncaught errors in the page's scripts:\n" + "\n".join(page_errors)


def login(ctx, server, user):
    """Log ``user`` in by handing the browser a session cookie (the login form has its own test)."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    ctx.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": server.url}])
    return ctx.new_page()
