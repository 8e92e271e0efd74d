"""Do zero-cost proxies predict the accuracy of *binary* networks? Sampled binary genotypes
(Bi-Real and ReActNet blocks, 1-bit weights and activations) are scored at initialisation by
NASWOT, synflow and grad_norm, then trained on mnist5k; each proxy's Spearman rho against
validation accuracy is reported next to the baselines every proxy must beat: params and BOPs
(no proxy has been validated on 1-bit networks: docs/references.md, "Zero-cost proxies").
Writes results/bench/proxies.csv
and results/bench/proxies.png (one scatter per proxy).

    python benchmarks/proxies.py [--genotypes N] [--epochs E] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from bitnas.evaluators import TrainingConfig, accuracy, load_dataset
from bitnas.evaluators.train import train
from bitnas.evaluators.proxies import PROXIES, compute_proxies
from bitnas.spaces import SpaceConfig, build_model

from _output import write_csv  # noqa: E402

OUT = Path("results/bench")
BINARY_SPACE = SpaceConfig(blocks=("binary", "reactnet"), weight_bits=(1,), activation_bits=(1,))


def sample_genotypes(count: int, seed: int, geometry: dict) -> list:
    """`count` distinct genotypes drawn uniformly from the binary space."""
    rng = np.random.default_rng(seed)
    choices = BINARY_SPACE.choices()
    found: dict[str, object] = {}
    while len(found) < count:
        params = {name: values[rng.integers(len(values))] for name, values in choices.items()}
        genotype = BINARY_SPACE.decode(params, **geometry)
        found.setdefault(genotype.hash(), genotype)
    return list(found.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genotypes", type=int, default=40)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--batch", type=int, default=64, help="images the proxies see")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="30 genotypes, 0.25 epoch each (2:42 measured on 2 cores)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.genotypes, args.epochs = 30, 0.25
    torch.set_num_threads(2)
    data = load_dataset("mnist5k", args.seed)
    geometry = {"input_size": data.input_size, "in_channels": data.in_channels, "num_classes": data.num_classes}
    generator = torch.Generator().manual_seed(args.seed)
    probe = torch.randperm(len(data.train), generator=generator)[:args.batch]
    images, labels = data.train.images[probe], data.train.labels[probe]
    rows = []
    started = time.perf_counter()
    for index, genotype in enumerate(sample_genotypes(args.genotypes, args.seed, geometry)):
        torch.manual_seed(args.seed + index)
        model = build_model(genotype)
        t0 = time.perf_counter()
        scores = compute_proxies(model, images, labels)
        proxy_seconds = time.perf_counter() - t0
        train(model, data.train, data.val, TrainingConfig(epochs=args.epochs, batch_size=32, lr=5e-3), seed=index)
        rows.append({"genotype": genotype.short(), **scores, "proxy_seconds": round(proxy_seconds, 3),
                     "val_acc": accuracy(model, data.val)})
        print(f"[{index + 1:>2}/{args.genotypes}] val_acc {rows[-1]['val_acc']:.4f}  "
              + "  ".join(f"{k} {scores[k]:.4g}" for k in PROXIES) + f"  {genotype.short()}", flush=True)
    accuracies = [r["val_acc"] for r in rows]
    rho = {name: float(spearmanr([r[name] for r in rows], accuracies).statistic) for name in PROXIES}
    suffix = "_quick" if args.quick else ""
    write_csv(OUT / f"proxies{suffix}.csv", rows)
    _scatter(rows, rho, OUT / f"proxies{suffix}.png", args)
    print(f"\nSpearman rho against validation accuracy ({len(rows)} binary genotypes, {args.epochs:g} epoch(s) each, "
          f"{time.perf_counter() - started:.0f}s):")
    print(f"{'proxy':<10} {'rho':>7}  kind")
    for name in PROXIES:
        print(f"{name:<10} {rho[name]:>7.3f}  {'baseline' if name in ('params', 'bops') else 'zero-cost proxy'}")
    best_baseline = max(abs(rho["params"]), abs(rho["bops"]))
    beating = [n for n in ("naswot", "synflow", "grad_norm") if abs(rho[n]) > best_baseline]
    print(f"proxies beating the best baseline (|rho| > {best_baseline:.3f}): {', '.join(beating) or 'none'}")
    print(f"wrote {OUT / f'proxies{suffix}.csv'} and {OUT / f'proxies{suffix}.png'}")
    if args.json:
        print(json.dumps({"genotypes": len(rows), "epochs": args.epochs, "spearman_rho": rho,
                          "beat_baselines": beating, "val_acc_range": [min(accuracies), max(accuracies)]}))


def _scatter(rows: list[dict], rho: dict, path: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PROXIES), figsize=(4 * len(PROXIES), 3.6))
    accuracies = [r["val_acc"] for r in rows]
    for axis, name in zip(axes, PROXIES):
        values = [r[name] for r in rows]
        axis.scatter(values, accuracies, s=14)
        if name in ("synflow", "params", "bops") and min(values) > 0:
            axis.set_xscale("log")
        axis.set_title(f"{name}: rho {rho[name]:.2f}")
        axis.set_xlabel(name)
    axes[0].set_ylabel("validation accuracy")
    fig.suptitle(f"zero-cost proxies vs accuracy: {len(rows)} binary genotypes on mnist5k, {args.epochs:g} epoch(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
