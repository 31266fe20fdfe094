//===- Passes.td - the NVIDIA backend's own passes -------------*- tablegen -*-===//

#ifndef MOIR_TARGET_NVIDIA_PASSES
#define MOIR_TARGET_NVIDIA_PASSES

include "mlir/Pass/PassBase.td"

def NVIDIABF16MmaPass : Pass<"moir-nvidia-bf16-mma", "mlir::gpu::GPUModuleOp"> {
  let summary = "nvgpu.mma.sync with bf16 operands becomes nvvm.mma.sync";
  let description = [{
    MLIR's `convert-nvgpu-to-nvvm` deduces no PTX type for bf16 operands
    ("failed to deduce operand PTX types"); this pass lowers those
    `nvgpu.mma.sync` ops itself, before it. Each row of the A and B operand
    vectors (two bf16, one 32-bit register of the PTX ISA's fragment) is
    bitcast to an i32; the f32 accumulator's elements go in as four
    registers; the result struct's four f32 come back as the accumulator
    vector. Other element types are left to the upstream conversion.

    ```mlir
    // before
    %d = nvgpu.mma.sync(%a, %b, %c) {mmaShape = [16, 8, 16]}
        : (vector<4x2xbf16>, vector<2x2xbf16>, vector<2x2xf32>) -> vector<2x2xf32>
    // after
    %a0 = vector.bitcast %row0 : vector<2xbf16> to vector<1xi32> ...
    %s = nvvm.mma.sync A[%a0, %a1, %a2, %a3] B[%b0, %b1] C[%c0, %c1, %c2, %c3]
        {layoutA = #nvvm.mma_layout<row>, layoutB = #nvvm.mma_layout<col>,
         multiplicandAPtxType = #nvvm.mma_type<bf16>, multiplicandBPtxType = #nvvm.mma_type<bf16>,
         shape = #nvvm.shape<m = 16, n = 8, k = 16>} : (i32, i32, f32) -> !llvm.struct<(f32, f32, f32, f32)>
    ```
  }];
  let dependentDialects = ["::mlir::NVVM::NVVMDialect", "::mlir::LLVM::LLVMDialect",
                           "::mlir::vector::VectorDialect"];
}

#endif
