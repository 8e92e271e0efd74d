"""bitnas.evaluators.engine: a native inference engine for binary and low-bit networks on CPUs.

`compile_model(model, (C, H, W))` turns a trained bitnas torch model into an `EngineModel`: 1-bit
convolutions become XNOR-popcount kernels over 64-bit words, 2-bit ones popcounts over their sign
and magnitude planes, 4/8-bit ones int8 GEMMs with int32 accumulation (torch._int_mm) or direct
integer kernels (numba, compiled to this CPU); full-precision layers run in torch. Blocks the
engine does not know run in torch with the reason listed in `EngineModel.fallbacks`, and a
quantized layer left to an fp32 simulation is listed in `EngineModel.simulated`.
"""

from .compiler import (COMPILERS, EngineInputError, EngineModel, NotCompilable, compile_model, compile_module,
                       register_compiler)
from .isa import isa_path
from .kernels import (binary_conv2d, binary_conv2d_prepared, pack_activations, pack_weight_signs, packed_words,
                      prepare_weights)
from . import native_blocks  # noqa: E402,F401 - registers the compilers of the quantized layers and blocks

ENGINE_NAME = "bitnas engine (numba XNOR-popcount and integer kernels, int8 GEMM)"

__all__ = [
    "COMPILERS", "ENGINE_NAME", "EngineInputError", "EngineModel", "NotCompilable", "binary_conv2d",
    "binary_conv2d_prepared", "compile_model", "compile_module", "isa_path", "native_blocks", "pack_activations",
    "pack_weight_signs", "packed_words", "prepare_weights", "register_compiler",
]
