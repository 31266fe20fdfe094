//===- Passes.td - the shared GPU lowering --------------------*- tablegen -*-===//
//
// Vendor-neutral: these passes turn bufferized loops into gpu.launch kernels
// and host code. NVVM/ROCDL specifics live in lib/Target/{NVIDIA,AMD}.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_TARGET_GPU_PASSES
#define MOIR_TARGET_GPU_PASSES

include "mlir/Pass/PassBase.td"

def GPUConfigureLoweringPass : Pass<"moir-gpu-configure-lowering", "mlir::ModuleOp"> {
  let summary = "writes the GPUs' #moir.lowering_config for the lowering to linalg";
  let description = [{
    The GPU kernels map every loop themselves (moir-gpu-map-loops), so the
    lowering to linalg marks nothing for a thread pool and builds no
    `scf.forall` work items (`parallel = false`); the GPU targets keep the
    unfused MoE steps and materialized attention, whose lowerings read no
    block sizes, so the rest keeps the neutral defaults.

    ```mlir
    // after
    module attributes {moir.lowering_config = #moir.lowering_config<parallel = false,
        work_items = 1, min_split_keys = 256, key_block = 64, query_rows = 64,
        ffn_block = 64, token_block = 16, vector_width = 1>} {
    ```
  }];
  let dependentDialects = ["::moir::MoIRDialect"];
}

def GPUTensorCoresPass : Pass<"moir-gpu-tensor-cores", "mlir::ModuleOp"> {
  let summary = "matrix products with many rows run on the matrix units (mma.sync, MFMA)";
  let description = [{
    Runs on bufferized linalg, before `moir-gpu-warp-reductions`. A
    `linalg.generic` at host level with loops (m, n, k), an f32 output
    `out[m, n] += a(m, k) * b(n, k)` and a body whose product splits into a
    side that reads only (m, k) and one that reads only (n, k) (the
    projections against bf16, f16 or quantized weights; the dequantization is
    part of its side) becomes a `gpu.launch` of 64x64 output tiles with four
    warps: per depth slice of 32, the block stages both sides as bf16 in
    workgroup memory (each element computed once per block by the cloned
    body; f32 activations are rounded to bf16) and every warp multiplies its
    32x32 quarter with `nvgpu.mma.sync` m16n8k16 (`unit=mma-sync`, NVIDIA
    sm_80 and newer) or `amdgpu.mfma` 16x16x16 (`unit=mfma`, gfx90a and
    gfx942), accumulating in f32. A product of two f32 operands (the router,
    f32 checkpoints) is left alone. When the rows are fewer than `min-rows`
    (decode) the original generic runs instead, on a zero-row slice
    otherwise: the choice is made at run time from the row count (a launch
    with an empty grid is skipped), and the generic then becomes the warp-
    per-output form.

    ```mlir
    // before: out[t, n] += x[t, k] * extf(w[n, k]), T tokens
    linalg.generic {iterator_types = ["parallel", "parallel", "reduction"]} ...
    // after
    %rows = arith.select %many, %T, %c0 : index   // T >= min-rows
    linalg.generic ... ins(%x[0:T - rows], %w) outs(%out[0:T - rows])
    gpu.launch blocks(%bx, %by, %bz) in (%gx = ceil(N / 64), %gy = ceil(rows / 64), %c1)
               threads(...) in (%tx = 4 * warp, ...)
               workgroup(%ta : memref<64x40xbf16, #gpu.address_space<workgroup>>, %tb : ...) {
      scf.for %k0 = %c0 to %K step %c32 iter_args(%acc = ...) {
        ... stage, gpu.barrier
        %d = nvgpu.mma.sync(%a, %b, %c) {mmaShape = [16, 8, 16]} ...
      }
      ... stores inside the output
    }
    ```
  }];
  let options = [
    Option<"unit", "unit", "std::string", /*default=*/"\"mma-sync\"",
           "matrix instruction: mma-sync (NVIDIA) or mfma (AMD CDNA)">,
    Option<"warpSize", "warp-size", "int64_t", /*default=*/"32", "lanes per warp">,
    Option<"minRows", "min-rows", "int64_t", /*default=*/"16",
           "products with fewer rows keep the warp-per-output form">,
  ];
  let dependentDialects = ["::mlir::scf::SCFDialect", "::mlir::gpu::GPUDialect",
                           "::mlir::nvgpu::NVGPUDialect", "::mlir::amdgpu::AMDGPUDialect",
                           "::mlir::vector::VectorDialect", "::mlir::affine::AffineDialect",
                           "::mlir::arith::ArithDialect", "::mlir::memref::MemRefDialect"];
}

def GPUWarpReductionsPass : Pass<"moir-gpu-warp-reductions", "mlir::ModuleOp"> {
  let summary = "reductions along the innermost loop become one warp per output";
  let description = [{
    Runs on bufferized linalg, before `convert-linalg-to-parallel-loops`.
    A `linalg.generic` at host level whose only reduction is its innermost
    loop and whose body combines with `arith.addf` or `arith.maximumf`
    (matrix-vector and matrix products against row-major weights, attention
    scores, norms, softmax maxima) becomes an `scf.parallel` over the outputs
    and `warp-size` lanes, marked `moir.warp_reduce`: lane `l` combines
    elements `l, l + warp, ...` (consecutive lanes read consecutive
    addresses: coalesced), a `gpu.shuffle xor` butterfly combines the lanes,
    and lane 0 folds in the output's initial value and stores. The thread-per-
    output form it replaces walks a whole weight row per thread.

    ```mlir
    // before: out[t, n] += x[t, k] * w[n, k]
    linalg.generic {iterator_types = ["parallel", "parallel", "reduction"]} ...
    // after
    scf.parallel (%t, %n, %lane) = (%c0, %c0, %c0) to (%T, %N, %c32) step (%c1, %c1, %c1) {
      %p = scf.for %k = %lane to %K step %c32 iter_args(%a = %zero) -> (f32) { ... }
      %s, %ok = gpu.shuffle xor %p, %c16, %c32 : f32
      ...
    } {moir.warp_reduce}
    ```
  }];
  let options = [
    Option<"warpSize", "warp-size", "int64_t", /*default=*/"32", "lanes per warp">,
    Option<"minReduction", "min-reduction", "int64_t", /*default=*/"32",
           "static reductions shorter than this stay thread-per-output">,
  ];
  let dependentDialects = ["::mlir::scf::SCFDialect", "::mlir::gpu::GPUDialect",
                           "::mlir::affine::AffineDialect", "::mlir::arith::ArithDialect",
                           "::mlir::memref::MemRefDialect"];
}

def GPUOffloadPass : Pass<"moir-gpu-offload", "mlir::ModuleOp"> {
  let summary = "splits bufferized functions into host control and device loops";
  let description = [{
    Runs after bufferization and `convert-linalg-to-parallel-loops`. In each
    function, every op at host level (the body, and the bodies of loops and
    branches that hold dynamically sized allocations or calls) is classified:

    * `scf.parallel` stays: it becomes a kernel (`moir-gpu-map-loops`).
    * a loop or branch without dynamic allocations, a `memref.store` or any
      other op that touches buffers is wrapped in a one-iteration
      `scf.parallel` marked `moir.serial`: a single-thread kernel. Parallel
      loops nested in it become `scf.for`; its static allocations become
      `memref.alloca` at its start (reused by every iteration).
    * a `memref.load` (a value that steers host control, such as a routed
      expert's row count) becomes a call of the runtime's
      `moir_gpu_read_b32/_b64(address)`, which waits for the device and reads
      the element.

    ```mlir
    // before
    scf.for %i = %c0 to %n step %c1 { ... memref.store %v, %buf[%i] ... }
    %x = memref.load %count[%c0] : memref<5xi32>
    // after
    scf.parallel (%t) = (%c0) to (%c1) step (%c1) {
      scf.for %i = %c0 to %n step %c1 { ... }
    } {moir.serial}
    %x = func.call @moir_gpu_read_b32(%address) : (index) -> i32
    ```
  }];
  let dependentDialects = ["::mlir::scf::SCFDialect", "::mlir::func::FuncDialect",
                           "::mlir::arith::ArithDialect", "::mlir::memref::MemRefDialect"];
}

def GPUMapLoopsPass : Pass<"moir-gpu-map-loops", "mlir::ModuleOp"> {
  let summary = "tiles host-level parallel loops into blocks and threads";
  let description = [{
    Each host-level `scf.parallel` is tiled: its innermost dimension by
    `block-size` threads (fewer for a short static dimension, rounded up to a
    warp), the others by 1. The tile loop's dimensions map, innermost first, to
    block x, y and z (any further ones run sequentially in the kernel), the
    intra-tile loop's innermost dimension to thread x. A `moir.serial` loop
    maps to one thread. `convert-parallel-loops-to-gpu` then makes the
    launches.

    ```mlir
    // before: a host-level loop of the offloaded function
    scf.parallel (%i, %j) = (%c0, %c0) to (%n, %c72) step (%c1, %c1) { ... }
    // after: the tile loop on blocks, the intra-tile loop on threads (a short
    // static dimension rounded up to a warp: 72 -> 96)
    scf.parallel (%i, %j0) = (%c0, %c0) to (%n, %c72) step (%c1, %c96) {
      scf.parallel (%u, %j1) = ... {
        scf.if (%j0 + %j1 < 72) { ... }
      } {mapping = [#gpu.loop_dim_map<processor = sequential, ...>,
                    #gpu.loop_dim_map<processor = thread_x, ...>]}
    } {mapping = [#gpu.loop_dim_map<processor = block_y, ...>,
                  #gpu.loop_dim_map<processor = block_x, ...>]}
    ```
  }];
  let options = [
    Option<"blockSize", "block-size", "int64_t", /*default=*/"256",
           "threads per block along the innermost dimension">,
    Option<"warpSize", "warp-size", "int64_t", /*default=*/"32",
           "short dimensions round up to a multiple of this">,
  ];
  let dependentDialects = ["::mlir::scf::SCFDialect", "::mlir::gpu::GPUDialect",
                           "::mlir::affine::AffineDialect"];
}

def GPUHostMemoryPass : Pass<"moir-gpu-host-memory", "mlir::ModuleOp"> {
  let summary = "puts host-level buffers in device memory";
  let description = [{
    Runs after `convert-parallel-loops-to-gpu`. Host-level `memref.alloc` and
    `memref.dealloc` become `gpu.alloc` and `gpu.dealloc` (device memory,
    pooled by the runtime); `memref.get_global` results used in a kernel are
    re-created inside it, so `gpu-kernel-outlining` copies the constant into
    the device module instead of passing a host pointer.

    ```mlir
    // before
    %b = memref.alloc(%n) : memref<?xf32>
    // after: the buffer lives on the device
    %b = gpu.alloc (%n) : memref<?xf32>
    ```
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

def GPUMergeModulesPass : Pass<"moir-gpu-merge-modules", "mlir::ModuleOp"> {
  let summary = "moves every outlined kernel into one gpu.module";
  let description = [{
    `gpu-kernel-outlining` makes one `gpu.module` per kernel. This pass moves
    all kernels (and the constants they read, once) into a single
    `gpu.module @moir_kernels` and retargets the launches, so the artifact
    holds one device binary that the runtime loads once.

    ```mlir
    // before: one module per outlined kernel
    gpu.module @forward_kernel { gpu.func @forward_kernel(...) kernel { ... } }
    gpu.module @forward_kernel_0 { gpu.func @forward_kernel_0(...) kernel { ... } }
    // after: one module, one binary to load
    gpu.module @moir_kernels { gpu.func @forward_kernel(...) kernel { ... }
                               gpu.func @forward_kernel_0(...) kernel { ... } }
    gpu.launch_func @moir_kernels::@forward_kernel_0 ...
    ```
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect"];
}

def GPUHoistScratchPass : Pass<"moir-gpu-hoist-scratch", "mlir::gpu::GPUFuncOp"> {
  let summary = "moves each kernel's fixed-size stack buffers to its entry block";
  let description = [{
    `moir-gpu-offload` gives each work item of a device loop its scratch
    buffers on its own stack (`memref.alloca` at the start of the loop's
    body). After mapping and outlining that body sits inside the kernel's
    bounds check, and a stack allocation outside the entry block is a
    dynamic one, which AMDGPU cannot select and NVPTX makes a run-time
    allocation. This pass moves every `memref.alloca` without operands to the
    start of the kernel's entry block: one buffer per thread, reused by the
    iterations a thread runs, each of which writes before it reads.

    ```mlir
    // before
    gpu.func @k() kernel { scf.if %in { %s = memref.alloca() : memref<8xf32> ... } }
    // after
    gpu.func @k() kernel { %s = memref.alloca() : memref<8xf32>  scf.if %in { ... } }
    ```
  }];
}

#endif // MOIR_TARGET_GPU_PASSES
