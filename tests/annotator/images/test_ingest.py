"""Image ingest: the one reader's rules applied per file, duplicates skipped, the batch goes on."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from PIL import Image as PILImage

from annotator.images.models import Image
from annotator.images.services import ingest_files
from tests.conftest import image_bytes

pytestmark = pytest.mark.django_db


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data)


def test_batch_keeps_the_good_files_and_says_why_the_others_were_refused(project, users):
    good = image_bytes(40, 30, seed=1)
    truncated = image_bytes(200, 150, fmt="JPEG", seed=2)[:600]
    result = ingest_files(
        project,
        [upload("a.png", good), upload("notes.txt", b"hello, not an image"), upload("cut.jpg", truncated),
         upload("empty.png", b""), upload("b.png", image_bytes(40, 30, seed=3))],
        users["manager"],
    )  # fmt: skip
    assert [img.original_name for img in result.created] == ["a.png", "b.png"]
    reasons = {e["name"]: e["reason"] for e in result.errors}
    assert set(reasons) == {"notes.txt", "cut.jpg", "empty.png"}
    assert "not an image" in reasons["notes.txt"]
    assert "truncated" in reasons["cut.jpg"].lower()
    assert "empty" in reasons["empty.png"]
    stored = Image.objects.get(original_name="a.png")
    with stored.file.open("rb") as fileobj:
        assert fileobj.read() == good  # the original bytes, not a re-encoding
    assert stored.sha256 == hashlib.sha256(good).hexdigest()
    assert (stored.width, stored.height, stored.uploaded_by) == (40, 30, users["manager"])


def test_duplicates_are_reported_and_skipped_within_and_across_batches(project):
    data = image_bytes(seed=5)
    first = ingest_files(project, [upload("x.png", data), upload("x-again.png", data)], None)
    assert len(first.created) == 1
    assert first.duplicates == [
        {"name": "x-again.png", "image": first.created[0].pk, "sha256": first.created[0].sha256}
    ]
    retry = ingest_files(project, [upload("x.png", data)], None)
    assert retry.created == [] and retry.duplicates[0]["image"] == first.created[0].pk
    assert Image.objects.filter(project=project).count() == 1


def test_same_bytes_may_live_in_two_projects(project, other_project):
    data = image_bytes(seed=6)
    assert ingest_files(project, [upload("x.png", data)], None).created
    assert ingest_files(other_project, [upload("x.png", data)], None).created


def test_width_and_height_are_taken_after_exif_orientation(project):
    picture = PILImage.new("RGB", (80, 20), "red")
    exif = picture.getexif()
    exif[0x0112] = 6  # rotate 90° on display
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", exif=exif)
    created = ingest_files(project, [upload("rotated.jpg", buffer.getvalue())], None).created[0]
    assert (created.width, created.height) == (20, 80)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16"])
def test_every_pixel_mode_goes_in(project, mode):
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    result = ingest_files(
        project, [upload(f"m.{fmt.lower()}", image_bytes(33, 21, mode=mode, fmt=fmt))], None
    )
    assert result.errors == [] and (result.created[0].width, result.created[0].height) == (33, 21)


def test_decompression_bombs_are_refused_by_the_configured_limit(project, settings):
    settings.MASKMILL_MAX_IMAGE_PIXELS = 1000
    result = ingest_files(
        project, [upload("big.png", image_bytes(50, 50)), upload("ok.png", image_bytes(20, 20))], None
    )
    assert [e["name"] for e in result.errors] == ["big.png"]
    assert "limit" in result.errors[0]["reason"]
    assert len(result.created) == 1


def test_client_paths_never_reach_storage(project):
    created = ingest_files(project, [upload("../../../etc/evil.png", image_bytes(seed=9))], None).created[0]
    assert created.original_name == "evil.png"
    assert created.file.name.startswith(f"projects/{project.pk}/images/") and ".." not in created.file.name


def test_local_sources_must_be_regular_files(project, tmp_path):
    result = ingest_files(project, ["/dev/zero", str(tmp_path), str(tmp_path / "missing.png")], None)
    reasons = [e["reason"] for e in result.errors]
    assert "not a regular file" in reasons[0]
    assert "directory" in reasons[1]
    assert "no such file" in reasons[2]


def test_new_images_queue_their_embed_task_on_commit(project, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        ingest_files(
            project, [upload("a.png", image_bytes(seed=11)), upload("b.png", image_bytes(seed=12))], None
        )
    assert len(callbacks) == 2  # one embed per new image, sent only after the rows are committed
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        ingest_files(project, [upload("a.png", image_bytes(seed=11))], None)  # duplicate
    assert callbacks == []


class _ImageServer(http.server.BaseHTTPRequestHandler):
    payloads: dict[str, bytes] = {}

    def do_GET(self) -> None:
        if self.path == "/slow.png":
            time.sleep(3)
        body = self.payloads.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def image_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ImageServer)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_urls_are_fetched_with_size_cap_and_timeout(project, image_server, settings):
    settings.MASKMILL_URL_FETCH_TIMEOUT = 1
    settings.MASKMILL_URL_FETCH_MAX_BYTES = 20_000
    _ImageServer.payloads = {
        "/ok.png": image_bytes(30, 20, seed=21),
        "/huge.png": image_bytes(300, 300, seed=22),
        "/slow.png": image_bytes(30, 20, seed=23),
    }
    result = ingest_files(
        project,
        [f"{image_server}/ok.png", f"{image_server}/missing.png", f"{image_server}/huge.png",
         f"{image_server}/slow.png", "file:///etc/passwd", "ftp://127.0.0.1/x.png"],
        None,
    )  # fmt: skip
    assert [img.source_url for img in result.created] == [f"{image_server}/ok.png"]
    reasons = [e["reason"] for e in result.errors]
    assert "HTTP 404" in reasons[0]
    assert "limit" in reasons[1]
    assert "timed out" in reasons[2]
    assert "only http:// and https://" in reasons[3] and "only http:// and https://" in reasons[4]


def test_ingest_command_takes_globs_folders_and_list_files(project, tmp_path, image_server):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    (folder / "one.png").write_bytes(image_bytes(seed=31))
    (folder / "nested" / "two.png").write_bytes(image_bytes(seed=32))
    (folder / "README.md").write_text("not an image")
    (tmp_path / "three.png").write_bytes(image_bytes(seed=33))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    _ImageServer.payloads = {"/four.png": image_bytes(seed=34)}
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my images\nthree.png\n\n{image_server}/four.png\nbroken.png\n")
    out, err = io.StringIO(), io.StringIO()
    call_command("ingest", project.slug, str(folder), str(listing), str(tmp_path / "*.png"), "--no-progress",
                 stdout=out, stderr=err)  # fmt: skip
    names = sorted(Image.objects.filter(project=project).values_list("original_name", flat=True))
    assert names == sorted(["one.png", "two.png", "three.png", f"{image_server}/four.png"])
    assert "4 new, 1 duplicate, 2 refused" in out.getvalue()  # three.png twice; broken.png twice
    assert "refused broken.png" in err.getvalue()


def test_ingest_command_refuses_an_unknown_project(db):
    with pytest.raises(CommandError, match="no project"):
        call_command("ingest", "nope", "x.png")


def test_demo_photos_ship_with_the_repository():
    photos = sorted(p.name for p in (Path(__file__).parents[3] / "annotator" / "demo" / "photos").iterdir())
    assert {
        "astronaut.jpg",
        "chelsea.jpg",
        "coffee.jpg",
        "coins.png",
        "horse.png",
        "rocket.jpg",
        "SOURCE.txt",
    } <= set(photos)
