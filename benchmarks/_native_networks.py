"""The engine on the networks the search really measures: the default study's reference networks
(and every small reference) and genotypes sampled from the default space, at mnist5k's 28x28x1.

For each: engine latency vs the torch model on the same CPU (its quantized layers simulated in
fp32, what `latency.target: torch-cpu` times), one thread, batch 1, interleaved; and the share of
its quantized layers (both operands below 32 bits) that run natively. Goal: 100% native.
Used by `benchmarks/engine.py`.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from bitnas.evaluators.engine import compile_model
from bitnas.evaluators.engine.native_blocks import is_quantized_layer
from bitnas.search.config import SearchConfig
from bitnas.spaces import build_model
from bitnas.spaces.baselines import small_baselines

SHAPE = (1, 28, 28)


def sampled_default_genotypes(count: int, seed: int = 0):
    space = SearchConfig().space
    rng = random.Random(seed)
    return [space.decode({name: rng.choice(values) for name, values in space.choices().items()},
                         input_size=28, in_channels=1, num_classes=10) for _ in range(count)]


def network_rows(count: int, interleaved, rounds: int, calls: int) -> list[dict]:
    """One row per network: engine and torch milliseconds, their ratio, the native share."""
    defaults = set(SearchConfig().references)
    cases = [(f"reference {name}" + (" (default)" if name in defaults else ""), genotype)
             for name, genotype in small_baselines(input_size=28, in_channels=1, num_classes=10).items()]
    cases += [(f"sampled {index}", genotype) for index, genotype in enumerate(sampled_default_genotypes(count))]
    rows = []
    image = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    sample = torch.from_numpy(image)[None]
    for label, genotype in cases:
        torch.manual_seed(0)
        model = build_model(genotype).eval()
        engine = compile_model(model, SHAPE)
        quantized = sum(is_quantized_layer(m) for m in model.modules())
        simulated = len(engine.simulated)

        def torch_call():
            with torch.inference_mode():
                model(sample)

        times = interleaved({"engine": lambda: engine.run_one(image), "torch": torch_call}, rounds, calls)
        rows.append({"section": "networks", "case": label, "genotype": genotype.short(), "threads": 1,
                     "engine_ms": round(times["engine"], 4), "baseline_ms": round(times["torch"], 4),
                     "ratio": round(times["torch"] / times["engine"], 2),
                     "quantized_layers": quantized, "native_share": 1.0 if not quantized else
                     round((quantized - simulated) / quantized, 4),
                     "goal": "100% of quantized layers native"})
    return rows


__all__ = ["network_rows", "sampled_default_genotypes"]
