"""A real Label Studio server for the tests: installed once into its own virtualenv (it pins its
own Django), started on 127.0.0.1 on a free port with its own data folder, a user and a legacy API
token (1.23 disables legacy tokens unless started with ``--enable-legacy-api-token``).

The virtualenv lives under ``~/.cache/maskmill/label-studio-1.23/`` (``MASKMILL_CACHE`` moves
it). Its first start migrates a fresh database (a minute and more); the migrated database is kept
there as a template, so later starts copy it and are up in seconds.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path

VERSION = "1.23.0"
USERNAME = "maskmill-test@example.org"
PASSWORD = "maskmill-Test-pw-1"
TOKEN = "5f1e0d6c4b3a29187f6e5d4c3b2a19087f6e5d4c"  # 40 hex digits, Label Studio's legacy token form
INSTALL_TIMEOUT = int(os.environ.get("MASKMILL_LS_INSTALL_TIMEOUT", "900"))
START_TIMEOUT = int(os.environ.get("MASKMILL_LS_START_TIMEOUT", "240"))


class Unavailable(Exception):
    """Label Studio cannot be installed or started here; the message says why."""


def home() -> Path:
    base = Path(os.environ.get("MASKMILL_CACHE", Path.home() / ".cache" / "maskmill"))
    return base / "label-studio-1.23"


@contextmanager
def _locked(name: str):
    """One process at a time (parallel test runs, CI's background install)."""
    home().parent.mkdir(parents=True, exist_ok=True)
    with open(home().parent / f"label-studio-1.23.{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def prepare() -> float:
    """Install, and keep a migrated database as the template of every later start (CI runs this
    in the background while the suite runs). Returns the seconds spent."""
    started = time.monotonic()
    ensure_installed()
    with _locked("template"):
        if not (home() / "template-data" / "label_studio.sqlite3").exists():
            data = Path(tempfile.mkdtemp(prefix="label-studio-template-"))
            try:
                with running(data, template=False):
                    save_template(data)
            finally:
                shutil.rmtree(data, ignore_errors=True)
    return time.monotonic() - started


def ensure_installed() -> tuple[Path, float]:
    """The ``label-studio`` executable, installing it first if needed; (path, seconds spent installing)."""
    venv = home()
    executable = venv / "bin" / "label-studio"
    marker = venv / ".maskmill-installed"
    with _locked("install"):
        if marker.exists() and executable.exists():
            return executable, 0.0
        started = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        base_python = getattr(sys, "_base_executable", sys.executable)
        steps = [
            [base_python, "-m", "venv", str(venv)],
            [
                str(venv / "bin" / "pip"),
                "install",
                "-q",
                "--disable-pip-version-check",
                f"label-studio=={VERSION}",
            ],
        ]
        for step in steps:
            try:
                done = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
            except (OSError, subprocess.TimeoutExpired) as error:
                raise Unavailable(f"installing label-studio {VERSION} failed: {error}") from None
            if done.returncode != 0:
                raise Unavailable(
                    f"installing label-studio {VERSION} failed ({' '.join(step[:3])}...): "
                    f"{done.stderr[-1500:]}"
                )
        marker.write_text(VERSION)
        return executable, time.monotonic() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def running(data_dir: Path, *, template: bool = True):
    """Start Label Studio with its own data folder; yields its base URL; stops it (its whole
    process group) at the end."""
    executable, _ = ensure_installed()
    stored = home() / "template-data" / "label_studio.sqlite3"
    data_dir.mkdir(parents=True, exist_ok=True)
    if template and stored.exists():
        shutil.copy2(stored, data_dir / "label_studio.sqlite3")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
        "DJANGO_SETTINGS_MODULE": "",
    }
    env.pop("DJANGO_SETTINGS_MODULE")
    env.pop("DATABASE_URL", None)
    log = open(data_dir / "label-studio.log", "w")  # noqa: SIM115 (open while the server runs)
    process = subprocess.Popen(
        [
            str(executable),
            "start",
            "--no-browser",
            "--data-dir",
            str(data_dir),
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(port),
            "--username",
            USERNAME,
            "--password",
            PASSWORD,
            "--user-token",
            TOKEN,
            "--enable-legacy-api-token",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        cwd=data_dir,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(url):
            if process.poll() is not None:
                raise Unavailable(f"label-studio exited with {process.returncode}: {_tail(data_dir)}")
            if time.monotonic() > deadline:
                raise Unavailable(f"label-studio did not answer within {START_TIMEOUT} s: {_tail(data_dir)}")
            time.sleep(1)
        yield url
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


def save_template(data_dir: Path) -> None:
    """Keep a migrated database for the next start (only a fresh one: before the test's data)."""
    template = home() / "template-data"
    if not (template / "label_studio.sqlite3").exists() and (data_dir / "label_studio.sqlite3").exists():
        template.mkdir(parents=True, exist_ok=True)
        source = sqlite3.connect(data_dir / "label_studio.sqlite3")
        partial = template / f"label_studio.sqlite3.{os.getpid()}.tmp"
        target = sqlite3.connect(partial)
        with target:
            source.backup(target)  # a consistent copy of a database in use
        source.close()
        target.close()
        os.replace(partial, template / "label_studio.sqlite3")


def _tail(data_dir: Path) -> str:
    try:
        return (data_dir / "label-studio.log").read_text(errors="replace")[-2000:]
    except OSError:
        return "(no log)"
