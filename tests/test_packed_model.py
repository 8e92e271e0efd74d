"""The packed binary engine model as a file: saved, loaded without pickle, bit-for-bit the same
logits; a corrupt or foreign file is one clear error; `bitnas run` classifies a PNG like torch
does; `bitnas bench` measures the exported model; ONNX parity of the export."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from bitnas.evaluators import load_dataset
from bitnas.evaluators.engine import compile_model
from bitnas.evaluators.engine.packed_file import PackedFileError, load_packed, read_header, save_packed
from bitnas.export import ExportOptions, Selection, export_study
from bitnas.spaces import Genotype, SpaceConfig, build_model
from conftest import SHARED_STUDY as STUDY


def trained_like_model(seed: int = 0, block: str = "binary"):
    """A binary network with non-trivial BatchNorm statistics and thresholds (as training leaves them)."""
    space = SpaceConfig(blocks=[block], kernels=[3], stem_widths=[8],
                        stages=[{"stride": 1, "widths": [72], "depths": [2]}, {"stride": 2, "widths": [16], "depths": [1]}])
    genotype = space.decode({k: v[0] for k, v in space.choices().items()}, input_size=8, in_channels=1, num_classes=10)
    torch.manual_seed(seed)
    model = build_model(genotype)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
            if hasattr(module, "shift"):
                module.shift.uniform_(-0.2, 0.2)
            if isinstance(getattr(module, "threshold", None), torch.nn.Parameter):  # RSign
                module.threshold.uniform_(-0.2, 0.2)
    return genotype, model.eval()


def packed_convs(steps):
    """Every packed conv of an engine, inside composite steps (ReActNet blocks) too."""
    for step in steps:
        yield from packed_convs(step.parts()) if hasattr(step, "parts") else [step] if hasattr(step, "weights") else []


# binary: Bi-Real blocks; reactnet: RSign/RPReLU and 9 concatenated 1x1 copies (8 -> 72 channels);
# xnor: a torch step running its binary convs natively, with a downsampling shortcut; dwsep (W1A1):
# native depthwise and pointwise steps; mbconv (W1A1): one chain of native convs with its residual.
@pytest.mark.parametrize("block", ["binary", "reactnet", "xnor", "dwsep", "mbconv"])
def test_round_trip_is_exact_and_needs_no_pickle(tmp_path, block):
    genotype, model = trained_like_model(block=block)
    engine = compile_model(model, (1, 8, 8))
    path = save_packed(engine, genotype, tmp_path / "m.bitnas.npz", preprocessing={"mean": [0.5]})
    with zipfile.ZipFile(path) as archive:  # plain .npy members only; no object arrays
        assert all(name.endswith(".npy") for name in archive.namelist())
    np.load(path, allow_pickle=False)  # raises if anything in it needed pickle
    loaded, header = load_packed(path)
    assert header["genotype"] == genotype.to_dict() and header["preprocessing"] == {"mean": [0.5]}
    images = np.random.default_rng(1).standard_normal((16, 1, 8, 8)).astype(np.float32)
    assert np.array_equal(loaded(images), engine(images))
    with torch.inference_mode():
        assert np.allclose(loaded(images), model(torch.from_numpy(images)).numpy(), atol=1e-4)
    # The loaded steps hold the stored packed words (a 72-channel input spans two 64-bit words), not
    # ones compiled from the randomly initialised network the loader builds for the step structure.
    if block in ("binary", "reactnet"):
        assert any(step.weights.shape[1] == 2 for step in packed_convs(loaded.steps))
    if block == "reactnet":  # one thread: each block one fused call, its arguments laid out from the loaded numbers
        import numba

        previous = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            assert np.array_equal(loaded(images), engine(images))
        finally:
            numba.set_num_threads(previous)


def test_a_file_whose_mbconv_ran_in_torch_asks_for_a_new_export(tmp_path):
    # Before version 3 a quantized mbconv block was saved as a torch step around its native convs.
    from bitnas.evaluators.engine.native_blocks import NativeChainStep, hybrid_step

    genotype, model = trained_like_model(block="mbconv")
    engine = compile_model(model, (1, 8, 8))
    engine.steps = [hybrid_step(model.get_submodule(step.name), step.name) if isinstance(step, NativeChainStep)
                    else step for step in engine.steps]
    path = save_packed(engine, genotype, tmp_path / "old.bitnas.npz")
    with pytest.raises(PackedFileError, match=r"ran quantized mbconv blocks in torch; export the model again"):
        load_packed(path)


def test_corrupt_or_foreign_files_are_one_clear_error(tmp_path):
    genotype, model = trained_like_model()
    good = save_packed(compile_model(model, (1, 8, 8)), genotype, tmp_path / "m.npz")
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    for path, message in ((truncated, "not a packed model file"), (foreign, "not a bitnas packed model"),
                          (tmp_path / "missing.npz", "not found")):
        with pytest.raises(PackedFileError, match=message):
            load_packed(path)


@pytest.fixture(scope="module")
def exported(finished_study, tmp_path_factory) -> Path:
    """The shared study's most accurate trial, exported, in a folder of this module's own."""
    (written,) = export_study(finished_study, STUDY, options=ExportOptions(selection=Selection(best="accuracy")))
    return Path(shutil.copytree(written, tmp_path_factory.mktemp("packed") / written.name))


def test_bitnas_run_classifies_a_png_as_torch_does(exported, bitnas_main, tmp_path):
    header = read_header(exported / "model.bitnas.npz")
    prep = header["preprocessing"]
    data = load_dataset("digits", 3)
    model = build_model(Genotype.from_json((exported / "genotype.json").read_text()))
    model.load_state_dict(load_file(str(exported / "weights.safetensors")))
    model.eval()
    for index in range(3):
        pixels = np.round((data.test.images[index, 0].numpy() * prep["std"][0] + prep["mean"][0]) * 255).clip(0, 255)
        path = tmp_path / f"digit{index}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        normalised = ((pixels / 255.0 - prep["mean"][0]) / prep["std"][0]).astype(np.float32)
        with torch.inference_mode():
            expected = int(model(torch.from_numpy(normalised)[None, None]).argmax())
        done = bitnas_main("run", exported, "--image", path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == f"{path}: class {prep['class_names'][expected]}"
    done = bitnas_main("run", exported, "--image", tmp_path / "none.png")
    assert done.returncode == 2 and "image not found" in done.stderr and done.stderr.count("\n") == 1


def test_onnx_parity_and_bench_of_the_export(exported, bitnas_main):
    data = load_dataset("digits", 3)
    model = build_model(Genotype.from_json((exported / "genotype.json").read_text()))
    model.load_state_dict(load_file(str(exported / "weights.safetensors")))
    model.eval()
    session = onnxruntime.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    images = data.test.images
    got = session.run(["logits"], {"image": images.numpy()})[0]
    with torch.inference_mode():
        expected = model(images).numpy()
    assert np.allclose(got, expected, atol=1e-4) and (got.argmax(1) == expected.argmax(1)).all()

    done = bitnas_main("bench", exported, "--runs", "5")
    assert done.returncode == 0, done.stderr
    assert "packed engine (model.bitnas.npz)" in done.stdout and "onnxruntime" in done.stdout
    assert (exported / "bench.json").is_file()
