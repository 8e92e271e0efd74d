"""The search space as data: named categorical choices, and a decoder from choices to a genotype.

Encoding: a fixed, flat set of categorical parameters, all present in every trial:
`stem_width` (and `stem_kernel`, `stem_stride`, `stem_pool`, `stem_bits`, `head_width`,
`head_bits`, `width_mult` where the space offers more than one value), and per stage `s{i}_block`,
`s{i}_width`, `s{i}_depth`, `s{i}_kernel`, `s{i}_wbits`, `s{i}_abits`, `s{i}_expansion`, `s{i}_se`,
`s{i}_groups`, `s{i}_downsample`. A parameter with a single value is a constant and is not sampled;
a per-stage option is sampled only if some block of the space reads it. The last stage may list
depth 0 among its depths: such a network leaves it out (and its other choices mean nothing).

Why flat and not conditional (e.g. `s0_expansion` only when `s0_block == "mbconv"`): NSGA-II and
independent TPE sample every parameter on its own, so a conditional parameter's values would be
learned from a varying, biased subset of trials, and crossover between parents with different
blocks would have to invent the missing values. With a flat encoding every trial carries every
parameter; the decoder ignores the ones a block does not read (setting them to the genotype's
defaults, so that one network has one genotype and one hash) and maps bit widths a block cannot
take (e.g. 8 bits on the 1-bit "binary" block) to the block's own. Every assignment decodes to a
valid genotype: the config validator checks the combinations that could fail (groups dividing
widths, dense stages wide enough, hardware layout rules) once, when the space is loaded.

Optuna is not imported here; `search/` turns these choices into `trial.suggest_categorical` calls.
"""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .catalog import BIT_WIDTHS, BLOCK_INFO, DOWNSAMPLES
from .genotype import FieldProblem, Genotype, StageSpec


class StageChoices(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    stride: int = Field(1, ge=1, le=2)
    widths: tuple[int, ...] = Field(min_length=1)
    depths: tuple[int, ...] = Field((1, 2), min_length=1)

    @model_validator(mode="after")
    def _positive(self) -> StageChoices:
        if min(self.widths) < 1 or max(self.widths) > 4096:
            raise ValueError("widths must lie in 1..4096")
        if min(self.depths) < 0 or max(self.depths) > 32 or self.depths == (0,):
            raise ValueError("depths must lie in 0..32 (0: the stage is left out) and include one above 0")
        return self

    @property
    def optional(self) -> bool:
        """Whether a network may leave this stage out (depth 0)."""
        return 0 in self.depths


def _default_stages() -> tuple[StageChoices, ...]:
    # Three stages as in the small hand designs (bireal_small: 16/32/64), and an optional fourth at
    # 7x7 so that the space also holds the 8-bit MobileNetV2 (16/24/32/64, stride 1 last): a search
    # starts from the default references' cheaper neighbours (search/neighbours.py). Widths 32, 64
    # and 128 let it hold reactnet_small (32/64/128) too: a ReActNet block is cheap only where the
    # width doubles at a stride (its 1x1 shortcut duplicates channels instead of an FP conv), so a
    # 24/48/64 twin measured 2x its latency and 4x its energy. With them, and reactnet_small's
    # neighbours queued, benchmarks/search_quality.py --quick --tag box dominated 5/5/5 of the 7
    # references per seed against 3/2/5 (box hypervolume 2.16x random search against 1.23x).
    return (
        StageChoices(stride=1, widths=(8, 16, 24, 32)),
        StageChoices(stride=2, widths=(16, 24, 32, 48, 64)),
        StageChoices(stride=2, widths=(32, 48, 64, 128)),
        StageChoices(stride=1, widths=(48, 64, 96), depths=(0, 1, 2)),
    )


def _subset(values: tuple, allowed: tuple, what: str) -> tuple:
    wrong = [value for value in values if value not in allowed]
    if wrong:
        raise ValueError(f"{what} {wrong[0]!r} is not one of {list(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError("values must not repeat")
    return values


class SpaceConfig(BaseModel):
    """A macro space of stages, each choosing block type, width, depth, kernel, bit widths and
    the options of its block; plus stem, head and a global width multiplier."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The default space holds the three default references (bireal_small, mobilenetv2_int8_small,
    # reactnet_small), so a search starts from their cheaper neighbours. 5x5 kernels cost 2-5x more
    # training time per step on a CPU and are opt-in (configs/default.yaml lists them).
    blocks: tuple[str, ...] = Field(("binary", "float", "reactnet", "dwsep", "mbconv"), min_length=1)
    stem_widths: tuple[int, ...] = Field((8, 16), min_length=1)
    stages: tuple[StageChoices, ...] = Field(default_factory=_default_stages, min_length=1, max_length=12)
    kernels: tuple[int, ...] = Field((3,), min_length=1)
    weight_bits: tuple[int, ...] = Field(BIT_WIDTHS, min_length=1)
    activation_bits: tuple[int, ...] = Field(BIT_WIDTHS, min_length=1)
    expansions: tuple[int, ...] = Field((1, 2, 4, 6), min_length=1)
    se: tuple[bool, ...] = Field((False,), min_length=1)
    groups: tuple[int, ...] = Field((2, 4), min_length=1)
    downsamples: tuple[str, ...] = Field(("fp",), min_length=1)
    width_multipliers: tuple[float, ...] = Field((1.0,), min_length=1)
    stem_kernels: tuple[int, ...] = Field((3,), min_length=1)
    stem_strides: tuple[int, ...] = Field((1,), min_length=1)
    # A 3x3 / 2 max pool after the stem, as ResNet-18 and Bi-Real-18 have: on 28x28 digits it
    # raised the binary references' one-epoch accuracy (reactnet_small 0.789 / 0.795 -> 0.836 /
    # 0.845 at seeds 0 / 1) at 0.58-0.68x the references' latency (benchmarks/stem_pool.py), so
    # the default space offers it.
    stem_pools: tuple[bool, ...] = Field((False, True), min_length=1)
    stem_bits: tuple[int, ...] = Field((32, 8), min_length=1)
    head_widths: tuple[int, ...] = Field((0, 128), min_length=1)
    head_bits: tuple[int, ...] = Field((32, 8), min_length=1)
    layout: Literal["none", "lce"] = "none"

    @field_validator("blocks")
    @classmethod
    def _known_blocks(cls, blocks: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [b for b in blocks if b not in BLOCK_INFO]
        if unknown:
            raise ValueError(f"unknown block {unknown[0]!r}; known blocks: {', '.join(sorted(BLOCK_INFO))}")
        return blocks

    @field_validator("kernels", "stem_kernels")
    @classmethod
    def _odd_kernels(cls, kernels: tuple[int, ...]) -> tuple[int, ...]:
        return _subset(kernels, (1, 3, 5, 7), "kernel")

    @field_validator("weight_bits", "activation_bits")
    @classmethod
    def _bit_widths(cls, bits: tuple[int, ...]) -> tuple[int, ...]:
        return _subset(bits, BIT_WIDTHS, "bit width")

    @field_validator("stem_bits", "head_bits")
    @classmethod
    def _stem_head_bits(cls, bits: tuple[int, ...]) -> tuple[int, ...]:
        return _subset(bits, (8, 32), "bit width")

    @field_validator("expansions")
    @classmethod
    def _expansions(cls, values: tuple[int, ...]) -> tuple[int, ...]:
        return _subset(values, tuple(range(1, 9)), "expansion")

    @field_validator("groups")
    @classmethod
    def _groups(cls, values: tuple[int, ...]) -> tuple[int, ...]:
        return _subset(values, tuple(range(1, 65)), "groups")

    @field_validator("downsamples")
    @classmethod
    def _downsamples(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return _subset(values, DOWNSAMPLES, "downsample")

    @field_validator("stem_strides")
    @classmethod
    def _strides(cls, values: tuple[int, ...]) -> tuple[int, ...]:
        return _subset(values, (1, 2), "stride")

    @field_validator("width_multipliers")
    @classmethod
    def _multipliers(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 < value <= 4.0 for value in values):
            raise ValueError("width multipliers must lie in (0, 4]")
        return values

    @field_validator("stem_widths", "head_widths")
    @classmethod
    def _widths(cls, values: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 0 <= value <= 4096 for value in values):
            raise ValueError("widths must lie in 0..4096")
        return values

    @model_validator(mode="after")
    def _every_assignment_decodes(self) -> SpaceConfig:
        if 0 in self.stem_widths:
            raise FieldProblem("stem_widths", "a stem needs at least one channel")
        # Only the last stage may be left out: a network's stage i is then always the space's stage
        # i, which the shared weights of a supernet and the neighbours of a reference rely on.
        for index, stage in enumerate(self.stages[:-1]):
            if stage.optional:
                raise FieldProblem(f"stages.{index}.depths", "only the last stage may have depth 0 (be left out)")
        if len(self.stages) == 1 and self.stages[0].optional:
            raise FieldProblem("stages.0.depths", "a network needs a stage: the only stage cannot have depth 0")
        uses = {option for block in self.blocks for option in BLOCK_INFO[block].options}
        widths = [sorted({self.scaled(w, m) for w in stage.widths for m in self.width_multipliers})
                  for stage in self.stages]
        inputs = [sorted(self.stem_widths)] + widths[:-1]
        for index, stage in enumerate(self.stages):
            where = f"stages.{index}.widths"
            if "groups" in uses:
                for group, cin, cout in itertools.product(self.groups, inputs[index], widths[index]):
                    if cin % group or cout % group:
                        raise FieldProblem(where, f"groups {group} must divide every input and output width of "
                                                  f"the stage (got {cin} -> {cout}; width multipliers included)")
            if any(BLOCK_INFO[block].dense for block in self.blocks):
                if min(widths[index]) - min(widths[index]) // 2 < max(stage.depths):
                    raise FieldProblem(where, f"dense blocks need widths >= 2 x depth ({min(widths[index])} < "
                                              f"2 x {max(stage.depths)})")
            binary = any(1 in BLOCK_INFO[block].weight_bits and 1 in self.allowed_weight_bits(block)
                         for block in self.blocks)
            if self.layout == "lce" and binary:
                if any(w % 32 for w in inputs[index]) or any(w % 8 for w in widths[index]):
                    raise FieldProblem(where, "layout 'lce': binary stages need input widths in multiples of 32 "
                                              "and output widths in multiples of 8 (stem widths included)")
        return self

    # --- the encoding ---------------------------------------------------------------------------
    @staticmethod
    def scaled(width: int, multiplier: float) -> int:
        """A stage width under a width multiplier (structured pruning of whole channels)."""
        return max(1, int(round(width * multiplier)))

    def allowed_weight_bits(self, block: str) -> tuple[int, ...]:
        return tuple(b for b in self.weight_bits if b in BLOCK_INFO[block].weight_bits) or BLOCK_INFO[block].weight_bits[:1]

    def _global(self) -> dict[str, list]:
        return {"stem_width": list(self.stem_widths), "stem_kernel": list(self.stem_kernels),
                "stem_stride": list(self.stem_strides), "stem_pool": list(self.stem_pools),
                "stem_bits": list(self.stem_bits), "head_width": list(self.head_widths),
                "head_bits": list(self.head_bits), "width_mult": list(self.width_multipliers)}

    def _per_stage(self, stage: StageChoices) -> dict[str, list]:
        infos = [BLOCK_INFO[block] for block in self.blocks]
        uses = {option for info in infos for option in info.options}
        wide = any(len(info.weight_bits) > 1 for info in infos)
        params: dict[str, list] = {"block": list(self.blocks), "width": list(stage.widths),
                                   "depth": list(stage.depths), "kernel": list(self.kernels)}
        if wide:
            params.update(wbits=list(self.weight_bits), abits=list(self.activation_bits))
        options = {"expansion": self.expansions, "se": self.se, "groups": self.groups, "downsample": self.downsamples}
        params.update({option: list(values) for option, values in options.items() if option in uses})
        return params

    def choices(self) -> dict[str, list]:
        """Every sampled parameter name with its categorical choices, in a fixed order.

        Always contains `stem_width` and `s{i}_block`, `s{i}_width`, `s{i}_depth`; parameters with
        one value are constants and left out (`decode` fills them in).
        """
        params = {name: values for name, values in self._global().items() if name == "stem_width" or len(values) > 1}
        for index, stage in enumerate(self.stages):
            for name, values in self._per_stage(stage).items():
                if name in ("block", "width", "depth") or len(values) > 1:
                    params[f"s{index}_{name}"] = values
        return params

    def decode(self, params: dict, *, input_size: int, in_channels: int, num_classes: int) -> Genotype:
        """The genotype for one assignment of `choices()` (missing constants take their one value)."""
        def value(name: str, values: list):
            return params[name] if name in params else values[0]

        glob = {name: value(name, values) for name, values in self._global().items()}
        stages = []
        for index, stage in enumerate(self.stages):
            chosen = {name: value(f"s{index}_{name}", values) for name, values in self._per_stage(stage).items()}
            if chosen["depth"] == 0:  # an optional last stage left out; its other choices mean nothing
                continue
            info = BLOCK_INFO[chosen["block"]]
            weight_bits = chosen.get("wbits", info.weight_bits[0])
            activation_bits = chosen.get("abits", info.activation_bits[0])
            # Irrelevant options fall back to the genotype defaults, widths a block cannot take to its own.
            options = {option: chosen[option] for option in info.options if option in chosen}
            stages.append(StageSpec(
                block=chosen["block"], width=self.scaled(chosen["width"], glob["width_mult"]),
                depth=chosen["depth"], stride=stage.stride, kernel=chosen["kernel"],
                weight_bits=weight_bits if weight_bits in info.weight_bits else info.weight_bits[0],
                activation_bits=activation_bits if activation_bits in info.activation_bits else info.activation_bits[0],
                **options))
        return Genotype(input_size=input_size, in_channels=in_channels, num_classes=num_classes,
                        stem_width=glob["stem_width"], stem_kernel=glob["stem_kernel"], stem_stride=glob["stem_stride"],
                        stem_pool=glob["stem_pool"], stem_bits=glob["stem_bits"], head_width=glob["head_width"],
                        head_bits=glob["head_bits"], layout=self.layout, stages=tuple(stages))

    def size(self) -> int:
        """How many assignments `choices()` allows (distinct genotypes may be fewer: decode
        normalises the options a block does not read)."""
        total = 1
        for values in self.choices().values():
            total *= len(values)
        return total
