"""Every registered quantizer: forward, backward, declared bits; the low-bit ones produce only their levels."""

import pytest
import torch

from bitnas.spaces import QUANTIZERS
from bitnas.spaces.quantizers import (
    BIT_WIDTHS, ApproxSign, LsqActivations, RSign, SignSTE, TwoBitSymmetric, TwoBitWeights, UniformWeights,
    activation_quantizer, weight_quantizer,
)


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_every_quantizer_runs_forward_backward_without_nan(name):
    torch.manual_seed(0)
    quantizer = QUANTIZERS[name]()
    x = (torch.randn(4, 3, 3, 3) * 0.5).requires_grad_()
    y = quantizer(x)
    (y * torch.randn_like(y)).sum().backward()
    assert quantizer.bits in BIT_WIDTHS
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in quantizer.parameters())
    if quantizer.bits == 1:  # binary: one magnitude per output channel, two signs, never zero
        for channel in y.detach():
            assert channel.abs().unique().numel() == 1 and (channel != 0).all()
    if quantizer.bits < 32:
        assert y.detach().unique().numel() <= 2 ** quantizer.bits * x.shape[0]  # at most 2^k levels per channel


def test_sign_ste_gradient_is_clipped():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    y = SignSTE()(x)
    y.sum().backward()
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def test_approx_sign_has_bireal_triangle_gradient():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    y = ApproxSign()(x)
    y.sum().backward()
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    assert x.grad.tolist() == [0.0, 1.0, 2.0, 1.0, 0.0]  # 2 - 2|x| inside [-1, 1]


def test_rsign_threshold_is_learned_per_channel():
    quantizer = RSign(2)
    with torch.no_grad():
        quantizer.threshold[0, 1] = 0.5
    x = torch.full((1, 2, 1, 1), 0.25, requires_grad=True)
    y = quantizer(x)
    assert y.flatten().tolist() == [1.0, -1.0]
    y.sum().backward()
    assert quantizer.threshold.grad.flatten().tolist() == [-1.0, -1.0]


def test_two_bit_produces_only_its_four_levels_and_learns_the_inner_one():
    quantizer = TwoBitSymmetric()
    x = torch.linspace(-3, 3, 601, requires_grad=True)
    y = quantizer(x)
    a = float(quantizer.level().detach())
    assert a == pytest.approx(0.3)
    assert set(y.detach().unique().tolist()) == {-1.0, -a, a, 1.0}
    assert torch.equal(quantizer.levels(), torch.tensor([-1.0, -a, a, 1.0]))
    # nearest level: below (1 + a) / 2 = 0.65 in magnitude goes to +-a
    assert float(quantizer(torch.tensor(0.6))) == pytest.approx(a) and float(quantizer(torch.tensor(0.7))) == 1.0
    y.sum().backward()
    assert quantizer.inner.grad is not None and quantizer.inner.grad != 0


def test_two_bit_weights_use_four_levels_per_output_channel():
    torch.manual_seed(0)
    w = torch.randn(5, 3, 3, 3)
    y = TwoBitWeights()(w)
    for channel, original in zip(y, w):
        scale = original.abs().max()
        assert torch.allclose(channel.unique().abs().unique(), torch.tensor([0.3, 1.0]) * scale)


@pytest.mark.parametrize("bits", [4, 8])
def test_lsq_produces_integer_multiples_of_its_step_within_range(bits):
    quantizer = LsqActivations(bits)
    x = torch.randn(10_000) * float(quantizer.step) * 2 ** bits  # wide enough to clip at both ends
    y = quantizer(x).detach()
    levels = y / quantizer.step.detach()
    assert torch.allclose(levels, levels.round(), atol=1e-4)
    levels = levels.round()
    assert levels.min() == -(2 ** (bits - 1)) and levels.max() == 2 ** (bits - 1) - 1  # the range is used, not exceeded
    assert levels.unique().numel() <= 2 ** bits


@pytest.mark.parametrize("bits", [4, 8])
def test_uniform_weights_are_symmetric_integers_per_channel(bits):
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3)
    y = UniformWeights(bits)(w)
    qp = 2 ** (bits - 1) - 1
    for channel, original in zip(y, w):
        integers = channel / (original.abs().max() / qp)
        assert torch.allclose(integers, integers.round(), atol=1e-3)
        assert integers.abs().max().round() == qp  # the largest weight lands on the top level


@pytest.mark.parametrize("bits", BIT_WIDTHS)
def test_default_quantizers_declare_the_requested_width(bits):
    assert activation_quantizer(bits).bits == bits and weight_quantizer(bits).bits == bits


def test_unsupported_width_is_a_clear_error():
    with pytest.raises(ValueError, match="no activation quantizer for 3 bits"):
        activation_quantizer(3)
