"""The fused autograd functions the 1-bit quantizers train through: the same values and the
same gradients as the plain straight-through form, bit for bit, so that training is unchanged
(only faster: benchmarks/training_speed.py); the values alone, the same values, in passes that
record no gradient; and the plain form wherever a model is exported."""

import contextlib

import pytest
import torch

from bitnas.evaluators import load_dataset
from bitnas.evaluators.settings import TrainingConfig
from bitnas.evaluators.train import train
from bitnas.spaces import Genotype, build_model
from bitnas.spaces.quantizers import (
    ApproxSign, RSign, ScaledSignWeights, SignSTE, SignWeights, plain_autograd,
)

# Values on and next to every edge the quantizers have: 0 and -0.0 (sign), +-1 (the clipped
# gradient's ends), denormals.
EDGES = [0.0, -0.0, 1.0, -1.0, 1.0000001, -1.0000001, 0.9999999, -0.9999999, 2.0, -2.0, 1e-40, -1e-40,
         -2.0, -2.0000002, 1.75, 1.7500002, 0.125, -0.125, 0.375]


def _values_and_gradients(module: torch.nn.Module, x: torch.Tensor, upstream: torch.Tensor, plain: bool):
    module.train()
    x = x.clone().requires_grad_()
    for parameter in module.parameters():
        parameter.grad = None
    if plain:
        with plain_autograd():
            y = module(x)
    else:
        y = module(x)
    (y * upstream).sum().backward()
    return y.detach(), x.grad, [p.grad.clone() for p in module.parameters()]


def _bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    # torch.equal counts 0.0 == -0.0; the sign bit is compared too.
    return torch.equal(a, b) and torch.equal(torch.signbit(a), torch.signbit(b))


@pytest.mark.parametrize("make, function", [
    (SignSTE, "_FusedSign"), (ApproxSign, "_SignThrough"), (lambda: RSign(3), "_FusedSign"),
    (lambda: RSign(1), "_FusedSign"),  # one threshold shared by every channel
    (SignWeights, "_ClippedSign"), (ScaledSignWeights, None),  # its straight-through is the identity
], ids=["sign_ste", "approx_sign", "rsign", "rsign_shared", "sign_weights", "scaled_sign"])
def test_fused_training_pass_equals_the_plain_one_bit_for_bit(make, function):
    torch.manual_seed(0)
    module = make()
    if isinstance(module, RSign):
        thresholds = torch.tensor([0.0, 0.5, -0.25] if module.threshold.numel() == 3 else [0.5])
        with torch.no_grad():
            module.threshold.copy_(thresholds.view(module.threshold.shape))
    edges = torch.tensor(EDGES * 3).view(1, 3, 1, len(EDGES))
    x = torch.cat([edges, torch.randn(1, 3, 1, len(EDGES)) * 1.5, torch.randn(1, 3, 1, len(EDGES)) * 20], dim=0)
    upstream = torch.randn_like(x)
    upstream[0, 0, 0, :4] = torch.tensor([-1.0, -0.5, 0.5, -2.0])  # negative gradients where the mask is 0 too
    fused = _values_and_gradients(module, x, upstream, plain=False)
    plain = _values_and_gradients(module, x, upstream, plain=True)
    if function is not None:  # the fused pass really went through the function
        assert type(module.train()(x.clone().requires_grad_()).grad_fn).__name__ == f"{function}Backward"
    assert _bitwise_equal(fused[0], plain[0])
    assert _bitwise_equal(fused[1], plain[1])
    assert len(fused[2]) == len(plain[2]) and all(_bitwise_equal(a, b) for a, b in zip(fused[2], plain[2]))


def test_evaluation_with_gradients_takes_the_plain_form_and_no_grad_passes_the_value_alone():
    quantizer = SignSTE().eval()
    x = torch.randn(2, 3, requires_grad=True)
    assert type(quantizer(x).grad_fn).__name__ == "AddBackward0"  # the plain form's last operation
    quantizer.train()
    assert type(quantizer(x).grad_fn).__name__ == "_ClippedSignBackward"
    with torch.no_grad():
        assert quantizer(x).grad_fn is None
        assert torch.equal(quantizer(x), torch.where(x >= 0, 1.0, -1.0))
    with plain_autograd():
        assert type(quantizer(x).grad_fn).__name__ == "AddBackward0"


@pytest.mark.parametrize("make", [SignSTE, ApproxSign, lambda: RSign(3)])
def test_the_value_alone_is_the_plain_form_s_value(make):
    quantizer = make()
    if isinstance(quantizer, RSign):
        quantizer.threshold.data = torch.tensor([0.5, -0.25, 0.0]).view(1, 3, 1, 1)
    # Zeros of both signs, values on and beyond the clip, and ones the threshold moves to zero.
    x = torch.tensor([0.0, -0.0, 1.0, -1.0, 3.0, -3.0, 0.5, -0.25, 1e-30]).repeat(2, 3, 1, 1)
    with torch.no_grad():
        value_alone = quantizer(x)
        with plain_autograd():
            plain = quantizer(x)
    assert _bitwise_equal(value_alone, plain)


# A network with every fused quantizer in it, RSign and sign weights (reactnet), SignSTE and scaled
# sign weights (binary), and plain LSQ activations (dwsep at 4/8 bits) beside them.
MIXED = Genotype.from_dict(dict(input_size=28, in_channels=1, num_classes=10, stem_width=8, stages=[
    dict(block="reactnet", width=8, depth=1, stride=1, weight_bits=1, activation_bits=1),
    dict(block="binary", width=16, depth=1, stride=2),
    dict(block="dwsep", width=16, depth=1, stride=2, weight_bits=4, activation_bits=8),
]))


def test_training_with_the_fused_functions_gives_the_plain_weights():
    data = load_dataset("mnist5k", 0)
    config = TrainingConfig(epochs=0.1, bn_recalibration=64)
    states = []
    for plain in (False, True):
        torch.manual_seed(0)
        model = build_model(MIXED)
        if plain:
            with plain_autograd():
                outcome = train(model, data.train, data.val, config, seed=0)
        else:
            outcome = train(model, data.train, data.val, config, seed=0)
        states.append((model.state_dict(), outcome.epoch_val_accuracy))
    (fused, fused_curve), (plain, plain_curve) = states
    assert fused.keys() == plain.keys()
    assert all(torch.equal(fused[key], plain[key]) for key in fused)
    assert fused_curve == plain_curve


def test_recalibration_and_evaluation_without_gradients_give_the_plain_statistics_and_logits():
    """The passes that record no gradient (quantizers' values alone, RPReLU's fused forward) change
    neither BatchNorm's recalibrated statistics nor a single logit, bit for bit."""
    from bitnas.evaluators.train import recalibrate_batchnorm
    from bitnas.spaces.fused_rprelu import plain_rprelu

    torch.manual_seed(0)
    images, held_out = torch.randn(96, 1, 28, 28), torch.randn(40, 1, 28, 28)
    results = []
    for plain in (False, True):
        torch.manual_seed(1)
        model = build_model(MIXED)
        with torch.no_grad():  # away from the fresh network's zeros and ones
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)
        with contextlib.ExitStack() as stack:
            if plain:
                stack.enter_context(plain_autograd())
                stack.enter_context(plain_rprelu())
            recalibrate_batchnorm(model, images, batch_size=96)
            with torch.inference_mode():
                logits = model.eval()(held_out)
        results.append((model.state_dict(), logits))
    (fast, fast_logits), (plain, plain_logits) = results
    assert all(_bitwise_equal(fast[key].float(), plain[key].float()) for key in fast)
    assert _bitwise_equal(fast_logits, plain_logits)
