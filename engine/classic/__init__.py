"""A weight-free interactive segmenter with the Predictor's interface: the fallback that makes the
platform useful before a checkpoint is configured.

Why not plain GrabCut: OpenCV's GrabCut is far from interactive on a CPU (its k-means GMM
initialisation and max-flow dominate; figures in docs/performance.md). This segmenter keeps the
GrabCut ingredients that matter — a colour model of object vs background, contrast-sensitive
smoothness, hard constraints at the clicks — and solves a *random walker with priors* instead
(Grady 2005): a sparse, well-conditioned linear system solved by a few dozen conjugate-gradient
steps in numpy.

Three parts:
- ``predictor``: ``ClassicPredictor``, SamPredictor's interface (prompt checks, outputs at full
  resolution, low-res logits that round-trip exactly: the full-resolution mask behind logits it
  returned is remembered, so feeding them back loses nothing to the 256x256 grid);
- ``regions``: where it looks and what it proposes (the region of interest around the prompts,
  the seeds, the one or three candidates and their scores);
- ``numerics``: the random walker, colour model, guided filter and mask operations.

Prompts: positive / negative points are hard seeds (disks whose radius adapts to the distance from
the click to the previous mask's boundary, so a correction never swallows the mask around it); a
box makes everything outside it background and seeds the object colours from its interior;
``mask_input`` (the low-res logits of a previous answer) is a soft prior and the colour samples of
the next round. Everything is deterministic (no random sampling anywhere).
"""

from engine.classic.numerics import LOGIT_SCALE
from engine.classic.predictor import LOW_RES, MODEL_INPUT, ClassicPredictor
from engine.classic.regions import FIRST_CLICK_SCALES

__all__ = ["FIRST_CLICK_SCALES", "LOGIT_SCALE", "LOW_RES", "MODEL_INPUT", "ClassicPredictor"]
