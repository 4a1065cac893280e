"""Settings for the worker processes the pipeline integration test starts: Maskmill's own, plus
the generator and attempt limit the test chooses through the environment."""

import os

from annotator.settings import *  # noqa: F403

MASKMILL_MASK_GENERATOR = os.environ.get("MASKMILL_MASK_GENERATOR", "")
MASKMILL_GENERATE_MAX_ATTEMPTS = int(os.environ.get("MASKMILL_GENERATE_MAX_ATTEMPTS", "5"))
