"""A short, seeded training run and an accuracy measurement.

Adam with a cosine schedule: binary networks train far better with Adam than with SGD
(ReActNet, "How Do Adam and Training Strategies Help BNNs"), and the schedule is over optimiser
steps so that fractional epochs (used by quick tests) mean what they say.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import Split


@dataclass(frozen=True)
class TrainingConfig:
    epochs: float = 1.0
    batch_size: int = 64
    lr: float = 2e-3


@dataclass(frozen=True)
class TrainingOutcome:
    steps: int
    seconds: float
    final_loss: float
    epoch_val_accuracy: tuple[float, ...]


def accuracy(model: nn.Module, split: Split, batch_size: int = 512) -> float:
    """Top-1 accuracy of `model` on `split`, in eval mode."""
    was_training = model.training
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(split), batch_size):
            logits = model(split.images[start:start + batch_size])
            correct += int((logits.argmax(1) == split.labels[start:start + batch_size]).sum())
    model.train(was_training)
    return correct / len(split)


def train(model: nn.Module, train_split: Split, val_split: Split, config: TrainingConfig, *, seed: int) -> TrainingOutcome:
    """Train `model` in place for `config.epochs` (may be fractional); validate after each epoch."""
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = math.ceil(len(train_split) / config.batch_size)
    total_steps = max(1, math.ceil(config.epochs * steps_per_epoch))
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=total_steps)
    model.train()
    started = time.perf_counter()
    step, loss_value, epoch_accuracies = 0, float("nan"), []
    while step < total_steps:
        order = torch.randperm(len(train_split), generator=generator)
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            loss = F.cross_entropy(model(train_split.images[batch]), train_split.labels[batch])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training diverged: loss is {loss.item()} at step {step}")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            loss_value = loss.item()
            if step >= total_steps:
                break
        epoch_accuracies.append(accuracy(model, val_split))
    return TrainingOutcome(step, time.perf_counter() - started, loss_value, tuple(epoch_accuracies))
