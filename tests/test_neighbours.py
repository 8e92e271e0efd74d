"""Local search from the hand designs (search/neighbours.py): a new study's first trials are the
references' one-step neighbours that the space can express and that cost no more than them."""

import optuna
import pytest

from bitnas.evaluators.energy import estimate_energy
from bitnas.search.config import SearchConfig
from bitnas.search.neighbours import GROWN_OPS_SHARE, cheaper_neighbours, grown_twins, params_of, seed_study
from bitnas.spaces import genotype_costs
from bitnas.spaces.baselines import baseline_genotype

GEOMETRY = {"input_size": 28, "in_channels": 1, "num_classes": 10}


def test_a_reference_in_the_space_has_an_assignment_and_one_outside_has_none():
    space = SearchConfig().space
    # bireal_small's and reactnet_small's three stages leave the default space's optional fourth out
    # (depth 0); the 8-bit MobileNetV2 uses all four, an 8-bit stem and an 8-bit head conv.
    for name, depth in (("bireal_small", 0), ("reactnet_small", 0), ("mobilenetv2_int8_small", 2)):
        reference = baseline_genotype(name, **GEOMETRY)
        params = params_of(space, reference)
        assert params is not None and space.decode(params, **GEOMETRY).hash() == reference.hash()
        assert params["s3_depth"] == depth
    # XNOR-Net blocks: not among the default space's blocks
    assert params_of(space, baseline_genotype("xnor_small", **GEOMETRY)) is None
    three_stages = SearchConfig(space={"stages": [{"stride": 1, "widths": [16]}, {"stride": 2, "widths": [32]},
                                                  {"stride": 2, "widths": [64]}]}).space
    assert params_of(three_stages, baseline_genotype("mobilenetv2_int8_small", **GEOMETRY)) is None


@pytest.mark.parametrize("name", ["bireal_small", "mobilenetv2_int8_small", "reactnet_small"])
def test_neighbours_shrink_one_parameter_and_cost_less_than_the_reference(name):
    config = SearchConfig()
    reference = baseline_genotype(name, **GEOMETRY)
    reference_params = params_of(config.space, reference)
    costs = genotype_costs(reference)
    energy, ops = estimate_energy(costs, config.energy_profile).total_uj, costs.ops
    neighbours = cheaper_neighbours(config.space, name, GEOMETRY, config.energy_profile, limit=100)
    assert len(neighbours) >= 4
    assert len({n.change for n in neighbours}) == len(neighbours)
    for neighbour in neighbours:
        changed = [param for param in reference_params if neighbour.params[param] != reference_params[param]]
        assert len(changed) == 1 and neighbour.change.startswith(changed[0])
        # channels, blocks, a stage, the head conv or resolution removed; never a bit width or a block kind
        assert changed[0].split("_")[-1] in ("width", "depth", "expansion", "pool")
        genotype = config.space.decode(neighbour.params, **GEOMETRY)
        assert genotype.hash() != reference.hash()
        assert neighbour.energy_uj <= energy and neighbour.ops < ops
        assert neighbour.energy_uj == pytest.approx(estimate_energy(genotype_costs(genotype), config.energy_profile).total_uj)
    # the stem's max pool first (it halves the side, yet kept the references' accuracy), then the
    # smallest step down first
    assert neighbours[0].change == "stem_pool False -> True" and neighbours[0].ops < 0.5 * ops
    shares = [n.ops / ops for n in neighbours[1:]]
    assert shares == sorted(shares, reverse=True)
    assert cheaper_neighbours(config.space, name, GEOMETRY, config.energy_profile, limit=3) == neighbours[:3]
    assert cheaper_neighbours(config.space, "xnor_small", GEOMETRY, config.energy_profile, limit=3) == []
    # a space without the pool: the smallest steps only
    no_pool = SearchConfig(space={"stem_pools": [False]}).space
    assert all("pool" not in n.change for n in cheaper_neighbours(no_pool, name, GEOMETRY, config.energy_profile, 100))


def _study() -> optuna.Study:
    return optuna.create_study(directions=["maximize", "minimize", "minimize"])


def test_a_new_study_asks_the_neighbours_first_and_a_resumed_one_is_not_seeded_again():
    config = SearchConfig(reference_neighbours=3)
    study, said = _study(), []
    chosen = seed_study(study, config, GEOMETRY, said.append)
    assert [n.reference for n in chosen] == (["bireal_small"] * 3 + ["mobilenetv2_int8_small"] * 3
                                             + ["reactnet_small"] * 3)
    assert all(name in said[0] for name in ("bireal_small", "mobilenetv2_int8_small", "reactnet_small"))
    for neighbour in chosen:
        trial = study.ask()
        params = {name: trial.suggest_categorical(name, choices) for name, choices in config.space.choices().items()}
        assert params == neighbour.params
        assert trial.user_attrs["neighbour_of"] == neighbour.reference
        assert trial.user_attrs["neighbour_change"] == neighbour.change
        study.tell(trial, [0.5, 1.0, 1.0])
    assert seed_study(study, config, GEOMETRY, said.append) == []  # it has trials: left as it is
    assert seed_study(_study(), SearchConfig(reference_neighbours=0), GEOMETRY, said.append) == []
    assert seed_study(_study(), SearchConfig(references=["xnor_small"]), GEOMETRY, said.append) == []
    assert len(seed_study(_study(), SearchConfig(trials=2), GEOMETRY, said.append)) == 2  # never more than --trials


@pytest.mark.parametrize("name", ["bireal_small", "mobilenetv2_int8_small", "reactnet_small"])
def test_grown_twins_grow_the_pooled_twin_and_stay_cheaper_than_the_reference(name):
    config = SearchConfig()
    reference = baseline_genotype(name, **GEOMETRY)
    reference_params = params_of(config.space, reference)
    costs = genotype_costs(reference)
    energy, ops = estimate_energy(costs, config.energy_profile).total_uj, costs.ops
    choices = config.space.choices()
    grown = grown_twins(config.space, name, GEOMETRY, config.energy_profile, limit=100)
    assert grown
    used = set()
    for twin in grown:
        changed = [param for param in reference_params if twin.params[param] != reference_params[param]]
        assert "stem_pool" in changed and twin.params["stem_pool"] is True
        steps = [param for param in changed if param != "stem_pool"]
        assert 1 <= len(steps) <= 2 and "+".join(steps) == twin.parameter
        for param in steps:  # grown: a larger choice of a width, depth, expansion
            assert param.split("_")[-1] in ("width", "depth", "expansion")
            assert choices[param].index(twin.params[param]) > choices[param].index(reference_params[param])
            assert (param, twin.params[param]) not in used  # no growth taken twice
            used.add((param, twin.params[param]))
        assert twin.energy_uj <= energy and twin.ops <= GROWN_OPS_SHARE * ops
    assert [t.ops for t in grown] == sorted((t.ops for t in grown), reverse=True)
    assert grown_twins(config.space, name, GEOMETRY, config.energy_profile, limit=1) == grown[:1]
    # no pool in the space, or none asked for: no grown twins
    no_pool = SearchConfig(space={"stem_pools": [False]}).space
    assert grown_twins(no_pool, name, GEOMETRY, config.energy_profile, limit=100) == []
    assert grown_twins(config.space, name, GEOMETRY, config.energy_profile, limit=0) == []


def test_a_study_asks_every_reference_s_steps_down_before_any_grown_twin():
    config = SearchConfig(reference_neighbours=2, grown_neighbours=1)
    chosen = seed_study(_study(), config, GEOMETRY, lambda line: None)
    assert [(n.reference, "+" in n.parameter or "," in n.change) for n in chosen] == [
        ("bireal_small", False), ("bireal_small", False), ("mobilenetv2_int8_small", False),
        ("mobilenetv2_int8_small", False), ("reactnet_small", False), ("reactnet_small", False),
        ("bireal_small", True), ("mobilenetv2_int8_small", True), ("reactnet_small", True)]
    # the 8-bit MobileNetV2's grown twin is wider after the pool
    assert chosen[7].change.startswith("stem_pool False -> True, ")
