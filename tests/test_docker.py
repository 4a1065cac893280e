"""Docker cannot run on the development machines, so the compose file is checked by reading:
every service that the platform needs is there, healthy dependencies gate start-up, and the
worker settings suit long tasks."""

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yml").read_text())


def test_compose_has_every_service_with_health_checks(compose):
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "migrate"} <= set(services)
    for name in ("postgres", "redis", "web", "worker"):
        assert "healthcheck" in services[name], name
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_workers_are_configured_for_long_tasks(compose):
    worker = compose["services"]["worker"]["command"]
    assert worker[worker.index("--prefetch-multiplier") + 1] == "1"
    queues = set(worker[worker.index("-Q") + 1].split(","))
    assert queues == {"embed", "generate", "train", "export"}
    gpu = compose["services"]["worker-gpu"]
    assert set(gpu["command"][gpu["command"].index("-Q") + 1].split(",")) == {"embed", "generate", "train"}


def test_volumes_persist_data(compose):
    assert {"pgdata", "media", "models"} <= set(compose["volumes"])


def test_dockerfile_pins_torch_and_runs_unprivileged():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert "torch==2.13.0" in text
    assert "USER maskmill" in text
    assert "torchvision" not in text
