"""``python manage.py setup_demo``: an admin user (if none) and the demo project (idempotent)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from annotator.projects.demo import ensure_admin, ensure_demo_project


class Command(BaseCommand):
    help = "Create an admin user when none exists (credentials printed once) and the demo project."

    def handle(self, *args, **options) -> None:
        created = ensure_admin()
        project, result = ensure_demo_project()
        self.stdout.write(
            f"demo project '{project.slug}': {len(result.created)} photos added, "
            f"{len(result.duplicates)} already there, {len(result.errors)} refused"
        )
        for error in result.errors:
            self.stderr.write(f"  refused {error['name']}: {error['reason']}")
        if created:
            username, password = created
            line = "=" * 64
            self.stdout.write(
                self.style.WARNING(
                    f"{line}\n Admin user created. Log in at http://127.0.0.1:8000/\n"
                    f"   username: {username}\n   password: {password}\n"
                    f" (also saved in var/admin-credentials.txt; shown only this once)\n{line}"
                )
            )
