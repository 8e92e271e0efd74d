"""The exported model's README.md: what it is, how well it does, what it costs, how to run it."""

from __future__ import annotations

from pathlib import Path

import optuna

from bitnas.evaluators import Dataset
from bitnas.spaces import Genotype, genotype_costs


def write_model_card(path: Path, *, study: optuna.Study, trial: optuna.trial.FrozenTrial, genotype: Genotype,
                     metrics: dict, dataset: Dataset, onnx_check) -> None:
    costs = genotype_costs(genotype)
    latency = trial.user_attrs.get("latency", {})
    binary_macs = costs.bops
    all_macs = sum(layer.macs for layer in costs.layers)
    layers = "\n".join(
        f"| {l.name} | {l.kind}{f' {l.kernel}x{l.kernel}' if l.kernel else ''} | {'x'.join(map(str, l.out_shape))} | w{l.weight_bits}/a{l.input_bits} "
        f"| {l.macs:,} | {l.params:,} |" for l in costs.layers)
    text = f"""# bitnas model: study `{study.study_name}`, trial {trial.number}

`{genotype.short()}`

Genotype hash `{genotype.hash()}`. {binary_macs / all_macs:.0%} of multiply-accumulates are binary (1-bit weights and activations).

## Metrics

| metric | value |
|---|---|
| test accuracy ({dataset.name}, {len(dataset.test)} held-out images, never seen by the search) | {metrics['test_accuracy']:.4f} |
| validation accuracy (what the search optimised) | {metrics.get('val_accuracy', float('nan')):.4f} |
| latency, batch 1, median / p90 | {latency.get('median_ms', float('nan')):.3f} / {latency.get('p90_ms', float('nan')):.3f} ms |
| energy per inference | {metrics.get('energy_uj', float('nan')):.4f} uJ |
| parameters | {costs.params:,} |
| model size (each weight at its bit width) | {costs.size_kb:.1f} KiB |
| BOPs / FLOPs / OPs | {costs.bops:.4g} / {costs.flops:.4g} / {costs.ops:.4g} |

Latency was measured on target `{latency.get('target', 'torch-cpu')}` with `{latency.get('engine', 'unknown')}`
on {latency.get('cpu', 'unknown CPU')} ({latency.get('threads', '?')} thread(s), median of {latency.get('runs', '?')} runs,
torch {latency.get('torch_version', '?')}).
Energy is {trial.user_attrs.get('energy_source', 'analytic')}: MACs per layer times Horowitz (ISSCC 2014, 45 nm)
energy per MAC at the layer's bit widths; memory traffic is not included.

## Layers

| layer | kind | output | bits (weight/activation) | MACs | params |
|---|---|---|---|---|---|
{layers}

## Files

- `genotype.json`: the architecture; `bitnas.spaces.build_model(Genotype.from_json(...))` rebuilds it.
- `weights.safetensors`: the trained weights (latent full-precision weights; binarised in the forward pass).
- `model.onnx`: input `image` (N x {dataset.in_channels} x {dataset.input_size} x {dataset.input_size}, normalised as in training), output `logits`.
  Checked in onnxruntime on {onnx_check.images} test images: same class on {onnx_check.same_class}, max |logit difference| {onnx_check.max_abs_diff:.2g}.

```python
import onnxruntime
session = onnxruntime.InferenceSession("model.onnx")
logits = session.run(["logits"], {{"image": images}})[0]
```
"""
    path.write_text(text)
