"""A web process runs all its torch work on its model thread, however many request threads ask.

Each Python thread that runs a parallel torch op gets an OpenMP team of its own for as long as it
lives, and libgomp stops its workers spinning once it manages more threads than there are CPUs:
every click then pays futex wake-ups (1.6x the decoder time on 2 cores; engine.runtime). The test
counts the process's threads while request threads that loaded an embedding and decoded clicks are
still alive: with everything on the model thread, they add no OpenMP workers."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from annotator.annotation import services
from tests.annotator.annotation_fixtures import add_picture, disk_picture
from tests.reference_models import VIT_B_CONFIG

# vit_b's decoder (64x64 image tokens, 256 channels: big enough that its ops run in parallel) with
# an encoder cut down to one small block so the ingest's embedding stays quick.
WIDE_DECODER = {
    **VIT_B_CONFIG,
    "encoder_embed_dim": 32,
    "encoder_depth": 1,
    "encoder_num_heads": 1,
    "encoder_global_attn_indexes": [0],
}


def _os_threads() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/task")}


@pytest.fixture
def wide_decoder_sam(settings, tmp_path):
    from annotator.training.services import forget_loaded_models
    from engine.sam import build_sam

    torch.manual_seed(0)
    path = tmp_path / "wide-decoder.pth"
    torch.save(build_sam("custom", config=dict(WIDE_DECODER)).state_dict(), path)
    settings.MASKMILL_MODEL_TYPE = "custom"
    settings.MASKMILL_MODEL_CONFIG = dict(WIDE_DECODER)
    settings.MASKMILL_CHECKPOINT = str(path)
    forget_loaded_models()
    services.reset_caches()
    yield
    forget_loaded_models()
    services.reset_caches()


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through Linux's /proc")
@pytest.mark.django_db(transaction=True)
def test_request_threads_leave_torch_to_the_model_thread(wide_decoder_sam, project, users):
    if torch.get_num_threads() < 2:
        pytest.skip("torch runs single-threaded here: there are no OpenMP teams to count")
    image = add_picture(project, disk_picture())  # the ingest computes its embedding (eagerly)
    click = {"points": [[80, 60]], "labels": [1]}
    assert "masks" in services.predict(image, users["annotator"], click)  # model thread is up
    services.embeddings.clear()  # each request below loads and prepares the stored embedding again

    done, release = threading.Barrier(4), threading.Event()
    answers: list[str] = []

    def request() -> None:
        from django.db import connection

        try:
            services.embeddings.clear()
            answers.append(services.prepare(image))
            answer = services.predict(image, users["annotator"], {**click, "multimask": False})
            answers.append("masks" if "masks" in answer else str(answer))
        finally:
            connection.close()
            done.wait(30)
            release.wait(30)  # stay alive (with any OpenMP team) until the threads are counted

    # The model thread set torch's count for new threads to its own (one core on a 2-core
    # machine): set it back, so that a request thread running torch would start a team again.
    torch.set_num_threads(torch.get_num_threads())
    before = _os_threads()
    requests = [threading.Thread(target=request) for _ in range(3)]
    for thread in requests:
        thread.start()
    try:
        done.wait(60)
        added = _os_threads() - before
    finally:
        release.set()
        for thread in requests:
            thread.join(30)
    assert answers.count("ready") == 3 and answers.count("masks") == 3
    assert added == {thread.native_id for thread in requests}  # no OpenMP workers of theirs


def test_the_model_thread_runs_with_its_own_thread_count():
    """``threads`` holds on the model thread; a thread that sets torch's count back from
    ``process_threads`` (the on-demand encoder) gets the process's count again."""
    from engine.runtime import ModelThread, default_model_threads

    assert 1 <= default_model_threads() <= max(1, (os.cpu_count() or 1) - 1)
    model = ModelThread(name="test-model", threads=1)
    assert model.run(torch.get_num_threads) == 1
    process = model.process_threads
    assert process is not None and process >= 1

    def encoder() -> int:
        torch.set_num_threads(process)
        return torch.get_num_threads()

    found: list[int] = []
    thread = threading.Thread(target=lambda: found.append(encoder()))
    thread.start()
    thread.join(30)
    assert found == [process]
    assert model.run(torch.get_num_threads) == 1  # the encoder's count is its own
    with pytest.raises(ValueError):
        ModelThread(threads=0)
