"""The search space as data: named categorical choices, and a decoder from choices to a genotype.

Encoding: a fixed set of flat categorical parameters (`stem_width`, and `s{i}_block`,
`s{i}_width`, `s{i}_depth` for every stage), all present in every trial. No parameter is
conditional on another, because NSGA-II and independent TPE sample each parameter on its own:
a conditional encoding would leave them mixing values that never occurred together. Optuna is not
imported here; `search/` turns these choices into `trial.suggest_categorical` calls.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .blocks import BLOCKS
from .genotype import Genotype, StageSpec


class StageChoices(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    stride: int = Field(1, ge=1, le=2)
    widths: tuple[int, ...] = Field(min_length=1)
    depths: tuple[int, ...] = Field((1, 2), min_length=1)

    @model_validator(mode="after")
    def _positive(self) -> StageChoices:
        if min(self.widths) < 1 or max(self.widths) > 4096:
            raise ValueError("widths must lie in 1..4096")
        if min(self.depths) < 1 or max(self.depths) > 32:
            raise ValueError("depths must lie in 1..32")
        return self


def _default_stages() -> tuple[StageChoices, ...]:
    return (
        StageChoices(stride=1, widths=(8, 16, 24)),
        StageChoices(stride=2, widths=(16, 32, 48)),
        StageChoices(stride=2, widths=(32, 48, 64)),
    )


class SpaceConfig(BaseModel):
    """A macro space of stages, each choosing block type, width and depth."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    blocks: tuple[str, ...] = Field(("binary", "float"), min_length=1)
    stem_widths: tuple[int, ...] = Field((8, 16), min_length=1)
    stages: tuple[StageChoices, ...] = Field(default_factory=_default_stages, min_length=1, max_length=12)
    kernel: int = Field(3, ge=1, le=7)

    @field_validator("blocks")
    @classmethod
    def _known_blocks(cls, blocks: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [b for b in blocks if b not in BLOCKS]
        if unknown:
            raise ValueError(f"unknown block {unknown[0]!r}; known blocks: {', '.join(sorted(BLOCKS))}")
        return blocks

    @field_validator("kernel")
    @classmethod
    def _odd_kernel(cls, kernel: int) -> int:
        if kernel % 2 == 0:
            raise ValueError("kernel must be odd")
        return kernel

    def choices(self) -> dict[str, list]:
        """Every parameter name with its categorical choices, in a fixed order."""
        params: dict[str, list] = {"stem_width": list(self.stem_widths)}
        for index, stage in enumerate(self.stages):
            params[f"s{index}_block"] = list(self.blocks)
            params[f"s{index}_width"] = list(stage.widths)
            params[f"s{index}_depth"] = list(stage.depths)
        return params

    def decode(self, params: dict, *, input_size: int, in_channels: int, num_classes: int) -> Genotype:
        """The genotype for one assignment of `choices()`."""
        stages = tuple(
            StageSpec(block=params[f"s{i}_block"], width=params[f"s{i}_width"], depth=params[f"s{i}_depth"],
                      stride=stage.stride, kernel=self.kernel)
            for i, stage in enumerate(self.stages)
        )
        return Genotype(input_size=input_size, in_channels=in_channels, num_classes=num_classes,
                        stem_width=params["stem_width"], stages=stages)

    def size(self) -> int:
        total = 1
        for values in self.choices().values():
            total *= len(values)
        return total
