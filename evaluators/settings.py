"""Every setting an evaluation reads, declared once, with one default, and no torch.

The search config (`bitnas.search.config`) is made of these sections, and the request a worker
receives (`EvalRequest`) carries the same objects, so a default can never differ between the
YAML file, the driver and the worker. Frozen pydantic models: validated on construction,
hashable (the dataset and teacher caches key on them) and picklable for Ray.
"""

from __future__ import annotations

from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Where latency is measured, and what the figure then means (the search summary prints it).
LATENCY_TARGET_DESCRIPTIONS = {
    "cpu": "this CPU with the native engine (1/2-bit popcount, 4/8-bit int8 kernels, fp32 glue native; "
           "other fp32 layers in torch)",
    "torch-cpu": "torch on this CPU (binary layers simulated in fp32)",
    "torch-cuda": "torch on CUDA (binary layers simulated in fp32)",
    "onnxruntime": "onnxruntime on this CPU (binary layers simulated in fp32)",
}
LATENCY_TARGETS = tuple(LATENCY_TARGET_DESCRIPTIONS)


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataSettings(Settings):
    """How images are read: resized to `image_size` (None keeps their native size) and normalised
    (`per_channel`: mean/std of the training split per channel; `none`: pixels scaled to [0, 1])."""

    image_size: int | None = Field(None, ge=4, le=1024)
    normalise: Literal["per_channel", "none"] = "per_channel"


class DataOptions(DataSettings):
    """DataSettings plus where the images are (`path`, for cifar10 / imagefolder): what a loader needs."""

    path: str | None = None


class TrainingConfig(Settings):
    """One trial's training (evaluators/train.py documents the two recipes)."""

    epochs: float = Field(1.0, gt=0, le=1000)
    batch_size: int = Field(32, ge=1, le=65536)
    lr: float = Field(5e-3, gt=0, le=10)
    # auto: the binary recipe (Adam, no decay, latent weights clipped) for networks with quantized
    # layers, the standard one (AdamW with decay) for full-precision ones.
    recipe: Literal["auto", "binary", "standard"] = "auto"
    warmup_epochs: float = Field(0.1, ge=0, le=100)     # linear warm-up, then cosine to zero
    weight_decay: float = Field(5e-5, ge=0, le=10)       # standard recipe only, on conv/linear kernels
    grad_clip: float = Field(5.0, ge=0, le=1e6)         # max gradient norm; 0 turns it off
    latent_clip: float = Field(1.0, gt=0, le=1e6)       # 1-bit latent weights kept in [-clip, clip]
    # shift: up to 1/8 of the side; shift_rotate: and up to +-10 degrees (digits); shift_flip: and mirrored
    augment: Literal["none", "shift", "shift_rotate", "shift_flip"] = "none"
    # ReActNet's two-step training for networks with 1-bit weights: the first half of the steps with
    # binary activations and real-valued weights, the second half with both binary, each half with
    # its own warm-up and cosine schedule (benchmarks/recipe.py measures what it gives).
    two_step: bool = False
    # Before each validation, BatchNorm's running statistics are recomputed on this many training
    # images under the current weights (0: off). In binary networks signs flip all through training,
    # so the running averages describe a mix of past networks: measured on bireal_small, validation
    # accuracy after epoch 2 was 0.15 with them and 0.75 recalibrated (benchmarks/recipe.py). The
    # images pass in one batch of up to 512 (train.RECALIBRATION_BATCH says why).
    bn_recalibration: int = Field(512, ge=0, le=1_000_000)
    # Return the weights of the epoch that validated best instead of the last epoch's (the first of
    # equals; the model is chosen on the validation split, the test split stays untouched). A fully binary network's
    # validation accuracy can fall 10-20 points in the last epochs of a long run and not come back
    # (a 1.5x-wide ReActNet at 24 epochs: 0.960 after epoch 17, 0.835 at the end; the same with
    # PyTorch's own RPReLU), so retraining for export turns it on (evaluators/recipes.py). Off for
    # search trials, whose accuracy is the last epoch's.
    keep_best: bool = False
    # Distil from a full-precision teacher trained once per (dataset, seed, data options, epochs) and
    # cached under <results>/teachers/ (ReActNet's distributional loss).
    distill: bool = False
    distill_alpha: float = Field(1.0, ge=0, le=1)       # alpha * distributional + (1 - alpha) * cross-entropy
    teacher_epochs: float = Field(12.0, gt=0, le=1000)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class SupernetConfig(Settings):
    """`evaluation: supernet`: the weight-sharing supernet's training (evaluators/supernet.py
    says how and why) and how each sampled network is scored from it."""

    epochs: float = Field(4.0, gt=0, le=1000)             # passes over the training split
    random_subnets: int = Field(2, ge=0, le=64)           # per step, besides the largest and the smallest
    inplace_distillation: bool = True                     # subnets learn the largest network's soft labels
    bn_images: int = Field(512, ge=1, le=1_000_000)       # BatchNorm recalibration per subnet, training images
    # Optimiser steps each subnet takes from its shared weights before it is validated (the training
    # recipe, warm-up off). Measured on 30 default-space networks against 2 epochs from scratch
    # (benchmarks/supernet_fidelity.py): Kendall tau with 25 steps 0.83 / 0.90 / 0.87 from supernets
    # of 2 / 4 / 6 epochs, 0.41 / 0.54 / 0.66 without them; the same 25 steps from a random
    # initialisation gave 0.83. The steps carry most of the ranking; the shared weights add a little
    # (a warm start), and 4 epochs keeps the supernet's training near 90 s on 2 cores.
    finetune_steps: int = Field(25, ge=0, le=100_000)


class LatencyConfig(Settings):
    """How latency is measured: batch 1, `warmup` runs, then the median and p90 of `runs` runs on
    `threads` threads (docs/references.md, "Latency measurement")."""

    runs: int = Field(50, ge=30, le=100_000)
    warmup: int = Field(5, ge=0, le=10_000)
    threads: int = Field(1, ge=1, le=1024)
    # `cpu` is the packed binary engine; `torch-cpu` / `torch-cuda` / `onnxruntime` time the model
    # with binary layers simulated in fp32 (evaluators/latency.py).
    target: Literal[LATENCY_TARGETS] = "cpu"  # type: ignore[valid-type]
    # measure: every network end to end on the target; predict: the sum of its parts' latencies from
    # a per-node lookup table (each distinct part timed once), for clusters where the target device
    # is scarce (benchmarks/predictor.py says how close it comes). Trials record which one they got.
    mode: Literal["measure", "predict"] = "measure"

    @model_validator(mode="after")
    def _predictable(self) -> LatencyConfig:
        if self.mode == "predict" and (self.target not in ("cpu", "torch-cpu") or self.threads != 1):
            raise ValueError("latency mode 'predict' needs target cpu or torch-cpu on 1 thread (its table "
                             "times parts on one thread)")
        return self


class EarlyStoppingRule(Settings):
    """Stop a trial whose validation accuracy after an epoch is below the `percentile` of finished
    trials' accuracy after the same epoch (evaluators/early_stopping.py explains why)."""

    enabled: bool = True
    grace_epochs: int = Field(1, ge=1, le=1000)       # never stop before this many epochs
    min_trials: int = Field(4, ge=1, le=100_000)      # finished peers that must have reached an epoch
    percentile: float = Field(50.0, gt=0, lt=100)     # stop below this percentile of the peers

    def should_stop(self, epoch: int, curve: Sequence[float], peer_curves: Sequence[Sequence[float]]) -> bool:
        """True when a trial with validation `curve` (one value per epoch done, `epoch` of them)
        should stop, judged against the curves of finished trials."""
        import numpy as np

        if not self.enabled or epoch < self.grace_epochs or len(curve) < epoch:
            return False
        peers = [c[epoch - 1] for c in peer_curves if len(c) >= epoch]
        if len(peers) < self.min_trials:
            return False
        return float(curve[epoch - 1]) < float(np.percentile(peers, self.percentile))

    def callback(self, peer_curves: Sequence[Sequence[float]]):
        """`should_stop(epoch, curve)` for `train`, bound to these peers."""
        frozen = [tuple(c) for c in peer_curves]
        return lambda epoch, curve: self.should_stop(epoch, curve, frozen)
