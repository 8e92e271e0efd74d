"""The weight-sharing supernet (spaces/weight_sharing.py, evaluators/supernet.py): every network of
the space finds its tensors, training reaches the shared store, a network loaded out of it
computes what the supernet computed for it, the cache is checked before use, and a search with
`evaluation: supernet` scores trials from it and reports a front of finalists trained from scratch."""

import random

import pytest
import torch
from torch.func import functional_call

from bitnas.evaluators import load_dataset
from bitnas.evaluators.settings import SupernetConfig, TrainingConfig
from bitnas.evaluators.supernet import (SharedWeights, extreme_params, load_subnet, random_params, read_cached,
                                        subnet_state, train_supernet, write_cache)
from bitnas.search.config import SearchConfig
from bitnas.spaces import build_model
from bitnas.spaces.space import SpaceConfig
from bitnas.spaces.weight_sharing import SharedLayout, WeightSharingError
from conftest import TINY_SPACE, search_in_process, shared_study_config

MNIST = dict(input_size=28, in_channels=1, num_classes=10)


def test_every_network_of_the_default_space_reads_its_tensors_from_the_layout():
    space = SearchConfig().space
    layout = SharedLayout.of(space, **MNIST)
    store = {key: torch.empty(shape, device="meta") for key, shape in layout.shapes.items()}
    rng = random.Random(0)
    for params in [random_params(space, rng) for _ in range(150)] + [extreme_params(space, big, rng)
                                                                    for big in (True, False)]:
        genotype = space.decode(params, **MNIST)
        with torch.device("meta"):
            model = build_model(genotype)
        state = subnet_state(genotype, model, store)
        wanted = model.state_dict()
        assert set(state) == set(wanted)
        assert all(state[name].shape == wanted[name].shape for name in wanted)


def test_the_largest_network_is_the_most_precise_and_widest():
    space = SearchConfig().space
    genotype = space.decode(extreme_params(space, True, random.Random(0)), **MNIST)
    assert [s.block for s in genotype.stages] == ["float"] * 4  # 32/32 bits, listed before reactnet/dwsep at 32
    assert [s.width for s in genotype.stages] == [32, 64, 128, 96] and all(s.depth == 2 for s in genotype.stages)
    assert (genotype.stem_width, genotype.stem_bits, genotype.head_width, genotype.head_bits) == (16, 32, 128, 32)


def test_dense_blocks_are_refused_in_one_line():
    space = SpaceConfig(blocks=["binary_dense", "float"])
    with pytest.raises(WeightSharingError, match="dense block 'binary_dense'"):
        SharedLayout.of(space, **MNIST)


def tiny_space() -> SpaceConfig:
    return SpaceConfig(**{**TINY_SPACE, "blocks": ["float", "binary", "reactnet"], "weight_bits": [1, 8],
                          "activation_bits": [1, 8], "stages": [{"stride": 1, "widths": [4, 8], "depths": [1, 2]},
                                                                {"stride": 2, "widths": [8, 16], "depths": [1]}]})


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    data = load_dataset("digits", 0)
    geometry = dict(input_size=data.input_size, in_channels=data.in_channels, num_classes=data.num_classes)
    space = tiny_space()
    reports = []
    shared = train_supernet(space, geometry, data.train, data.val, SupernetConfig(epochs=1.0),
                            TrainingConfig(batch_size=32), seed=0, digest="test", progress=reports.append)
    return space, geometry, data, shared, reports


def test_training_moves_the_shared_weights_and_reports_progress(trained):
    space, geometry, data, shared, reports = trained
    layout = SharedLayout.of(space, **geometry)
    initial = layout.initial_tensors(0)
    learned = shared.tensors()
    assert set(learned) == set(initial)
    moved = [key for key in initial if initial[key].is_floating_point() and "running" not in key
             and not torch.equal(initial[key], learned[key])]
    assert len(moved) > 0.5 * len([k for k in initial if initial[k].is_floating_point()])
    assert reports and reports[-1].step == reports[-1].steps == shared.steps
    # The largest network, trained on the labels, is well above chance on 10 digit classes.
    assert shared.largest_val_accuracy > 0.3


def test_a_loaded_network_computes_what_the_supernet_computes_for_it(trained):
    space, geometry, data, shared, _ = trained
    rng = random.Random(4)
    images = data.val.images[:16]
    for _ in range(5):
        genotype = space.decode(random_params(space, rng), **geometry)
        model = load_subnet(genotype, shared).eval()
        with torch.device("meta"):
            skeleton = build_model(genotype).eval()
        with torch.no_grad():
            direct = functional_call(skeleton, subnet_state(genotype, skeleton, shared.tensors()), (images,))
            assert torch.allclose(model(images), direct, atol=1e-5)


def test_the_cache_is_checked_before_use(trained, tmp_path):
    shared = trained[3]
    path = write_cache(tmp_path, SharedWeights(shared.weights, "abc123", 1.0, shared.steps, 0.5))
    again = read_cached(tmp_path, "abc123")
    assert again is not None and again.weights == shared.weights and again.steps == shared.steps
    path.write_bytes(shared.weights[:-10])  # a truncated file is trained again, never trusted
    assert read_cached(tmp_path, "abc123") is None
    assert read_cached(tmp_path, "missing") is None
    assert not list(tmp_path.rglob("*.partial"))


def test_a_supernet_search_scores_trials_one_shot_and_reports_finalists(tmp_path, local_ray):
    import optuna

    config = shared_study_config(evaluation="supernet", supernet={"epochs": 0.5, "bn_images": 64, "finetune_steps": 3},
                                 final_epochs=0.5, finalists=2, references=["bireal_small"])
    results = tmp_path / "results"
    outcome, lines = search_in_process(config, results, "oneshot", 6)
    text = "\n".join(lines)
    assert outcome.completed == 6 and not outcome.interrupted, text
    assert "[supernet]" in text and "finalists:" in text
    study = optuna.load_study(study_name="oneshot", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(results / "optuna.journal"))))
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    scored = [t for t in done if t.user_attrs["fidelity"] == "supernet"]
    finals = [t for t in done if t.user_attrs["fidelity"] == "final"]
    assert len(scored) == 6 and 1 <= len(finals) <= 2
    for trial in scored:  # measured like every trial, only fine-tuned from the supernet for a few steps
        assert trial.user_attrs["metrics"]["train_steps"] == 3 and trial.user_attrs["metrics"]["latency_ms"] > 0
    for trial in finals:  # retrained from scratch at the final budget, from a trial of the front
        assert trial.user_attrs["metrics"]["train_steps"] > 0 and "finalist_of" in trial.user_attrs
        assert trial.user_attrs["genotype_hash"] == study.trials[trial.user_attrs["finalist_of"]].user_attrs["genotype_hash"]
    # The reported front is made of finalists only; the reference trained at the same budget.
    front = outcome.frame[outcome.frame["pareto"]]
    assert len(front) and set(front["fidelity"]) == {"final"}
    reference = study.user_attrs["reference:bireal_small"]["metrics"]
    assert reference["train_steps"] == finals[0].user_attrs["metrics"]["train_steps"]
    # Run again: the supernet comes from its cache and nothing is retrained.
    outcome, lines = search_in_process(config, results, "oneshot", 6)
    assert "nothing to do" in "\n".join(lines)
