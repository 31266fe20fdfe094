//===- Passes.td - MoIR's lowering passes --------------------*- tablegen -*-===//

#ifndef MOIR_CONVERSION_PASSES
#define MOIR_CONVERSION_PASSES

include "mlir/Pass/PassBase.td"

def ConvertMoIRToLinalgPass : Pass<"moir-lower-to-linalg"> {
  let summary = "lowers llm, moe and mla ops to linalg, tensor, scf, arith and math";
  let description = [{
    Every MoIR op becomes upstream ops on tensors that compute exactly the
    op's documented semantics, in float32: `llm.linear` a `linalg.generic`
    contraction against the `[out, in]` weight (bf16/f16 weights extended in
    the body), `llm.rope` an element-wise generic with the inverse
    frequencies (default, linear, llama3, yarn) computed at compile time as a
    constant, `llm.attention` and `mla.attend` masked softmax contractions
    over the valid prefix of the cache, the MoE steps `scf.for` loops over
    tokens and experts. Quantized weights are not lowered yet and are
    reported as errors.

    The lowering knows no target: block sizes, work items and whether large
    ops are marked for a thread pool (`moir.parallel`) come from the
    module's `#moir.lowering_config`, which a target's configuration pass
    (`moir-cpu-configure-lowering`, `moir-gpu-configure-lowering`) writes
    first; without one the pass fails.

    ```mlir
    // before
    %y = llm.linear %x, %w : (tensor<?x64xf32>, tensor<32x64xf32>) -> tensor<?x32xf32>
    // after
    %y = linalg.generic {indexing_maps = [(m, n, k) -> (m, k), (m, n, k) -> (n, k),
                         (m, n, k) -> (m, n)], ...} ins(%x, %w ...) outs(%zero ...)
    ```
  }];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect", "::mlir::scf::SCFDialect",
    "::mlir::tensor::TensorDialect", "::moir::MoIRDialect"
  ];
}

def ExpandFP8Pass : Pass<"moir-expand-fp8"> {
  let summary = "FP8 E4M3 conversions as integer arithmetic (LLVM has no 8-bit float)";
  let description = [{
    An FP8 KV cache (`--quantize-kv-cache=fp8`) and FP8 weights are stored
    as `f8E4M3FN`; the cache's writes are `arith.truncf` f32 -> f8E4M3FN and
    every read (the attention kernels, the packed weights' contractions;
    vectors or scalars) is `arith.extf` f8E4M3FN -> f32. LLVM has no such
    type, so this pass rewrites both into integer operations on the bits
    (`arith.bitcast` to i8). Every target runs it before its LLVM
    conversion (the CPU on its host code, the GPUs in their kernels):

    - extf: the E4M3 fields moved into an f16's (`s.0eeee.mmm0000000`), which
      read as f16 are the value times 2^-8 (subnormals included), then one
      hardware f16 -> f32 conversion and a multiply by 256;
    - truncf: round to nearest even on the f32 bits (mantissa cut to 3
      bits), subnormals (`|x| < 2^-6`) rounded to multiples of `2^-9`,
      magnitudes saturated at 448 (E4M3FN has no infinity);
    - extf bf16 -> f32 (bf16 weights and caches): the 16 bits shifted into
      an f32's upper half. LLVM's x86 backend, on CPUs without AVX512-BF16,
      otherwise promoted bf16 vectors through f32 with calls to compiler-rt's
      `__truncsfbf2`, which the compiled code cannot resolve.

    ```mlir
    // before
    %f = arith.extf %q : vector<16xf8E4M3FN> to vector<16xf32>
    // after
    %b = arith.bitcast %q : vector<16xf8E4M3FN> to vector<16xi8>
    %i = arith.extui %b : vector<16xi8> to vector<16xi16>
    ...
    %h = arith.bitcast %bits : vector<16xi16> to vector<16xf16>
    %w = arith.extf %h : vector<16xf16> to vector<16xf32>
    %f = arith.mulf %w, %c256 : vector<16xf32>
    ```
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

#endif // MOIR_CONVERSION_PASSES
