//===- Passes.td - the Halide code generator's passes ------*- tablegen -*-===//

#ifndef MOIR_TARGET_HALIDE_PASSES
#define MOIR_TARGET_HALIDE_PASSES

include "mlir/Pass/PassBase.td"

def HalideSelectKernelsPass : Pass<"moir-halide-select-kernels", "mlir::ModuleOp"> {
  let summary = "hands the ops Halide can compile to it, as moir.halide_call";
  let description = [{
    Replaces each op of the kinds in `ops` that the Halide generator has an
    algorithm for with a `moir.halide_call` of the same operands and result:
    `llm.rms_norm` (f32 input, static normalized dimension), `llm.linear`
    (rank-2 f32 input, an f32/bf16/f16 weight, or on the host or OpenCL a packed
    quantized one with i8, u4 or FP8 E4M3 codes), `llm.glu` and
    `llm.activation` (silu, sigmoid, relu, gelu_tanh; erf's gelu stays on
    MLIR), `llm.rope` (any scaling: the frequencies are
    computed here and passed as a table), and `glu_linear`: a GLU whose only
    use is a linear's input, fused with it into one kernel (the FFN's down
    projection; a schedule decides whether the GLU's output is materialized
    or recomputed); `router`: `moe.fused_route` (an f32 input, a float
    router; any scoring and top-k method), with two results, the weights
    and the ids; `experts`: `moe.fused_experts` with float weights
    (or, on the host or OpenCL, packed i8/u4/FP8 ones), the gate/up products, activation,
    down products, routing weights and shared expert in one kernel;
    `attention`: `llm.attention` with f32 queries over a float cache (on a
    device too, a thread per head and token); `mla`: `mla.attend` in the absorbed
    form over float caches and a float `kv_b_proj`, on the host; where the
    op asks for the materialized form in prefill, an `scf.if` keeps it on
    MLIR from 4 tokens. Everything else stays on the MLIR path. With `device`
    other than host each call carries `device = "opencl"` (or vulkan): the
    kernel is compiled and scheduled for that device, and the call copies
    its result back to the host; its operands that are weights
    (`llm.weight`, `llm.stacked_weight`) are listed in `resident`, which
    keeps them on the device between calls (moir-halide-resident-weights). A linear whose token count is dynamic becomes two kernels, one
    scheduled for decode (fewer than 4 tokens) and one for prefill, picked
    at run time by an `scf.if`. With `int8-dot`, a linear's or the experts'
    integer-coded weights multiply int8 activations (MLIR's --cpu-int8-dot
    math): `int8 = "1"` lists those inputs, in prefill all of them, in
    decode those `int8-decode` names, at `int8-decode-bits` (16: an
    `int8_bits = 16` param on those decode calls). The callee's name is the kernel's content
    (kind, operand types, params), so identical ops share one kernel.

    ```mlir
    // before
    %n = llm.rms_norm %x, %w epsilon = 1.0e-05 : tensor<?x64xf32>, tensor<64xf32>
    // after
    %n = moir.halide_call "moir_hl_rms_norm_<hash>" "rms_norm"(%x, %w) {epsilon = 1.0e-05 : f64}
        : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
    ```
  }];
  let options = [
    Option<"ops", "ops", "std::string",
           "\"rms_norm,linear,glu,activation,rope,glu_linear,router,experts,attention\"",
           "the op kinds to hand to Halide, a comma list (mla is opt-in)">,
    Option<"device", "device", "std::string", "\"host\"",
           "where the kernels run: host, opencl or vulkan (a `device` param on each call)">,
    Option<"int8Dot", "int8-dot", "bool", "false",
           "on the host, integer-coded packed weights (i8 codes in groups of 16 or of "
           "multiples of 32, u4 codes in groups of 32) multiply activations quantized to "
           "int8 per block of 32 (16): an `int8` param names them">,
    Option<"int8Decode", "int8-decode", "std::string", "\"nibbles\"",
           "with int8-dot, which weights take int8 activations in decode kernels: nibbles "
           "(4-bit codes), all or none">,
    Option<"int8DecodeBits", "int8-decode-bits", "int64_t", "8",
           "precision of those decode activations: 8, or 16 (a second int8 code per "
           "element, its first's rounding error in 128ths of a step, as MLIR's "
           "int8-decode-bits: an `int8_bits = 16` param on the decode kernels)">,
    Option<"wholeLayers", "whole-layers", "bool", "false",
           "moirc --target=halide: every op kind (whatever `ops` says), the residual "
           "additions (`arith.addf` on f32 tensors: `add`) and the token embedding "
           "(`llm.embedding` of a float table: `embed`) too, MLA's absorbed kernel for "
           "every token count; then every op of a layer (`moir.layer`) that computes on "
           "tensors must have become a call, or the pass fails naming it">
  ];
  let dependentDialects = ["::moir::MoIRDialect", "::mlir::scf::SCFDialect",
                           "::mlir::arith::ArithDialect", "::mlir::tensor::TensorDialect"];
}

def HalideCompileKernelsPass : Pass<"moir-halide-compile-kernels", "mlir::ModuleOp"> {
  let summary = "compiles the module's Halide kernels to object files for the target";
  let description = [{
    Builds one Halide pipeline per distinct `moir.halide_call` callee from
    its kernel, operand types and params, schedules it (its default
    schedule, or `schedules-in/<callee>.schedule` where that file exists),
    compiles it ahead of time for the target (`triple`, `cpu`: the LLVM
    CPU's features mapped to Halide's), plus Halide's runtime once, and
    records the object files in the module's `moir.link_objects` for the
    host linker. `schedules-out` writes every schedule used. A module
    without Halide kernels is left as it is.

    ```mlir
    // after
    module attributes {moir.link_objects = ["/tmp/moir-halide-XXXXXX/moir_hl_rms_norm_<hash>.o",
                                            "/tmp/moir-halide-XXXXXX/halide_runtime.o"]} {
    ```
  }];
  let options = [
    Option<"triple", "triple", "std::string", "\"\"", "target triple (default: the host's)">,
    Option<"cpu", "cpu", "std::string", "\"native\"", "target CPU">,
    Option<"schedulesIn", "schedules-in", "std::string", "\"\"",
           "folder of edited <callee>.schedule files">,
    Option<"schedulesOut", "schedules-out", "std::string", "\"\"",
           "folder to write each kernel's schedule to">,
    Option<"autoscheduler", "autoscheduler", "std::string", "\"\"",
           "Halide autoscheduler for the kernels without a schedules-in file: "
           "Mullapudi2016 or Li2018 (default: MoIR's schedules)">,
    Option<"parallelism", "parallelism", "int64_t", "16",
           "cores the autoscheduler plans for">
  ];
}

def HalideResidentWeightsPass : Pass<"moir-halide-resident-weights", "mlir::ModuleOp"> {
  let summary = "defines the table that keeps device kernels' weights on the device";
  let description = [{
    Runs once the module is in the LLVM dialect. Where a device kernel's call
    reads a weight (`moir.halide_call`'s `resident`), its bufferization calls
    `moir_hl_resident` with the weight's descriptor. This pass defines that
    function: a table of the weights on the device, one entry per buffer
    (its host address and type's signature), filled on a buffer's first
    call under a lock: the descriptor copied into the table with its
    dimensions, the bytes copied to the device (`halide_copy_to_device`; on
    Vulkan staged through host memory padded to 64 bytes, then cropped, as
    the per-call buffers are), the entry's descriptor returned to every
    later call. Its capacity is `@forward`'s argument count (every weight
    is one of its buffers); it returns null when full or when a copy
    fails, and the call asserts. A destructor frees the device buffers when
    the artifact is unloaded (the host object is linked after Halide's
    runtime, so this destructor runs before the runtime's own releases the
    device). A module that does not declare `moir_hl_resident` is left as
    it is.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

def HalideKeepActivationsPass : Pass<"moir-halide-keep-activations", "mlir::ModuleOp"> {
  let summary = "keeps device kernels' results on the device for the device kernels that read them";
  let description = [{
    Runs on tensors, before bufferization (moirc --target=halide with
    --halide-target=opencl or vulkan). A value is on the device when it is a device
    `moir.halide_call`'s result, a `tensor.expand_shape`/`collapse_shape` of
    one, an `scf.if` result every branch yields on the device, or a private
    function's argument (result) that every call passes (every return
    yields) on the device. Each device call gets:
      - `moir.keep_results`: its results stay on the device after the call
        (the activation table, moir-halide-activation-table), until their
        buffer is freed;
      - `moir.device_inputs`: its operands on the device (not weights or
        caches, which `resident` keeps), read there without a copy;
      - `moir.host_results`: its results some host op reads (directly,
        through a view, or through an `scf.if`/call/return whose value is
        not on the device everywhere): copied back as well.
    `@forward` calls `moir_hl_release_activations` before it returns, which
    frees what the table still holds. A module without device calls is left
    as it is.
  }];
  let dependentDialects = ["::mlir::func::FuncDialect"];
}

def HalideActivationTablePass : Pass<"moir-halide-activation-table", "mlir::ModuleOp"> {
  let summary = "defines the per-thread table of activations kept on the device";
  let description = [{
    Runs once the module is in the LLVM dialect, where a call bufferized
    with `moir.keep_results` declared `moir_hl_keep`. Defines, over a
    thread-local table of 256 slots (a thread runs one forward at a time):
    `moir_hl_keep(desc, host, copied, staged)` (the result's device buffer,
    on Vulkan the padded one, moves into a slot keyed by its host address;
    where the table is full, on OpenCL the result is copied back as any, on
    Vulkan the call fails), `moir_hl_bind(desc, staged)` (an input's
    descriptor given the slot's device buffer, on Vulkan a crop of it; on
    OpenCL, 0 when no slot holds it after the table overflowed this
    forward: the call copies the host's bytes, current because that result
    was copied back; any other miss fails the call), `moir_hl_unbind`,
    `moir_hl_release_activation(host)` and `moir_hl_release_activations()`. Every `free` in the module is preceded
    by `moir_hl_release_activation` of the same pointer, so a slot lives
    exactly as long as its host buffer and a later buffer at that address
    is never taken for it.
  }];
  let dependentDialects = ["::mlir::LLVM::LLVMDialect"];
}

#endif // MOIR_TARGET_HALIDE_PASSES
