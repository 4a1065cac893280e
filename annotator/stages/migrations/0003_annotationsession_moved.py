"""AnnotationSession now belongs to the annotation app (annotation 0003 takes it over with its
table and rows); the stages app only forgets it, the database is not touched."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("stages", "0002_prefill_origin"),
        ("annotation", "0003_annotationsession"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AnnotationSession")],
            database_operations=[],
        ),
    ]
