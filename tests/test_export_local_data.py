"""A study searched on the user's own image folder exports a model that reads images the way the
search did: the folder's path and the `data:` options (resize, normalisation) travel with the study,
so `bitnas export` finds the data again and `bitnas run` classifies a new image by its folder name.

The images are real: sklearn's 8x8 digits, three classes, written as PNG files by the test."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from bitnas.export.packed_model import load_packed_model
from conftest import search_in_process

CLASSES = {0: "zero", 1: "one", 7: "seven"}


def bitnas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bitnas", *args], capture_output=True, text=True, timeout=400)


def write_digit_folder(root: Path) -> Path:
    digits = load_digits()
    for label, name in CLASSES.items():
        (root / name).mkdir(parents=True)
        for i, image in enumerate(digits.images[digits.target == label][:60]):
            Image.fromarray((image * 255 / 16).astype(np.uint8), mode="L").save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def exported(tmp_path_factory, local_ray) -> tuple[Path, Path]:
    """Searched and exported in-process (the search and the export API the CLI calls); the exported
    model is then run by the real `bitnas run`."""
    from bitnas.export import export_study

    folder = tmp_path_factory.mktemp("own_data")
    images = write_digit_folder(folder / "digits_by_folder")
    config = {"dataset": "imagefolder", "data_dir": str(images), "data": {"image_size": 12},
              "workers": 1, "references": [], "seed": 0, "sampler": "random",
              "training": {"epochs": 8, "batch_size": 8},
              "space": {"blocks": ["float"], "kernels": [3], "stem_widths": [16],
                        "stages": [{"stride": 1, "widths": [16], "depths": [1]}]}}
    results = folder / "results"
    outcome, lines = search_in_process(config, results, "own", 1, folder=folder)
    assert outcome.completed == 1, "\n".join(lines)
    (model_dir,) = export_study(results, "own")
    return images, model_dir


def test_export_reads_the_users_folder_with_the_studys_options(exported):
    _, model_dir = exported
    _, header = load_packed_model(model_dir)
    prep = header["preprocessing"]
    assert prep["size"] == 12 and prep["channels"] == 1, "data.image_size and the grey channel travel with the study"
    assert sorted(prep["class_names"]) == sorted(CLASSES.values())
    # Per-channel normalisation with the training split's statistics: digits are mostly dark.
    assert 0.05 < prep["mean"][0] < 0.6 and prep["std"][0] > 0.1
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.8, metrics


def test_run_classifies_a_new_image_by_folder_name(exported):
    images, model_dir = exported
    done = bitnas("run", str(model_dir), "--image", str(images / "seven" / "000.png"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[0].split("class ")[-1] in CLASSES.values(), done.stdout
