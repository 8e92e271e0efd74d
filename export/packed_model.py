"""The exported packed model: `model.bitnas.npz` (the packed binary engine model, no pickle) and
what runs it: `classify` (bitnas run MODEL_DIR --image FILE) and `bench` (bitnas bench MODEL_DIR)."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitnas.errors import UserError

PACKED_FILE = "model.bitnas.npz"


class ModelDirError(UserError):
    """A folder that is not a bitnas export; the message says what is missing."""


def _packed_path(model_dir: Path) -> Path:
    path = Path(model_dir)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ModelDirError(f"{model_dir}: no such export folder")
    packed = path / PACKED_FILE
    if not packed.is_file():
        raise ModelDirError(f"{model_dir}: no {PACKED_FILE} in it (export it with `bitnas export`)")
    return packed


def load_packed_model(model_dir: Path):
    from bitnas.evaluators.engine.packed_file import load_packed

    return load_packed(_packed_path(model_dir))


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probabilities: list[tuple[str, float]]  # top classes, best first


def classify(model_dir: Path, image: Path, top: int = 3) -> Prediction:
    from .preprocess import load_image

    engine, header = load_packed_model(model_dir)
    prep = header["preprocessing"]
    missing = [key for key in ("channels", "size", "mean", "std") if key not in prep]
    if missing:
        raise ModelDirError(f"{model_dir}: its packed model carries no preprocessing ({', '.join(missing)} "
                            "missing): export it with `bitnas export`")
    logits = np.asarray(engine(load_image(image, prep)), dtype=np.float64)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    names = prep.get("class_names") or [str(i) for i in range(len(logits))]
    order = np.argsort(-probabilities)[:top]
    return Prediction(names[int(order[0])], int(order[0]), [(names[int(i)], float(probabilities[i])) for i in order])


def _time(run, runs: int, warmup: int) -> dict:
    for _ in range(warmup):
        run()
    timings = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        run()
        timings.append((time.perf_counter_ns() - start) / 1e6)
    ordered = sorted(timings)
    return {"median_ms": statistics.median(timings), "p90_ms": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
            "min_ms": ordered[0], "runs": runs}


def bench(model_dir: Path, *, runs: int = 50, warmup: int = 5, threads: int = 1) -> dict:
    """Batch-1 latency on this machine of the packed engine model (as loaded from its file) and,
    side by side, the torch model and onnxruntime with the export's own files."""
    import numba
    import torch

    from bitnas.evaluators.engine import ENGINE_NAME
    from bitnas.evaluators.latency import environment

    engine, header = load_packed_model(model_dir)
    previous = torch.get_num_threads()  # before numba's pool starts: it resets the OpenMP count torch shares
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(threads)
    sample = np.random.default_rng(0).standard_normal(engine.input_shape).astype(np.float32)
    rows = [{"runtime": f"packed engine ({PACKED_FILE})", **_time(lambda: engine.run_one(sample), runs, warmup)}]
    folder = _packed_path(model_dir).parent
    try:
        weights, genotype = folder / "weights.safetensors", folder / "genotype.json"
        if weights.is_file() and genotype.is_file():
            from safetensors.torch import load_file

            from bitnas.spaces import Genotype, build_model

            model = build_model(Genotype.from_json(genotype.read_text()))
            model.load_state_dict(load_file(str(weights)))
            model.eval()
            tensor = torch.from_numpy(sample)[None]

            def forward():
                with torch.inference_mode():
                    model(tensor)

            rows.append({"runtime": "torch (binary layers simulated in fp32)", **_time(forward, runs, warmup)})
        onnx_file = folder / "model.onnx"
        if onnx_file.is_file():
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
            feed = {"image": sample[None]}
            rows.append({"runtime": "onnxruntime (binary layers simulated in fp32)",
                         **_time(lambda: session.run(["logits"], feed), runs, warmup)})
    finally:
        torch.set_num_threads(previous)
    result = {"rows": rows, "threads": threads, "environment": environment(threads, ENGINE_NAME),
              "fallbacks": [list(f) for f in engine.fallbacks]}
    return result


def format_bench(result: dict) -> str:
    base = result["rows"][0]["median_ms"]
    lines = [f"{'runtime':<48} {'median ms':>10} {'p90 ms':>9} {'vs packed':>10}"]
    for row in result["rows"]:
        lines.append(f"{row['runtime']:<48} {row['median_ms']:>10.3f} {row['p90_ms']:>9.3f} "
                     f"{row['median_ms'] / base:>9.2f}x")
    env = result["environment"]
    lines.append(f"batch 1, {result['threads']} thread(s), {result['rows'][0]['runs']} runs after warm-up; "
                 f"{env.get('cpu')} ({', '.join(env.get('cpu_flags', []))})")
    if result["fallbacks"]:
        lines.append("in torch inside the engine: " + ", ".join(f"{s} ({r})" for s, r in result["fallbacks"]))
    return "\n".join(lines)


def write_bench(model_dir: Path, result: dict) -> Path:
    path = _packed_path(model_dir).parent / "bench.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
