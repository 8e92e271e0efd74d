"""Early stopping for multi-objective searches, decided by the worker from data the driver sends.

Optuna's pruners refuse multi-objective studies, yet only accuracy depends on how long a network
trains: latency, energy and size are known before the first step. So the rule looks at
validation accuracy alone, at equal epochs (a median rule, as in Google Vizier): after epoch `e`
(from `grace_epochs` on), a trial stops if its accuracy is below the `percentile`-th percentile
of the accuracies that earlier, finished trials had after the same epoch, once at least
`min_trials` of them reached it. `percentile=50` is the median rule; a higher percentile stops
more (successive halving with rate eta keeps the top 1/eta: percentile = 100 * (1 - 1/eta)).

Workers never talk to Optuna: the driver puts the per-epoch validation curves of finished trials
in the request (`EvalRequest.peer_curves`) and the worker asks `should_stop` after each epoch.
A stopped trial is still recorded (its objectives are real measurements, its accuracy an
under-estimate) but marked `stopped_early`, and the Pareto front is built from fully trained
trials only (`search/report.py`), so every point on the front has had the same training budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class EarlyStoppingRule:
    enabled: bool = True
    grace_epochs: int = 1      # never stop before this many epochs
    min_trials: int = 4        # finished trials that must have reached an epoch before it can stop anyone
    percentile: float = 50.0   # stop below this percentile of the peers' accuracy at the same epoch

    def should_stop(self, epoch: int, curve: Sequence[float], peer_curves: Sequence[Sequence[float]]) -> bool:
        """True when a trial with validation `curve` (one value per epoch done, `epoch` of them)
        should stop, judged against the curves of finished trials."""
        if not self.enabled or epoch < self.grace_epochs or len(curve) < epoch:
            return False
        peers = [c[epoch - 1] for c in peer_curves if len(c) >= epoch]
        if len(peers) < self.min_trials:
            return False
        return float(curve[epoch - 1]) < float(np.percentile(peers, self.percentile))

    def callback(self, peer_curves: Sequence[Sequence[float]]):
        """`should_stop(epoch, curve)` for `train`, bound to these peers."""
        frozen = [tuple(c) for c in peer_curves]
        return lambda epoch, curve: self.should_stop(epoch, curve, frozen)
