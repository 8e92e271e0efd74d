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

from .settings import EarlyStoppingRule

__all__ = ["EarlyStoppingRule"]
