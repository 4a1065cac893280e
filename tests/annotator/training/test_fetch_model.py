"""``manage.py fetch_model`` end to end against the local test HTTP server of the engine tests."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from tests.engine.test_checkpoint_download import PAYLOAD, PAYLOAD_SHA256, FileServer

pytestmark = pytest.mark.skipif(
    "annotator.training" not in settings.INSTALLED_APPS,
    reason="the annotator.training app (platform branch) is not installed in these settings",
)


def test_fetch_model_downloads_into_the_model_store(settings, tmp_path, capsys):
    settings.MASKMILL_MODEL_STORE = tmp_path / "store"
    with FileServer(drop_after=100_000) as server:
        call_command("fetch_model", "vit_t", url=server.url, sha256=PAYLOAD_SHA256, no_progress=True)
    path = tmp_path / "store" / "mobile_sam.pt"
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == [None, "bytes=100000-"]  # the interruption was resumed
    out = capsys.readouterr().out
    assert f"MASKMILL_MODEL_TYPE=vit_t MASKMILL_CHECKPOINT={path}" in out


def test_fetch_model_dest_overrides_the_store_and_is_idempotent(tmp_path):
    with FileServer() as server:
        for _ in range(2):
            call_command(
                "fetch_model", "vit_b", url=server.url, sha256=PAYLOAD_SHA256, dest=str(tmp_path), verbosity=0
            )
    assert (tmp_path / "sam_vit_b_01ec64.pth").read_bytes() == PAYLOAD
    assert server.ranges == [None]


def test_fetch_model_reports_a_checksum_failure(settings, tmp_path):
    settings.MASKMILL_MODEL_STORE = tmp_path
    with FileServer() as server, pytest.raises(CommandError, match="SHA-256"):
        call_command("fetch_model", "vit_l", url=server.url, no_progress=True)  # official sum: mismatch
    assert not (tmp_path / "sam_vit_l_0b3195.pth").exists()


def test_fetch_model_rejects_unknown_model_types():
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("fetch_model", "vit_x")
