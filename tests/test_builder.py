import pytest
import torch

from bitnas.spaces import BLOCKS, QUANTIZERS, Genotype, SpaceConfig, StageSpec, build_model


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("in_channels, out_channels, stride", [(8, 8, 1), (8, 16, 2), (6, 10, 1), (5, 5, 2)])
def test_every_block_runs_forward_and_backward(name, in_channels, out_channels, stride):
    torch.manual_seed(0)
    block = BLOCKS[name](in_channels, out_channels, stride, 3)
    x = torch.randn(2, in_channels, 9, 9, requires_grad=True)
    y = block(x)
    assert y.shape == (2, out_channels, (9 + stride - 1) // stride, (9 + stride - 1) // stride)
    y.square().mean().backward()
    assert torch.isfinite(y).all()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_every_quantizer_declares_its_bits_and_passes_gradients(name):
    quantizer = QUANTIZERS[name]()
    x = (torch.randn(4, 3, 3, 3) * 0.5).requires_grad_()
    y = quantizer(x)
    y.sum().backward()
    assert quantizer.bits in (1, 32)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    if quantizer.bits == 1:
        # binary: one magnitude per output channel, two signs, never zero
        for channel in y.detach():
            assert channel.abs().unique().numel() == 1 and (channel != 0).all()


def test_sign_ste_gradient_is_clipped():
    from bitnas.spaces.quantizers import SignSTE

    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    y = SignSTE()(x)
    y.sum().backward()
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]


def _one_at_a_time(space: SpaceConfig):
    """Every value of every parameter appears in at least one genotype."""
    base = {name: choices[0] for name, choices in space.choices().items()}
    yield base
    for name, choices in space.choices().items():
        for value in choices[1:]:
            yield {**base, name: value}


@pytest.mark.parametrize("params", list(_one_at_a_time(SpaceConfig())), ids=lambda p: str(sorted(p.items()))[:60])
def test_every_space_choice_builds_and_trains_one_step(params):
    torch.manual_seed(0)
    genotype = SpaceConfig().decode(params, input_size=28, in_channels=1, num_classes=10)
    model = build_model(genotype)
    logits = model(torch.randn(3, 1, 28, 28))
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())


def test_builder_is_pure():
    genotype = Genotype(input_size=8, in_channels=1, num_classes=3, stem_width=4,
                        stages=(StageSpec(block="binary", width=4, depth=1),))
    torch.manual_seed(1)
    first = build_model(genotype).state_dict()
    torch.manual_seed(1)
    second = build_model(genotype).state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
