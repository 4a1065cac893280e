"""The stages app's modules import one way: services send tasks, tasks run items, and nothing
imports services back (the cycle that made each side import the other inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import annotator.stages

APP = Path(annotator.stages.__file__).parent


def imported_modules(path: Path) -> tuple[set[str], set[str]]:
    """(modules imported at module level, modules imported inside functions) by the file."""
    tree = ast.parse(path.read_text())
    top, nested = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        else:
            continue
        (top if node in tree.body else nested).update(names)
    return top, nested


def test_tasks_run_items_and_do_not_import_services():
    top, nested = imported_modules(APP / "tasks.py")
    assert "annotator.stages.items" in top
    assert not any("services" in name and "stages" in name for name in top | nested)


def test_services_send_the_task_from_a_module_level_import():
    top, nested = imported_modules(APP / "services.py")
    assert "annotator.stages.tasks.generate_item" in top
    assert not any(name.startswith("annotator.stages.tasks") for name in nested)


def test_items_and_selectors_import_neither_tasks_nor_services():
    for module in ("items.py", "selectors.py"):
        top, nested = imported_modules(APP / module)
        assert not any(
            name.startswith(("annotator.stages.tasks", "annotator.stages.services")) for name in top | nested
        )
