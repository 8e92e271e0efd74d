"""The one cost counter: params, size in bits, BOPs, FLOPs, OPs, ACE, low-bit MACs and memory
traffic, per layer and in total.

Conventions follow Bi-Real Net / ReActNet / PokeBNN (docs/references.md, "Cost accounting"):
- a MAC of a conv or linear layer is counted once (multiply-accumulate, not two FLOPs);
- FLOPs are the MACs of full-precision layers (32-bit weights and activations), BOPs the MACs
  with 1-bit weights *and* 1-bit activations;
- OPs = BOPs / 64 + FLOPs, the papers' formula, generalised to the other widths by the same
  argument: a MAC of w-bit weights and a-bit activations counts w x a / 64 OPs (an int8 MAC
  1, a 2-bit MAC 1/16); for binary and float networks this is exactly the papers' figure;
- ACE (PokeBNN) = sum of MACs x weight bits x activation bits: a binary MAC 1, int8 64, fp32 1024;
- MACs at 2/4/8 bits are reported apart, keyed by the wider operand (W2A1 counts as 2-bit);
- memory traffic = what conv/linear layers read per inference: their weights at the weight
  width plus their input activations at the input width (no cache, no fusion assumed);
- BatchNorm, pooling, additions, activations, shifts and squeeze gates' sigmoids are not
  counted, as in the papers.
Every weight counts at its quantizer's width in `size_bits`; all other parameters at 32 bits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .builder import build_model
from .genotype import Genotype


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kernel: int
    groups: int
    weight_bits: int
    input_bits: int
    macs: int
    params: int
    size_bits: int
    memory_bits: int = 0  # weights at their width + input activations at theirs

    @property
    def ace(self) -> int:
        return self.macs * self.weight_bits * self.input_bits

    @property
    def ops(self) -> float:
        if self.weight_bits == 32 and self.input_bits == 32:
            return float(self.macs)
        return self.macs * self.weight_bits * self.input_bits / 64


@dataclass(frozen=True)
class CostReport:
    layers: tuple[LayerCost, ...]
    params: int
    size_bits: int
    macs_by_bits: dict[str, int] = field(default_factory=dict)

    @property
    def bops(self) -> int:
        return sum(l.macs for l in self.layers if l.weight_bits == 1 and l.input_bits == 1)

    @property
    def flops(self) -> int:
        return sum(l.macs for l in self.layers if l.weight_bits == 32 and l.input_bits == 32)

    @property
    def ops(self) -> float:
        return sum(l.ops for l in self.layers)

    @property
    def ace(self) -> int:
        return sum(l.ace for l in self.layers)

    @property
    def macs(self) -> int:
        return sum(l.macs for l in self.layers)

    def low_bit_macs(self, bits: int) -> int:
        """MACs whose wider operand has `bits` bits (2, 4 or 8), neither operand 32-bit."""
        return sum(l.macs for l in self.layers
                   if max(l.weight_bits, l.input_bits) == bits and l.weight_bits < 32 and l.input_bits < 32)

    @property
    def memory_bits(self) -> int:
        return sum(l.memory_bits for l in self.layers)

    @property
    def size_kb(self) -> float:
        return self.size_bits / 8 / 1024

    def totals(self) -> dict[str, float]:
        return {"params": self.params, "size_bits": self.size_bits, "size_kb": self.size_kb,
                "bops": self.bops, "flops": self.flops, "ops": self.ops, "ace": self.ace, "macs": self.macs,
                "macs_2bit": self.low_bit_macs(2), "macs_4bit": self.low_bit_macs(4),
                "macs_8bit": self.low_bit_macs(8), "memory_bits": self.memory_bits,
                "memory_kb": self.memory_bits / 8 / 1024}

    def not_fully_binary(self) -> LayerCost | None:
        """The first hidden conv that is not 1-bit in both weights and activations; None when the
        network is fully binary: every conv after the stem (shortcuts and a head conv included)
        binary, the stem and the classifier free to be full precision or 8 bit."""
        convs = [layer for layer in self.layers if layer.kind == "conv"]
        return next((layer for layer in convs[1:] if (layer.weight_bits, layer.input_bits) != (1, 1)), None)

    def rows(self) -> list[dict]:
        return [{**asdict(layer), "ace": layer.ace, "ops": layer.ops} for layer in self.layers]

    def table(self) -> str:
        """The per-layer table as aligned text, one line per conv/linear layer."""
        header = ("layer", "kind", "in", "out", "k", "g", "W", "A", "MACs", "params", "bits")
        lines = [header] + [
            (l.name, l.kind, "x".join(map(str, l.in_shape)), "x".join(map(str, l.out_shape)), str(l.kernel),
             str(l.groups), str(l.weight_bits), str(l.input_bits), f"{l.macs:,}", f"{l.params:,}", f"{l.size_bits:,}")
            for l in self.layers]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        return "\n".join("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in
                                    enumerate(zip(line, widths))).rstrip() for line in lines)


def _bits(module: nn.Module, attribute: str) -> int:
    return int(getattr(module, attribute, 32))


def count_costs(model: nn.Module, input_shape: tuple[int, int, int]) -> CostReport:
    """Count the costs of `model` at batch 1 by tracing one forward pass with hooks."""
    layers: list[LayerCost] = []
    counted_params: set[int] = set()

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            weight = module.weight
            if isinstance(module, nn.Conv2d):
                kernel = module.kernel_size[0] * module.kernel_size[1]
                per_output = kernel * module.in_channels // module.groups
                macs = output[0].numel() * per_output
                kind, k, groups = "conv", module.kernel_size[0], module.groups
            else:
                macs = module.in_features * module.out_features
                kind, k, groups = "linear", 0, 1
            weight_bits, input_bits = _bits(module, "weight_bits"), _bits(module, "input_bits")
            params = weight.numel() + (module.bias.numel() if module.bias is not None else 0)
            size = weight.numel() * weight_bits + (module.bias.numel() * 32 if module.bias is not None else 0)
            layers.append(LayerCost(
                name=name, kind=kind, in_shape=tuple(inputs[0].shape[1:]), out_shape=tuple(output.shape[1:]),
                kernel=k, groups=groups, weight_bits=weight_bits, input_bits=input_bits,
                macs=int(macs), params=int(params), size_bits=int(size),
                memory_bits=int(weight.numel() * weight_bits + inputs[0][0].numel() * input_bits),
            ))
        return hook

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(record(name)))
            counted_params.add(id(module.weight))
            if module.bias is not None:
                counted_params.add(id(module.bias))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    # Parameters outside conv/linear layers (BN affine, thresholds) are stored in 32 bits.
    other = [p for p in model.parameters() if id(p) not in counted_params]
    other_params = sum(p.numel() for p in other)
    params = sum(l.params for l in layers) + other_params
    size_bits = sum(l.size_bits for l in layers) + 32 * other_params
    macs_by_bits: dict[str, int] = {}
    for layer in layers:
        key = f"w{layer.weight_bits}a{layer.input_bits}"
        macs_by_bits[key] = macs_by_bits.get(key, 0) + layer.macs
    return CostReport(tuple(layers), params, size_bits, macs_by_bits)


def genotype_costs(genotype: Genotype) -> CostReport:
    """Costs of the network a genotype describes (builds it once)."""
    model = build_model(genotype)
    return count_costs(model, (genotype.in_channels, genotype.input_size, genotype.input_size))
