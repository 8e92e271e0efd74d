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

from .catalog import BLOCK_INFO

GENOTYPE_VERSION = 2
MAX_GENOTYPE_CHARS = 1 << 20
MAX_GROUPS = 64


class GenotypeError(UserError):
    """A genotype that cannot describe a network; the message names the offending field."""


class FieldProblem(ValueError):
    """Raised by a model validator about one field, so that the message can name it
    (pydantic gives model validators an empty location)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Bits = Literal[1, 2, 4, 8, 32]
_OPTION_DEFAULTS = {"expansion": 1, "se": False, "groups": 1, "downsample": "fp"}


class StageSpec(_Frozen):
    """One stage: `depth` blocks of one type, the first of which applies `stride`.

    `expansion`, `se`, `groups` and `downsample` apply only to blocks that declare them (see
    `BLOCK_INFO`); elsewhere they must keep their defaults, so that one network has one genotype.
    Missing bit widths take the block's own (1/1 for binary blocks, 32/32 for compact ones).
    """

    block: str
    width: int = Field(ge=1, le=4096)
    depth: int = Field(ge=1, le=32)
    stride: Literal[1, 2] = 1
    kernel: Literal[1, 3, 5, 7] = 3
    weight_bits: Bits = 32
    activation_bits: Bits = 32
    expansion: int = Field(1, ge=1, le=8)
    se: bool = False
    groups: int = Field(1, ge=1, le=MAX_GROUPS)
    downsample: Literal["fp", "binary", "maxpool"] = "fp"

    @model_validator(mode="before")
    @classmethod
    def _block_default_bits(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("block"), str) and data["block"] in BLOCK_INFO:
            weight, activation = BLOCK_INFO[data["block"]].default_bits
            data = {"weight_bits": weight, "activation_bits": activation, **data}
        return data

    @model_validator(mode="after")
    def _fits_block(self) -> StageSpec:
        if self.block not in BLOCK_INFO:
            raise FieldProblem("block", f"unknown block {self.block!r}; known blocks: {', '.join(sorted(BLOCK_INFO))}")
        info = BLOCK_INFO[self.block]
        for field, allowed in (("weight_bits", info.weight_bits), ("activation_bits", info.activation_bits)):
            if getattr(self, field) not in allowed:
                raise FieldProblem(field, f"block {self.block!r} takes {field} in {sorted(allowed)} "
                                          f"(got {getattr(self, field)})")
        for option, default in _OPTION_DEFAULTS.items():
            if option not in info.options and getattr(self, option) != default:
                raise FieldProblem(option, f"block {self.block!r} has no {option}; leave it at {default!r} "
                                           f"(got {getattr(self, option)!r})")
        return self

    def short(self) -> str:
        """timm-style block string, e.g. `binary_k3_s2_w32_d2`, `mbconv_k5_s1_w24_d2_e6_se_W8A8`.

        Options appear only where they differ from their defaults, bit widths only for blocks
        that take a choice of them (as `W<weight bits>A<activation bits>`, the papers' notation).
        """
        text = f"{self.block}_k{self.kernel}_s{self.stride}_w{self.width}_d{self.depth}"
        if self.expansion != 1:
            text += f"_e{self.expansion}"
        if self.se:
            text += "_se"
        if self.groups != 1:
            text += f"_g{self.groups}"
        if self.downsample != "fp":
            text += f"_ds{self.downsample}"
        info = BLOCK_INFO[self.block]
        if len(info.weight_bits) > 1 or len(info.activation_bits) > 1:
            text += f"_W{self.weight_bits}A{self.activation_bits}"
        return text


def stage_channels(stem_width: int, stages: tuple[StageSpec, ...]) -> list[tuple[int, int]]:
    """(input channels, output channels) of every stage."""
    flow, channels = [], stem_width
    for stage in stages:
        flow.append((channels, stage.width))
        channels = stage.width
    return flow


class Genotype(_Frozen):
    """A whole network: input geometry, a stem, stages, a head (optional 1x1 conv) and a classifier.

    The stem is a k x k conv (stride 1 or 2, optionally followed by a 3x3/2 max pool), in full
    precision or 8 bits; the classifier is a linear layer in full precision or 8 bits. `layout`
    names optional hardware layout rules: "lce" requires every stage with 1-bit weights to take
    input channels in multiples of 32 and give output channels in multiples of 8, as Larq Compute
    Engine's binary kernels do.
    """

    version: Literal[2] = GENOTYPE_VERSION
    input_size: int = Field(ge=4, le=1024)
    in_channels: int = Field(ge=1, le=16)
    num_classes: int = Field(ge=2, le=100_000)
    stem_width: int = Field(ge=1, le=4096)
    stem_kernel: Literal[1, 3, 5, 7] = 3
    stem_stride: Literal[1, 2] = 1
    stem_pool: bool = False
    stem_bits: Literal[8, 32] = 32
    stages: tuple[StageSpec, ...] = Field(min_length=1, max_length=24)
    head_width: int = Field(0, ge=0, le=8192)
    head_bits: Literal[8, 32] = 32
    layout: Literal["none", "lce"] = "none"

    @model_validator(mode="before")
    @classmethod
    def _upgrade_version_1(cls, data: object) -> object:
        # Version 1 had a subset of today's fields with the same meanings and today's defaults.
        if isinstance(data, dict) and data.get("version") == 1:
            data = {**data, "version": GENOTYPE_VERSION}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Genotype:
        size = (self.input_size + self.stem_stride - 1) // self.stem_stride
        size = (size + 1) // 2 if self.stem_pool else size
        if size < 1:
            raise FieldProblem("stem_stride", "the stem reduces the feature map below 1x1")
        for index, ((cin, cout), stage) in enumerate(zip(stage_channels(self.stem_width, self.stages), self.stages)):
            where = f"stages.{index}"
            if stage.groups > 1 and (cin % stage.groups or cout % stage.groups):
                raise FieldProblem(f"{where}.groups", f"{stage.groups} groups must divide the stage's input "
                                                      f"({cin}) and output ({cout}) channels")
            if BLOCK_INFO[stage.block].dense and cout - cout // 2 < stage.depth:
                raise FieldProblem(f"{where}.width", f"a {stage.block!r} stage of depth {stage.depth} needs width "
                                                     f">= {2 * stage.depth} (each layer adds >= 1 channel)")
            if self.layout == "lce" and stage.weight_bits == 1 and (cin % 32 or cout % 8):
                raise FieldProblem(f"{where}.width", f"layout 'lce' needs binary stages with input channels in "
                                                     f"multiples of 32 and output channels in multiples of 8 "
                                                     f"(got {cin} -> {cout})")
            size = (size + stage.stride - 1) // stage.stride
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
        stem = f"stem{self.stem_width}"
        if (self.stem_kernel, self.stem_stride) != (3, 1):
            stem += f"_k{self.stem_kernel}_s{self.stem_stride}"
        stem += "_pool" if self.stem_pool else ""
        stem += "_W8A8" if self.stem_bits == 8 else ""
        parts = [f"in{self.input_size}x{self.in_channels}", stem]
        parts += [stage.short() for stage in self.stages]
        if self.head_width:
            parts.append(f"head{self.head_width}")
        parts.append(f"fc{self.num_classes}" + ("_W8A8" if self.head_bits == 8 else ""))
        if self.layout != "none":
            parts.append(f"layout-{self.layout}")
        return " | ".join(parts)

    @classmethod
    def from_dict(cls, data: object) -> Genotype:
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise GenotypeError(describe_validation_error(error, "genotype")) from None

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        if len(text) > MAX_GENOTYPE_CHARS:
            raise GenotypeError(f"genotype: {len(text):,} characters; a genotype is at most {MAX_GENOTYPE_CHARS:,}")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise GenotypeError(f"genotype: not valid JSON ({error.msg} at line {error.lineno})") from None
        except RecursionError:
            raise GenotypeError("genotype: JSON nested too deeply") from None
        except ValueError as error:  # e.g. an integer of more digits than Python converts
            raise GenotypeError(f"genotype: unreadable JSON value ({str(error).splitlines()[0][:120]})") from None
        return cls.from_dict(data)


def describe_validation_error(error: ValidationError, prefix: str) -> str:
    """Pydantic's first error as one line naming the field, e.g. `genotype.stages.0.width: ...`."""
    first = error.errors()[0]
    loc = list(first["loc"])
    problem = first.get("ctx", {}).get("error")
    if isinstance(problem, FieldProblem):  # a model validator's complaint about one of its fields
        loc.append(problem.field)
    location = ".".join(str(part) for part in loc)
    where = ".".join(part for part in (prefix, location) if part) or "value"
    message = first["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif ("input" in first and first["type"] not in ("missing",) and not isinstance(problem, FieldProblem)
          and not isinstance(first["input"], (dict, list))):
        message += f" (got {first['input']!r})"
    more = len(error.errors()) - 1
    return f"{where}: {message}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
