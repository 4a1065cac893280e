"""``python -m annotator.devrun`` starts web, worker and beat together and one SIGINT (Ctrl-C)
stops every process it started, grandchildren included."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """All live processes below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, stack = set(), [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_one_ctrl_c_stops_web_worker_and_beat(tmp_path):
    if sys.platform != "linux":
        pytest.skip("reads /proc")
    env = {**os.environ, "MASKMILL_VAR_DIR": str(tmp_path)}
    for key in ("DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT"):
        env.pop(key, None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=180)  # fmt: skip
    port = free_port()
    log = (tmp_path / "devrun.log").open("wb")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "annotator.devrun", "--address", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and status is None:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=2).status
            except OSError:
                assert supervisor.poll() is None, (tmp_path / "devrun.log").read_text()
                time.sleep(0.5)
        assert status == 200, (tmp_path / "devrun.log").read_text()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(descendants(supervisor.pid)) < 4:
            time.sleep(0.5)  # web, worker (+ its pool process), beat
        started = descendants(supervisor.pid)
        assert len(started) >= 4, started

        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(timeout=60) == 0
        assert [pid for pid in started if alive(pid)] == []
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait()
        log.close()
    assert (tmp_path / "broker" / "control" / "embed.exchange").is_file()  # broker state stays under var/
    text = (tmp_path / "devrun.log").read_text()
    assert "all stopped" in text
