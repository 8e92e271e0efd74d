"""bitnas.evaluators.engine: a packed binary inference engine for CPUs.

`compile_model(model, (C, H, W))` turns a trained bitnas torch model into an `EngineModel`: binary
convolutions become XNOR-popcount kernels over 64-bit words (numba, compiled to this CPU),
full-precision layers run in torch, and blocks the engine does not know run in torch with the
reason listed in `EngineModel.fallbacks`.
"""

from .compiler import (COMPILERS, EngineInputError, EngineModel, NotCompilable, compile_model, compile_module,
                       register_compiler)
from .isa import isa_path
from .kernels import (binary_conv2d, binary_conv2d_prepared, pack_activations, pack_weight_signs, packed_words,
                      prepare_weights)

ENGINE_NAME = "bitnas-packed (numba XNOR-popcount, 64-bit words)"

__all__ = [
    "COMPILERS", "ENGINE_NAME", "EngineInputError", "EngineModel", "NotCompilable", "binary_conv2d",
    "binary_conv2d_prepared", "compile_model", "compile_module", "isa_path", "pack_activations", "pack_weight_signs",
    "packed_words", "prepare_weights", "register_compiler",
]
