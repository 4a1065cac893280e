"""``python -m annotator.devrun``: the embedded setup in one command — the web server on
127.0.0.1:8000, a Celery worker on every queue and Celery beat (database schedule), all on the
settings' defaults (SQLite, local media, filesystem broker). One Ctrl-C stops them all.

Each child runs in its own process group so that stopping it also stops what it started (Celery's
pool processes, the autoreloader's server); each also asks the kernel for SIGTERM should this
supervisor die without cleaning up, so nothing is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from annotator.celery import QUEUES

ROOT = Path(__file__).resolve().parent.parent
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def commands(address: str, concurrency: int, reload: bool) -> dict[str, list[str]]:
    python = sys.executable
    web = [python, "manage.py", "runserver", address]
    if not reload:
        web.append("--noreload")
    return {
        "web": web,
        "worker": [
            python, "-m", "celery", "-A", "annotator.celery:app", "worker", "-Q", ",".join(QUEUES),
            "--concurrency", str(concurrency), "--hostname", f"maskmill-dev-{os.getpid()}@%h",
            "--loglevel", "INFO",
        ],
        "beat": [
            python, "-m", "celery", "-A", "annotator.celery:app", "beat", "--loglevel", "INFO",
            "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
        ],
    }  # fmt: skip


def stop_all(children: dict[str, subprocess.Popen], grace: float = 15.0) -> None:
    for process in children.values():
        if process.poll() is None:
            process.terminate()  # the leader stops its own children (Celery's pool) cleanly
    deadline = time.monotonic() + grace
    for process in children.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
    for process in children.values():
        _signal_group(process, signal.SIGKILL)  # the group may still hold grandchildren
        if process.poll() is None:
            process.wait()


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--address", default=os.environ.get("MASKMILL_ADDRESS", "127.0.0.1:8000"))
    parser.add_argument(
        "--concurrency", type=int, default=int(os.environ.get("MASKMILL_WORKER_CONCURRENCY", "1"))
    )
    parser.add_argument("--reload", action="store_true", help="restart the web server when code changes")
    args = parser.parse_args(argv)

    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGHUP, request_stop)

    children: dict[str, subprocess.Popen] = {}
    for name, command in commands(args.address, args.concurrency, args.reload).items():
        children[name] = subprocess.Popen(command, cwd=ROOT, process_group=0, preexec_fn=_die_with_parent)
    print(
        f"Maskmill is starting: web http://{args.address}/  worker (queues {', '.join(QUEUES)})  beat. "
        "Ctrl-C stops everything.",
        flush=True,
    )
    exit_code = 0
    try:
        while not stopping:
            for name, process in children.items():
                if process.poll() is not None:
                    print(
                        f"devrun: {name} exited with code {process.returncode}; stopping the others",
                        flush=True,
                    )
                    exit_code = process.returncode or 1
                    stopping = True
                    break
            time.sleep(0.3)
    finally:
        print("devrun: stopping web, worker and beat ...", flush=True)
        stop_all(children)
        print("devrun: all stopped.", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
