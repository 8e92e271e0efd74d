"""Analytic energy per inference: MACs per layer times the energy of one MAC at its bit widths.

The default profile is Horowitz, ISSCC 2014, 45 nm (shared/reference/numbers.md):
- fp32 MAC = fp32 mult 3.7 pJ + fp32 add 0.9 pJ = 4.6 pJ;
- int8 MAC = int8 mult 0.2 pJ + int8 add 0.03 pJ = 0.23 pJ;
- narrower integer MACs scale from int8 by (weight bits x activation bits) / 64, PokeBNN's ACE
  rule, so a binary MAC (XNOR + popcount share) costs 0.23 / 64 pJ ~ 3.6 fJ.
Memory traffic is not counted yet (macs-only), and the source string says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitnas.spaces import CostReport


@dataclass(frozen=True)
class EnergyProfile:
    name: str
    fp32_mac_pj: float
    int8_mac_pj: float

    def mac_pj(self, weight_bits: int, input_bits: int) -> float:
        if weight_bits >= 16 or input_bits >= 16:
            return self.fp32_mac_pj
        return self.int8_mac_pj * (weight_bits * input_bits) / 64


PROFILES = {"horowitz45nm": EnergyProfile("horowitz45nm", fp32_mac_pj=3.7 + 0.9, int8_mac_pj=0.2 + 0.03)}


@dataclass(frozen=True)
class EnergyEstimate:
    total_uj: float
    by_layer_pj: tuple[float, ...]
    source: str


def estimate_energy(costs: CostReport, profile: str = "horowitz45nm") -> EnergyEstimate:
    """Energy of one inference, in microjoules."""
    if profile not in PROFILES:
        raise ValueError(f"unknown energy profile {profile!r}; known: {', '.join(sorted(PROFILES))}")
    chosen = PROFILES[profile]
    per_layer = tuple(layer.macs * chosen.mac_pj(layer.weight_bits, layer.input_bits) for layer in costs.layers)
    return EnergyEstimate(total_uj=sum(per_layer) / 1e6, by_layer_pj=per_layer, source=f"analytic:{chosen.name}:macs-only")
