"""Local search from the hand designs: the first trials of a new study are cheaper one-step
neighbours of each reference architecture that the search space can express.

Why: at the trial budget (one epoch from scratch) random search over the whole space rarely lands
near a reference, so before this its front dominated neither default reference in any default
search, though `bireal_small` lies inside the default space. A user runs the search to beat the
design they would have picked by hand; the natural first question is whether a slightly cheaper
variant of that design keeps its accuracy (NetAdapt starts from the hand design and shrinks it one
step at a time; network-morphism searches grow from existing networks: docs/references.md).

A neighbour changes one sampled parameter of the reference's assignment (a stage's width, depth,
block or bit widths, the stem's width, ...). It is kept when its analytic costs are no higher
than the reference's (energy and OPs, `spaces.genotype_costs` and `evaluators.energy`) and one of
them is lower, since a network that dominates must not cost more; the kept ones are tried in
order of how little they give up (the largest share of the reference's OPs first), as the
likeliest to keep its accuracy, after a max pool behind the stem (`_FIRST`: measured to keep it).
They are ordinary trials of the study (asked from Optuna's queue, tagged `neighbour_of`), so they
count towards `trials` and the sampler learns from them.

A second ring (`grown_neighbours`) spends part of what the pool saves: the pooled twin with one or
two parameters grown (a wider or deeper stage, a larger expansion, ...), still cheaper than the
reference. The pool costs the 8-bit MobileNetV2 a point or two of accuracy, and so its pooled
twin did not dominate it in 3 of 5 ten-minute searches; grown back (s1 width 24 -> 48, s2 32 -> 64)
it averaged 0.962 over seeds 0-4 against the reference's 0.954 and its twin's 0.945, at 0.67x the
reference's latency (benchmarks/neighbour_spread.py). Which growth pays is not known
from the costs, so the ring spreads over different ones (no parameter value twice). Off by default:
in ten-minute searches two per reference did no better than none (benchmarks/search_quality.py
grown-scratch against pool-scratch): the grown twins read 0.953-0.957 at seeds 0 and 2, level with
the reference's own spread (0.936-0.963 across seeds), and took trials from random search.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from bitnas.spaces import Genotype, genotype_costs
from bitnas.spaces.baselines import baseline_genotype
from bitnas.spaces.space import SpaceConfig

# StageSpec field for each per-stage parameter of the space that is not named like it.
_STAGE_FIELD = {"wbits": "weight_bits", "abits": "activation_bits"}
# The steps a neighbour may take: parameters that remove computation (channels, blocks, a stage,
# the head conv, resolution). Bit widths and block kinds are left alone: they change which kernels
# run, and the measured latency does not follow the OPs across kernels (a 4-bit depthwise-separable
# network measured 0.42 ms where its 8-bit twin took 0.25 ms), so such a step often costs latency.
_SHRINKING = ("stem_width", "stem_pool", "head_width", "width", "depth", "expansion")
# Steps tried before the smallest ones, whatever they save: halving the resolution after the stem
# removes half or more of the OPs, yet on 28x28 digits it raised the binary references' one-epoch
# accuracy (reactnet_small 0.789 / 0.795 -> 0.836 / 0.845 at seeds 0 / 1, bireal_small 0.745 /
# 0.748 -> 0.811 / 0.835) and cost the 8-bit MobileNetV2 1-3 points (0.960 / 0.963 -> 0.931 /
# 0.953) at 0.58-0.68x their latency, side by side (benchmarks/stem_pool.py); every other step
# that large lost more.
_FIRST = ("stem_pool",)
# The parameters the second ring grows, and how much of the reference's OPs a grown twin may keep:
# latency falls more slowly than the OPs (fixed per-layer costs), so grown twins at 0.62 and 0.89 of
# the 8-bit MobileNetV2's OPs measured 0.70x and 0.75x its latency side by side; below 0.7 of the
# OPs a twin keeps a margin over the search's single, noisy latency measurements.
_GROWING = ("stem_width", "head_width", "width", "depth", "expansion")
GROWN_OPS_SHARE = 0.7


def _is_one_of(name: str, parameters: tuple[str, ...]) -> bool:
    """Whether `name` is one of `parameters`, or a stage's (s2_width for width)."""
    return name in parameters or (name.startswith("s") and name.split("_", 1)[1] in parameters)


@dataclass(frozen=True)
class Neighbour:
    reference: str
    params: dict
    parameter: str     # the parameter changed, e.g. "s2_depth" ("+"-joined where a grown twin grew two)
    change: str        # e.g. "s2_depth 2 -> 1"
    energy_uj: float
    ops: float


def params_of(space: SpaceConfig, genotype: Genotype) -> dict | None:
    """The assignment of `space.choices()` that decodes to `genotype`, or None where the space
    cannot express it (a block, width or setting it does not offer)."""
    values = {"stem_width": genotype.stem_width, "stem_kernel": genotype.stem_kernel, "stem_stride": genotype.stem_stride,
              "stem_pool": genotype.stem_pool, "stem_bits": genotype.stem_bits, "head_width": genotype.head_width,
              "head_bits": genotype.head_bits, "width_mult": 1.0}
    left_out = len(space.stages) - len(genotype.stages)  # 1: the space's optional last stage is not used
    if left_out not in (0, 1) or (left_out == 1 and not space.stages[-1].optional):
        return None
    params = {}
    for name, choices in space.choices().items():
        if name in values:
            value = values[name]
        else:
            index, option = name[1:].split("_", 1)
            if int(index) >= len(genotype.stages):  # the left-out stage: depth 0, the rest ignored
                params[name] = 0 if option == "depth" else choices[0]
                continue
            stage = genotype.stages[int(index)]
            value = getattr(stage, _STAGE_FIELD.get(option, option))
            if value not in choices and option in ("wbits", "abits", "expansion", "se", "groups", "downsample"):
                value = choices[0]  # an option the block does not read: decode normalises it
        if value not in choices:
            return None
        params[name] = value
    geometry = {"input_size": genotype.input_size, "in_channels": genotype.in_channels,
                "num_classes": genotype.num_classes}
    return params if space.decode(params, **geometry).hash() == genotype.hash() else None


def _costs(genotype: Genotype, energy_profile: str) -> tuple[float, float]:
    """(analytic energy in uJ, OPs): what a neighbour must not exceed."""
    from bitnas.evaluators.energy import estimate_energy

    report = genotype_costs(genotype)
    return estimate_energy(report, energy_profile).total_uj, report.ops


def _unseen_costs(space: SpaceConfig, params: dict, geometry: dict, energy_profile: str,
                  seen: set[str]) -> tuple[float, float] | None:
    """`_costs` of the network `params` decodes to, which joins `seen`; None where it was seen
    already (two assignments can decode alike) or cannot be built (then it is simply no neighbour)."""
    candidate = space.decode(params, **geometry)
    if candidate.hash() in seen:
        return None
    seen.add(candidate.hash())
    try:
        return _costs(candidate, energy_profile)
    except Exception:  # noqa: BLE001 - a network that cannot be built is no neighbour
        return None


def cheaper_neighbours(space: SpaceConfig, reference: str, geometry: dict, energy_profile: str,
                       limit: int) -> list[Neighbour]:
    """Up to `limit` one-step neighbours of `reference` that cost no more than it (analytic energy
    and OPs, one of them lower), the smallest step down first; [] where the space cannot express
    the reference."""
    genotype = baseline_genotype(reference, **geometry)
    params = params_of(space, genotype)
    if params is None or limit <= 0:
        return []
    energy, ops = _costs(genotype, energy_profile)
    seen = {genotype.hash()}
    found = []
    for name, choices in space.choices().items():
        if not _is_one_of(name, _SHRINKING):
            continue
        for value in choices:
            if value == params[name]:
                continue
            candidate_params = {**params, name: value}
            costs = _unseen_costs(space, candidate_params, geometry, energy_profile, seen)
            if costs is None:
                continue
            candidate_energy, candidate_ops = costs
            if candidate_energy <= energy and candidate_ops < ops:
                found.append(Neighbour(reference, candidate_params, name, f"{name} {params[name]} -> {value}",
                                       candidate_energy, candidate_ops))
    found.sort(key=lambda n: (n.parameter not in _FIRST, -n.ops / ops, -n.energy_uj / energy, n.change))
    return found[:limit]


def grown_twins(space: SpaceConfig, reference: str, geometry: dict, energy_profile: str, limit: int) -> list[Neighbour]:
    """Up to `limit` of the reference's pooled twin with one or two parameters grown to larger
    choices, each costing no more energy than the reference and at most GROWN_OPS_SHARE of its OPs:
    the most OPs first, each sharing no grown parameter value with one taken before it; [] where the
    space cannot express the reference, offers no stem pool or the reference already has one."""
    genotype = baseline_genotype(reference, **geometry)
    params = params_of(space, genotype)
    if params is None or limit <= 0 or True not in space.choices().get("stem_pool", []) or params["stem_pool"]:
        return []
    energy, ops = _costs(genotype, energy_profile)
    twin = {**params, "stem_pool": True}
    # every larger choice of every growing parameter; an optional stage left out (depth 0) stays out
    growths = [(name, value) for name, choices in space.choices().items()
               if _is_one_of(name, _GROWING) and not (name.endswith("_depth") and twin[name] == 0)
               for value in choices[choices.index(twin[name]) + 1:]]
    seen, found = {space.decode(twin, **geometry).hash()}, []
    for steps in [*([g] for g in growths), *itertools.combinations(growths, 2)]:
        if len({name for name, _ in steps}) < len(steps):
            continue
        candidate_params = {**twin, **dict(steps)}
        costs = _unseen_costs(space, candidate_params, geometry, energy_profile, seen)
        if costs is None:
            continue
        candidate_energy, candidate_ops = costs
        if candidate_energy <= energy and candidate_ops <= GROWN_OPS_SHARE * ops:
            change = "stem_pool False -> True, " + ", ".join(f"{name} {params[name]} -> {value}" for name, value in steps)
            found.append(Neighbour(reference, candidate_params, "+".join(name for name, _ in steps), change,
                                   candidate_energy, candidate_ops))
    found.sort(key=lambda n: (-n.ops, n.change))
    chosen, used = [], set()
    for neighbour in found:
        grown = {(name, neighbour.params[name]) for name in neighbour.parameter.split("+")}
        if len(chosen) < limit and not grown & used:
            chosen.append(neighbour)
            used |= grown
    return chosen


def reference_neighbours(space: SpaceConfig, references: tuple[str, ...], geometry: dict, energy_profile: str,
                         per_reference: int, grown_per_reference: int = 0) -> list[Neighbour]:
    """`cheaper_neighbours` of every reference in turn (those the space cannot express give none),
    then their `grown_twins`: the nearest steps down of all of them before any step back up."""
    return ([n for name in references for n in cheaper_neighbours(space, name, geometry, energy_profile, per_reference)]
            + [n for name in references for n in grown_twins(space, name, geometry, energy_profile, grown_per_reference)])


def seed_study(study, config, geometry: dict, out) -> list[Neighbour]:
    """Queue the references' cheaper neighbours as the first trials of a study that has none yet
    (a resumed study keeps what it has), at most `config.trials` of them; says which."""
    if config.reference_neighbours + config.grown_neighbours <= 0 or study.get_trials(deepcopy=False):
        return []
    chosen = reference_neighbours(config.space, config.references, geometry, config.energy_profile,
                                  config.reference_neighbours, config.grown_neighbours)[:config.trials]
    for neighbour in chosen:
        study.enqueue_trial(neighbour.params, user_attrs={"neighbour_of": neighbour.reference,
                                                          "neighbour_change": neighbour.change})
    if chosen:
        grown = f", grown_neighbours: {config.grown_neighbours}" if config.grown_neighbours else ""
        out(f"first trials: {len(chosen)} cheaper {'' if grown else 'one-step '}neighbour(s) of the reference(s) in "
            f"the space (reference_neighbours: {config.reference_neighbours}{grown}): "
            + "; ".join(f"{n.reference} {n.change}" for n in chosen))
    return chosen


__all__ = ["GROWN_OPS_SHARE", "Neighbour", "cheaper_neighbours", "grown_twins", "params_of", "reference_neighbours", "seed_study"]
