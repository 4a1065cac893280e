"""``python manage.py fetch_model vit_b|vit_l|vit_h|vit_t [--url URL --sha256 HEX --dest DIR]``:
download an official checkpoint into the model store, resuming and verifying (engine.checkpoint_download)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from engine.checkpoint_download import CHECKPOINTS, DownloadError, download


def model_store() -> Path:
    return Path(settings.MASKMILL_MODEL_STORE)


class Command(BaseCommand):
    help = (
        "Download an official SAM (vit_b, vit_l, vit_h) or MobileSAM (vit_t) checkpoint into "
        "MASKMILL_MODEL_STORE with a progress bar; an interrupted download resumes, the SHA-256 is "
        "verified, and a file that is already there and verified is not fetched again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model_type", choices=sorted(CHECKPOINTS), help="which checkpoint")
        parser.add_argument("--url", help="fetch from this mirror instead of the official URL")
        parser.add_argument("--sha256", help="expected SHA-256 (default: the official file's)")
        parser.add_argument("--dest", help="folder to store it in (default: MASKMILL_MODEL_STORE)")
        parser.add_argument("--retries", type=int, default=5, help="failed attempts in a row to tolerate")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, model_type: str, **options) -> None:
        dest = Path(options["dest"]) if options["dest"] else model_store()
        try:
            path = download(
                model_type,
                dest,
                url=options["url"],
                expected_sha256=options["sha256"],
                progress=not options["no_progress"] and options["verbosity"] > 0,
                retries=options["retries"],
            )
        except (DownloadError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"{model_type} checkpoint ready: {path}"))
        self.stdout.write(f"Use it with MASKMILL_MODEL_TYPE={model_type} MASKMILL_CHECKPOINT={path}")
