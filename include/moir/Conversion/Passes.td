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

#endif // MOIR_CONVERSION_PASSES
