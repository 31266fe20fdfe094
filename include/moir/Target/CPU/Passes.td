//===- Passes.td - CPU backend passes ------------------------*- tablegen -*-===//

#ifndef MOIR_TARGET_CPU_PASSES
#define MOIR_TARGET_CPU_PASSES

include "mlir/Pass/PassBase.td"

def CPUConfigureLoweringPass : Pass<"moir-cpu-configure-lowering", "mlir::ModuleOp"> {
  let summary = "writes the CPU's #moir.lowering_config for the lowering to linalg";
  let description = [{
    The lowering to linalg (`moir-lower-to-linalg`) knows no target; this
    pass tells it what a CPU wants: large ops marked for the runtime's
    thread pool and fused ops built as `scf.forall` work items
    (`parallel = true`), about two work items per core (`work_items = 2 x
    threads`; flash attention splits its keys until it has that many, never
    below 256 keys a split over a KV group's heads, nor below one block),
    blocks of 64 keys and about 64 rows of queries
    per flash work item (a block's scores stay in registers and L1), 64
    columns per expert-FFN work item (a block's weights stay in L2), 16
    tokens per router work item, the f32 lanes of the CPU's vectors, and
    `row_quant = true` (the contraction kernels quantize W8A8 int8 rows
    themselves, `moir.row_quant`).

    ```mlir
    // before
    module {
    // after (threads = 16, vector-width = 16)
    module attributes {moir.lowering_config = #moir.lowering_config<parallel = true,
        work_items = 32, min_split_keys = 256, key_block = 64, query_rows = 64,
        ffn_block = 64, token_block = 16, vector_width = 16, row_quant = true>} {
    ```
  }];
  let options = [
    Option<"threads", "threads", "int64_t", /*default=*/"16",
           "cores the artifact is planned for">,
    Option<"vectorWidth", "vector-width", "int64_t", /*default=*/"16",
           "f32 lanes of the target's vectors">
  ];
  let dependentDialects = ["::moir::MoIRDialect"];
}

def CPUContractionKernelsPass : Pass<"moir-cpu-contraction-kernels"> {
  let summary = "register-blocked vector kernels for the marked row-by-row contractions";
  let description = [{
    Runs after bufferization, before `moir-cpu-parallelize`. Rewrites each
    linalg op marked `moir.parallel` that computes `C[m, n] += A[m, k] *
    W[n, k]` (activations times a weight stored output-major, as checkpoints
    store it; f32 activations, f32/bf16/f16 weights, f32 result, unit stride
    along k) into explicit vector code. A batched form (loops m, b, n, k;
    each operand's other dimensions a function of b alone, as in
    attention's scores per head, `Q[t, h, :] . K[s, h / group, :]`, or
    MLA's per-head output projection) becomes a parallel loop over b (the
    work items: one fork per op in a decode step, not one per head) around
    the same kernel on 2-D views, run sequentially. The kernel:

    - `scf.parallel` over blocks of `block-n` weight rows (the thread pool's
      work items: each block's weights stay in the core's L2 while every
      row of `A` passes over them);
    - inside, tiles of `tile-m` x `tile-n` outputs whose `tile-m * tile-n`
      accumulators of `vector-width` f32 lanes live in registers for the
      whole k loop: each step loads `tile-m` activation and `tile-n` weight
      vectors and issues `tile-m * tile-n` FMAs (edge rows and columns use
      1-wide tiles of the same code);
    - the lanes are summed once per tile, the k remainder is scalar.

    With `bf16-dot` (targets with AVX512-BF16), bf16 weights are multiplied
    with `x86vector.avx512.dot` (vdpbf16ps, two products per lane and
    step): the activations are rounded to bf16 once per contraction into a
    scratch copy, as bf16 inference in transformers or llama.cpp does;
    accumulation stays f32. Ops marked `moir.precise` (the MoE router, whose
    top-k is a discrete choice) keep f32 activations.

    ```mlir
    // before
    linalg.generic {indexing_maps = [(m, n, k) -> (m, k), (m, n, k) -> (n, k), (m, n, k) -> (m, n)],
                    ...} ins(%x, %w : memref<?x64xf32>, memref<32x64xf32>) outs(%y ...) {moir.parallel}
    // after
    scf.parallel (%nb) = (%c0) to (%blocks) step (%c1) {
      scf.for %m = ... step %c4 { scf.for %n = ... step %c4 {
        %acc = scf.for %k = ... iter_args(16 x vector<16xf32>) {
          %a = vector.load %x[%m, %k] : memref<?x64xf32>, vector<16xf32>
          %b = vector.load %w[%n, %k] : memref<32x64xf32>, vector<16xf32>
          %f = vector.fma %a, %b, %acc0 : vector<16xf32>
          ...
        vector.reduction <add>, ...
    ```

    With `amx` as well (AMX-BF16), those broadcast-kernel products whose
    depth is a multiple of 32 run on AMX tiles: `amx.tile_mulf` (tdpbf16ps)
    multiplies 16 weight rows as stored (16 x 32 bf16) by one group's 16
    activation rows as paired (16 pairs x 16 rows), so C comes out
    transposed: 2 x 2 accumulator tiles (32 weight rows x 2 groups) stay in
    tile registers over the depth, then are stored to a buffer and
    added to C by rows. Weight rows past whole tiles of 16 keep the
    vdpbf16ps tiles. With `int8-dot` and `amx`, the int8 path (blocks of at
    most 64 codes; nibbles, in groups of 32, unpacked to bytes 16 weight
    rows at a time into the work item's buffer) runs its i32 block sums on
    tiles too: per block, `amx.tile_muli` (tdpbssd, signed x signed: no
    bias, no corrections) multiplies 16 weight rows' codes as stored by one
    group's quantized rows as laid out (the block's 4-code words x 16
    rows), the sums go through a buffer into the same per-block scaling
    (work items of 16 weight rows x 1 group, accumulators per weight row),
    and the block products are issued one or two blocks ahead of their
    scaling, alternating tiles, so their latency overlaps it; the
    accumulators are added to C by rows. The module then exports
    `moir_uses_amx`, for the runtime to request the tile state from the
    kernel.

    Ops marked `moir.kernel` instead of `moir.parallel` are already one work
    item of an enclosing parallel loop (the fused experts' `scf.forall`):
    they get the same kernel with its blocks run sequentially.

    With `int8-dot` (vpdpbusd with AVX512-VNNI at 16 lanes, AVX-VNNI at 8;
    AArch64's sdot at 4, where int8 codes need no bias), contractions
    over packed integer codes (`moir.packed` "i8:G" or "u4:32", G a multiple
    of 32 or 16) branch on the activation rows: from 8 rows on, the
    activations are quantized to int8 per row and block of 32 (16 for G =
    16), rows interleaved one per lane in groups of vector-width, and tiles
    of 2 row groups x tile-n weight rows accumulate `vpdpbusd` products of
    the weight codes (broadcast to every lane; int8 codes biased to unsigned
    bytes and corrected by the block's code sum) with each lane's activation
    codes, scaling whole vectors once per block. A `moir.kernel` op whose
    activations are a row slice of a buffer allocated before its loop and
    not written in it shares one quantization of that buffer, made before
    the loop. Fewer rows (decode), with `int8-decode`, take the row kernel
    where the depth allows (whole steps of 4 x vector-width codes; nibbles:
    steps of whole groups of 32, two at 16 lanes; at 16 lanes any multiple
    of 32, a last odd 32 codes being one step at 8 lanes): each row
    quantized the same way, its codes kept in the order the weights' codes
    are loaded (nibbles: a step's low nibbles, then its high ones) with each
    4-code lane's block scale and sum share beside them, then per step,
    dot (`vpdpbusd`, or `sdot` at 4 lanes) and output acc += float(dot) *
    (lane scales * weight lane scales) + lane sums * weight lane offsets,
    the lanes added once per output. With `int8-decode-bits=16` each code
    has a residual code beside it, round(128 * (y - round(y))) for the
    element y in steps (the lane scales divided by 128, the corrections
    holding both codes' biases), and a step's dot product becomes (dot of
    the codes << 7) + dot of the residuals: 16-bit activations for one more
    dot product and a shift. A `moir.kernel` op's rows come from
    one such quantization made before its loop when the shared buffer has
    at most 64 rows. Other depths, FP8 codes and `moir.precise` ops keep
    the f32 kernel.

    `moir.row_quant` ops (W8A8 checkpoints' int8 rows, which the lowering
    hands over raw) quantize their rows as compressed-tensors does: one
    scale per row, max|row| / 127.5, codes roundeven(clamp(x / scale, -128,
    127)), every block of the row with that scale, in prefill and (whatever
    int8-decode says) in decode, without residual codes: the codes are the
    reference's, so the products are exact. Where the int8 paths do not
    apply (int8-dot off, FP8 codes, odd depths), the f32 kernel multiplies
    the rows' quantized values, made into a scratch copy first.

    Other linalg ops are left alone.
  }];
  let options = [
    Option<"vectorWidth", "vector-width", "int64_t", /*default=*/"16",
           "f32 lanes per accumulator (16 for AVX-512, 8 for AVX2, 4 for NEON)">,
    Option<"tileM", "tile-m", "int64_t", /*default=*/"4",
           "activation rows per register tile">,
    Option<"tileN", "tile-n", "int64_t", /*default=*/"4",
           "weight rows per register tile">,
    Option<"blockN", "block-n", "int64_t", /*default=*/"64",
           "weight rows per parallel work item (a multiple of tile-n); a product of "
           "fewer than 4 x block-n rows takes items of ceil(rows / (4 x tile-n)) tiles, "
           "so that it still makes 4">,
    Option<"bf16Dot", "bf16-dot", "bool", /*default=*/"false",
           "multiply bf16 weights with AVX512-BF16 dot products">,
    Option<"int8Dot", "int8-dot", "bool", /*default=*/"false",
           "multiply integer-coded packed weights with int8-quantized activations "
           "by dot products (vpdpbusd at vector-width 16 or 8, AArch64 sdot at 4)">,
    Option<"amx", "amx", "bool", /*default=*/"false",
           "at vector-width 16, with bf16-dot the broadcast kernel's products of depths "
           "that are whole 32s on AMX tiles (tdpbf16ps), with int8-dot the int8 products "
           "of int8 codes (tdpbssd)">,
    Option<"int8Decode", "int8-decode", "std::string", /*default=*/"\"none\"",
           "with int8-dot, the packed weights whose products with fewer than 8 activation "
           "rows (decode) take int8 activations too, one row at a time: none, nibbles "
           "(4-bit codes) or all">,
    Option<"int8DecodeBits", "int8-decode-bits", "int64_t", /*default=*/"8",
           "the decode kernel's activation precision: 8 (one int8 code per element, as "
           "llama.cpp's Q8 activations) or 16 (a second int8 code per element holding the "
           "first's rounding error in 128ths of a step: a second dot product per weight "
           "vector)">,
    Option<"prefetchBytes", "prefetch-bytes", "int64_t", /*default=*/"4096",
           "bytes of weights ahead that the packed weights' decode tiles prefetch, in "
           "whole tiles (1 to 8 of them)">,
  ];
  let dependentDialects = [
    "::mlir::scf::SCFDialect", "::mlir::memref::MemRefDialect",
    "::mlir::vector::VectorDialect", "::mlir::x86vector::X86VectorDialect",
    "::mlir::amx::AMXDialect",
    "::mlir::arith::ArithDialect", "::mlir::affine::AffineDialect",
    "::mlir::math::MathDialect", "::mlir::LLVM::LLVMDialect"
  ];
}

def CPULowerAMXPass : Pass<"moir-cpu-lower-amx"> {
  let summary = "AMX tile ops to LLVM's tile intrinsics, before loops become branches";
  let description = [{
    The contraction kernels' AMX tiles (`amx.tile_zero`, `tile_load`,
    `tile_mulf`, `tile_store`) become calls of LLVM's `llvm.x86.*.internal`
    intrinsics on `!llvm.x86_amx` values, and the `scf.for` loops that carry
    accumulator tiles carry those values instead. This runs right after
    `moir-cpu-contraction-kernels`: once the loops are branches (and their
    bodies OpenMP regions), the later conversions to LLVM, each with its own
    type converter, would meet block arguments of `!amx.tile` type they
    cannot convert. Everything else is left as it is (memref and index
    operands of the tile ops reach the intrinsics through casts that the
    final conversions reconcile). LLVM's X86 backend then configures the
    tiles (`ldtilecfg`) from the shapes the intrinsics carry.

    ```mlir
    // before
    %r = scf.for %k = ... iter_args(%acc = %z) -> (!amx.tile<16x16xf32>) {
      %p = amx.tile_mulf %a, %b, %acc : !amx.tile<16x32xbf16>, !amx.tile<16x32xbf16>, !amx.tile<16x16xf32>
      scf.yield %p : !amx.tile<16x16xf32>
    }
    // after
    %r = scf.for %k = ... iter_args(%acc = %z) -> (!llvm.x86_amx) {
      %p = llvm.call_intrinsic "llvm.x86.tdpbf16ps.internal"(...) : (...) -> !llvm.x86_amx
      scf.yield %p : !llvm.x86_amx
    }
    ```
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

def CPUApproximateMathPass : Pass<"moir-cpu-approximate-math"> {
  let summary = "f32 math.exp as an inline polynomial (no libm call)";
  let description = [{
    Softmax and SiLU call `expf` once per element: a libm call per score
    keeps LLVM from vectorizing those loops. This pass rewrites f32
    `math.exp` into MLIR's polynomial approximation (range reduction by
    ln 2, a degree-6 polynomial, exponent bits rebuilt with integer ops;
    -inf gives 0, as masked attention scores need), which LLVM vectorizes
    like any other arithmetic.

    ```mlir
    // before
    %e = math.exp %x : f32
    // after (no call left)
    %k = arith.mulf %x, %log2e : f32
    ... a degree-6 polynomial in the reduced argument, 2^k from the exponent bits
    %e = arith.mulf %p, %pow2k : f32
    ```
  }];
  let dependentDialects = ["::mlir::arith::ArithDialect", "::mlir::vector::VectorDialect"];
}


def CPUParallelizePass : Pass<"moir-cpu-parallelize"> {
  let summary = "turns the linalg ops marked moir.parallel into scf.parallel loops";
  let description = [{
    The lowering marks the contractions worth splitting across cores
    (projections, expert matmuls, attention and its softmax); this pass
    gives them loops whose leading parallel dimensions (all but the
    innermost loop) form one `scf.parallel`, which `convert-scf-to-openmp`
    turns into an OpenMP worksharing loop run by the runtime's thread pool.
    The innermost loop stays sequential, so LLVM vectorizes it; reductions
    stay sequential. Other linalg ops keep sequential loops: a fork per
    small element-wise op would cost more than it saves.

    ```mlir
    // before
    linalg.generic {iterator_types = ["parallel", "parallel", "reduction"]} ... {moir.parallel}
    // after
    scf.parallel (%m, %n) = (%c0, %c0) to (%M, %N) step (%c1, %c1) {
      scf.for %k = %c0 to %K step %c1 { ... }
    }
    ```
  }];
  let dependentDialects = ["::mlir::scf::SCFDialect", "::mlir::memref::MemRefDialect"];
}

def CPUParallelIfPass : Pass<"moir-cpu-parallel-if"> {
  let summary = "no fork for a parallel region of one work item";
  let description = [{
    `convert-scf-to-openmp` makes each parallel loop an `omp.parallel`
    holding one `omp.wsloop`, forked on the runtime's thread pool whatever
    its trip count. A decode step has many regions of one work item (one
    token; absorbed MLA's one (query block, KV head) pair and its combine;
    one router block): the team is woken for a share that one thread runs
    while the others wait. This pass gives such a region `if(trips > 1)`,
    the trip count of its loop nest computed before it, so the calling
    thread runs a single item alone (`__kmpc_fork_call_if`, the runtime's
    nested-region path). A region with more than one worksharing loop, or
    whose bounds are not available before it (other than constants, which
    are copied out), or an inclusive nest, keeps its unconditional fork.

    (Also marking the region's last loop `nowait`, dropping its closing
    barrier before the region's join, was measured slower on the
    DeepSeek-V2-Lite-shaped Q8_0 decode, 2 threads: threads idle 6.6-7.5%
    -> 8.7-13.6% of the regions' time; it is not done.)

    ```mlir
    // before
    omp.parallel {
      omp.wsloop {
        omp.loop_nest (%i) : index = (%c0) to (%n) step (%c1) { ... }
      }
      omp.terminator
    }
    // after
    %span = arith.subi %n, %c0 : index
    %trips = arith.ceildivsi %span, %c1 : index
    %fork = arith.cmpi sgt, %trips, %c1_0 : index
    omp.parallel if(%fork) {
      omp.wsloop {
        omp.loop_nest (%i) : index = (%c0) to (%n) step (%c1) { ... }
      }
      omp.terminator
    }
    ```
  }];
  let dependentDialects = ["::mlir::omp::OpenMPDialect", "::mlir::arith::ArithDialect"];
}

def CPUDynamicSchedulePass : Pass<"moir-cpu-dynamic-schedule"> {
  let summary = "worksharing loops whose iterations the threads take as they come";
  let description = [{
    `convert-scf-to-openmp` makes each parallel loop an `omp.wsloop` with
    no schedule: a static split of its iterations, one contiguous share per
    thread, so every thread waits at the loop's barrier for the last one to
    finish its share, however late it started (a worker waking for a fork;
    another process on its core) or however slow its items. This pass gives
    each worksharing loop in a parallel region without a schedule
    `schedule(dynamic)`: the runtime (`__kmpc_dispatch_*`, runtime/src/
    parallel.cpp) starts each thread on its share of the static split, in
    runs of a quarter of what is left of it, and a thread whose share is
    done takes the back half of the fullest other share, so each still
    works on its own rows first (those the previous loop left in its
    caches) and none waits long at the barrier. Which thread computes an
    item never changes its result.

    ```mlir
    omp.parallel {
      omp.wsloop schedule(dynamic) {
        omp.loop_nest (%i) : index = (%c0) to (%n) step (%c1) { ... }
      }
      omp.terminator
    }
    ```
  }];
  let dependentDialects = ["::mlir::omp::OpenMPDialect"];
}

#endif // MOIR_TARGET_CPU_PASSES
