"""The unit layer runs on SQLite with media in a temporary folder and Celery tasks run eagerly
(in-process), so no broker is involved."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_platform(settings, tmp_path):
    from django.core.cache import cache

    from annotator.annotation.services import reset_caches
    from annotator.celery import app
    from annotator.suggestions.services import forget_heads
    from annotator.training.services import forget_model_versions

    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.MASKMILL_LOGITS_DIR = tmp_path / "logits"  # the shared logits handles of this test
    settings.MASKMILL_MODEL_TYPE = ""
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    forget_model_versions()  # rows remembered by an earlier test may have been rolled back or flushed
    # keys naming rows of an earlier test (whose ids the next test reuses), login-failure counters
    # and throttle history
    cache.clear()
    forget_heads()
    reset_caches()  # per-process caches keyed by ids an earlier (transactional) test may reuse
    yield
    app.conf.task_always_eager = eager
    forget_model_versions()
