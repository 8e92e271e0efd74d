"""The engine's native fp32 glue (evaluators/engine/glue.py): RPReLU and ReLU bit for bit torch's,
the stem's max pool bit for bit, the fp32 stem conv + BatchNorm, the average pool and the pooled
classifier to float32 rounding,
numbers loaded into a step's module after it ran are the ones it uses, networks compile to these
steps (downsampling shortcuts included) and a packed file's numbers reach them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bitnas.evaluators.engine import compile_model
from bitnas.evaluators.engine.glue import (NativeAvgPool, NativeConvBatchNorm, NativeMaxPool, NativePooledClassifier,
                                           NativeReLU, NativeRPReLU, avg_pool_step, conv_batchnorm_step, max_pool_step,
                                           pooled_classifier_step, relu_step, rprelu_step)
from bitnas.evaluators.engine.packed_file import load_packed, save_packed
from bitnas.evaluators.engine.ops import TorchStep, from_torch, to_torch
from bitnas.spaces import build_model
from bitnas.spaces.baselines import BASELINES
from bitnas.spaces.layers import RPReLU


def hwc(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def torch_output(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return from_torch(module.eval()(to_torch(x)))


def test_rprelu_and_relu_are_torch_bit_for_bit():
    torch.manual_seed(0)
    module = RPReLU(24)
    with torch.no_grad():
        module.shift_in.shift.normal_()
        module.shift_out.shift.normal_()
        module.prelu.weight.uniform_(-1, 1)
    x = hwc((9, 7, 24))
    step = rprelu_step(module, "act")
    assert isinstance(step, NativeRPReLU)
    assert np.array_equal(step(x), torch_output(module, x))
    relu = relu_step(nn.ReLU(), "relu")
    assert isinstance(relu, NativeReLU) and np.array_equal(relu(x), np.maximum(x, 0))
    # any other activation stays a torch step
    assert type(rprelu_step(nn.Hardtanh(), "other")) is TorchStep


@pytest.mark.parametrize("cin,cout,kernel,stride,padding,bias", [(1, 16, 3, 1, 1, False), (3, 12, 3, 2, 1, True),
                                                                 (2, 8, 5, 1, 2, False), (4, 20, 1, 1, 0, True)])
def test_conv_batchnorm_matches_torch(cin, cout, kernel, stride, padding, bias):
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(cin, cout, kernel, stride, padding, bias=bias), nn.BatchNorm2d(cout)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(-2, 2)
        bn.bias.uniform_(-1, 1)
    x = hwc((11, 10, cin))
    step = conv_batchnorm_step(conv, bn, "stem")
    assert isinstance(step, NativeConvBatchNorm)
    expected = torch_output(nn.Sequential(conv, bn), x)
    got = step(x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_conv_batchnorm_uses_numbers_loaded_after_it_ran():
    torch.manual_seed(2)
    conv, bn = nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)
    step = conv_batchnorm_step(conv, bn, "stem")
    x = hwc((6, 6, 1))
    before = step(x)
    other = nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)).eval()
    with torch.no_grad():
        other[1].running_mean.uniform_(-1, 1)
    step.module.load_state_dict(other.state_dict())  # what loading a packed file does
    after = step(x)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, torch_output(other, x), rtol=1e-5, atol=1e-5)


def test_convs_the_native_stem_cannot_take_stay_in_torch():
    bn = nn.BatchNorm2d(8)
    assert conv_batchnorm_step(nn.Conv2d(4, 8, 3, groups=2), bn, "s") is None
    assert conv_batchnorm_step(nn.Conv2d(4, 8, 3, dilation=2), bn, "s") is None
    assert conv_batchnorm_step(nn.Conv2d(4, 8, 3, padding="same"), bn, "s") is None
    assert conv_batchnorm_step(nn.Conv2d(4, 8, (3, 1)), bn, "s") is None


def test_pooled_classifier_matches_torch():
    torch.manual_seed(3)
    pool, fc = nn.AdaptiveAvgPool2d(1), nn.Linear(32, 10)
    step = pooled_classifier_step(pool, fc, "head")
    assert isinstance(step, NativePooledClassifier)
    x = hwc((7, 7, 32))
    with torch.inference_mode():
        expected = fc(pool(to_torch(x)).flatten(1)).numpy()[0]
    np.testing.assert_allclose(step(x), expected, rtol=1e-5, atol=1e-6)
    assert pooled_classifier_step(nn.AdaptiveAvgPool2d(2), fc, "head") is None


def test_reactnet_runs_its_glue_natively_and_agrees_with_torch():
    torch.manual_seed(4)
    model = build_model(BASELINES["reactnet_small"].genotype(28, 1, 10)).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
    engine = compile_model(model, (1, 28, 28))
    kinds = [type(step).__name__ for step in engine.steps]
    assert kinds[0] == "NativeConvBatchNorm" and kinds[-2:] == ["NativeReLU", "NativePooledClassifier"]
    acts = [part for step in engine.steps if hasattr(step, "parts") for part in step.parts() if "act" in part.name]
    assert acts and all(isinstance(act, NativeRPReLU) for act in acts)
    image = torch.randn(1, 1, 28, 28)
    with torch.inference_mode():
        expected = model(image).numpy()[0]
    np.testing.assert_allclose(engine(image.numpy())[0], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("size", [8, 7])  # 7: ceil_mode's last window runs past the border
def test_average_pool_matches_torch(size):
    pool = nn.AvgPool2d(2, 2, ceil_mode=True)
    step = avg_pool_step(pool, "pool")
    assert isinstance(step, NativeAvgPool)
    x = hwc((size, size, 16))
    np.testing.assert_allclose(step(x), torch_output(pool, x), rtol=1e-6, atol=1e-6)
    assert avg_pool_step(nn.AvgPool2d(2, 2, padding=1), "pool") is None


@pytest.mark.parametrize("size,kernel,stride,padding", [(28, 3, 2, 1), (7, 3, 2, 1), (9, 2, 2, 0), (6, 3, 1, 1)])
def test_max_pool_is_torch_bit_for_bit(size, kernel, stride, padding):
    pool = nn.MaxPool2d(kernel, stride, padding=padding)
    step = max_pool_step(pool, "stem.2")
    assert isinstance(step, NativeMaxPool)
    x = hwc((size, size, 12), seed=size)
    assert np.array_equal(step(x), torch_output(pool, x))


def test_max_pools_the_engine_cannot_take_stay_in_torch():
    assert max_pool_step(nn.MaxPool2d(3, 2, ceil_mode=True), "p") is None
    assert max_pool_step(nn.MaxPool2d(3, 2, dilation=2), "p") is None
    assert max_pool_step(nn.MaxPool2d((3, 2), 2), "p") is None
    assert max_pool_step(nn.MaxPool2d(3, 2, padding=2), "p") is None  # a window of padding alone
    assert max_pool_step(nn.AvgPool2d(3, 2), "p") is None


@pytest.mark.parametrize("stem_bits", [32, 8])
def test_a_stem_with_a_max_pool_runs_natively_and_loads_from_a_packed_file(tmp_path, stem_bits):
    torch.manual_seed(7)
    genotype = BASELINES["reactnet_small"].genotype(28, 1, 10).model_copy(update={"stem_pool": True, "stem_bits": stem_bits})
    model = build_model(genotype).eval()
    engine = compile_model(model, (1, 28, 28))
    assert [step.name for step in engine.steps[:2]] == ["stem" if stem_bits == 32 else "stem.0", "stem.2"]
    assert isinstance(engine.steps[1], NativeMaxPool) and not engine.fallbacks
    images = np.random.default_rng(8).standard_normal((3, 1, 28, 28)).astype(np.float32)
    got = engine(images)
    if stem_bits == 32:  # the 8-bit stem's integer conv rounds otherwise than torch's simulation
        with torch.inference_mode():
            expected = model(torch.from_numpy(images)).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    loaded, _ = load_packed(save_packed(engine, genotype, tmp_path / "m.bitnas.npz"))
    assert np.array_equal(loaded(images), got)


@pytest.mark.parametrize("name", ["bireal_small", "reactnet_small"])
def test_downsampling_shortcuts_run_natively_and_load_from_a_packed_file(tmp_path, name):
    torch.manual_seed(5)
    genotype = BASELINES[name].genotype(28, 1, 10)
    model = build_model(genotype).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    engine = compile_model(model, (1, 28, 28))
    convs = [part for step in engine.steps for part in (step.parts() if hasattr(step, "parts") else [step])]
    native = [conv for conv in convs if getattr(conv, "shortcut", None) == "module"]
    assert native and all(conv.shortcut_native for conv in native)
    images = np.random.default_rng(6).standard_normal((4, 1, 28, 28)).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(images)).numpy()
    got = engine(images)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    # a fresh engine (random numbers) takes the file's numbers, the native shortcuts' included
    loaded, _ = load_packed(save_packed(engine, genotype, tmp_path / "m.bitnas.npz"))
    assert np.array_equal(loaded(images), got)
