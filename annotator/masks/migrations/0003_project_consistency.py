"""Database-level guarantee that a mask's image and label belong to the mask's project.

PostgreSQL: composite foreign keys (image_id, project_id) → image(id, project_id) and
(label_id, project_id) → label(id, project_id); a NULL label is not checked (MATCH SIMPLE).
SQLite cannot add foreign keys to an existing table, so it gets triggers with the same rule.
"""

from django.db import migrations

PG_FORWARD = [
    "ALTER TABLE masks_mask ADD CONSTRAINT mask_image_in_project FOREIGN KEY (image_id, project_id) "
    "REFERENCES images_image (id, project_id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED",
    "ALTER TABLE masks_mask ADD CONSTRAINT mask_label_in_project FOREIGN KEY (label_id, project_id) "
    "REFERENCES projects_label (id, project_id) DEFERRABLE INITIALLY DEFERRED",
]
PG_BACKWARD = [
    "ALTER TABLE masks_mask DROP CONSTRAINT IF EXISTS mask_image_in_project",
    "ALTER TABLE masks_mask DROP CONSTRAINT IF EXISTS mask_label_in_project",
]

_SQLITE_CHECK = """
CREATE TRIGGER {name} BEFORE {event} ON masks_mask
WHEN (SELECT project_id FROM images_image WHERE id = NEW.image_id) IS NOT NEW.project_id
  OR (NEW.label_id IS NOT NULL
      AND (SELECT project_id FROM projects_label WHERE id = NEW.label_id) IS NOT NEW.project_id)
BEGIN
  SELECT RAISE(ABORT, 'mask image and label must belong to the mask''s project');
END
"""
SQLITE_FORWARD = [
    _SQLITE_CHECK.format(name="mask_project_consistency_insert", event="INSERT"),
    _SQLITE_CHECK.format(name="mask_project_consistency_update", event="UPDATE"),
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS mask_project_consistency_insert",
    "DROP TRIGGER IF EXISTS mask_project_consistency_update",
]


def forward(apps, schema_editor):
    statements = {"postgresql": PG_FORWARD, "sqlite": SQLITE_FORWARD}.get(schema_editor.connection.vendor, [])
    for statement in statements:
        schema_editor.execute(statement)


def backward(apps, schema_editor):
    statements = {"postgresql": PG_BACKWARD, "sqlite": SQLITE_BACKWARD}.get(schema_editor.connection.vendor, [])
    for statement in statements:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("masks", "0002_initial"),
        ("images", "0002_initial"),
        ("projects", "0002_initial"),
    ]

    operations = [migrations.RunPython(forward, backward)]
