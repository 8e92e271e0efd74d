"""The training recipe a network with 1-bit layers gets when it is trained for real: retrained for
export (`bitnas export --epochs N`), or fine-tuned after pruning. Search trials keep their short
budget's settings; these levers pay only over many epochs (benchmarks/recipe.py measures each).
"""

from __future__ import annotations

from torch import nn

from .settings import TrainingConfig
from .train import quantized_kernels

# Chosen by measurement on mnist5k (reactnet_small; benchmarks/recipe.py and a follow-up at 24 epochs,
# validation accuracy): at 12 epochs two-step +1.5 points, the teacher +1.2 (`--distill`), shifts and
# rotations +0.9, an 8-bit stem -2.5, and twice the epochs +3.6 (0.971). At 24 epochs two-step cost
# 1.0 point (0.961) and all levers together 2.6 (0.945): what pays is the budget, the user's
# `--epochs`, so no lever is switched on until one is shown to pay on top of a long schedule.
# What is switched on is the optimiser setting every figure of benchmarks/recipe.py was measured
# with (a fully binary 1.5x-wide ReActNet: 0.9747 test after 24 epochs, its float twin 0.9813):
# the study's own lr and batch are sized for one-epoch trials.
# And the weights of the epoch that validated best are kept, not the last epoch's: a long binary run
# can lose 10-20 points of validation accuracy in its last epochs (settings.py, `keep_best`).
BINARY_RETRAINING: dict = {"lr": 2e-3, "batch_size": 64, "keep_best": True}


def has_binary_layers(model: nn.Module) -> bool:
    return any(bits == 1 for _, bits in quantized_kernels(model))


def retraining_config(training: TrainingConfig, model: nn.Module) -> tuple[TrainingConfig, str]:
    """`training` with the binary retraining levers where `model` has 1-bit layers, and a line
    saying what the weights were trained with (for the model card)."""
    if not has_binary_layers(model):
        return training, f"the study's recipe ({training.recipe}), {training.epochs:g} epochs"
    levers = {key: value for key, value in BINARY_RETRAINING.items() if getattr(training, key) != value}
    config = training.model_copy(update=levers)
    chosen = "; " + ", ".join(f"{key}={value}" for key, value in BINARY_RETRAINING.items()) if BINARY_RETRAINING else ""
    return config, (f"bitnas's binary retraining recipe (Adam, warm-up and cosine, latent weights clipped, no "
                    f"decay{chosen}), {config.epochs:g} epochs")


__all__ = ["BINARY_RETRAINING", "has_binary_layers", "retraining_config"]
