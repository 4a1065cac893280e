"""engine.checkpoint_download.download against a real HTTP server on 127.0.0.1 that serves a generated
file and misbehaves on request: drops the connection mid-body, answers 5xx, ignores Range."""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.checkpoint_download import CHECKPOINTS, ChecksumError, DownloadError, download

PAYLOAD = random.Random(0).randbytes(600_000)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class FileServer:
    """Serves ``payload`` at ``/file`` with byte-range support; the knobs make it misbehave:
    the first ``fail_first`` requests get ``fail_status``, the first ``drops`` bodies are cut
    after ``drop_after`` bytes (connection closed), ``support_range=False`` ignores Range."""

    def __init__(
        self,
        payload: bytes = PAYLOAD,
        *,
        fail_first: int = 0,
        fail_status: int = 503,
        drop_after: int | None = None,
        drops: int = 1,
        support_range: bool = True,
    ) -> None:
        self.payload = payload
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.drop_after = drop_after
        self.drops = drops
        self.support_range = support_range
        self.ranges: list[str | None] = []  # the Range header of every request, in order
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/file"

    def __enter__(self) -> FileServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    index = len(server.ranges)
                    server.ranges.append(self.headers.get("Range"))
                    drop = server.drop_after is not None and server.drops > 0
                    if drop:
                        server.drops -= 1
                if index < server.fail_first:
                    self.send_error(server.fail_status)
                    return
                size = len(server.payload)
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and server.support_range:
                    start = int(match.group(1))
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(size - start))
                self.end_headers()
                body = server.payload[start:]
                if drop:
                    self.wfile.write(body[: server.drop_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def finish(self) -> None:
                with contextlib.suppress(OSError):  # the connection we dropped on purpose
                    super().finish()

            def log_message(self, *args) -> None:
                pass

        return Handler


class Sleeps(list):
    """Records the backoff waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def fetch(server: FileServer, dest, **kwargs):
    options = {"url": server.url, "expected_sha256": PAYLOAD_SHA256, "progress": False, "sleep": Sleeps()}
    return download("vit_b", dest, **{**options, **kwargs})


def test_plain_download_lands_under_the_official_name(tmp_path):
    with FileServer() as server:
        path = fetch(server, tmp_path / "models")
    assert path == tmp_path / "models" / "sam_vit_b_01ec64.pth"
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == [None]
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "sam_vit_b_01ec64.pth",
        "sam_vit_b_01ec64.pth.lock",
    ]


def test_dropped_connection_resumes_with_a_range_request(tmp_path):
    sleeps = Sleeps()
    with FileServer(drop_after=250_000, drops=2) as server:
        path = fetch(server, tmp_path, sleep=sleeps, retries=1)
    assert path.read_bytes() == PAYLOAD
    # Each attempt received data, so two drops in a row do not exhaust retries=1.
    assert server.ranges == [None, "bytes=250000-", "bytes=500000-"]
    assert len(sleeps) == 2


def test_server_errors_are_retried_with_growing_backoff(tmp_path):
    sleeps = Sleeps()
    with FileServer(fail_first=3, fail_status=503) as server:
        path = fetch(server, tmp_path, sleep=sleeps, retries=3, backoff=0.5)
    assert path.read_bytes() == PAYLOAD
    assert len(server.ranges) == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_persistent_server_errors_give_up_with_a_clear_error(tmp_path):
    message = r"after 3 failed attempts in a row: HTTP 502"
    with FileServer(fail_first=100, fail_status=502) as server, pytest.raises(DownloadError, match=message):
        fetch(server, tmp_path, retries=2)
    assert len(server.ranges) == 3
    assert not (tmp_path / "sam_vit_b_01ec64.pth").exists()


def test_client_errors_are_not_retried(tmp_path):
    with (
        FileServer(fail_first=100, fail_status=404) as server,
        pytest.raises(DownloadError, match="HTTP 404"),
    ):
        fetch(server, tmp_path)
    assert len(server.ranges) == 1


def test_checksum_mismatch_is_not_installed(tmp_path):
    wrong = "0" * 64
    with FileServer() as server, pytest.raises(ChecksumError) as caught:
        fetch(server, tmp_path, expected_sha256=wrong)
    message = str(caught.value)
    assert PAYLOAD_SHA256 in message and wrong in message
    assert not (tmp_path / "sam_vit_b_01ec64.pth").exists()
    assert not (tmp_path / "sam_vit_b_01ec64.pth.part").exists()
    assert (tmp_path / "sam_vit_b_01ec64.pth.sha256-mismatch").read_bytes() == PAYLOAD


def test_official_checksum_applies_when_only_the_url_is_overridden(tmp_path):
    with FileServer() as server, pytest.raises(ChecksumError, match=CHECKPOINTS["vit_b"].sha256):
        download("vit_b", tmp_path, url=server.url, progress=False)


def test_server_without_range_support_restarts_from_zero(tmp_path):
    with FileServer(drop_after=250_000, support_range=False) as server:
        path = fetch(server, tmp_path)
    assert path.read_bytes() == PAYLOAD  # not the first 250 000 bytes followed by a full copy
    assert server.ranges == [None, "bytes=250000-"]


def test_partial_file_from_an_earlier_run_is_resumed(tmp_path):
    (tmp_path / "sam_vit_b_01ec64.pth.part").write_bytes(PAYLOAD[:123_456])
    with FileServer() as server:
        path = fetch(server, tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == ["bytes=123456-"]


def test_complete_partial_file_is_verified_without_a_body(tmp_path):
    (tmp_path / "sam_vit_b_01ec64.pth.part").write_bytes(PAYLOAD)
    with FileServer() as server:
        path = fetch(server, tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"]  # answered 416: nothing left to send


def test_verified_file_is_not_downloaded_again(tmp_path):
    with FileServer() as server:
        first = fetch(server, tmp_path)
        second = fetch(server, tmp_path)
    assert first == second
    assert server.ranges == [None]


def test_corrupt_existing_file_is_set_aside_and_fetched_again(tmp_path):
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"truncated")
    with FileServer() as server:
        path = fetch(server, tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert (tmp_path / "sam_vit_b_01ec64.pth.sha256-mismatch").read_bytes() == b"truncated"


def test_progress_bar_reports_on_stderr(tmp_path, capsys):
    with FileServer() as server:
        fetch(server, tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "sam_vit_b_01ec64.pth" in err and "100%" in err


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown model type 'vit_x'.*vit_b, vit_l, vit_h, vit_t"):
        download("vit_x", tmp_path)
    with pytest.raises(ValueError, match="64 hex digits"):
        download("vit_b", tmp_path, expected_sha256="abc")
    with pytest.raises(ValueError, match="retries"):
        download("vit_b", tmp_path, retries=-1)


def test_registry_lists_the_four_official_files():
    assert set(CHECKPOINTS) == {"vit_b", "vit_l", "vit_h", "vit_t"}
    for model_type, checkpoint in CHECKPOINTS.items():
        assert checkpoint.model_type == model_type
        assert checkpoint.url.startswith("https://")
        assert checkpoint.url.rsplit("/", 1)[1] == checkpoint.filename
        assert re.fullmatch(r"[0-9a-f]{64}", checkpoint.sha256)
    assert CHECKPOINTS["vit_h"].filename == "sam_vit_h_4b8939.pth"
    assert CHECKPOINTS["vit_t"].filename == "mobile_sam.pt"
