"""AnnotationSession moves from the stages app to this one. The table stays where it is (and keeps
its rows): only Django's idea of which app owns it changes."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("annotation", "0002_delete_embeddingclaim"),
        # Where the table is made. Not a later stages migration: that would pull the masks triggers
        # in before images 0003, whose rebuild of images_image (SQLite) they do not survive.
        ("stages", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AnnotationSession",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                        ),
                        ("started_at", models.DateTimeField(auto_now_add=True)),
                        ("ended_at", models.DateTimeField(blank=True, null=True)),
                        ("clicks", models.PositiveIntegerField(default=0)),
                        ("masks", models.PositiveIntegerField(default=0)),
                        (
                            "annotator",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="annotation_sessions",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "image",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="annotation_sessions",
                                to="images.image",
                            ),
                        ),
                        (
                            "model_version",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to="training.modelversion",
                            ),
                        ),
                        (
                            "project",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="annotation_sessions",
                                to="projects.project",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "stages_annotationsession",
                        "ordering": ["id"],
                        "indexes": [
                            models.Index(
                                fields=["project", "annotator", "started_at"], name="session_project_annotator"
                            ),
                            models.Index(fields=["image", "started_at"], name="session_image"),
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
