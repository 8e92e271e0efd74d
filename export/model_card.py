"""The exported model's README.md: what it is, how it was chosen, how well it does, what it costs
(per layer, with energy), where its latency was measured, and how to run each file."""

from __future__ import annotations

from pathlib import Path

from bitnas.evaluators import Dataset
from bitnas.evaluators.energy import estimate_energy
from bitnas.spaces import Genotype, genotype_costs

from .packed_model import PACKED_FILE


def _latency_section(latency: dict, energy_source: str) -> str:
    env = latency.get("environment") or {}
    versions = ", ".join(f"{k} {v}" for k, v in sorted((env.get("versions") or {}).items()))
    flags = ", ".join(env.get("cpu_flags") or []) or "unknown"
    return (f"Latency was measured on target `{latency.get('target', 'torch-cpu')}` with "
            f"`{latency.get('engine', 'unknown')}`: batch 1, {latency.get('threads', '?')} thread(s), median of "
            f"{latency.get('runs', '?')} runs after warm-up.\n\n"
            f"| environment | |\n|---|---|\n| CPU | {latency.get('cpu', 'unknown')} |\n| SIMD flags | {flags} |\n"
            f"| logical CPUs / affinity | {env.get('logical_cpus', '?')} / {env.get('cpu_affinity', '?')} |\n"
            f"| host | {latency.get('host', '?')} |\n| libraries | {versions or latency.get('torch_version', '?')} |\n\n"
            f"Energy source: `{energy_source}`. An analytic estimate is, per layer, its multiply-accumulates times "
            "the energy of one MAC at the layer's bit widths (default profile: Horowitz, ISSCC 2014, 45 nm: 4.6 pJ "
            "per fp32 MAC, 0.23 pJ per int8 MAC, scaled by weight x activation bits below 8) plus its memory "
            "traffic as the profile prices it; the layer table below shows it per layer. Run `bitnas bench .` to "
            "measure this model's latency on your machine.")


def _agreement_note(onnx_check, packed_check: dict | None) -> str:
    """Why exported formats may differ from torch in the last digits, when they do."""
    checks = [onnx_check, *([packed_check["agreement"]] if packed_check else [])]
    if all(check.max_abs_diff == 0 for check in checks):
        return ""
    return ("  The formats compute the same network; quantized layers round activations to steps, and a value on "
            "a rounding boundary may land one step apart in two runtimes (float operation order), so logits are "
            "compared within a tolerance and classes on every image that is not a near-tie.\n")


def _registry_section(name: str | None, dataset: Dataset) -> str:
    """How to load and serve the model once `--register NAME` has put it in the MLflow registry."""
    model = f"models:/{name or 'NAME'}/latest"
    shape = f"N x {dataset.in_channels} x {dataset.input_size} x {dataset.input_size}"
    registered = (f"Exported with `--register {name}`, this folder is registered in MLflow" if name else
                  "With `bitnas export ... --register NAME` this folder is registered in MLflow")
    return f"""## In the MLflow model registry

{registered}: a pyfunc model that runs `{PACKED_FILE}` (the packed engine), and the ONNX file in MLflow's ONNX flavour
on the same run. Input: float32 images {shape}, preprocessed as in training; output: one row per image with
`class`, `class_index` and `prob_<class>` (softmax) for every class. With `MLFLOW_TRACKING_URI` set to the study's store:

```python
model = mlflow.pyfunc.load_model("{model}")   # model.predict(images): a pandas DataFrame
```

```bash
mlflow models serve -m {model} --env-manager local --host 127.0.0.1 --port 5001   # POST {{"inputs": images}} to /invocations
```
"""


def _change(before: float, after: float, *, points: bool = False) -> str:
    if points:
        return f"{(after - before) * 100:+.2f} points"
    return f"x{after / before:.3f}" if before else "n/a"


def _pruning_section(pruning: dict) -> str:
    """Before and after pruning, both measured at export time on this machine."""
    before, after = pruning["before"], pruning["after"]
    speedup = before["latency_ms"] / after["latency_ms"] if after["latency_ms"] else float("nan")
    criterion = {"bn": "|gamma| of the BatchNorm after each conv that produces the channel",
                 "l1": "L1 norm of the producing conv's latent kernel row"}.get(pruning["criterion"], pruning["criterion"])

    def measured(figures: dict) -> str:
        value = figures.get("energy_measured_uj")
        return f"{value:.4f}" if value is not None else "no meter readable"

    measured_change = (_change(before["energy_measured_uj"], after["energy_measured_uj"])
                       if before.get("energy_measured_uj") and after.get("energy_measured_uj") else "")
    distilled = ", distilled from the study's full-precision teacher" if pruning.get("distilled") else ""
    return f"""## Pruning

Channel-pruned after training: the {pruning['ratio']:.0%} least important output channels of every stage removed
(structured: the narrower genotype below is what every file runs), importance = {criterion}; then fine-tuned for
{pruning['fine_tune_epochs']:g} epochs with {pruning.get('recipe', "the study's training recipe")}{distilled}.

- before: `{pruning['genotype_before']}`
- after: `{pruning['genotype_after']}`

| | before | after | change |
|---|---|---|---|
| test accuracy | {before['test_accuracy']:.4f} | {after['test_accuracy']:.4f} | {_change(before['test_accuracy'], after['test_accuracy'], points=True)} |
| test accuracy right after pruning (BatchNorm statistics recomputed, no fine-tuning) | | {pruning['test_accuracy_before_fine_tuning']:.4f} | {_change(before['test_accuracy'], pruning['test_accuracy_before_fine_tuning'], points=True)} |
| model size (KiB) | {before['size_kb']:.2f} | {after['size_kb']:.2f} | {_change(before['size_kb'], after['size_kb'])} |
| parameters | {before['params']:,} | {after['params']:,} | {_change(before['params'], after['params'])} |
| OPs | {before['ops']:.4g} | {after['ops']:.4g} | {_change(before['ops'], after['ops'])} |
| latency, batch 1, median (ms; `{after['latency'].get('target', '?')}`, measured at export, side by side: the median of alternating rounds) | {before['latency_ms']:.4f} | {after['latency_ms']:.4f} | {speedup:.2f}x faster |
| energy, analytic (uJ) | {before['energy_analytic_uj']:.4f} | {after['energy_analytic_uj']:.4f} | {_change(before['energy_analytic_uj'], after['energy_analytic_uj'])} |
| energy, measured (uJ) | {measured(before)} | {measured(after)} | {measured_change} |

"""


def write_model_card(path: Path, *, study_name: str, trial, genotype: Genotype,
                     metrics: dict, dataset: Dataset, onnx_check, packed_check: dict | None = None,
                     retrained: dict | None = None, selection: str = "", registered_name: str | None = None,
                     pruning: dict | None = None) -> None:
    costs = genotype_costs(genotype)
    energy = estimate_energy(costs)
    latency = trial.user_attrs.get("latency", {})
    energy_source = trial.user_attrs.get("energy_source", energy.source)
    if pruning:  # the search measured the unpruned network; the figures below are the pruned one's
        latency, energy_source = pruning["after"]["latency"], pruning["after"]["energy_source"]
    binary_macs = costs.bops
    all_macs = sum(layer.macs for layer in costs.layers) or 1
    layers = "\n".join(
        f"| {l.name} | {l.kind}{f' {l.kernel}x{l.kernel}' if l.kernel else ''} | {'x'.join(map(str, l.out_shape))} "
        f"| w{l.weight_bits}/a{l.input_bits} | {l.macs:,} | {l.params:,} | {pj / 1e3:.3f} |"
        for l, pj in zip(costs.layers, energy.by_layer_pj))
    odd = costs.not_fully_binary()
    binary_line = ("Fully binary: yes (every conv after the stem, shortcuts included, has 1-bit weights and "
                   "activations)." if odd is None else
                   f"Fully binary: no (`{odd.name}` is w{odd.weight_bits}/a{odd.input_bits}).")
    duplicate = trial.user_attrs.get("duplicate_of")
    retrain_line = ""
    if retrained:
        retrain_line = (f"\nRetrained from scratch for {retrained['epochs']:g} epochs after the search with "
                        f"{retrained.get('recipe', 'the study recipe')}"
                        f"{' (' + retrained['distilled'] + ')' if retrained.get('distilled') else ''}: validation "
                        f"accuracy {retrained['val_accuracy']:.4f}; the search's figures below are for its short "
                        "training.\n")
    packed = ""
    if packed_check:
        packed = (f"- `{PACKED_FILE}`: the packed binary engine model (binary convolutions as 64-bit sign words, "
                  f"{packed_check['packed_share']:.0%} of engine steps packed), a numpy archive that loads with "
                  f"`allow_pickle=False` ({packed_check['bytes']:,} bytes). Loaded back and checked against torch: "
                  f"{packed_check['agreement'].describe()}.\n")
    text = f"""# bitnas model: study `{study_name}`, trial {trial.number}

`{genotype.short()}`

Genotype hash `{genotype.hash()}`. {binary_macs / all_macs:.0%} of multiply-accumulates are binary (1-bit weights and
activations). {binary_line} Export selection: {selection or 'the Pareto front'}{f'; the search reused trial {duplicate} (the same network)' if duplicate is not None else ''}.
{retrain_line}
{_pruning_section(pruning) if pruning else ''}![Pareto front of the study, this network marked](pareto.png)

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

## Where the figures come from

{_latency_section(latency, energy_source)}

## Layers

| layer | kind | output | bits (weight/activation) | MACs | params | energy (nJ) |
|---|---|---|---|---|---|---|
{layers}

## Files

- `genotype.json`: the architecture; `bitnas.spaces.build_model(Genotype.from_json(...))` rebuilds it.
- `weights.safetensors`: the trained weights (latent full-precision weights; binarised in the forward pass).
- `model.onnx`: input `image` (N x {dataset.in_channels} x {dataset.input_size} x {dataset.input_size}, normalised as in training), output `logits`.
  Checked in onnxruntime against torch: {onnx_check.describe()}.
{packed}{_agreement_note(onnx_check, packed_check)}- `metrics.json`, `latency.json`: the search's figures and the latency environment; `pareto.png`: the study's front.

```bash
bitnas run . --image digit.png     # classify an image with the packed model (resized, normalised as in training)
bitnas bench .                     # latency of the packed model, torch and onnxruntime on this machine
```

```python
import onnxruntime
session = onnxruntime.InferenceSession("model.onnx")
logits = session.run(["logits"], {{"image": images}})[0]
```

{_registry_section(registered_name, dataset)}"""
    path.write_text(text)
