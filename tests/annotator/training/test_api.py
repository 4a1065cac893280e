"""Training's API and page: who may do what (managers write, members read, outsiders 404), clear
4xx reasons, promote/rollback by hand, the schedule, and the charts on the page and dashboard."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from annotator.training import runs
from annotator.training.models import JobStatus, ModelVersion, TrainingRun
from annotator.training.services import model_version_for

pytestmark = pytest.mark.django_db


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def finished_run(trainable):
    """One done run whose candidate was promoted (the project's margin is -1)."""
    run = runs.request_training_run(trainable, enqueue=False)
    runs.execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == JobStatus.DONE, run.reason
    return run


@pytest.mark.parametrize(
    ("who", "read", "write"),
    [("manager", 200, 201), ("annotator", 200, 403), ("reviewer", 200, 403), ("outsider", 404, 404)],
)
def test_roles(trainable, users, who, read, write):
    client = client_for(users[who])
    base = f"/api/projects/{trainable.pk}"
    assert client.get(f"{base}/training").status_code == read
    assert client.get(f"{base}/training-runs/").status_code == read
    assert client.get(f"{base}/model-versions/").status_code == read
    assert client.get(f"{base}/training-schedule").status_code == read
    response = client.post(f"{base}/training-runs/", {"parameters": {"steps": 2}}, format="json")
    assert response.status_code == write, response.content
    assert client.put(f"{base}/training-schedule", {"crontab": "0 3 * * *"}, format="json").status_code == (
        200 if write == 201 else write
    )
    assert client.post(f"{base}/rollback").status_code in ((400,) if write == 201 else (write,))
    if write == 201:
        run = response.json()
        assert run["status"] == JobStatus.PENDING and run["trigger"] == "manual"
        assert run["parameters"]["steps"] == 2 and run["data"]["train_masks"] == 6
        runs.execute_run(run["id"])  # what the worker does with the queued task
        detail = client.get(f"/api/training-runs/{run['id']}/").json()
        assert len(detail["loss"]) == 2 and "mIoU@1" in detail["evaluation"]["candidate"]


def test_outsiders_cannot_reach_runs_or_versions(finished_run, users, other_project):
    client = client_for(users["outsider"])
    assert client.get(f"/api/training-runs/{finished_run.pk}/").status_code == 404
    assert client.post(f"/api/training-runs/{finished_run.pk}/cancel").status_code == 404
    manager = client_for(users["manager"])
    foreign = ModelVersion.objects.create(family="custom", name="theirs", project=other_project)
    response = manager.post(f"/api/projects/{finished_run.project_id}/model-versions/{foreign.pk}/promote")
    assert response.status_code == 404


def test_bad_requests_say_why(trainable, users):
    client = client_for(users["manager"])
    base = f"/api/projects/{trainable.pk}"
    bad = [{"steps": -1}, {"mode": "turbo"}, {"nope": 1}, [1, 2], {"lr": "fast"}, {"steps": 1.5}]
    for body in ({"parameters": p} for p in bad):
        response = client.post(f"{base}/training-runs/", body, format="json")
        assert response.status_code == 400, (body, response.content)
    response = client.post(f"{base}/training-runs/", {"parameters": {"min_masks": 50}}, format="json")
    assert response.status_code == 400 and "44 more needed" in str(response.json())
    for body in ({"crontab": "99 * * * *"}, {"every_seconds": 5}, {}, {"crontab": "x" * 500}):
        assert client.put(f"{base}/training-schedule", body, format="json").status_code == 400, body
    response = client.patch(
        f"{base}/", {"settings": {**trainable.settings, "training": {"steps": "many"}}}, format="json"
    )
    assert response.status_code == 400 and "training.steps" in str(response.json())


def test_a_second_run_is_409_while_one_is_open(trainable, users):
    open_run = runs.request_training_run(trainable, enqueue=False)
    response = client_for(users["manager"]).post(
        f"/api/projects/{trainable.pk}/training-runs/", {}, format="json"
    )
    assert response.status_code == 409 and response.json()["run"] == open_run.pk
    cancel = client_for(users["manager"]).post(f"/api/training-runs/{open_run.pk}/cancel")
    assert cancel.status_code == 200 and cancel.json()["status"] == JobStatus.CANCELLED


def test_promote_and_rollback_by_hand(finished_run, users):
    project = finished_run.project
    client = client_for(users["manager"])
    new, base = finished_run.result_version_id, finished_run.base_version_id
    assert model_version_for(project).pk == new
    response = client.post(f"/api/projects/{project.pk}/rollback")
    assert response.status_code == 200 and response.json()["active_version"] == base
    project.refresh_from_db()
    assert model_version_for(project).pk == base  # the next click or task uses it
    response = client.post(f"/api/projects/{project.pk}/model-versions/{new}/promote")
    assert response.status_code == 200 and response.json()["active_version"] == new
    again = client.post(f"/api/projects/{project.pk}/model-versions/{new}/promote")
    assert again.status_code == 400 and "already active" in str(again.json())
    lineage = client.get(f"/api/projects/{project.pk}/model-versions/").json()["results"]
    row = next(r for r in lineage if r["id"] == new)
    assert row["active"] and row["parent"] == base and row["encoder"] == base and row["train_masks"] == 6


def test_training_page_and_dashboard_plot_the_runs(finished_run, users):
    from django.test import Client

    client = Client()
    client.force_login(users["manager"])
    project = finished_run.project
    page = client.get(f"/projects/{project.pk}/training/")
    text = page.content.decode()
    assert page.status_code == 200 and "Training loss by run" in text and "<polyline" in text
    assert finished_run.reason in text and "shares v" in text
    dashboard = client.get(f"/projects/{project.pk}/dashboard/").content.decode()
    assert "Training loss by run" in dashboard and "candidate vs active" in dashboard
    response = client.post(f"/projects/{project.pk}/training/", {"action": "rollback"}, follow=True)
    assert "Rolled back to version" in response.content.decode()
    response = client.post(f"/projects/{project.pk}/training/", {"action": "bogus"}, follow=True)
    assert "unknown action" in response.content.decode()
    annotator = Client()
    annotator.force_login(users["annotator"])
    assert annotator.get(f"/projects/{project.pk}/training/").status_code == 200
    assert annotator.post(f"/projects/{project.pk}/training/", {"action": "rollback"}).status_code == 403
    assert TrainingRun.objects.count() == 1
