"""Genotypes: frozen, validated descriptions of whole networks.

A genotype is data. It round-trips through JSON, has a one-line string form for logs and tables,
and a stable hash over its canonical JSON so that identical networks are recognised wherever they
come from (a sampler, a file, another process).
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bitnas.errors import UserError

from .blocks import BLOCKS

GENOTYPE_VERSION = 1


class GenotypeError(UserError):
    """A genotype that cannot describe a network; the message names the offending field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StageSpec(_Frozen):
    """One stage: `depth` blocks of one type, the first of which applies `stride`."""

    block: str
    width: int = Field(ge=1, le=4096)
    depth: int = Field(ge=1, le=32)
    stride: Literal[1, 2] = 1
    kernel: Literal[1, 3, 5, 7] = 3

    @model_validator(mode="after")
    def _known_block(self) -> StageSpec:
        if self.block not in BLOCKS:
            raise ValueError(f"unknown block {self.block!r}; known blocks: {', '.join(sorted(BLOCKS))}")
        return self

    def short(self) -> str:
        """timm-style block string, e.g. `binary_k3_s2_w32_d2`."""
        return f"{self.block}_k{self.kernel}_s{self.stride}_w{self.width}_d{self.depth}"


class Genotype(_Frozen):
    """A whole network: input geometry, a full-precision stem, stages, a full-precision head."""

    version: Literal[1] = GENOTYPE_VERSION
    input_size: int = Field(ge=4, le=1024)
    in_channels: int = Field(ge=1, le=16)
    num_classes: int = Field(ge=2, le=100_000)
    stem_width: int = Field(ge=1, le=4096)
    stages: tuple[StageSpec, ...] = Field(min_length=1, max_length=12)

    @model_validator(mode="after")
    def _resolution_survives(self) -> Genotype:
        size = self.input_size
        for index, stage in enumerate(self.stages):
            size = (size + stage.stride - 1) // stage.stride
            if size < 1:
                raise ValueError(f"stages[{index}] reduces the feature map below 1x1")
        return self

    # --- forms -------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    def canonical_json(self) -> str:
        """Sorted keys, no whitespace, every default written out: the input of the hash."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def hash(self) -> str:
        """First 16 hex digits of SHA-256 over the canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def short(self) -> str:
        """One line for logs and tables, e.g. `in28x1 stem16 | binary_k3_s1_w16_d1 | ... | fc10`."""
        parts = [f"in{self.input_size}x{self.in_channels}", f"stem{self.stem_width}"]
        parts += [stage.short() for stage in self.stages]
        parts.append(f"fc{self.num_classes}")
        return " | ".join(parts)

    @classmethod
    def from_dict(cls, data: object) -> Genotype:
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise GenotypeError(describe_validation_error(error, "genotype")) from None

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise GenotypeError(f"genotype: not valid JSON ({error.msg} at line {error.lineno})") from None
        return cls.from_dict(data)


def describe_validation_error(error: ValidationError, prefix: str) -> str:
    """Pydantic's first error as one line naming the field, e.g. `genotype.stages.0.width: ...`."""
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    where = ".".join(part for part in (prefix, location) if part) or "value"
    message = first["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif "input" in first and first["type"] not in ("missing",) and not isinstance(first["input"], (dict, list)):
        message += f" (got {first['input']!r})"
    more = len(error.errors()) - 1
    return f"{where}: {message}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
