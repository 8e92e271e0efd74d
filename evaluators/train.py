"""A short, seeded training run and an accuracy measurement.

Two recipes, picked by the network (`recipe="auto"`):
- **binary** (any layer with weights or activations below 32 bits): Adam, linear warm-up then
  cosine decay over optimiser steps, no weight decay on the latent (real-valued) weights behind
  quantized kernels (decay pulls them towards zero, where their sign flips at random), 1-bit latent
  weights clipped to [-1, 1] after each step (beyond that the straight-through gradient is zero and
  a weight could never flip back), and the gradient norm clipped (sign STEs give spiky gradients).
  ReActNet and "How Do Adam and Training Strategies Help BNNs" (Liu et al., ICML'21) found Adam
  with no decay on binary weights far better than SGD for binary networks.
- **standard** (full precision): AdamW with decoupled weight decay on conv/linear weights, the
  same warm-up and cosine schedule.

The schedule is over optimiser steps, so fractional epochs (quick tests) mean what they say.
Seeded: the same seed gives the same accuracy to the last digit on CPU. Runs on CUDA when present.
Optional: a teacher for knowledge distillation (`distill.py`), augmentation (random shifts,
flips), and a `should_stop(epoch, curve)` callback for early stopping (`early_stopping.py`).
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
import torch.nn.functional as F
from torch import nn

from .data import Split
from .distill import distributional_loss
from .settings import TrainingConfig

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class TrainingOutcome:
    steps: int
    seconds: float
    final_loss: float
    epoch_val_accuracy: tuple[float, ...]
    recipe: str = "standard"
    stopped_early: bool = False
    device: str = "cpu"
    # `until_epochs` stopped the run before its end: what `resume` needs to go on (bytes of torch.save).
    checkpoint: bytes | None = None
    resumed_from: int = 0  # the step `resume` went on from (0: trained from scratch)
    # `keep_best`: the epoch (1-based) whose weights the model holds; None: the last step's.
    kept_epoch: int | None = None

    @property
    def val_accuracy(self) -> float | None:
        """The validation accuracy of the weights the model holds (the kept epoch's, else the last)."""
        if not self.epoch_val_accuracy:
            return None
        return self.epoch_val_accuracy[self.kept_epoch - 1] if self.kept_epoch else self.epoch_val_accuracy[-1]


def _bits(module: nn.Module, which: str) -> int:
    quantizer = getattr(module, which, None)
    return int(getattr(quantizer, "bits", 32)) if quantizer is not None else 32


def quantized_kernels(model: nn.Module) -> list[tuple[nn.Module, int]]:
    """(layer, weight bits) for every layer whose kernel passes through a quantizer below 32 bits."""
    return [(m, _bits(m, "kernel_quantizer")) for m in model.modules()
            if _bits(m, "kernel_quantizer") < 32 and isinstance(getattr(m, "weight", None), nn.Parameter)]


def is_quantized(model: nn.Module) -> bool:
    """True when some layer computes on weights or activations below 32 bits."""
    return any(_bits(m, "kernel_quantizer") < 32 or _bits(m, "input_quantizer") < 32 for m in model.modules())


def resolve_recipe(model: nn.Module, recipe: str) -> str:
    if recipe == "auto":
        return "binary" if is_quantized(model) else "standard"
    return recipe


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device is 'cuda' but torch sees no CUDA device")
    return torch.device(device)


def _optimiser(model: nn.Module, config: TrainingConfig, recipe: str) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe == "binary":
        # No decay at all: it would drag latent binary weights to zero, where their signs flip at
        # random, and the few real-valued weights (stem, head, shortcuts) are too few to overfit.
        return torch.optim.Adam(params, lr=config.lr)
    # Decay only conv/linear kernels, never BN scales, biases, thresholds or PReLU slopes.
    decayed = [p for p in params if p.dim() > 1]
    plain = [p for p in params if p.dim() <= 1]
    return torch.optim.AdamW([{"params": decayed, "weight_decay": config.weight_decay},
                              {"params": plain, "weight_decay": 0.0}], lr=config.lr)


def _warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


MAX_ROTATION_DEGREES = 10.0  # digits survive small rotations; a 6 turned 180 degrees is a 9


def _rotate(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image rotated about its centre by a uniform angle in +-MAX_ROTATION_DEGREES (bilinear, zero fill)."""
    n = images.shape[0]
    angles = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(MAX_ROTATION_DEGREES)
    cos, sin = torch.cos(angles), torch.sin(angles)
    zeros = torch.zeros(n)
    theta = torch.stack([torch.stack([cos, -sin, zeros], 1), torch.stack([sin, cos, zeros], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _augment(images: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Light augmentation: each image shifted by up to 1/8 of its side (zero padding); for
    `shift_rotate` also rotated a little, for `shift_flip` mirrored left-right with probability 1/2
    (not for digits: a mirrored 2 is no 2)."""
    if mode == "none":
        return images
    if mode == "shift_rotate":
        images = _rotate(images, generator)
    n, _, h, w = images.shape
    pad = max(1, h // 8)
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])
    if mode == "shift_flip":
        flip = torch.rand(n, generator=generator) < 0.5
        out[flip] = out[flip].flip(-1)
    return out


# The most images training's BatchNorm recalibration passes at once (memory: a batch's activations).
RECALIBRATION_BATCH = 512


def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> None:
    """Replace every BatchNorm's running mean/var by the exact statistics of `images` under the
    current weights (a cumulative average over batches), leaving everything else untouched."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or len(images) == 0:
        return
    was_training = model.training
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: every batch weighs the same
    device = next(model.parameters()).device
    model.train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size].to(device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)


# Evaluation's batch: per image, a forward pass on one CPU thread costs the same from 32 to 128
# images and about twice as much at 512-768 (a 1.5x-wide ReActNet, AVX2 and AVX-512 alike), where a
# batch's activations no longer fit in the cache and every operator's output is fresh memory. In
# training's per-epoch validation that was 1.9 s of a 29 s epoch. Eval-mode outputs do not depend
# on the batch.
EVALUATION_BATCH = 128


def accuracy(model: nn.Module, split: Split, batch_size: int = EVALUATION_BATCH) -> float:
    """Top-1 accuracy of `model` on `split`, in eval mode, on the model's device."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(split), batch_size):
            logits = model(split.images[start:start + batch_size].to(device))
            correct += int((logits.argmax(1).cpu() == split.labels[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / len(split)


class _RealWeights:
    """Step one of two-step training: the 1-bit layers' weight quantizers set aside (real-valued
    weights, inputs still binary) until `leave`."""

    def __init__(self, layers: list[nn.Module]):
        self.layers, self.quantizers = layers, [layer.kernel_quantizer for layer in layers]

    def enter(self) -> None:
        from bitnas.spaces.quantizers import FullPrecision

        for layer in self.layers:
            layer.kernel_quantizer = FullPrecision()

    def leave(self) -> None:
        for layer, quantizer in zip(self.layers, self.quantizers):
            layer.kernel_quantizer = quantizer


def _step(model: nn.Module, train_split: Split, batch: torch.Tensor, config: TrainingConfig,
          generator: torch.Generator, device: torch.device, teacher: nn.Module | None,
          optimiser: torch.optim.Optimizer, schedule, clipped: list, step: int) -> float:
    """One optimiser step on `batch`; returns its loss."""
    images = _augment(train_split.images[batch], config.augment, generator).to(device)
    labels = train_split.labels[batch].to(device)
    logits = model(images)
    if teacher is None:
        loss = F.cross_entropy(logits, labels)
    else:
        with torch.no_grad():
            soft = teacher(images)
        loss = config.distill_alpha * distributional_loss(logits, soft)
        if config.distill_alpha < 1.0:
            loss = loss + (1.0 - config.distill_alpha) * F.cross_entropy(logits, labels)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training diverged: loss is {loss.item()} at step {step}")
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimiser.step()
    schedule.step()
    if clipped:
        with torch.no_grad():
            for weight in clipped:
                weight.clamp_(-config.latent_clip, config.latent_clip)
    return loss.item()


def _checkpoint_bytes(model: nn.Module, optimiser, schedule, generator: torch.Generator, step: int,
                     order: torch.Tensor | None, position: int, curve: list[float]) -> bytes:
    """Everything a later call needs to go on exactly where this one stopped: the weights (taken
    after two-step's real-valued phase put the quantizers back, so they load into a freshly built
    network), the optimiser's moments, the schedule's position, the step, the data order of the
    epoch in progress and where in it, and the random generators' states."""
    buffer = io.BytesIO()
    torch.save({"version": CHECKPOINT_VERSION, "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(), "step": step,
                "order": order, "position": position, "curve": list(curve),
                "generator": generator.get_state(), "torch_rng": torch.get_rng_state()}, buffer)
    return buffer.getvalue()


def _read_checkpoint(data: bytes) -> dict:
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"training checkpoint version {state.get('version')!r}; this code reads {CHECKPOINT_VERSION}")
    return state


def train(model: nn.Module, train_split: Split, val_split: Split, config: TrainingConfig, *, seed: int,
          teacher: nn.Module | None = None,
          should_stop: Callable[[int, list[float]], bool] | None = None,
          step_guard: Callable[[], ContextManager] | None = None,
          until_epochs: float | None = None, resume: bytes | None = None) -> TrainingOutcome:
    """Train `model` in place for `config.epochs` (may be fractional); validate after each epoch.

    `teacher`: a trained network whose soft labels the student learns (distillation).
    `should_stop(epochs_done, val_curve)`: asked after each full epoch but the last; True ends
    training there (the outcome says `stopped_early`). The model ends on the CPU.
    `step_guard()`: a context entered around every optimiser step and every validation (the node's
    measurement slot: a latency measurement elsewhere on the node pauses training between steps).
    `until_epochs`: stop after this many epochs of the `config.epochs` run (an ASHA rung), validate
    there, and return a checkpoint in the outcome; the schedules stay those of the full run, so
    `resume` from that checkpoint continues the very same run: two calls that stop at e1 and then
    go on to e2 give the weights one call to e2 gives (tests/test_training_resume.py checks it).
    `config.keep_best`: the finished run's model holds the weights of its best validated epoch
    (`outcome.kept_epoch`), chosen among the epochs this call trained.
    """
    guard = step_guard or contextlib.nullcontext
    recipe = resolve_recipe(model, config.recipe)
    device = resolve_device(config.device)
    saved = _read_checkpoint(resume) if resume is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    total_steps = max(1, math.ceil(config.epochs * steps_per_epoch))
    stop_steps = total_steps if until_epochs is None else min(total_steps, max(1, math.ceil(until_epochs * steps_per_epoch)))
    step = int(saved["step"]) if saved is not None else 0
    binary_weights = [m for m, bits in quantized_kernels(model) if bits == 1]
    # Two-step training: real-valued weights until `switch_at`, then binary ones (a fresh schedule).
    switch_at = total_steps // 2 if config.two_step and binary_weights and total_steps >= 2 else 0
    real_weights = _RealWeights(binary_weights) if switch_at else None
    phase_steps = switch_at or total_steps
    warmup_steps = min(phase_steps // 4, int(round(config.warmup_epochs * steps_per_epoch)))

    def second_phase():  # step two's optimiser and schedule, from the weights step one learned
        rest = total_steps - switch_at
        optimiser = _optimiser(model, config, recipe)
        return optimiser, torch.optim.lr_scheduler.LambdaLR(optimiser, _warmup_cosine(rest, max(1, min(rest // 4, warmup_steps))))

    if real_weights and step < switch_at:
        real_weights.enter()
    if real_weights and step >= switch_at:  # resumed in step two
        optimiser, schedule = second_phase()
    else:
        optimiser = _optimiser(model, config, recipe)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, _warmup_cosine(phase_steps, max(1, warmup_steps)))
    order, position, curve = None, 0, []
    if saved is not None:
        optimiser.load_state_dict(saved["optimiser"])
        schedule.load_state_dict(saved["schedule"])
        generator.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        order, position, curve = saved["order"], int(saved["position"]), list(saved["curve"])
    clipped = [m.weight for m in binary_weights] if recipe == "binary" else []
    full_epochs = math.ceil(config.epochs)
    calibration = train_split.images[torch.randperm(len(train_split), generator=torch.Generator().manual_seed(seed))
                                     [:config.bn_recalibration]] if config.bn_recalibration > 0 else None

    def validate() -> float:
        with guard():
            if calibration is not None:
                # In one batch (up to RECALIBRATION_BATCH images): every layer's statistics are then
                # taken over inputs normalised with the whole set's statistics, as evaluation
                # normalises them. In batches of 128, a 1.5x-wide ReActNet after 22 of 24 epochs
                # validated 0.759 with the very weights that validate 0.964 recalibrated in one
                # batch of the same 512 images: the RSign after each BatchNorm turns a small error in a
                # channel's mean into many flipped activations.
                recalibrate_batchnorm(model, calibration, batch_size=RECALIBRATION_BATCH)
            return accuracy(model, val_split)

    # `keep_best`: the best epoch's weights so far, copied in memory (a few MB at most). Epochs
    # validated inside two-step's first half do not count: their weights are real-valued, not the
    # network's (the epoch that ends where step two begins is validated binary, and counts).
    best: dict = {}

    def remember(accuracy_now: float) -> None:
        if config.keep_best and not (real_weights and step < switch_at) \
                and accuracy_now > best.get("accuracy", -1.0):
            best.update(accuracy=accuracy_now, epoch=len(epoch_accuracies),
                        state={k: v.detach().clone() for k, v in model.state_dict().items()})

    resumed_from = step
    model.train()
    started = time.perf_counter()
    loss_value, stopped, checkpoint = float("nan"), False, None
    # `curve` holds the validations at epoch ends (and at the end of the whole run), the same
    # whether the run was cut into rungs or not; a rung that ends inside an epoch adds its own
    # validation to the outcome only.
    epoch_accuracies = curve
    try:
        while step < stop_steps:
            if order is None:  # a new epoch
                order, position = torch.randperm(len(train_split), generator=generator), 0
            while position < len(order) and step < stop_steps:
                batch = order[position:position + config.batch_size]
                position += config.batch_size
                with guard():
                    loss_value = _step(model, train_split, batch, config, generator, device, teacher, optimiser,
                                       schedule, clipped, step)
                step += 1
                if real_weights and step == switch_at:  # step two: binary weights, from the weights step one learned
                    real_weights.leave()
                    optimiser, schedule = second_phase()
            if position >= len(order) or step >= total_steps:  # an epoch (or the run) ended
                order = None
                epoch_accuracies.append(validate())
                remember(epoch_accuracies[-1])
                if should_stop is not None and step < total_steps and len(epoch_accuracies) < full_epochs \
                        and should_stop(len(epoch_accuracies), list(epoch_accuracies)):
                    stopped = True
                    break
    finally:
        if real_weights and step < switch_at:  # stopped (or failed) in step one: the model stays binary
            real_weights.leave()
    outcome_curve = list(epoch_accuracies)
    if until_epochs is not None and step < total_steps:
        # A rung's end: its accuracy for the scheduler, and where to go on from.
        checkpoint = _checkpoint_bytes(model, optimiser, schedule, generator, step, order, position, epoch_accuracies)
        if order is not None:  # inside an epoch: validated here, not part of the run's curve
            if real_weights and step < switch_at:
                real_weights.enter()
            outcome_curve.append(validate())
            if real_weights and step < switch_at:
                real_weights.leave()
    kept_epoch = None
    if best and (step >= total_steps or stopped):  # a finished run, not a rung to go on from
        kept_epoch = best["epoch"]
        if kept_epoch != len(epoch_accuracies):
            model.load_state_dict(best["state"])
    model.to("cpu")
    if teacher is not None:
        teacher.to("cpu")
    return TrainingOutcome(step, time.perf_counter() - started, loss_value, tuple(outcome_curve),
                           recipe, stopped, device.type, checkpoint, resumed_from, kept_epoch)
