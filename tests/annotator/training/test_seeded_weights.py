"""A ``custom`` model version with no checkpoint has random weights that are the same in every
process (seeded from the version's identity), and another version gets other weights."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from annotator.training.models import ModelVersion
from annotator.training.services import forget_loaded_models, predictor_for
from tests.tiny_models import TINY_CONFIG

ROOT = Path(__file__).resolve().parents[3]
HASH_WEIGHTS = """
import hashlib, json, sys, django, os, torch
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")
django.setup()
torch.manual_seed(int(sys.argv[2]))  # whatever state the process happens to be in
from annotator.training.models import ModelVersion, model_key
from annotator.training.services import predictor_for
config = json.loads(sys.argv[1])
key = model_key("custom", "", config)
version = ModelVersion(pk=1, family="custom", checkpoint="", config=config, key=key)
digest = hashlib.sha256()
for name, tensor in sorted(predictor_for(version).model.state_dict().items()):
    digest.update(name.encode()); digest.update(tensor.detach().cpu().numpy().tobytes())
print(digest.hexdigest())
"""


def weights_in_a_new_process(config: dict, torch_seed: int) -> str:
    done = subprocess.run(
        [sys.executable, "-c", HASH_WEIGHTS, json.dumps(config), str(torch_seed)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


def digest_of(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def test_two_processes_build_the_same_random_weights_for_one_version():
    first = weights_in_a_new_process(TINY_CONFIG, torch_seed=1)
    second = weights_in_a_new_process(TINY_CONFIG, torch_seed=2)
    assert first == second
    other = weights_in_a_new_process({**TINY_CONFIG, "decoder_mlp_dim": 48}, torch_seed=1)
    assert other != first


@pytest.mark.django_db
def test_loading_leaves_the_callers_generator_alone():
    version = ModelVersion.objects.create(family="custom", checkpoint="", config=TINY_CONFIG)
    forget_loaded_models()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    once = digest_of(predictor_for(version).model)
    assert torch.equal(torch.rand(3), expected)
    forget_loaded_models()
    torch.manual_seed(999)
    assert digest_of(predictor_for(version).model) == once
    forget_loaded_models()
