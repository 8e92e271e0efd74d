"""The local-search sampler: its proposals are one-step neighbours of the front's networks (never
of a dominated or infeasible trial, never a network the study holds), half of them by default."""

import numpy as np
import optuna

from bitnas.search.local_search import ParetoLocalSearchSampler, one_step
from bitnas.search.samplers import make_sampler

SPACE = {"width": [8, 16, 24, 32], "block": ["binary", "float", "reactnet"], "depth": [1, 2]}


def suggest_all(trial) -> dict:
    return {name: trial.suggest_categorical(name, choices) for name, choices in SPACE.items()}


def differences(a: dict, b: dict) -> list[str]:
    return [name for name in a if a[name] != b[name]]


def test_one_step_moves_numbers_to_a_neighbouring_value_and_kinds_to_another_kind():
    rng = np.random.RandomState(0)
    assert {one_step(16, (8, 16, 24, 32), rng) for _ in range(50)} == {8, 24}
    assert {one_step(8, (32, 8, 16, 24), rng) for _ in range(20)} == {16}  # the choices' order does not matter
    assert {one_step("float", ("binary", "float", "reactnet"), rng) for _ in range(50)} == {"binary", "reactnet"}


def seeded_study(sampler) -> tuple[optuna.Study, dict]:
    """Three finished trials: A on the front, B dominated by A, C better still but infeasible."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    trials = {"A": ({"width": 16, "block": "binary", "depth": 1}, [0.9, 1.0], 0.0),
              "B": ({"width": 32, "block": "float", "depth": 2}, [0.8, 2.0], 0.0),
              "C": ({"width": 24, "block": "reactnet", "depth": 2}, [0.99, 0.5], 1.0)}
    for params, values, violation in trials.values():
        study.enqueue_trial(params)
        trial = study.ask()
        suggest_all(trial)
        trial.set_constraint("floor", violation)
        study.tell(trial, values)
    return study, {name: params for name, (params, _, _) in trials.items()}


def test_local_proposals_are_unseen_one_step_neighbours_of_the_feasible_front():
    study, held = seeded_study(ParetoLocalSearchSampler(seed=0, local_share=1.0))
    proposals = []
    for _ in range(5):  # A has five one-step neighbours (widths 8 and 24, two other blocks, depth 2)
        trial = study.ask()
        params = suggest_all(trial)
        proposals.append(params)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)  # failed: not on the front, still held
    for params in proposals:
        assert len(differences(params, held["A"])) == 1, params
    assert len({tuple(sorted(p.items())) for p in proposals}) == len(proposals)  # never one twice
    assert all(p not in held.values() for p in proposals)
    # Once every neighbour of the front is held, the proposal is random rather than a repeat.
    assert suggest_all(study.ask()) not in proposals


def test_network_key_skips_changes_the_network_does_not_read():
    # depth is ignored by this "decoder": a change of depth alone is the same network.
    key = lambda params: f"{params['width']}-{params['block']}"  # noqa: E731
    study, held = seeded_study(ParetoLocalSearchSampler(seed=1, network_key=key, local_share=1.0))
    for _ in range(4):
        trial = study.ask()
        params = suggest_all(trial)
        assert differences(params, held["A"]) in (["width"], ["block"])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def test_about_half_the_proposals_are_random_and_queued_params_win():
    study, held = seeded_study(make_sampler("local", seed=2))
    local = 0
    for _ in range(40):
        trial = study.ask()
        params = suggest_all(trial)
        local += len(differences(params, held["A"])) == 1
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    # Random proposals are one step from A now and then too (3 of 23 assignments), so more than half.
    assert 14 <= local <= 32
    study.enqueue_trial(held["B"])
    trial = study.ask()
    assert suggest_all(trial) == held["B"]


def test_without_a_finished_trial_every_proposal_is_random():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=ParetoLocalSearchSampler(seed=0, local_share=1.0))
    seen = {tuple(sorted(suggest_all(study.ask()).items())) for _ in range(12)}
    assert len(seen) > 3


def test_a_share_of_zero_is_random_search():
    study, held = seeded_study(ParetoLocalSearchSampler(seed=3, local_share=0.0))
    steps = [len(differences(suggest_all(study.ask()), held["A"])) for _ in range(30)]
    assert steps.count(1) < 15
