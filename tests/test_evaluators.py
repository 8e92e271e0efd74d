import numpy as np
import pytest
import torch

from bitnas.evaluators import DatasetError, LatencyConfig, TrainingConfig, accuracy, load_dataset, measure_latency
from bitnas.evaluators.train import train
from bitnas.spaces import Genotype, StageSpec, build_model


def test_mnist5k_is_the_real_offline_subset_split_70_15_15():
    data = load_dataset("mnist5k", 0)
    assert (len(data.train), len(data.val), len(data.test)) == (3500, 750, 750)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    for split in (data.train, data.val, data.test):
        assert np.bincount(split.labels.numpy()).tolist() == [len(split) // 10] * 10  # stratified


def test_split_is_seeded_and_disjoint():
    a, b, c = load_dataset("digits", 0), load_dataset("digits", 0), load_dataset("digits", 1)
    assert torch.equal(a.val.images, b.val.images)
    assert not torch.equal(a.val.images, c.val.images)
    rows = lambda split: {tuple(x.flatten().tolist()) for x in split.images}  # noqa: E731
    train, val, test = rows(a.train), rows(a.val), rows(a.test)
    assert len(train) == len(a.train) and len(val) == len(a.val) and len(test) == len(a.test)  # no image twice
    assert not (train & val) and not (train & test) and not (val & test)


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(DatasetError, match="unknown dataset 'imagenet'; known datasets: cifar10, digits, imagefolder, mnist5k"):
        load_dataset("imagenet")


TINY = Genotype(input_size=8, in_channels=1, num_classes=10, stem_width=8,
                stages=(StageSpec(block="binary", width=16, depth=1, stride=2),))


def _trained_accuracy(seed: int) -> float:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    data = load_dataset("digits", 0)
    model = build_model(TINY)
    train(model, data.train, data.val, TrainingConfig(epochs=2, batch_size=32, lr=5e-3), seed=seed)
    return accuracy(model, data.val)


def test_training_is_reproducible_and_learns():
    first, second = _trained_accuracy(3), _trained_accuracy(3)
    assert first == second
    assert first > 0.5  # ten classes: chance is 0.1


def test_fractional_epochs_take_a_fraction_of_the_steps():
    data = load_dataset("digits", 0)
    outcome = train(build_model(TINY), data.train, data.val, TrainingConfig(epochs=0.25, batch_size=50), seed=0)
    assert outcome.steps == int(np.ceil(0.25 * np.ceil(len(data.train) / 50)))
    assert len(outcome.epoch_val_accuracy) == 1


def test_latency_measurement_records_how_it_was_taken():
    config = LatencyConfig(runs=30, warmup=2, threads=1, target="torch-cpu")
    measurement = measure_latency(build_model(TINY), (1, 8, 8), config)
    assert measurement.runs == 30 and measurement.threads == 1
    assert 0 < measurement.min_ms <= measurement.median_ms <= measurement.p90_ms
    assert "simulated" in measurement.engine
