"""The cost counter and energy model on a network small enough to count by hand."""

import pytest

from bitnas.evaluators import estimate_energy
from bitnas.spaces import Genotype, StageSpec, genotype_costs

# 8x8x1 input -> stem 3x3 to 4 ch (fp) -> binary 3x3 4->4 (identity shortcut) -> float 3x3 4->8, stride 2 -> fc 8->10
HAND = Genotype(input_size=8, in_channels=1, num_classes=10, stem_width=4,
                stages=(StageSpec(block="binary", width=4, depth=1, stride=1),
                        StageSpec(block="float", width=8, depth=1, stride=2)))


def test_macs_by_hand():
    costs = genotype_costs(HAND)
    assert [layer.macs for layer in costs.layers] == [
        8 * 8 * 4 * (3 * 3 * 1),  # stem: 2304
        8 * 8 * 4 * (3 * 3 * 4),  # binary conv: 9216
        4 * 4 * 8 * (3 * 3 * 4),  # float conv at stride 2: 4608
        8 * 10,                   # fc: 80
    ]
    assert costs.bops == 9216
    assert costs.flops == 2304 + 4608 + 80
    assert costs.ops == pytest.approx(9216 / 64 + 6992)


def test_params_and_size_by_hand():
    costs = genotype_costs(HAND)
    # stem conv 36 + BN 8; binary threshold 4 + conv 144 + BN 8; float conv 288 + BN 16; fc 80 + 10
    assert costs.params == 594
    # the binary conv's 144 weights at 1 bit, every other parameter at 32 bits
    assert costs.size_bits == 144 + 32 * (594 - 144)


def test_energy_by_hand():
    costs = genotype_costs(HAND)
    energy = estimate_energy(costs)
    fp32_mac, binary_mac = 3.7 + 0.9, (0.2 + 0.03) / 64
    assert energy.total_uj == pytest.approx((6992 * fp32_mac + 9216 * binary_mac) / 1e6)
    assert energy.source.startswith("analytic:horowitz45nm")


def test_binary_layers_are_marked_in_the_table():
    rows = genotype_costs(HAND).rows()
    assert [(r["name"], r["weight_bits"], r["input_bits"]) for r in rows] == [
        ("stem.0", 32, 32), ("stages.0.conv", 1, 1), ("stages.1.conv", 32, 32), ("fc", 32, 32)]
