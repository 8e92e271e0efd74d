"""Zero-cost proxies: scores of an untrained network that might predict its trained accuracy.

- `naswot` (Mellor et al., ICML'21, "Neural Architecture Search without Training"): each input's
  binary code of which units fire, over every ReLU and every 1-bit activation (a sign is already a
  binary code, so binary networks fit it naturally); K[i, j] = number of units on which inputs i and
  j agree; score = log |det K|. Networks that tell inputs apart score higher.
- `synflow` (Tanaka et al., NeurIPS'20): with every parameter replaced by its absolute value and an
  all-ones input, R = sum of the outputs; score = sum |theta * dR/dtheta|. Data-free. Run in float64
  and eval mode (BN as its initial identity), on a copy.
- `grad_norm` (Abdelfattah et al., ICLR'21): sum over parameters of the L2 norm of the
  cross-entropy gradient on one batch.
- `params` and `bops`: the baselines every proxy must beat (ZiCo, ICLR'23: few do); from the cost
  counter. No proxy has been validated on 1-bit networks (docs/references.md, "Zero-cost proxies").

All are "higher is better" except that nothing says a bigger network is better: the benchmark
(benchmarks/proxies.py) reports each one's Spearman rho against trained accuracy.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

PROXIES = ("naswot", "synflow", "grad_norm", "params", "bops")


def _binary_units(model: nn.Module) -> list[nn.Module]:
    """Modules whose outputs are on/off units: ReLUs, and 1-bit activation quantizers."""
    units = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    for module in model.modules():
        quantizer = getattr(module, "input_quantizer", None)
        if quantizer is not None and getattr(quantizer, "bits", 32) == 1:
            units.append(quantizer)
    return units


def naswot(model: nn.Module, images: torch.Tensor) -> float:
    """log |det K| of the inputs' agreement matrix over all binary units (one forward pass)."""
    codes: list[torch.Tensor] = []

    def record(_module, _inputs, output):
        codes.append((output > 0).flatten(1).double())

    hooks = [unit.register_forward_hook(record) for unit in _binary_units(model)]
    was_training = model.training
    model.train()  # as the paper: BN uses the batch's statistics at initialisation
    try:
        with torch.no_grad():
            model(images)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    if not codes:
        return float("nan")
    c = torch.cat(codes, dim=1)
    agreement = c @ c.T + (1 - c) @ (1 - c).T
    return float(torch.linalg.slogdet(agreement)[1])


def synflow(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """sum |theta * dR/dtheta| with |theta| everywhere and an all-ones input (data-free)."""
    probe = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for param in probe.parameters():
            param.abs_()
    probe.zero_grad(set_to_none=True)
    output = probe(torch.ones(1, *input_shape, dtype=torch.float64))
    output.sum().backward()
    total = sum(float((p.detach() * p.grad).abs().sum()) for p in probe.parameters() if p.grad is not None)
    return total


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Sum of per-parameter L2 norms of the cross-entropy gradient on one batch."""
    probe = copy.deepcopy(model).train()
    probe.zero_grad(set_to_none=True)
    F.cross_entropy(probe(images), labels).backward()
    return sum(float(p.grad.norm()) for p in probe.parameters() if p.grad is not None)


def compute_proxies(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    names: tuple[str, ...] = PROXIES) -> dict[str, float]:
    """The named proxies of an untrained `model` on one batch (`images`, `labels`)."""
    from bitnas.spaces import count_costs

    scores: dict[str, float] = {}
    if "naswot" in names:
        scores["naswot"] = naswot(model, images)
    if "synflow" in names:
        scores["synflow"] = synflow(model, tuple(images.shape[1:]))
    if "grad_norm" in names:
        scores["grad_norm"] = grad_norm(model, images, labels)
    if "params" in names or "bops" in names:
        costs = count_costs(model, tuple(images.shape[1:])).totals()
        for name in ("params", "bops"):
            if name in names:
                scores[name] = float(costs[name])
    return scores


@dataclass(frozen=True)
class ProxyPrefilter:
    """Skip training for a network whose proxy scores below `threshold` (the driver sets it to the
    `bottom_fraction` quantile of earlier trials' scores; None: score only, never skip)."""

    proxy: str = "naswot"
    threshold: float | None = None
    batch: int = 64

    def score(self, model: nn.Module, split, seed: int) -> float:
        """The proxy on a seeded batch of `split`, computed on a copy (the model's BN statistics and
        weights stay as they were)."""
        order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:self.batch]
        return compute_proxies(copy.deepcopy(model), split.images[order], split.labels[order], (self.proxy,))[self.proxy]

    def rejects(self, score: float) -> bool:
        return self.threshold is not None and math.isfinite(score) and score < self.threshold
