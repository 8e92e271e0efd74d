import pytest
import torch

from bitnas.spaces import Genotype, SpaceConfig, StageSpec, build_model


# The per-block and per-quantizer contract tests live in test_blocks.py and test_quantizers.py.


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
