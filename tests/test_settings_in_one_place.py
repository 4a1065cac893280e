"""Every setting's default is written once, in annotator/settings.py: the platform's code reads
``settings.X`` and never supplies a default of its own (two defaults drift apart, as the logits
store's once did: "memory" in code, "file" in settings.py)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULTED_READ = re.compile(r"getattr\(\s*(django_)?settings\s*,|settings\.get\(\s*[\"']MASKMILL_")


def test_no_code_reads_a_setting_with_a_default_of_its_own():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "annotator").rglob("*.py"))
        if path.name != "settings.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if DEFAULTED_READ.search(line)
    ]
    assert offenders == []


def test_every_maskmill_setting_the_code_reads_exists():
    from django.conf import settings

    names = set()
    for path in sorted((ROOT / "annotator").rglob("*.py")):
        names.update(re.findall(r"settings\.(MASKMILL_[A-Z0-9_]+)", path.read_text()))
    missing = sorted(name for name in names if not hasattr(settings, name))
    assert missing == []
