//===- MoIROps.td - the contract attributes MoIR's passes exchange -*- tablegen -*-===//
//
// The `moir` dialect declares every `moir.*` attribute that the importer, the
// passes and the backends hand to each other, so that each one has one
// spelling, one C++ accessor and a verifier; and the ops that hand a
// computation to another code generator (moir.halide_call) and keep a
// device's copy of a KV cache current (moir.halide_sync_rows).
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_MOIR_OPS
#define MOIR_MOIR_OPS

include "MoIR/IR/MoIREnums.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/OpBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def MoIR_Dialect : Dialect {
  let name = "moir";
  let cppNamespace = "::moir";
  let summary = "MoIR's contract attributes";
  let description = [{
    Discardable attributes the importer, the passes and the backends exchange,
    each declared here with its type and checked by the dialect's verifier
    (an unknown `moir.*` name, or a known one of the wrong type, is an error):

    - `moir.family`, `moir.source` (module): the model family and the file
      the importer read;
    - `moir.layer` (ops of a decoder layer, set by the importer and kept by
      every graph pass; outlined layer functions): the layer number;
    - `moir.arg` (arguments of the entry `@forward`): `#moir.arg<kind>` says
      what an argument holds, and for weights their names in the weight store;
      the artifact's manifest is written from these;
    - `moir.lowering_config` (module): the block sizes and parallelism the
      target-neutral lowering to linalg uses, written by a target's
      configuration pass;
    - markers on lowered ops: `moir.parallel` (split across the thread pool),
      `moir.kernel` (a contraction run inside a work item), `moir.precise`
      (kept in f32), `moir.row_quant` (a contraction whose activation rows
      are W8A8's: quantized to int8 per row as compressed-tensors does,
      scale max|row| / 127.5, by the kernel that multiplies them, which
      must), `moir.serial`, `moir.warp_reduce`, `moir.host_copy` (GPU
      offload), `moir.abi` (@forward's buffer ranks for the exported entry);
    - `moir.packed` (a contraction whose weight is a packed quantized weight,
      include/moir/Frontend/Quantization.h): the packed form, e.g. "u4:32",
      so a target's kernels read codes and scales without matching the
      dequantizing body;
    - `moir.link_objects` (module): object files another code generator
      compiled (the Halide kernels) that the host linker adds to the
      artifact's shared object;
    - on a device `moir.halide_call` (moir-halide-keep-activations, moirc
      --target=halide): `moir.keep_results` (its results stay on the
      device), `moir.device_inputs` (the operands another device call left
      there) and `moir.host_results` (the results a host op reads, copied
      back too).
  }];
  let discardableAttrs = (ins
    "::mlir::StringAttr":$family,
    "::mlir::StringAttr":$source,
    "::mlir::IntegerAttr":$layer,
    "::moir::EntryArgAttr":$arg,
    "::moir::LoweringConfigAttr":$lowering_config,
    "::mlir::UnitAttr":$parallel,
    "::mlir::UnitAttr":$kernel,
    "::mlir::UnitAttr":$precise,
    "::mlir::UnitAttr":$row_quant,
    "::mlir::UnitAttr":$serial,
    "::mlir::UnitAttr":$warp_reduce,
    "::mlir::UnitAttr":$host_copy,
    "::mlir::DenseI64ArrayAttr":$abi,
    "::mlir::StringAttr":$packed,
    "::mlir::ArrayAttr":$link_objects,
    "::mlir::UnitAttr":$keep_results,
    "::mlir::DenseI64ArrayAttr":$device_inputs,
    "::mlir::DenseI64ArrayAttr":$host_results
  );
  let useDefaultAttributePrinterParser = 1;
  let hasOperationAttrVerify = 1;
  let hasRegionArgAttrVerify = 1;
}

def MoIR_EntryArgAttr : AttrDef<MoIR_Dialect, "EntryArg"> {
  let mnemonic = "arg";
  let summary = "what an argument of @forward holds";
  let description = [{
    Set on every argument of the entry `@forward`: by the importer (tokens,
    positions, the cache offset, the caches), by `moir-quantize-kv-cache`
    (each quantized cache's row scales) and by `moir-bind-weights` (each
    weight, with its names in the weight store: one name, or one per expert
    for a stacked weight). A quantized weight is bound as two arguments whose
    `packing` names the packed form and the part ("u4:32:q4_k/data",
    "u4:32:q4_k/scales"; include/moir/Frontend/Quantization.h). The
    artifact's manifest is written from these, so no code depends on the
    order of the arguments.

    ```mlir
    func.func @forward(%tokens: tensor<?xi32> {moir.arg = #moir.arg<tokens>},
                       %w: tensor<32x64xf32> {moir.arg = #moir.arg<weight, ["lm_head.weight"]>})
    ```
  }];
  let parameters = (ins
    EnumParameter<MoIR_ArgKind>:$kind,
    OptionalParameter<"::mlir::ArrayAttr">:$names,
    OptionalParameter<"::mlir::StringAttr">:$packing
  );
  let assemblyFormat = "`<` $kind (`,` $names^)? (`,` `packing` `=` $packing^)? `>`";
  let builders = [
    AttrBuilder<(ins "::moir::ArgKind":$kind, "::mlir::ArrayAttr":$names), [{
      return $_get($_ctxt, kind, names, ::mlir::StringAttr());
    }]>
  ];
  let genVerifyDecl = 1;
}

def MoIR_LoweringConfigAttr : AttrDef<MoIR_Dialect, "LoweringConfig"> {
  let mnemonic = "lowering_config";
  let summary = "block sizes and parallelism for the lowering to linalg";
  let description = [{
    The lowering of MoIR's ops to linalg/scf (`moir-lower-to-linalg`) knows no
    target: every choice that depends on one comes from this attribute on the
    module, which a target's configuration pass writes
    (`moir-cpu-configure-lowering`, `moir-gpu-configure-lowering`).

    - `parallel`: mark the large ops for the runtime's thread pool and build
      the fused ops' work items as `scf.forall` (CPU); false on GPUs, whose
      kernels map every loop;
    - `work_items`: how many parallel work items are worth having (flash
      attention splits the keys until it has about this many);
    - `min_split_keys`: never split the keys below this many per split and
      head (a split's keys serve each head sharing them: a group of G heads
      splits from min_split_keys / G keys, at least a key block);
    - `key_block`, `query_rows`: flash attention's keys per block and rows
      (queries x the heads sharing a KV head) per work item;
    - `ffn_block`: columns per work item of the fused expert FFNs;
    - `decode_ffn_block` (default 0: `ffn_block`): the same, and hidden
      columns per work item of their down products, where the tokens'
      copies average fewer than 8 per expert (decode): the kernels then
      stream each weight once, and a longer run of rows per item streams
      faster (CPU: 256);
    - `token_block`: tokens per work item of the fused router;
    - `vector_width`: f32 lanes of the target's vectors;
    - `row_quant` (default false): the target's contractions quantize W8A8
      int8 rows themselves (`moir.row_quant`): a linear or the fused experts
      reading `llm.dynamic_quant int8` rows get the raw rows and that
      marker instead of the rounded rows in f32 (CPU: the int8 dot products
      with compressed-tensors' codes, exact).

    ```mlir
    module attributes {moir.lowering_config = #moir.lowering_config<parallel = true,
        work_items = 32, min_split_keys = 256, key_block = 64, query_rows = 64,
        ffn_block = 64, token_block = 16, vector_width = 16>} {}
    ```
  }];
  let parameters = (ins
    "bool":$parallel,
    "int64_t":$work_items,
    "int64_t":$min_split_keys,
    "int64_t":$key_block,
    "int64_t":$query_rows,
    "int64_t":$ffn_block,
    "int64_t":$token_block,
    "int64_t":$vector_width,
    DefaultValuedParameter<"bool", "false">:$row_quant,
    DefaultValuedParameter<"int64_t", "0">:$decode_ffn_block
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Queries per flash-attention work item when `group` query heads share
    /// a KV head: about query_rows rows, at least one query.
    int64_t getQueryBlock(int64_t group) const {
      return group >= getQueryRows() ? 1 : getQueryRows() / group;
    }
    /// FFN columns per fused-expert work item in decode.
    int64_t getDecodeFfnBlockOrDefault() const {
      return getDecodeFfnBlock() ? getDecodeFfnBlock() : getFfnBlock();
    }
  }];
}

//===----------------------------------------------------------------------===//
// Kernels of the second code generator
//===----------------------------------------------------------------------===//

def MoIR_HalideCallOp : Op<MoIR_Dialect, "halide_call", [Pure]> {
  let summary = "a kernel that Halide compiles from the op it replaced, called on tensors";
  let description = [{
    Set by `moir-halide-select-kernels` in place of an LLM or MoE op
    (`kernel` names it: rms_norm, linear, glu, activation, rope,
    glu_linear, router, experts), with that op's operands and results and,
    in `params`, what its math needs beyond the shapes (epsilon, the
    activation, RoPE's frequencies, the routing, ...). At compile time the
    Halide generator builds one pipeline per `callee` from these
    (lib/Target/Halide), compiles it ahead of time for the artifact's
    target and links it into the artifact; the call bufferizes into
    `int callee(halide_buffer_t *inputs..., halide_buffer_t *results...)`
    on the operands' buffers and a new buffer per result. Calls with the
    same callee have the same kernel, params and operand types.

    A quantized weight operand (`!llm.qtensor`, in a packed form the
    kernels decode) is expanded by `moir-lower-to-linalg` into its codes,
    in its place, and its scales, after the other operands; `params`
    then says which (`packed = "3=u4:32,5=i8:32"`: operand index = form).

    `resident` lists the inputs a device kernel's call (`params.device`)
    keeps on the device, by operand index: the weights, which hold the
    same data for the model's lifetime, and on OpenCL and Vulkan the KV caches that a
    `moir.halide_sync_rows` keeps current. The first call that reads such
    a buffer copies it to the device, and every later call (of any kernel)
    that reads the same buffer uses that copy; the other inputs are copied
    on each call.

    ```mlir
    %n = moir.halide_call "moir_hl_rms_norm_0" "rms_norm"(%x, %w)
        {epsilon = 1.0e-05 : f64} : (tensor<?x64xf32>, tensor<64xf32>) -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Variadic<AnyType>:$inputs, StrAttr:$callee, StrAttr:$kernel,
                   DictionaryAttr:$params, OptionalAttr<DenseI64ArrayAttr>:$resident);
  let results = (outs Variadic<AnyRankedTensor>:$results);
  let assemblyFormat = [{
    $callee $kernel `(` $inputs `)` $params attr-dict `:` functional-type($inputs, $results)
  }];
  let hasVerifier = 1;
}

def MoIR_HalideSyncRowsOp : Op<MoIR_Dialect, "halide_sync_rows",
                               [AllTypesMatch<["cache", "result"]>]> {
  let summary = "makes a device's copy of a KV cache current in the rows a forward wrote";
  let description = [{
    Set by `moir-halide-select-kernels` between an `llm.kv_cache_update` and
    the device attention kernel that reads the cache (OpenCL, and Vulkan
    where the cache's size is a multiple of 64 bytes). The host's
    cache stays the one the runtime owns and the graph writes (the update
    is a host copy of `rows` rows at `offset`); the device keeps a copy of
    it from the first forward that reads it (`resident` on the kernel's
    call) and this op copies the rows [offset, offset + rows) to that copy,
    rounded out to 4 KB (every host row is current, so the extra rows are
    too). Its result is `cache`, which the kernel reads: a cache of 4096
    rows is not copied to the device whole on every call.

    ```mlir
    %k2 = moir.halide_sync_rows %k[%offset, %n] on "opencl" : tensor<4096x8x128xf32>
    ```
  }];
  let arguments = (ins AnyRankedTensor:$cache, Index:$offset, Index:$rows, StrAttr:$device);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = [{
    $cache `[` $offset `,` $rows `]` `on` $device attr-dict `:` type($cache)
  }];
  let hasVerifier = 1;
}

#endif // MOIR_MOIR_OPS
