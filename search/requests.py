"""From a search config to what a worker receives: the one place the mapping is written.

The driver, the reference architectures, export (retraining a trial as its study trained it) and
the benchmarks all call `eval_request`, so a setting reaches every one of them the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from bitnas.evaluators.settings import DataOptions

from .config import SearchConfig

# Seeds of reference architectures are negative offsets, apart from every trial's.
REFERENCE_SEED_BASE = -1


def data_options(config: SearchConfig) -> DataOptions:
    """The dataset loader's options: the config's `data:` section and `data_dir`."""
    return DataOptions(path=config.data_dir, **config.data.model_dump())


def train_threads(config: SearchConfig) -> int:
    """Threads a trial trains on: the CPUs Ray reserves for it (`ray.num_cpus_per_trial`)."""
    return max(1, math.floor(config.ray.num_cpus_per_trial))


@dataclass(frozen=True)
class TeacherSpec:
    """Which teacher a study distils from: one per (results, dataset, seed, epochs, data options)."""

    results_dir: str
    dataset: str
    seed: int
    epochs: float
    options: DataOptions
    threads: int

    def load_or_train(self):
        from bitnas.evaluators.distill import load_or_train_teacher

        return load_or_train_teacher(self.results_dir, self.dataset, self.seed, epochs=self.epochs,
                                     options=self.options, threads=self.threads)


def teacher_spec(config: SearchConfig) -> TeacherSpec | None:
    """The study's teacher, or None when it does not distil."""
    if not config.training.distill:
        return None
    return TeacherSpec(str(config.results_dir.resolve()), config.dataset, config.seed, config.training.teacher_epochs,
                       data_options(config), train_threads(config))


def prefilter(config: SearchConfig, proxy_scores: Sequence[float]):
    """With `proxies.prefilter`: skip networks whose proxy is below the `bottom_fraction` quantile of
    the scores so far (none skipped until `min_trials` have been scored); None without it."""
    proxies = config.proxies
    if not proxies.prefilter:
        return None
    from bitnas.evaluators.proxies import ProxyPrefilter

    threshold = None
    if len(proxy_scores) >= proxies.min_trials:
        ordered = sorted(proxy_scores)
        threshold = ordered[min(len(ordered) - 1, int(proxies.bottom_fraction * len(ordered)))]
    return ProxyPrefilter(proxy=proxies.proxy, threshold=threshold)


def eval_request(config: SearchConfig, seed_offset: int, *, teacher=None,
                 peer_curves: tuple[tuple[float, ...], ...] = (), proxy_scores: Sequence[float] = (),
                 final: bool = False, until_epochs: float | None = None):
    """What one evaluation needs. `seed_offset`: the trial number (negative for references);
    `teacher`: the loaded teacher, or None where the worker receives it apart (the driver shares one
    copy through Ray's object store); `peer_curves`: per-epoch validation accuracy of finished
    trials, from which the worker decides to stop early (it never talks to the study);
    `proxy_scores`: earlier trials' zero-cost proxy, for the optional pre-filter; `final`: a
    finalist or reference architecture, trained from scratch for the final epochs (else a trial,
    scored from the supernet under `evaluation: supernet`); `until_epochs`: an ASHA rung, where the
    worker stops the `training.epochs` run and returns a checkpoint."""
    from bitnas.evaluators.evaluate import EvalRequest

    return EvalRequest(
        dataset=config.dataset, data_seed=config.seed, seed=config.seed * 100_003 + seed_offset,
        training=config.final_training if final else config.training, latency=config.latency, data=data_options(config),
        energy_profile=config.energy_profile, energy_meter=config.energy_meter,
        train_threads=train_threads(config), teacher=teacher, peer_curves=peer_curves, budget=config.budget,
        early_stopping=config.early_stopping if config.early_stopping.enabled and peer_curves else None,
        prefilter=prefilter(config, proxy_scores), footprint=config.footprint.enabled,
        limits=pre_training_limits(config),
        supernet_config=config.supernet if config.evaluation == "supernet" and not final else None,
        until_epochs=until_epochs,
    )


def supernet_spec(config: SearchConfig, geometry: dict):
    """The study's supernet (evaluators/supernet.py), trained on all the trial workers' CPUs."""
    from bitnas.evaluators.supernet import SupernetSpec

    return SupernetSpec(str(config.results_dir.resolve()), config.space, dict(geometry), config.dataset, config.seed,
                        data_options(config), config.seed, config.supernet, config.training,
                        threads=max(1, config.workers * train_threads(config)))


def pre_training_limits(config: SearchConfig) -> tuple[tuple[str, float], ...]:
    """The budgets a worker checks before training: those on metrics a freshly built network already has."""
    from bitnas.evaluators.evaluate import PRE_TRAINING_LIMITS

    from .constraints import BOUNDS

    limits = []
    for key, (metric, sign) in BOUNDS.items():
        bound = getattr(config.constraints, key)
        if bound is not None and sign > 0 and metric in PRE_TRAINING_LIMITS:
            limits.append((metric, float(bound)))
    return tuple(limits)
