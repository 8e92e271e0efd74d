"""bitnas.spaces: genotypes, the blocks and quantizers they name, the builder and the cost counter,
the search space, and the reference networks as genotypes.

Uses neither `evaluators` nor `search`.
"""

from .baselines import BASELINES, SMALL_BASELINES, baseline_genotype, small_baselines
from .blocks import BLOCK_INFO, BLOCKS, register_block
from .builder import build_model
from .costs import CostReport, LayerCost, count_costs, genotype_costs
from .genotype import Genotype, GenotypeError, StageSpec, describe_validation_error
from .quantizers import QUANTIZERS
from .space import SpaceConfig, StageChoices

__all__ = [
    "BASELINES", "BLOCKS", "BLOCK_INFO", "QUANTIZERS", "SMALL_BASELINES", "CostReport", "Genotype", "GenotypeError",
    "LayerCost", "SpaceConfig", "StageChoices", "StageSpec", "baseline_genotype", "build_model", "count_costs",
    "describe_validation_error", "genotype_costs", "register_block", "small_baselines",
]
