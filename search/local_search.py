"""Pareto local search: a sampler that proposes one-step changes of the networks on the study's
current front, between random proposals.

Why: at the default budget (a few minutes, one epoch per trial) a search gets 20-40 trials, too
few for a model-based sampler to learn the space (benchmarks/search_quality.py: TPE, NSGA-II and
GP proposals did no better than random ones), and random search rarely lands next to its own best
networks, where the next better network usually lies: a network one channel step or one block
away from a good one is likely good too. Local search around the incumbents is a strong NAS
baseline for exactly that reason (White, Nolen, Savani, "Exploring the loss landscape in neural
architecture search", UAI 2021: docs/references.md); here the incumbents are the whole Pareto
front (accuracy, latency, energy), so every trade-off on it gets neighbours, and half of the
proposals stay random so the search keeps exploring.

A proposal: a front member chosen uniformly (feasible trials only, as `study.best_trials`), one of
its parameters changed, to the next value up or down where the choices are numbers (a width, a
depth, a bit width), else to another choice (a block kind). A change that decodes to a network the
study already holds (a parameter the network does not read, or one already tried) is drawn again,
up to `MAX_DRAWS` times, then the proposal is random. Parameters queued on the trial (the
references' neighbours, retries, finalists) are never overridden: Optuna applies them first.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

# Share of the proposals that are a front member's neighbour (the rest are random), once a front exists.
LOCAL_SHARE = 0.5
MAX_DRAWS = 50


def _numeric(choices) -> bool:
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)


def one_step(value: Any, choices: tuple, rng: np.random.RandomState) -> Any:
    """A value next to `value` among `choices`: the neighbour up or down in sorted order where
    they are numbers, another choice otherwise."""
    if _numeric(choices):
        ordered = sorted(choices)
        index = ordered.index(value)
        sides = [i for i in (index - 1, index + 1) if 0 <= i < len(ordered)]
        return ordered[sides[rng.randint(len(sides))]]
    others = [c for c in choices if c != value]
    return others[rng.randint(len(others))]


class ParetoLocalSearchSampler(optuna.samplers.BaseSampler):
    """Half the proposals: a neighbour of a random front member; the other half: random.

    `network_key(params)` names the network a full assignment decodes to (`Genotype.hash`), so
    that changes to parameters the network ignores are not proposed; None compares params."""

    def __init__(self, seed: int | None = None, network_key: Callable[[dict], str] | None = None,
                 local_share: float = LOCAL_SHARE) -> None:
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._rng = np.random.RandomState(seed)
        self._network_key = network_key or (lambda params: repr(sorted(params.items())))
        self._local_share = local_share

    def reseed_rng(self) -> None:
        self._random.reseed_rng()
        self._rng.seed()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        # Every bitnas trial suggests the same categorical parameters: any finished trial's are the space.
        for done in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if all(isinstance(d, CategoricalDistribution) for d in done.distributions.values()):
                return dict(done.distributions)
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space or self._rng.rand() >= self._local_share:
            return {}
        front = [t for t in study.best_trials if set(search_space) <= set(t.params)]
        if not front:
            return {}
        seen = {self._network_key(t.params) for t in study.get_trials(deepcopy=False)
                if set(search_space) <= set(t.params)}
        variable = [name for name, d in search_space.items() if len(d.choices) > 1]
        for _ in range(MAX_DRAWS):
            parent = front[self._rng.randint(len(front))]
            name = variable[self._rng.randint(len(variable))]
            params = {key: parent.params[key] for key in search_space}
            params[name] = one_step(params[name], search_space[name].choices, self._rng)
            try:
                key = self._network_key(params)
            except Exception:  # noqa: BLE001 - a change the space cannot decode is simply not proposed
                continue
            if key not in seen:
                return params
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)


__all__ = ["LOCAL_SHARE", "ParetoLocalSearchSampler", "one_step"]
