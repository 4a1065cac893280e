"""Argument helpers shared by the ``stage`` and ``generate`` commands."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

from annotator.projects.models import Project


def find_project(name: str) -> Project:
    project = Project.objects.filter(slug=name).first()
    if project is None and name.isdigit():
        project = Project.objects.filter(pk=int(name)).first()
    if project is None:
        raise CommandError(f"no project with slug or id {name!r}")
    return project


def parse_filter_args(values: list[str] | None) -> dict[str, Any]:
    """``--filter status=new,needs_rework --filter split=train --filter ids=1,2`` → a filter dict."""
    image_filter: dict[str, Any] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not rest:
            raise CommandError(f"--filter {value!r}: use KEY=VALUE with KEY status, split or ids")
        image_filter[key.strip()] = rest.strip()
    return image_filter


def add_filter_argument(parser) -> None:
    parser.add_argument(
        "--filter",
        action="append",
        metavar="KEY=VALUE",
        help="only these images: status=new,needs_rework  split=train  ids=1,2,3 (repeatable)",
    )
