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
"""

from __future__ import annotations

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


def _shrinks(name: str) -> bool:
    return name in _SHRINKING or (name.startswith("s") and name.split("_", 1)[1] in _SHRINKING)


@dataclass(frozen=True)
class Neighbour:
    reference: str
    params: dict
    parameter: str     # the one parameter changed, e.g. "s2_depth"
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


def cheaper_neighbours(space: SpaceConfig, reference: str, geometry: dict, energy_profile: str,
                       limit: int) -> list[Neighbour]:
    """Up to `limit` one-step neighbours of `reference` that cost no more than it (analytic energy
    and OPs, one of them lower), the smallest step down first; [] where the space cannot express
    the reference."""
    from bitnas.evaluators.energy import estimate_energy

    genotype = baseline_genotype(reference, **geometry)
    params = params_of(space, genotype)
    if params is None or limit <= 0:
        return []

    def costs(candidate: Genotype) -> tuple[float, float]:
        report = genotype_costs(candidate)
        return estimate_energy(report, energy_profile).total_uj, report.ops

    energy, ops = costs(genotype)
    seen = {genotype.hash()}
    found = []
    for name, choices in space.choices().items():
        if not _shrinks(name):
            continue
        for value in choices:
            if value == params[name]:
                continue
            candidate_params = {**params, name: value}
            candidate = space.decode(candidate_params, **geometry)
            if candidate.hash() in seen:
                continue
            seen.add(candidate.hash())
            try:
                candidate_energy, candidate_ops = costs(candidate)
            except Exception:  # noqa: BLE001 - a neighbour that cannot be built is simply not one
                continue
            if candidate_energy <= energy and candidate_ops < ops:
                found.append(Neighbour(reference, candidate_params, name, f"{name} {params[name]} -> {value}",
                                       candidate_energy, candidate_ops))
    found.sort(key=lambda n: (n.parameter not in _FIRST, -n.ops / ops, -n.energy_uj / energy, n.change))
    return found[:limit]


def reference_neighbours(space: SpaceConfig, references: tuple[str, ...], geometry: dict, energy_profile: str,
                         per_reference: int) -> list[Neighbour]:
    """`cheaper_neighbours` of every reference in turn (those the space cannot express give none)."""
    return [n for name in references for n in cheaper_neighbours(space, name, geometry, energy_profile, per_reference)]


def seed_study(study, config, geometry: dict, out) -> list[Neighbour]:
    """Queue the references' cheaper neighbours as the first trials of a study that has none yet
    (a resumed study keeps what it has), at most `config.trials` of them; says which."""
    if config.reference_neighbours <= 0 or study.get_trials(deepcopy=False):
        return []
    chosen = reference_neighbours(config.space, config.references, geometry, config.energy_profile,
                                  config.reference_neighbours)[:config.trials]
    for neighbour in chosen:
        study.enqueue_trial(neighbour.params, user_attrs={"neighbour_of": neighbour.reference,
                                                          "neighbour_change": neighbour.change})
    if chosen:
        out(f"first trials: {len(chosen)} cheaper one-step neighbour(s) of the reference(s) in the space "
            f"(reference_neighbours: {config.reference_neighbours}): "
            + "; ".join(f"{n.reference} {n.change}" for n in chosen))
    return chosen


__all__ = ["Neighbour", "cheaper_neighbours", "params_of", "reference_neighbours", "seed_study"]
