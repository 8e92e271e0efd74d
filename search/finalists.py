"""Finalists: the networks of the trials' front that are trained again at the final budget.

Trials may be scored cheaply (one-shot from the supernet, or a short training); the front the
search reports and exports is made of finalists, trained from scratch for `final_epochs` like the
reference architectures, so that the comparison under the Pareto table is fair.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from .objectives import Objective
from .report import FINAL, trials_frame


def choose_finalists(study: optuna.Study, objectives: list[Objective], limit: int) -> list[tuple[dict, int]]:
    """(params, trial number) of the trials' front not yet retrained; at most `limit` in all,
    spread evenly along the first objective when the front is larger (its extremes always kept)."""
    frame = trials_frame(study, objectives, among="trials")
    front = frame[frame["pareto"]].sort_values(objectives[0].name, kind="stable")
    trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    done = {t.user_attrs.get("genotype_hash") for t in trials.values() if t.user_attrs.get("fidelity") == FINAL}
    numbers = [int(n) for n in front["trial"]]
    if len(numbers) > limit:
        step = (len(numbers) - 1) / max(1, limit - 1)
        numbers = [numbers[round(i * step)] for i in range(limit)] if limit > 1 else numbers[-1:]
    wanted = max(0, limit - len(done))
    chosen = [(dict(trials[n].params), n) for n in numbers if trials[n].user_attrs.get("genotype_hash") not in done]
    return chosen[:wanted]
