"""The training recipe a network with 1-bit layers gets when it is trained for real: retrained for
export (`bitnas export --epochs N`), or fine-tuned after pruning. Search trials keep their short
budget's settings; these levers pay only over many epochs (benchmarks/recipe.py measures each).
"""

from __future__ import annotations

from torch import nn

from .settings import TrainingConfig
from .train import quantized_kernels

# Chosen by `python benchmarks/recipe.py` on mnist5k (reactnet_small, 12 epochs, validation accuracy):
# two-step +1.5 points, the teacher +1.2 (it needs `--distill`), shifts and rotations +0.9, an 8-bit
# stem -2.5, twice the epochs +3.6 (that is the user's `--epochs`). All that paid, together at 24
# epochs, reached less than 24 epochs alone (0.945 vs 0.971), so only the largest gain at equal
# epochs is on by default until the levers are measured in combination.
BINARY_RETRAINING = {"two_step": True}


def has_binary_layers(model: nn.Module) -> bool:
    return any(bits == 1 for _, bits in quantized_kernels(model))


def retraining_config(training: TrainingConfig, model: nn.Module) -> tuple[TrainingConfig, str]:
    """`training` with the binary retraining levers where `model` has 1-bit layers, and a line
    saying what the weights were trained with (for the model card)."""
    if not has_binary_layers(model):
        return training, f"the study's recipe ({training.recipe}), {training.epochs:g} epochs"
    levers = {key: value for key, value in BINARY_RETRAINING.items() if getattr(training, key) != value}
    config = training.model_copy(update=levers)
    chosen = ", ".join(f"{key}={value}" for key, value in BINARY_RETRAINING.items())
    return config, (f"bitnas's binary retraining recipe (Adam, latent weights clipped, no decay; {chosen}), "
                    f"{config.epochs:g} epochs")


__all__ = ["BINARY_RETRAINING", "has_binary_layers", "retraining_config"]
