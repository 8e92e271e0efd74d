"""Analytic energy per inference: compute (MACs x energy per MAC at the layer's bit widths) plus
memory traffic (words read x energy per word, from SRAM when the layer's working set fits the
on-chip buffer, else from DRAM).

Profiles are data: YAML files in `evaluators/energy_profiles/` (the default, `horowitz45nm`, is
Horowitz, ISSCC 2014, 45 nm), or any file a user names by path. A profile gives:
- `fp32_mac_pj`, `int8_mac_pj`: a MAC with a 16/32-bit operand costs the fp32 figure; integer MACs
  of w-bit weights and a-bit activations cost int8 x (w x a) / 64, PokeBNN's ACE rule;
- `binary_mac_pj`: the measured cost of a 1-bit MAC where the hardware has one (else ACE scaling);
- `sram_pj_per_word`, `dram_pj_per_word`, `sram_bytes`: the memory side.
Every estimate carries its source (profile name and citation).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from typing import TYPE_CHECKING

from bitnas.errors import UserError
from bitnas.spaces.genotype import describe_validation_error

if TYPE_CHECKING:  # the cost counter needs torch; a config check reads profiles without it
    from bitnas.spaces.costs import CostReport

PROFILE_DIR = Path(__file__).with_name("energy_profiles")
DEFAULT_PROFILE = "horowitz45nm"


class EnergyProfileError(UserError):
    """A profile that cannot be found or read; the message names it."""


class EnergyProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    source: str
    fp32_mac_pj: float = Field(gt=0)
    int8_mac_pj: float = Field(gt=0)
    binary_mac_pj: float | None = Field(None, gt=0)
    sram_pj_per_word: float = Field(ge=0)
    dram_pj_per_word: float = Field(ge=0)
    sram_bytes: int = Field(ge=0)

    def mac_pj(self, weight_bits: int, input_bits: int) -> float:
        if weight_bits >= 16 or input_bits >= 16:
            return self.fp32_mac_pj
        if weight_bits == 1 and input_bits == 1 and self.binary_mac_pj is not None:
            return self.binary_mac_pj
        return self.int8_mac_pj * (weight_bits * input_bits) / 64

    def memory_pj(self, bits: int) -> float:
        """Reading `bits` (a layer's weights and inputs) once, as 32-bit words."""
        per_word = self.sram_pj_per_word if bits / 8 <= self.sram_bytes else self.dram_pj_per_word
        return bits / 32 * per_word


def profile_names() -> list[str]:
    return sorted(path.stem for path in PROFILE_DIR.glob("*.yaml"))


@lru_cache(maxsize=16)
def load_profile(name_or_path: str) -> EnergyProfile:
    """A shipped profile by name, or a user's YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise EnergyProfileError(f"unknown energy profile {name_or_path!r}; known: {', '.join(profile_names())} "
                                     f"(or give the path of a YAML profile)")
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise EnergyProfileError(f"{path}: cannot read energy profile ({error.strerror})") from None
    except yaml.YAMLError:
        raise EnergyProfileError(f"{path}: energy profile is not valid YAML") from None
    try:
        return EnergyProfile.model_validate(data)
    except ValidationError as error:
        raise EnergyProfileError(f"{path}: {describe_validation_error(error, '')}") from None


# Kept for callers that list the shipped profiles.
PROFILES = {name: name for name in profile_names()}


@dataclass(frozen=True)
class EnergyEstimate:
    total_uj: float
    compute_uj: float
    memory_uj: float
    by_layer_pj: tuple[float, ...]
    source: str


def estimate_energy(costs: CostReport, profile: str = DEFAULT_PROFILE) -> EnergyEstimate:
    """Energy of one inference, in microjoules, split into compute and memory."""
    chosen = load_profile(profile)
    compute = [layer.macs * chosen.mac_pj(layer.weight_bits, layer.input_bits) for layer in costs.layers]
    memory = [chosen.memory_pj(layer.memory_bits) for layer in costs.layers]
    return EnergyEstimate(
        total_uj=(sum(compute) + sum(memory)) / 1e6, compute_uj=sum(compute) / 1e6, memory_uj=sum(memory) / 1e6,
        by_layer_pj=tuple(c + m for c, m in zip(compute, memory)),
        source=f"analytic:{chosen.name} ({chosen.source}; compute + memory)",
    )
