"""An on/off switch for a fused training path, turned off within a block by a context manager.

The fused 1-bit quantizers (quantizers.py) and the fused RPReLU (fused_rprelu.py) each have one,
so the benchmark that measures what they save and the tests that check they change nothing can
run the plain PyTorch operators instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class FastPathSwitch:
    def __init__(self) -> None:
        self.on = True

    @contextlib.contextmanager
    def off(self) -> Iterator[None]:
        """Within this block the fast path is off (restored afterwards, also after an error)."""
        previous, self.on = self.on, False
        try:
            yield
        finally:
            self.on = previous


__all__ = ["FastPathSwitch"]
