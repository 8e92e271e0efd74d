"""Property tests (hypothesis) over the whole space: every sampled genotype builds, runs and
round-trips; corrupt genotype JSON is rejected with a GenotypeError naming the field, never
another exception."""

import json
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bitnas.spaces import BLOCKS, Genotype, GenotypeError, SpaceConfig, build_model, count_costs
from bitnas.spaces.genotype import describe_validation_error

# Every block, every option, every stem and head choice; widths that every groups choice divides.
WIDE = SpaceConfig(
    blocks=tuple(sorted(BLOCKS)), kernels=(1, 3, 5, 7), expansions=(1, 3), se=(False, True), groups=(2, 4),
    downsamples=("fp", "binary", "maxpool"), width_multipliers=(0.5, 1.0), stem_kernels=(3, 7),
    stem_strides=(1, 2), stem_pools=(False, True), stem_bits=(8, 32), head_widths=(0, 32), head_bits=(8, 32),
)
FIELD_NAMED = re.compile(r"^genotype(\.\S+?)?: \S")


@st.composite
def assignments(draw, space=WIDE):
    return {name: draw(st.sampled_from(values)) for name, values in space.choices().items()}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(assignments(), st.sampled_from([(28, 1), (32, 3)]))
def test_every_sampled_genotype_builds_runs_counts_and_round_trips(params, geometry):
    size, channels = geometry
    genotype = WIDE.decode(params, input_size=size, in_channels=channels, num_classes=10)
    again = Genotype.from_json(genotype.to_json())
    assert again == genotype and again.hash() == genotype.hash()
    torch.manual_seed(0)
    model = build_model(genotype)
    logits = model(torch.randn(2, channels, size, size))
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    costs = count_costs(model, (channels, size, size))
    assert costs.params > 0 and costs.ops > 0 and costs.ace >= costs.bops


@settings(max_examples=60, deadline=None)
@given(assignments(), st.data())
def test_options_a_block_does_not_read_do_not_change_the_genotype(params, data):
    genotype = WIDE.decode(params, input_size=28, in_channels=1, num_classes=10)
    ignored = [name for name in params if re.match(r"s(\d+)_(expansion|se|groups|downsample)$", name)
               and name.split("_", 1)[1] not in _options_of(params[name.split("_", 1)[0] + "_block"])]
    if not ignored:
        return
    name = data.draw(st.sampled_from(ignored))
    changed = {**params, name: data.draw(st.sampled_from(WIDE.choices()[name]))}
    assert WIDE.decode(changed, input_size=28, in_channels=1, num_classes=10).hash() == genotype.hash()


def _options_of(block: str) -> tuple[str, ...]:
    from bitnas.spaces.blocks import BLOCK_INFO

    return BLOCK_INFO[block].options


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)
VALID = WIDE.decode({name: values[0] for name, values in WIDE.choices().items()},
                    input_size=28, in_channels=1, num_classes=10).to_dict()


@st.composite
def corrupted(draw):
    data = json.loads(json.dumps(VALID))
    stage = draw(st.integers(0, len(data["stages"]) - 1))
    target, where = draw(st.sampled_from([(data, ""), (data["stages"][stage], f"stages.{stage}.")]))
    key = draw(st.sampled_from(sorted(target)))
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        target[key] = draw(JSON_VALUES)
    elif action == "delete":
        del target[key]
    else:
        key = draw(st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True).filter(lambda k: k not in target))
        target[key] = draw(JSON_VALUES)
    return data, where + key, action


@settings(max_examples=300, deadline=None)
@given(corrupted())
def test_corrupt_genotype_json_is_a_genotype_error_naming_the_field(case):
    data, path, action = case
    try:
        genotype = Genotype.from_json(json.dumps(data))
    except GenotypeError as error:
        message = str(error)
        assert "\n" not in message
        assert FIELD_NAMED.match(message), message
        if action == "add":  # an unknown key is named as such
            assert message.startswith(f"genotype.{path}: unknown key"), message
        return
    # The corruption happened to be another valid genotype (e.g. a default deleted): it round-trips.
    assert Genotype.from_json(genotype.to_json()) == genotype


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40) | JSON_VALUES.map(json.dumps))
def test_arbitrary_text_is_a_genotype_error(text):
    with pytest.raises(GenotypeError) as raised:
        Genotype.from_json(text)
    assert "\n" not in str(raised.value) and str(raised.value).startswith("genotype")


@pytest.mark.parametrize("changes, message", [
    (dict(blocks=("shuffle",), groups=(3,)), r"^space\.stages\.0\.widths: groups 3 must divide"),
    (dict(blocks=("melius",), stages=({"widths": (2,), "depths": (2,)},)), r"^space\.stages\.0\.widths: dense blocks"),
    (dict(layout="lce"), r"^space\.stages\.0\.widths: layout 'lce'"),
    (dict(weight_bits=(1, 3)), r"^space\.weight_bits: .*bit width 3"),
    (dict(kernels=(2,)), r"^space\.kernels: .*kernel 2"),
    (dict(stages=({"widths": (8,), "depths": (0, 1)}, {"widths": (16,)})),
     r"^space\.stages\.0\.depths: only the last stage may have depth 0"),
    (dict(stages=({"widths": (8,), "depths": (0, 1)},)), r"^space\.stages\.0\.depths: a network needs a stage"),
    (dict(stages=({"widths": (8,), "depths": (0,)},)), r"^space\.stages\.0.*include one above 0"),
])
def test_a_space_that_could_decode_to_an_invalid_genotype_is_rejected_when_loaded(changes, message):
    with pytest.raises(ValidationError) as raised:
        SpaceConfig(**changes)
    assert re.search(message, describe_validation_error(raised.value, "space"))


def test_default_space_keeps_the_binary_block_and_the_driver_interface():
    space = SpaceConfig()
    assert "binary" in space.blocks
    choices = space.choices()
    assert {"stem_width", "s0_block", "s0_width", "s0_depth"} <= choices.keys()
    assert space.size() == __import__("math").prod(len(values) for values in choices.values())


def test_an_optional_last_stage_at_depth_0_is_left_out_of_the_network():
    space = SpaceConfig(stages=({"widths": (8,)}, {"stride": 2, "widths": (16,), "depths": (0, 1, 2)}))
    assert space.choices()["s1_depth"] == [0, 1, 2]
    params = {name: values[0] for name, values in space.choices().items()}
    geometry = dict(input_size=28, in_channels=1, num_classes=10)
    short = space.decode(params, **geometry)
    assert [stage.width for stage in short.stages] == [8]
    # the left-out stage's other choices do not change the network
    other = {**params, "s1_block": space.blocks[-1], "s1_width": 16}
    assert space.decode(other, **geometry).hash() == short.hash()
    assert [stage.width for stage in space.decode({**params, "s1_depth": 2}, **geometry).stages] == [8, 16]
