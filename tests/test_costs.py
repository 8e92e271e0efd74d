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


# Bits each layer reads (weights at their width + inputs at theirs), by hand:
# stem 36x32 + 64x32 = 3200; binary conv 144x1 + 256x1 = 400; float conv 288x32 + 256x32 = 17408;
# fc 80x32 + 8x32 = 2816 (the bias is not counted as traffic).
MEMORY_BITS = [3200, 400, 17408, 2816]


def test_memory_traffic_by_hand():
    assert [layer.memory_bits for layer in genotype_costs(HAND).layers] == MEMORY_BITS


def test_energy_by_hand():
    costs = genotype_costs(HAND)
    energy = estimate_energy(costs)
    fp32_mac, binary_mac, sram_word = 3.7 + 0.9, (0.2 + 0.03) / 64, 5.0  # Horowitz 45 nm, pJ
    compute_pj = 6992 * fp32_mac + 9216 * binary_mac
    memory_pj = sum(MEMORY_BITS) / 32 * sram_word  # every working set fits the 256 KiB buffer
    assert energy.compute_uj == pytest.approx(compute_pj / 1e6)
    assert energy.memory_uj == pytest.approx(memory_pj / 1e6)
    assert energy.total_uj == pytest.approx((compute_pj + memory_pj) / 1e6)
    assert sum(energy.by_layer_pj) == pytest.approx(compute_pj + memory_pj)
    assert energy.source.startswith("analytic:horowitz45nm (Horowitz, ISSCC 2014, 45 nm")


def test_a_users_profile_file_moves_traffic_to_dram_and_prices_binary_macs(tmp_path):
    profile = tmp_path / "tiny_buffer.yaml"
    profile.write_text("name: tiny\nsource: test\nfp32_mac_pj: 1\nint8_mac_pj: 0.5\nbinary_mac_pj: 0.01\n"
                       "sram_pj_per_word: 1\ndram_pj_per_word: 100\nsram_bytes: 100\n")
    energy = estimate_energy(genotype_costs(HAND), str(profile))
    # 100 bytes of buffer: only the binary conv (400 bits = 50 bytes) reads from SRAM.
    memory_pj = 400 / 32 * 1 + (3200 + 17408 + 2816) / 32 * 100
    assert energy.memory_uj == pytest.approx(memory_pj / 1e6)
    assert energy.compute_uj == pytest.approx((6992 * 1 + 9216 * 0.01) / 1e6)


def test_unknown_or_broken_profiles_are_one_line_errors(tmp_path):
    from bitnas.evaluators.energy import EnergyProfileError

    with pytest.raises(EnergyProfileError, match="unknown energy profile 'nope'; known: binary_accelerator_22nm, horowitz45nm"):
        estimate_energy(genotype_costs(HAND), "nope")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsource: y\nfp32_mac_pj: -1\n")
    with pytest.raises(EnergyProfileError, match=r"broken\.yaml: fp32_mac_pj: Input should be greater than 0"):
        estimate_energy(genotype_costs(HAND), str(broken))


def test_binary_layers_are_marked_in_the_table():
    rows = genotype_costs(HAND).rows()
    assert [(r["name"], r["weight_bits"], r["input_bits"]) for r in rows] == [
        ("stem.0", 32, 32), ("stages.0.conv", 1, 1), ("stages.1.conv", 32, 32), ("fc", 32, 32)]


# A small network with every kind of layer width: binary (ReActNet, duplicated 1x1), 8-bit MBConv and
# classifier, W2A4 depthwise-separable, fp32 stem. The table and totals are pinned (a snapshot): a
# change here changes every reported cost, so it must be deliberate. The totals are checked by hand:
# OPs = 2304 fp32 + 2816 binary / 64 + 6560 int8 x 64/64 + 3200 W2A4 x 8/64 = 9308;
# ACE = 2304 x 1024 + 2816 + 6560 x 64 + 3200 x 8 = 2,807,552.
MIXED = Genotype(input_size=8, in_channels=1, num_classes=10, stem_width=4, head_bits=8, stages=(
    StageSpec(block="reactnet", width=8, depth=1, stride=2),
    StageSpec(block="mbconv", width=8, depth=1, expansion=2, weight_bits=8, activation_bits=8),
    StageSpec(block="dwsep", width=16, depth=1, weight_bits=2, activation_bits=4)))

MIXED_TABLE = """\
layer                 kind        in     out  k   g   W   A   MACs  params   bits
stem.0                conv     1x8x8   4x8x8  3   1  32  32  2,304      36  1,152
stages.0.conv_k       conv     4x8x8   4x4x4  3   1   1   1  2,304     144    144
stages.0.convs_1x1.0  conv     4x4x4   4x4x4  1   1   1   1    256      16     16
stages.0.convs_1x1.1  conv     4x4x4   4x4x4  1   1   1   1    256      16     16
stages.1.body.0       conv     8x4x4  16x4x4  1   1   8   8  2,048     128  1,024
stages.1.body.3       conv    16x4x4  16x4x4  3  16   8   8  2,304     144  1,152
stages.1.body.6       conv    16x4x4   8x4x4  1   1   8   8  2,048     128  1,024
stages.2.depthwise    conv     8x4x4   8x4x4  3   8   2   4  1,152      72    144
stages.2.pointwise    conv     8x4x4  16x4x4  1   1   2   4  2,048     128    256
fc                    linear      16      10  0   1   8   8    160     170  1,600"""


def test_cost_table_of_a_mixed_precision_network_is_pinned():
    costs = genotype_costs(MIXED)
    assert costs.table() == MIXED_TABLE
    assert costs.totals() == {
        "params": 1198, "size_bits": 13440, "size_kb": 13440 / 8 / 1024, "bops": 2816, "flops": 2304, "ops": 9308.0,
        "ace": 2_807_552, "macs": 14880, "macs_2bit": 0, "macs_4bit": 3200, "macs_8bit": 6560,
        "memory_bits": 14912, "memory_kb": 14912 / 8 / 1024}


def test_memory_traffic_counts_weights_and_inputs_at_their_widths():
    stem, binary = genotype_costs(HAND).layers[:2]
    assert stem.memory_bits == 36 * 32 + 64 * 32          # 3x3x1x4 fp32 weights + 8x8x1 fp32 input
    assert binary.memory_bits == 144 * 1 + 4 * 64 * 1     # 1-bit weights + 4x8x8 1-bit input


def test_fully_binary_means_every_conv_after_the_stem_binary_shortcuts_included():
    from bitnas.spaces.baselines import BASELINES

    verdicts = {name: genotype_costs(BASELINES[name].genotype(28, 1, 10)).not_fully_binary()
                for name in ("reactnet_small", "bireal_small", "mobilenetv2_int8_small")}
    assert verdicts["reactnet_small"] is None  # binary convs throughout; its strided shortcut is a pool
    assert verdicts["bireal_small"].name.endswith("shortcut.conv")  # Bi-Real's fp32 1x1 downsampling
    assert (verdicts["mobilenetv2_int8_small"].weight_bits, verdicts["mobilenetv2_int8_small"].input_bits) == (8, 8)
