"""RPReLU's fused training path (spaces/fused_rprelu.py): the plain modules' values bit for bit,
their gradients to float32 rounding, and the plain operators wherever a model is evaluated,
recalibrated or exported."""

import pytest
import torch

from bitnas.spaces import build_model
from bitnas.spaces.baselines import small_baselines
from bitnas.spaces.fused_rprelu import plain_rprelu, takes_fused_path
from bitnas.spaces.layers import RPReLU


def _rprelu(channels: int, seed: int) -> RPReLU:
    torch.manual_seed(seed)
    module = RPReLU(channels)
    with torch.no_grad():  # fresh modules hold zero shifts and one slope: make every term count
        module.shift_in.shift.normal_(0, 0.3)
        module.shift_out.shift.normal_(0, 0.3)
        module.prelu.weight.uniform_(-0.5, 0.9)
    return module.train()


def _pass(module: RPReLU, x: torch.Tensor, upstream: torch.Tensor, plain: bool):
    x = x.clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    if plain:
        with plain_rprelu():
            y = module(x)
    else:
        y = module(x)
    (y * upstream).sum().backward()
    return y.detach(), x.grad, [p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("shape", [(4, 3, 5, 5), (1, 8, 1, 1), (16, 32, 7, 7)])
def test_fused_pass_gives_the_plain_values_and_gradients(shape):
    module = _rprelu(shape[1], seed=shape[1])
    generator = torch.Generator().manual_seed(7)
    x = torch.randn(shape, generator=generator)
    x[0, 0, 0, 0] = -module.shift_in.shift[0, 0, 0, 0].item()  # exactly on the kink: z == 0 takes the slope side
    upstream = torch.randn(shape, generator=generator)
    fused, plain = _pass(module, x, upstream, plain=False), _pass(module, x, upstream, plain=True)
    assert torch.equal(fused[0], plain[0])
    assert torch.equal(fused[1], plain[1])  # elementwise: the same product, no sums
    for got, want in zip(fused[2], plain[2]):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_non_contiguous_input_gives_the_plain_result():
    module = _rprelu(6, seed=1)
    x = torch.randn(2, 5, 5, 6).permute(0, 3, 1, 2)  # channels last in memory
    upstream = torch.randn(2, 6, 5, 5)
    fused, plain = _pass(module, x, upstream, plain=False), _pass(module, x, upstream, plain=True)
    assert torch.equal(fused[0], plain[0]) and torch.equal(fused[1], plain[1])


def test_eval_mode_with_gradients_float64_and_the_switch_take_the_plain_operators():
    module = _rprelu(4, seed=2)
    x = torch.randn(2, 4, 3, 3)
    assert takes_fused_path(module, x)
    with torch.no_grad():
        assert takes_fused_path(module, x)  # BatchNorm recalibration
        assert takes_fused_path(module.eval(), x)  # validation
    assert not takes_fused_path(module.train(), x.double())
    assert not takes_fused_path(module.eval(), x)  # gradients in eval mode: the zero-cost proxies
    with plain_rprelu():
        assert not takes_fused_path(module.train(), x)


def test_the_onnx_tracer_sees_the_plain_operators():
    module = _rprelu(4, seed=2).eval()
    with torch.no_grad():  # a pass that records no gradient, yet traced: the plain operators
        traced = torch.jit.trace(module, torch.randn(2, 4, 3, 3))
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert "aten::prelu" in kinds and not any("Python" in kind for kind in kinds)


def test_a_reactnet_training_step_matches_the_plain_one():
    """The whole network: the same logits bit for bit, every gradient within float32 rounding."""
    genotype = small_baselines(input_size=28, in_channels=1, num_classes=10)["reactnet_small"]
    torch.manual_seed(0)
    model = build_model(genotype).train()
    generator = torch.Generator().manual_seed(3)
    x, labels = torch.randn(8, 1, 28, 28, generator=generator), torch.randint(0, 10, (8,), generator=generator)

    def step(plain: bool):
        model.zero_grad(set_to_none=True)
        with plain_rprelu() if plain else torch.enable_grad():
            logits = model(x)
            torch.nn.functional.cross_entropy(logits, labels).backward()
        return logits.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}

    fused, plain = step(False), step(True)
    assert torch.equal(fused[0], plain[0])
    for name, grad in fused[1].items():
        torch.testing.assert_close(grad, plain[1][name], rtol=1e-4, atol=1e-6, msg=name)
