"""A user's plugin (tests/test_resilience.py): a real block whose output is NaN, so that training
stops with a clear error. On the PYTHONPATH of the test session's Ray workers (tests/conftest.py)."""

import torch  # noqa: F401 - a plugin imports what its blocks need

from bitnas.spaces import register_block
from bitnas.spaces.blocks import FloatConvBlock


@register_block("nan_float")
class NaNBlock(FloatConvBlock):
    def forward(self, x):
        return super().forward(x) * float("nan")
