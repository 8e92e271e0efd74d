"""Resource budgets checked on the genotype alone, before any model is built.

Every field of a genotype has bounds, yet their product need not fit a machine: 24 stages of
4096-wide 7x7 convolutions on 1024x1024 inputs is a valid genotype whose model would ask for
terabytes. `estimate_resources` counts, from the genotype's numbers only (no torch), an upper
estimate of its parameters, of the activations one image produces, and of its multiply-
accumulates; `check_budget` refuses a network over the budget in one line.

The estimate is deliberately generous (each block counted as a k x k conv plus two 1x1 convs at
its widest, times its expansion), so it never under-counts a registered block by much; the exact
figures come from the cost counter once the network is known to fit.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from bitnas.errors import UserError

from .genotype import Genotype, stage_channels


class ResourceBudget(BaseModel):
    """Per network, for one image. The defaults fit comfortably in a few GiB of memory: ReActNet-A
    on ImageNet has 29e6 parameters and 4.8e9 MACs; a float ResNet-18's activations are 2.5e6."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_params: float = Field(1e8, gt=0)        # 0.4 GB as float32 latent weights (x4 while training)
    max_activations: float = Field(2e8, gt=0)   # values held for one image (0.8 GB as float32)
    max_macs: float = Field(1e11, gt=0)         # multiply-accumulates for one image


class BudgetExceeded(UserError):
    """A network larger than the resource budget; the message names the figure and the limit."""


@dataclass(frozen=True)
class ResourceEstimate:
    params: float
    activations: float
    macs: float


def estimate_resources(genotype: Genotype) -> ResourceEstimate:
    size = genotype.input_size
    stem_out = (size + genotype.stem_stride - 1) // genotype.stem_stride
    params = genotype.stem_kernel ** 2 * genotype.in_channels * genotype.stem_width
    macs = params * stem_out ** 2
    activations = genotype.in_channels * size ** 2 + genotype.stem_width * stem_out ** 2
    size = (stem_out + 1) // 2 if genotype.stem_pool else stem_out
    for (cin, cout), stage in zip(stage_channels(genotype.stem_width, genotype.stages), genotype.stages):
        for index in range(stage.depth):
            widest = max(cin if index == 0 else cout, cout) * stage.expansion
            out = (size + stage.stride - 1) // stage.stride if index == 0 else size
            block = stage.kernel ** 2 * widest * widest + 2 * widest * widest
            params += block
            macs += block * out ** 2
            activations += 4 * widest * max(size, out) ** 2  # a block's inputs, outputs and inner maps
            size = out
    last = genotype.stages[-1].width
    head = genotype.head_width * last if genotype.head_width else 0
    params += head + (genotype.head_width or last) * genotype.num_classes
    macs += head * size ** 2 + (genotype.head_width or last) * genotype.num_classes
    return ResourceEstimate(float(params), float(activations), float(macs))


def check_budget(genotype: Genotype, where: str = "", budget: ResourceBudget | None = None) -> ResourceEstimate:
    """The estimate, or BudgetExceeded naming what is over the budget."""
    budget = budget or ResourceBudget()
    estimate = estimate_resources(genotype)
    for name, value, limit in (("parameters", estimate.params, budget.max_params),
                               ("activations per image", estimate.activations, budget.max_activations),
                               ("multiply-accumulates per image", estimate.macs, budget.max_macs)):
        if value > limit:
            raise BudgetExceeded(f"{where}the network needs about {value:.3g} {name}, over the budget of {limit:.3g} "
                                 f"(budget: in the config; nothing was built)")
    return estimate
