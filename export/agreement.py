"""Does an exported format compute what the torch model computes? Judged the way its arithmetic
allows, not by float equality.

A full-precision network differs between runtimes only by float rounding (operation order,
fused kernels): a tight tolerance holds. A network with quantized layers (LSQ 2/4/8-bit, two-bit,
binary signs) rounds its activations to steps: where a value sits on a rounding boundary, one
runtime's float error puts it one step up and the other's one step down, and that step travels
to the logits. Both are correct executions of the same network, so the tolerance is a fraction
of the logits' range, it must hold on all but the few images where such a step happened (the 95th
percentile of the per-image difference: a wrong kernel is off on every image, a boundary step on
one or two; seen: one of 64 LSQ 2/4/8-bit images off by 0.034 against a tolerance of 0.01), and
the class must agree on every image that is not a near-tie (a top-2 margin within the tolerance),
which is what a user of the file observes. Near-ties that flip are counted and put on the model
card, never hidden.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# Float networks: float rounding only.
FLOAT_ATOL = 1e-4
FLOAT_RTOL = 1e-3
# Quantized networks: a few rounding-boundary steps, as a share of the largest |logit|. Seen: LSQ
# 2/4/8-bit networks differed from onnxruntime by up to 2e-3 on logits of magnitude ~10 (2e-4 of
# the scale), so 1e-2 leaves a margin of 50 while a wrong kernel (off by whole steps) still fails.
QUANTIZED_RTOL = 1e-2


@dataclass(frozen=True)
class Agreement:
    """How one exported format's logits compare with torch's on the check images."""

    images: int
    max_abs_diff: float
    tolerance: float
    same_class: int
    near_ties: int          # images whose torch top-2 margin is within the tolerance
    near_tie_flips: int     # ... of which the exported format picks another class
    decisive_flips: int     # images with a clear margin classified differently: a real disagreement
    # The 95th percentile of the per-image max |logit difference| (quantized networks are judged by it).
    typical_abs_diff: float = 0.0
    quantized: bool = False

    @property
    def agrees(self) -> bool:
        judged = self.typical_abs_diff if self.quantized else self.max_abs_diff
        return judged <= self.tolerance and self.decisive_flips == 0

    def describe(self) -> str:
        flips = f"; {self.near_tie_flips} near-tie(s) within the tolerance changed class" if self.near_tie_flips else ""
        typical = f", {self.typical_abs_diff:.2g} on 95% of images" if self.quantized else ""
        return (f"same class on {self.same_class}/{self.images} test images, max |logit difference| "
                f"{self.max_abs_diff:.2g}{typical} (tolerance {self.tolerance:.2g}){flips}")

    def as_dict(self) -> dict:
        return {**asdict(self), "agrees": self.agrees}


def compare_logits(expected: np.ndarray, got: np.ndarray, *, quantized: bool) -> Agreement:
    """Compare (N, classes) logits of torch (`expected`) and an exported format (`got`)."""
    expected = np.asarray(expected, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if expected.shape != got.shape:
        raise ValueError(f"logits of shape {got.shape}, expected {expected.shape}")
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    tolerance = QUANTIZED_RTOL * max(1.0, scale) if quantized else FLOAT_ATOL + FLOAT_RTOL * scale
    per_image = np.abs(got - expected).max(axis=1) if expected.size else np.zeros(1)
    diff = float(per_image.max())
    top2 = np.sort(expected, axis=1)[:, -2:] if expected.shape[1] > 1 else np.concatenate([expected, expected], 1)
    margin = top2[:, 1] - top2[:, 0]
    # A class can change only where the two best logits are within twice the difference.
    near = margin <= 2 * tolerance
    flipped = got.argmax(1) != expected.argmax(1)
    # A near-tie may flip by a rounding step; a class change on an image off by more than the
    # tolerance is no rounding step, whatever its margin.
    excused = flipped & near & (per_image <= tolerance)
    return Agreement(images=len(expected), max_abs_diff=diff, tolerance=tolerance,
                     same_class=int((~flipped).sum()), near_ties=int(near.sum()),
                     near_tie_flips=int(excused.sum()), decisive_flips=int((flipped & ~excused).sum()),
                     typical_abs_diff=float(np.percentile(per_image, 95)), quantized=quantized)
