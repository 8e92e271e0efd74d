"""bitnas.spaces: genotypes, the blocks and quantizers they name, the builder and the cost counter.

Uses neither `evaluators` nor `search`.
"""

from .blocks import BLOCKS, register_block
from .builder import build_model
from .costs import CostReport, LayerCost, count_costs, genotype_costs
from .genotype import Genotype, GenotypeError, StageSpec, describe_validation_error
from .quantizers import QUANTIZERS
from .space import SpaceConfig, StageChoices

__all__ = [
    "BLOCKS", "QUANTIZERS", "CostReport", "Genotype", "GenotypeError", "LayerCost", "SpaceConfig",
    "StageChoices", "StageSpec", "build_model", "count_costs", "describe_validation_error",
    "genotype_costs", "register_block",
]
