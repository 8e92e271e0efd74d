"""bitnas.spaces: genotypes, the blocks and quantizers they name, the builder and the cost counter,
the search space, and the reference networks as genotypes.

Uses neither `evaluators` nor `search`. Names are imported on first use: validating a genotype or a
space (genotype, space, catalog, baselines) needs no torch, and the CLI answers bad input before
the seconds torch takes to import.
"""

from bitnas.lazy import lazy_namespace

# public name -> submodule that defines it
_EXPORTS = {
    "BASELINES": "baselines", "SMALL_BASELINES": "baselines", "baseline_genotype": "baselines",
    "small_baselines": "baselines",
    "BLOCK_INFO": "catalog", "BIT_WIDTHS": "catalog", "DOWNSAMPLES": "catalog", "BlockInfo": "catalog",
    "BLOCKS": "blocks", "register_block": "blocks",
    "build_model": "builder",
    "CostReport": "costs", "LayerCost": "costs", "count_costs": "costs", "genotype_costs": "costs",
    "Genotype": "genotype", "GenotypeError": "genotype", "StageSpec": "genotype",
    "describe_validation_error": "genotype",
    "QUANTIZERS": "quantizers",
    "SpaceConfig": "space", "StageChoices": "space",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_namespace(__name__, globals(), _EXPORTS)
