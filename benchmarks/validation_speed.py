"""What training's per-epoch validation costs, before and now: BatchNorm recalibrated on 512 training
images in one batch, then accuracy on mnist5k's 750 validation images, as `train()` does after
every epoch of a long (`keep_best`) run.

- before: the 1-bit quantizers' plain straight-through form and PyTorch's RPReLU in passes that
  record no gradient, and evaluation in batches of 512;
- now: the quantizers' values alone and RPReLU's one-pass forward (the same values, bit for bit:
  tests/test_fused_quantizers.py), and evaluation in batches of `train.EVALUATION_BATCH`.

Both side by side in one process, in alternating rounds, one thread; the ratio is the median of the
rounds' ratios (above 1: now is faster). So that the saving can be read against a whole epoch, a
training step at the recipe's batch (evaluators/recipes.py) is timed too, and an epoch of
mnist5k's 3,500 training images is given as its steps plus the validation.

    python benchmarks/validation_speed.py [--rounds 5] [--json]
    ATEN_CPU_CAPABILITY=avx2 NUMBA_CPU_NAME=haswell python benchmarks/validation_speed.py --tag avx2

Writes results/bench/validation_speed.csv (validation_speed_<tag>.csv with --tag). The second line
measures an AVX2-only CPU's code paths (PyTorch's kernels and numba's) on an AVX-512 one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from bitnas.evaluators import load_dataset
from bitnas.evaluators.engine.isa import isa_path
from bitnas.evaluators.latency import cpu_model
from bitnas.evaluators.recipes import BINARY_RETRAINING
from bitnas.evaluators.train import EVALUATION_BATCH, RECALIBRATION_BATCH, accuracy, recalibrate_batchnorm
from bitnas.spaces import Genotype, build_model
from bitnas.spaces.fused_rprelu import plain_rprelu
from bitnas.spaces.quantizers import plain_autograd

sys.path.insert(0, str(Path(__file__).parent))
from _output import write_csv  # noqa: E402
from recipe import float_twin  # noqa: E402
from training_speed import NETWORKS, side_by_side, step_seconds  # noqa: E402

OUT = Path("results/bench")
BEFORE_EVALUATION_BATCH = 512
CALIBRATION_IMAGES = 512  # TrainingConfig.bn_recalibration's default
NETWORKS = {**NETWORKS, "reactnet_wide_fp32": lambda: float_twin(NETWORKS["reactnet_wide"]())}


def validation_seconds(model: torch.nn.Module, data, before: bool) -> float:
    """One validation as training runs it: recalibration, then accuracy on the validation split."""
    calibration = data.train.images[:CALIBRATION_IMAGES]
    with contextlib.ExitStack() as forms:
        if before:
            forms.enter_context(plain_autograd())
            forms.enter_context(plain_rprelu())
        started = time.perf_counter()
        recalibrate_batchnorm(model, calibration, batch_size=RECALIBRATION_BATCH)
        accuracy(model, data.val, batch_size=BEFORE_EVALUATION_BATCH if before else EVALUATION_BATCH)
        return time.perf_counter() - started


def measure(name: str, genotype: Genotype, data, rounds: int) -> dict:
    torch.manual_seed(0)
    model = build_model(genotype)
    validation_seconds(model, data, before=False)  # warm-up: numba's kernels load, memory is touched
    before, now, ratios = side_by_side(lambda before_form: validation_seconds(model, data, before_form), rounds)
    batch = BINARY_RETRAINING["batch_size"]
    step = step_seconds(genotype, steps=10, plain=False, batch=batch)
    steps_per_epoch = math.ceil(len(data.train) / batch)
    epoch_before = steps_per_epoch * step + statistics.median(before)
    epoch_now = steps_per_epoch * step + statistics.median(now)
    return {"network": name, "genotype": genotype.short(),
            "before_ms": round(statistics.median(before) * 1e3, 1), "now_ms": round(statistics.median(now) * 1e3, 1),
            "ratio": round(statistics.median(ratios), 3), "ratio_min": round(min(ratios), 3),
            "ratio_max": round(max(ratios), 3), "step_ms": round(step * 1e3, 1), "steps_per_epoch": steps_per_epoch,
            "epoch_s_before": round(epoch_before, 2), "epoch_s_now": round(epoch_now, 2),
            "epoch_ratio": round(epoch_before / epoch_now, 3), "train_batch": batch,
            "cpu": cpu_model(), "isa": isa_path(), "torch_isa": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (the ratio is their median)")
    parser.add_argument("--tag", default="", help="appended to the CSV's name")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    torch.set_num_threads(1)
    data = load_dataset("mnist5k", 0)
    rows = []
    print(f"{'network':22s} {'before ms':>10s} {'now ms':>8s} {'ratio':>7s} {'epoch s before':>15s} {'now':>7s} "
          f"{'ratio':>6s}  (median of {args.rounds} rounds)")
    for name, make in NETWORKS.items():
        row = measure(name, make(), data, args.rounds)
        rows.append(row)
        print(f"{name:22s} {row['before_ms']:10.0f} {row['now_ms']:8.0f} {row['ratio']:6.2f}x {row['epoch_s_before']:15.1f} "
              f"{row['epoch_s_now']:7.1f} {row['epoch_ratio']:5.2f}x", flush=True)
    out = OUT / (f"validation_speed_{args.tag}.csv" if args.tag else "validation_speed.csv")
    write_csv(out, rows)
    print(f"wrote {out} ({cpu_model()}, {isa_path()}, PyTorch {torch.backends.cpu.get_cpu_capability()})")
    if args.json:
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
