"""What the fused training functions save a training step: the same networks trained with the
1-bit quantizers' fused autograd functions (spaces/quantizers.py) and RPReLU's one-pass kernels
(spaces/fused_rprelu.py), what training uses, and with the plain straight-through form, sign and
PyTorch RPReLU that training used before them (`plain_autograd()`, `plain_rprelu()`), side by side
in one process, in alternating rounds, one thread. The quantizers give the same weights bit for bit
(tests/test_fused_quantizers.py), RPReLU the same values and gradients to float32 rounding
(tests/test_fused_rprelu.py); this measures only the time. A ratio above 1 means the fused
functions are faster.

    python benchmarks/training_speed.py [--steps 15] [--rounds 5] [--json]

Writes results/bench/training_speed.csv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from bitnas.evaluators.engine.isa import isa_path
from bitnas.evaluators.latency import cpu_model
from bitnas.spaces import Genotype, build_model
from bitnas.spaces.baselines import baseline_genotype
from bitnas.spaces.fused_rprelu import plain_rprelu
from bitnas.spaces.quantizers import plain_autograd

sys.path.insert(0, str(Path(__file__).parent))
from _output import write_csv  # noqa: E402
from recipe import NET as RECIPE_NET, WIDE, widened  # noqa: E402

OUT = Path("results/bench/training_speed.csv")
BATCH = 32  # the search's trial batch


NETWORKS = {name: (lambda name=name: baseline_genotype(name))
            for name in ("bireal_small", "xnor_small", "reactnet_small", "mobilenetv2_int8_small")}
# benchmarks/recipe.py's best fully binary network: its `wide` lever on its network.
NETWORKS["reactnet_wide"] = lambda: widened(baseline_genotype(RECIPE_NET), WIDE)


def step_seconds(genotype: Genotype, steps: int, plain: bool, batch: int = BATCH) -> float:
    """Seconds per optimiser step (forward, backward, Adam) on a fixed random batch, after 2 warm-up steps."""
    torch.manual_seed(0)
    model = build_model(genotype).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.randn(batch, genotype.in_channels, genotype.input_size, genotype.input_size)
    labels = torch.randint(0, genotype.num_classes, (batch,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    with contextlib.ExitStack() as forms:
        if plain:
            forms.enter_context(plain_autograd())
            forms.enter_context(plain_rprelu())
        for _ in range(2):
            step()
        started = time.perf_counter()
        for _ in range(steps):
            step()
        return (time.perf_counter() - started) / steps


def side_by_side(timed: Callable[[bool], float], rounds: int) -> tuple[list[float], list[float], list[float]]:
    """`timed(True)` and `timed(False)` in alternating rounds, which of them goes first alternating
    too, so that a drift of the machine's speed favours neither: the times of each, and per round
    the ratio of the first to the second."""
    first, second, ratios = [], [], []
    for round_ in range(rounds):
        order = (True, False) if round_ % 2 == 0 else (False, True)
        times = {form: timed(form) for form in order}
        first.append(times[True])
        second.append(times[False])
        ratios.append(times[True] / times[False])
    return first, second, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15, help="timed steps per network, form and round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (the ratio is their median)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'network':24s} {'plain ms/step':>14s} {'fused ms/step':>14s} {'ratio':>7s}  (median of {args.rounds} rounds)")
    for name, make in NETWORKS.items():
        genotype = make()
        plain, fused, ratios = side_by_side(lambda plain_form: step_seconds(genotype, args.steps, plain_form), args.rounds)
        row = {"network": name, "genotype": genotype.short(), "plain_ms_per_step": round(statistics.median(plain) * 1e3, 2),
               "fused_ms_per_step": round(statistics.median(fused) * 1e3, 2), "ratio": round(statistics.median(ratios), 3),
               "ratio_min": round(min(ratios), 3), "ratio_max": round(max(ratios), 3), "batch": BATCH,
               "cpu": cpu_model(), "isa": isa_path(), "torch": torch.__version__}
        rows.append(row)
        print(f"{name:24s} {row['plain_ms_per_step']:14.1f} {row['fused_ms_per_step']:14.1f} {row['ratio']:6.2f}x "
              f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f})", flush=True)
    write_csv(OUT, rows)
    print(f"wrote {OUT} ({cpu_model()}, {isa_path()})")
    if args.json:
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
