"""Local search from the hand designs (search/neighbours.py): a new study's first trials are the
references' one-step neighbours that the space can express and that cost no more than them."""

import optuna
import pytest

from bitnas.evaluators.energy import estimate_energy
from bitnas.search.config import SearchConfig
from bitnas.search.neighbours import cheaper_neighbours, params_of, seed_study
from bitnas.spaces import genotype_costs
from bitnas.spaces.baselines import baseline_genotype

GEOMETRY = {"input_size": 28, "in_channels": 1, "num_classes": 10}


def test_a_reference_in_the_space_has_an_assignment_and_one_outside_has_none():
    space = SearchConfig().space
    bireal = baseline_genotype("bireal_small", **GEOMETRY)
    params = params_of(space, bireal)
    assert params is not None and space.decode(params, **GEOMETRY).hash() == bireal.hash()
    # four stages, an 8-bit stem and a head conv: not in the default space's three stages
    assert params_of(space, baseline_genotype("mobilenetv2_int8_small", **GEOMETRY)) is None


def test_neighbours_change_one_parameter_and_cost_no_more_than_the_reference():
    config = SearchConfig()
    reference = baseline_genotype("bireal_small", **GEOMETRY)
    reference_params = params_of(config.space, reference)
    costs = genotype_costs(reference)
    energy, ops = estimate_energy(costs, config.energy_profile).total_uj, costs.ops
    neighbours = cheaper_neighbours(config.space, "bireal_small", GEOMETRY, config.energy_profile, limit=100)
    assert len(neighbours) >= 4
    assert len({n.change for n in neighbours}) == len(neighbours)
    for neighbour in neighbours:
        changed = [name for name in reference_params if neighbour.params[name] != reference_params[name]]
        assert len(changed) == 1 and neighbour.change.startswith(changed[0])
        genotype = config.space.decode(neighbour.params, **GEOMETRY)
        assert genotype.hash() != reference.hash()
        assert neighbour.energy_uj <= energy and neighbour.ops <= ops
        assert neighbour.energy_uj < energy or neighbour.ops < ops
        assert neighbour.energy_uj == pytest.approx(estimate_energy(genotype_costs(genotype), config.energy_profile).total_uj)
    shares = [n.ops / ops for n in neighbours]
    assert shares == sorted(shares, reverse=True)  # the smallest step down first
    assert cheaper_neighbours(config.space, "bireal_small", GEOMETRY, config.energy_profile, limit=3) == neighbours[:3]
    assert cheaper_neighbours(config.space, "mobilenetv2_int8_small", GEOMETRY, config.energy_profile, limit=3) == []


def _study() -> optuna.Study:
    return optuna.create_study(directions=["maximize", "minimize", "minimize"])


def test_a_new_study_asks_the_neighbours_first_and_a_resumed_one_is_not_seeded_again():
    config = SearchConfig(reference_neighbours=3)
    study, said = _study(), []
    chosen = seed_study(study, config, GEOMETRY, said.append)
    assert len(chosen) == 3 and "bireal_small" in said[0]
    for neighbour in chosen:
        trial = study.ask()
        params = {name: trial.suggest_categorical(name, choices) for name, choices in config.space.choices().items()}
        assert params == neighbour.params
        assert trial.user_attrs["neighbour_of"] == "bireal_small"
        assert trial.user_attrs["neighbour_change"] == neighbour.change
        study.tell(trial, [0.5, 1.0, 1.0])
    assert seed_study(study, config, GEOMETRY, said.append) == []  # it has trials: left as it is
    assert seed_study(_study(), SearchConfig(reference_neighbours=0), GEOMETRY, said.append) == []
    assert seed_study(_study(), SearchConfig(references=["mobilenetv2_int8_small"]), GEOMETRY, said.append) == []
    assert len(seed_study(_study(), SearchConfig(trials=2), GEOMETRY, said.append)) == 2  # never more than --trials
