"""Whether a trial beats a reference on latency, timed side by side, where one measurement each cannot tell.

Why: every network's latency is measured once (and cached per genotype), minutes apart from the
others. On a shared or virtual machine the speed swings between such measurements by far more than
the few percent that separate a reference from its cheaper neighbours: 20 measurements of the
8-bit MobileNetV2, 1.5 s apart on an idle 2-core VM, read medians of 0.80-1.53 ms, while side by
side each of its cheaper neighbours ran 4-19% faster. So a trial that is at least as accurate and
as frugal as a reference, and whose single measurement is within `WITHIN` of the reference's, is
timed again against it at the end of the search: alternating, `ROUNDS` times, on the search's own
protocol (`measure_latency`, in turn as `measure_in_turn` runs them, the order reversed every other
round), and the median of the per-round ratios decides: the protocol of pruning's before/after
comparison (`measure_side_by_side`), for more than two networks.

The trial's own figures are never changed (its latency stays its one measurement, as every other
trial's); the verdict is kept in the study (user attribute `latency_check:<reference>`: trial ->
ratio) and shown with the reference ("dominated by trial 6 side by side: latency 0.95x").
Only where the measurement is local: the default `latency.mode: measure` on a Ray the driver
started itself (in a cluster, or with `latency.resource`, the target is another node).
"""

from __future__ import annotations

import statistics
from typing import Callable

import optuna
import pandas as pd

from .config import SearchConfig
from .objectives import Objective
from .pareto import dominates

PREFIX = "latency_check:"
ROUNDS = 7            # alternating rounds; the median ratio over them
WITHIN = 1.5          # a single measurement this much slower than the reference's is still checked
MOST = 3              # trials checked per reference (those closest to it on latency first)


def applies(config: SearchConfig, objectives: list[Objective]) -> bool:
    return ("latency_ms" in [o.metric for o in objectives] and config.latency.mode == "measure"
            and config.latency.resource is None and config.ray.address is None)


def recorded_checks(study: optuna.Study) -> dict[str, dict[int, float]]:
    """reference -> {trial number: its latency over the reference's, side by side}."""
    return {key[len(PREFIX):]: {int(trial): ratio for trial, ratio in value.items()}
            for key, value in study.user_attrs.items() if key.startswith(PREFIX)}


def candidates(references: pd.DataFrame, trials: pd.DataFrame, objectives: list[Objective]) -> dict[str, list[int]]:
    """Per reference no trial dominates: the feasible trials that are no worse on every objective
    but latency, and whose latency is within WITHIN of the reference's (at most MOST of them)."""
    if references.empty or trials.empty or "latency_ms" not in [o.metric for o in objectives]:
        return {}
    others = [o for o in objectives if o.metric != "latency_ms"]
    pool = trials[trials["feasible"] & trials["duplicate_of"].isna()]
    found = {}
    for _, reference in references.iterrows():
        if reference["dominated_by"]:
            continue
        close = [(row["latency_ms"] / reference["latency_ms"], int(row["trial"])) for _, row in pool.iterrows()
                 if row["latency_ms"] <= WITHIN * reference["latency_ms"]
                 and all(o.minimised(row[o.name]) <= o.minimised(reference[o.name]) for o in others)]
        if close:
            found[reference["reference"]] = [trial for _, trial in sorted(close)[:MOST]]
    return found


def check_against_references(study: optuna.Study, config: SearchConfig, objectives: list[Objective],
                             references: pd.DataFrame, trials: pd.DataFrame, geometry: dict,
                             out: Callable[[str], None]) -> dict[str, dict[int, float]]:
    """Time each reference against its candidates (module docstring), record and return the ratios."""
    from bitnas.spaces import Genotype
    from bitnas.spaces.baselines import baseline_genotype

    if not applies(config, objectives):
        return {}
    chosen = candidates(references, trials, objectives)
    numbers = {t.number: t for t in study.get_trials(deepcopy=False)}
    checks = {}
    for name, trial_numbers in chosen.items():
        out(f"latency side by side: {name} against trial(s) {', '.join(map(str, trial_numbers))} "
            f"({ROUNDS} alternating rounds)")
        ratios = latency_ratios(baseline_genotype(name, **geometry),
                                [Genotype.from_dict(numbers[n].user_attrs["genotype"]) for n in trial_numbers],
                                config.latency)
        checks[name] = dict(zip(trial_numbers, ratios))
        study.set_user_attr(PREFIX + name, {str(n): ratio for n, ratio in checks[name].items()})
    return checks


def latency_ratios(reference, genotypes: list, latency) -> list[float]:
    """Each genotype's latency over the reference's, timed in ROUNDS alternating rounds on the
    search's protocol (`latency`: a LatencyConfig), the median of the per-round ratios."""
    from bitnas.spaces import build_model

    shape = (reference.in_channels, reference.input_size, reference.input_size)
    return model_latency_ratios([build_model(genotype) for genotype in (reference, *genotypes)], shape, latency)


def model_latency_ratios(networks: list, shape: tuple[int, int, int], latency, rounds: int = ROUNDS) -> list[float]:
    """`latency_ratios` of built networks (the first the reference): each one's latency over the
    first's, the median of the per-round ratios over `rounds` alternating rounds."""
    from bitnas.evaluators.latency import measure_in_turn

    measured = measure_in_turn(networks, shape, latency, rounds, alternate=True)
    return [statistics.median(row[i].median_ms / row[0].median_ms for row in measured) for i in range(1, len(networks))]


def side_by_side_winners(reference: pd.Series, checks: dict[int, float], trials: pd.DataFrame,
                         objectives: list[Objective]) -> list[tuple[int, float]]:
    """(trial, latency ratio) of the checked trials that dominate the reference once latency is
    the side-by-side ratio (the reference's latency scaled by it)."""
    if not checks or trials.empty:
        return []
    winners = []
    rows = trials.set_index("trial")
    for trial, ratio in sorted(checks.items()):
        if trial not in rows.index:
            continue
        row = rows.loc[trial]
        mine = [o.minimised(reference[o.name]) for o in objectives]
        theirs = [o.minimised(reference["latency_ms"] * ratio if o.metric == "latency_ms" else row[o.name])
                  for o in objectives]
        if dominates(theirs, mine):
            winners.append((trial, ratio))
    return winners


__all__ = ["applies", "candidates", "check_against_references", "latency_ratios", "model_latency_ratios",
           "recorded_checks", "side_by_side_winners"]
