"""The training recipes: which one a network gets, what the binary recipe does to latent
weights, reproducibility to the last digit, augmentation and the early-stop hook."""

import math

import torch

from bitnas.evaluators import TrainingConfig, accuracy, load_dataset
from bitnas.evaluators.train import train
from bitnas.evaluators.train import _augment, _warmup_cosine, quantized_kernels, resolve_recipe
from bitnas.spaces import Genotype, StageSpec, build_model

BINARY = Genotype(input_size=8, in_channels=1, num_classes=10, stem_width=8,
                  stages=(StageSpec(block="binary", width=16, depth=1, stride=2),))
FLOAT = Genotype(input_size=8, in_channels=1, num_classes=10, stem_width=8,
                 stages=(StageSpec(block="float", width=16, depth=1, stride=2),))


def _run(genotype, seed=0, **overrides):
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    data = load_dataset("digits", 0)
    model = build_model(genotype)
    config = TrainingConfig(**{"epochs": 2, "batch_size": 32, "lr": 5e-3, **overrides})
    outcome = train(model, data.train, data.val, config, seed=seed)
    return model, outcome, accuracy(model, data.val)


def test_recipe_follows_the_network():
    assert resolve_recipe(build_model(BINARY), "auto") == "binary"
    assert resolve_recipe(build_model(FLOAT), "auto") == "standard"
    assert resolve_recipe(build_model(FLOAT), "binary") == "binary"
    assert quantized_kernels(build_model(FLOAT)) == []


def test_binary_recipe_is_reproducible_to_the_last_digit_and_learns():
    _, first, acc1 = _run(BINARY, seed=4)
    _, second, acc2 = _run(BINARY, seed=4)
    assert first.recipe == "binary" and first.device == "cpu"
    assert acc1 == acc2 and first.final_loss == second.final_loss and first.epoch_val_accuracy == second.epoch_val_accuracy
    assert acc1 > 0.5  # ten classes: chance is 0.1; a 1-block binary net on 8x8 digits after 2 epochs


def test_binary_recipe_clips_latent_weights_and_never_decays_them():
    # A large learning rate pushes latent weights past 1; the recipe must hold them in [-1, 1].
    model, _, _ = _run(BINARY, lr=0.5, epochs=0.5, latent_clip=0.25)
    latent = [m.weight for m, bits in quantized_kernels(model) if bits == 1]
    assert latent and all(float(w.detach().abs().max()) <= 0.25 + 1e-7 for w in latent)
    assert any(float(w.detach().abs().max()) > 0.2 for w in latent)  # it did push them to the bound


def test_standard_recipe_decays_float_kernels():
    # With zero learning signal (lr tiny) AdamW's decoupled decay is what shrinks weights; the
    # recipe applies it to conv kernels of float networks and never to BN.
    torch.manual_seed(0)
    model = build_model(FLOAT)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = load_dataset("digits", 0)
    train(model, data.train, data.val, TrainingConfig(epochs=0.2, lr=1e-2, weight_decay=5.0, recipe="standard"), seed=0)
    after = dict(model.named_parameters())
    kernel = next(n for n, p in after.items() if p.dim() == 4)
    assert after[kernel].norm() < 0.95 * before[kernel].norm()


def test_warmup_then_cosine_schedule():
    factor = _warmup_cosine(total_steps=100, warmup_steps=10)
    assert [round(factor(s), 3) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert factor(10) == 1.0 and abs(factor(55) - 0.5) < 1e-9 and factor(100) == 0.0


def test_augmentation_is_seeded_and_keeps_pixels():
    images = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8) + 1
    a = _augment(images, "shift", torch.Generator().manual_seed(1))
    b = _augment(images, "shift", torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == images.shape
    assert _augment(images, "none", torch.Generator()) is images
    # a shift only moves pixels (or brings in zero padding): every non-zero value comes from the source
    assert set(a[0].flatten().tolist()) - {0.0} <= set(images[0].flatten().tolist())


def test_should_stop_ends_training_after_the_epoch_it_says():
    seen = []

    def stop_after_first(epoch, curve):
        seen.append((epoch, tuple(curve)))
        return True

    torch.manual_seed(0)
    data = load_dataset("digits", 0)
    outcome = train(build_model(BINARY), data.train, data.val, TrainingConfig(epochs=3, batch_size=64),
                    seed=0, should_stop=stop_after_first)
    assert outcome.stopped_early and len(outcome.epoch_val_accuracy) == 1
    assert outcome.steps == -(-len(data.train) // 64)
    assert seen == [(1, outcome.epoch_val_accuracy)]
    never = train(build_model(BINARY), data.train, data.val, TrainingConfig(epochs=2, batch_size=64),
                  seed=0, should_stop=lambda e, c: False)
    assert not never.stopped_early and len(never.epoch_val_accuracy) == 2


def test_rotation_turns_an_image_about_its_centre_by_at_most_the_bound():
    from bitnas.evaluators.train import MAX_ROTATION_DEGREES, _rotate

    bar = torch.zeros(1, 1, 21, 21)
    bar[0, 0, 10, 3:18] = 1.0  # a horizontal bar through the centre
    turned = _rotate(bar.repeat(64, 1, 1, 1), torch.Generator().manual_seed(0))
    assert turned.shape == (64, 1, 21, 21)
    assert torch.allclose(turned[:, 0, 10, 10], torch.ones(64), atol=1e-5)  # the centre stays
    # the bar's ends move up or down by at most sin(bound) x 7 pixels
    rows = torch.arange(21, dtype=torch.float32)
    for image in turned[:, 0]:
        column = image[:, 17]
        if column.sum() > 0.05:
            centre = float((column * rows).sum() / column.sum())
            assert abs(centre - 10) <= 7 * math.sin(math.radians(MAX_ROTATION_DEGREES)) + 0.6
    assert not torch.allclose(turned, bar.repeat(64, 1, 1, 1))


def test_two_step_training_learns_with_real_weights_first_and_ends_binary():
    from bitnas.spaces.quantizers import ScaledSignWeights

    model, outcome, acc = _run(BINARY, two_step=True)
    kernels = [m for m, bits in quantized_kernels(model) if bits == 1]
    assert kernels and all(isinstance(m.kernel_quantizer, ScaledSignWeights) for m in kernels)
    assert outcome.steps == _run(BINARY)[1].steps and acc > 0.3  # chance is 0.1
    # the same network trained in one step ends elsewhere: the first half really trained other weights
    assert not torch.equal(model.state_dict()["stages.0.conv.weight"], _run(BINARY)[0].state_dict()["stages.0.conv.weight"])


def test_two_step_training_stopped_in_step_one_still_leaves_a_binary_network():
    from bitnas.spaces.quantizers import ScaledSignWeights

    torch.manual_seed(0)
    data = load_dataset("digits", 0)
    model = build_model(BINARY)
    outcome = train(model, data.train, data.val, TrainingConfig(epochs=4, batch_size=32, two_step=True), seed=0,
                    should_stop=lambda epoch, curve: epoch == 1)
    assert outcome.stopped_early
    assert all(isinstance(m.kernel_quantizer, ScaledSignWeights) for m, bits in quantized_kernels(model) if bits == 1)


def test_networks_with_binary_layers_are_retrained_with_the_binary_levers_and_say_so():
    from bitnas.evaluators.recipes import BINARY_RETRAINING, retraining_config

    base = TrainingConfig(epochs=10)
    binary, said = retraining_config(base, build_model(BINARY))
    assert all(getattr(binary, key) == value for key, value in BINARY_RETRAINING.items())
    assert binary.epochs == 10 and "binary retraining recipe" in said and "10 epochs" in said
    floating, said = retraining_config(base, build_model(FLOAT))
    assert floating == base and "study's recipe" in said


def _scripted_run(monkeypatch, curve, **overrides):
    """Train BINARY for real while validation reads `curve` (so which epoch is best is known), and
    snapshot the weights after every epoch."""
    import bitnas.evaluators.train as training

    scores = iter(curve)
    monkeypatch.setattr(training, "accuracy", lambda model, split: next(scores))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    data = load_dataset("digits", 0)
    model = build_model(BINARY)
    snapshots = []

    def snapshot(epoch, seen):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return False

    config = TrainingConfig(**{"epochs": len(curve), "batch_size": 32, "lr": 5e-3, "keep_best": True, **overrides})
    outcome = train(model, data.train, data.val, config, seed=0, should_stop=snapshot)
    return model, outcome, snapshots


def test_keep_best_returns_the_weights_of_the_best_validated_epoch(monkeypatch):
    model, outcome, snapshots = _scripted_run(monkeypatch, [0.5, 0.9, 0.7, 0.8])
    assert outcome.kept_epoch == 2 and outcome.val_accuracy == 0.9
    assert outcome.epoch_val_accuracy == (0.5, 0.9, 0.7, 0.8)  # the whole curve is still reported
    state = model.state_dict()
    assert all(torch.equal(state[k], snapshots[1][k]) for k in state)  # epoch 2's weights and BN statistics
    assert not torch.equal(state["stages.0.conv.weight"], snapshots[2]["stages.0.conv.weight"])


def test_keep_best_keeps_the_last_epoch_when_it_is_best_and_is_off_by_default(monkeypatch):
    model, outcome, _ = _scripted_run(monkeypatch, [0.5, 0.6, 0.9])
    assert outcome.kept_epoch == 3 and outcome.val_accuracy == 0.9
    model, outcome, _ = _scripted_run(monkeypatch, [0.5, 0.9, 0.6], keep_best=False)
    assert outcome.kept_epoch is None and outcome.val_accuracy == 0.6


def test_keep_best_skips_the_real_weight_half_of_two_step_training(monkeypatch):
    # Epoch 1 validates real-valued weights: its 0.99 is not the binary network's. Epoch 2 ends as
    # step two begins, validated with binary weights again: it counts.
    _, outcome, _ = _scripted_run(monkeypatch, [0.99, 0.5, 0.6, 0.7], two_step=True)
    assert outcome.kept_epoch == 4
    _, outcome, _ = _scripted_run(monkeypatch, [0.99, 0.8, 0.6, 0.7], two_step=True)
    assert outcome.kept_epoch == 2
