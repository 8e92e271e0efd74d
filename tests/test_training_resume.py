"""Training cut into ASHA rungs: stopping at a rung and resuming from its checkpoint must be the
same run as training straight through (same weights, optimiser moments, curve), including
two-step training whose switch falls inside a rung, and a cut in the middle of an epoch."""

import pytest
import torch

from bitnas.evaluators import TrainingConfig, load_dataset
from bitnas.evaluators.train import train
from bitnas.spaces import Genotype, StageSpec, build_model

BINARY = Genotype(input_size=8, in_channels=1, num_classes=10, stem_width=8,
                  stages=(StageSpec(block="binary", width=16, depth=1, stride=2),))
FLOAT = Genotype(input_size=8, in_channels=1, num_classes=10, stem_width=8,
                 stages=(StageSpec(block="float", width=16, depth=1, stride=2),))


def _fresh(genotype, seed):
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    return build_model(genotype)


def _in_rungs(genotype, config, rungs, seed=3):
    """Train to each rung in turn, each call on a freshly built network that resumes from the last checkpoint."""
    data = load_dataset("digits", 0)
    checkpoint, outcomes, model = None, [], None
    for epochs in rungs:
        model = _fresh(genotype, seed)
        outcome = train(model, data.train, data.val, config, seed=seed, until_epochs=epochs, resume=checkpoint)
        outcomes.append(outcome)
        checkpoint = outcome.checkpoint
    return model, outcomes


@pytest.mark.parametrize("genotype,overrides", [(BINARY, {}), (FLOAT, {"augment": "shift"}),
                                                (BINARY, {"two_step": True}), (FLOAT, {"bn_recalibration": 0})])
def test_resuming_from_rung_checkpoints_is_training_straight_through(genotype, overrides):
    config = TrainingConfig(epochs=2.0, batch_size=32, **overrides)
    data = load_dataset("digits", 0)
    straight = _fresh(genotype, 3)
    whole = train(straight, data.train, data.val, config, seed=3)
    # 0.3 and 0.9 cut inside epochs; two_step switches at 1.0, inside the last rung
    model, outcomes = _in_rungs(genotype, config, [0.3, 0.9, 2.0])
    expected = straight.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    # the steps of the rungs add up to the whole run, and only the top rung has no checkpoint
    assert outcomes[-1].steps == whole.steps and [o.checkpoint is None for o in outcomes] == [False, False, True]
    assert outcomes[0].steps < outcomes[1].steps < outcomes[2].steps
    # the run's curve is the same; a rung ending inside an epoch adds its own validation
    assert outcomes[-1].epoch_val_accuracy == whole.epoch_val_accuracy
    assert len(outcomes[0].epoch_val_accuracy) == 1 and len(outcomes[1].epoch_val_accuracy) == 1


def test_the_learning_rate_schedule_is_the_full_run_s():
    """A rung is a point of the full run: a rung at 1 epoch of a 2-epoch run is not a 1-epoch run."""
    config = TrainingConfig(epochs=2.0, batch_size=32)
    data = load_dataset("digits", 0)
    _, outcomes = _in_rungs(BINARY, config, [1.0])
    short = _fresh(BINARY, 3)
    one_epoch = train(short, data.train, data.val, config.model_copy(update={"epochs": 1.0}), seed=3)
    assert outcomes[0].steps == one_epoch.steps and outcomes[0].final_loss != one_epoch.final_loss


def test_a_checkpoint_from_another_version_is_refused():
    import io

    buffer = io.BytesIO()
    torch.save({"version": 0}, buffer)
    data = load_dataset("digits", 0)
    with pytest.raises(ValueError, match="checkpoint version"):
        train(_fresh(BINARY, 0), data.train, data.val, TrainingConfig(epochs=1.0), seed=0, until_epochs=1.0,
              resume=buffer.getvalue())
