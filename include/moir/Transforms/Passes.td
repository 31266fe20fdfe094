//===- Passes.td - MoIR graph-level passes -------------------*- tablegen -*-===//

#ifndef MOIR_TRANSFORMS_PASSES
#define MOIR_TRANSFORMS_PASSES

include "mlir/Pass/PassBase.td"

def VerifyInputContractPass : Pass<"moir-verify-input-contract", "mlir::ModuleOp"> {
  let summary = "checks that imported IR satisfies the contract every backend lowers from";
  let description = [{
    The importer's output must use only the ops every backend can lower:
    `builtin`, `func`, `arith`, `tensor`, `linalg` and MoIR's `llm`, `moe`,
    `mla`. Weights must be named into the weight store, never embedded:
    a constant with more than `max-constant-elements` elements is an error.
    `!llm.qtensor` values may only come from `llm.weight` or
    `llm.stacked_weight` and flow into operands that accept them
    (`QuantizedWeightConsumerOpInterface`) or into `llm.dequantize`.

    Fails with one error per violation, naming the op.

    ```mlir
    // passes: weights are named into the weight store
    %w = llm.weight "lm_head.weight" : tensor<32000x4096xbf16>
    // fails: "embeds a 8192-element constant (weights belong in the store)"
    %c = arith.constant dense<1.0> : tensor<64x128xf32>
    ```
  }];
  let options = [
    Option<"maxConstantElements", "max-constant-elements", "int64_t",
           /*default=*/"4096",
           "largest constant tensor (in elements) allowed in the IR">
  ];
}

def MoEDecomposeLayerPass : Pass<"moe-decompose-layer"> {
  let summary = "expands moe.layer into router, route, dispatch, expert FFN and combine";
  let description = [{
    Rewrites each `moe.layer` into its steps, so later passes can fuse them
    per target:

    ```mlir
    // before
    %y = moe.layer %x router %wr experts(%wg, %wu, %wd) routing #moe.routing<...> activation silu : ...
    // after
    %logits = llm.linear %x, %wr : ...
    %w, %ids = moe.route %logits routing #moe.routing<...> : ...
    %rows, %offsets, %src = moe.dispatch %x, %ids experts = 8 : ...
    %out = moe.expert_ffn silu %rows, %offsets, %wg, %wu, %wd : ...
    %y = moe.combine %out, %src, %w : ...
    ```

    A shared expert becomes `llm.linear`/`llm.glu`/`llm.linear` added to the
    routed result; Qwen2-MoE's shared gate scales it by
    `sigmoid(llm.linear(x, shared_gate))` broadcast over the hidden dimension.
  }];
  let dependentDialects = [
    "::moir::llm::LLMDialect", "::moir::moe::MoEDialect",
    "::mlir::arith::ArithDialect", "::mlir::linalg::LinalgDialect",
    "::mlir::tensor::TensorDialect"
  ];
}

def MoEFuseRouterPass : Pass<"moe-fuse-router"> {
  let summary = "fuses the router matmul into the routing step";
  let description = [{
    Rewrites `moe.route` of an `llm.linear` (without bias, used only there)
    into one `moe.fused_route`:

    ```mlir
    // before
    %logits = llm.linear %x, %wr {moir.precise} : ...
    %w, %ids = moe.route %logits routing <top_k = 6, scoring = softmax> : ...
    // after
    %w, %ids = moe.fused_route %x, %wr routing <top_k = 6, scoring = softmax> : ...
    ```

    Lowered for a CPU, the fused op is one parallel loop over blocks of
    tokens: each block's logits (an f32 register-blocked kernel against the
    router weight), then per token the scoring, correction bias, group
    selection, top-k, normalization and scaling, written straight into the
    weights and ids. The logits never go to memory as a [tokens, experts]
    tensor, and the routing runs on every core instead of one.
  }];
  let dependentDialects = ["::moir::llm::LLMDialect", "::moir::moe::MoEDialect"];
}

def MoEFuseExpertsPass : Pass<"moe-fuse-experts"> {
  let summary = "fuses dispatch, the expert FFNs, combine and the shared expert";
  let description = [{
    Rewrites the routed experts' steps (`moe.dispatch` feeding
    `moe.expert_ffn` and `moe.combine`) into one `moe.fused_experts`. Where
    the combined result is added to a dense shared expert of the same
    activation over the same input (`llm.linear`/`llm.glu`/`llm.linear`,
    without Qwen2-MoE's sigmoid gate) whose FFN width is a multiple of the
    routed experts', the shared expert joins the fused op:

    ```mlir
    // before
    %rows, %offsets, %src = moe.dispatch %x, %ids experts = 8 : ...
    %out = moe.expert_ffn silu %rows, %offsets, %wg, %wu, %wd : ...
    %r = moe.combine %out, %src, %w : ...
    %g = llm.linear %x, %sg : ...
    %u = llm.linear %x, %su : ...
    %h = llm.glu silu %g, %u : ...
    %s = llm.linear %h, %sd : ...
    %y = arith.addf %r, %s : ...
    // after
    %y = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd) shared(%sg, %su, %sd) : ...
    ```

    Lowered for a CPU, the fused op runs as two parallel phases instead of
    three matmuls per selected expert: the gate/up products with
    SiLU-and-multiply and the routing weight in their epilogue, one work item
    per (selected expert, block of FFN columns), shared experts included;
    then the down products, one work item per block of hidden columns, each
    adding its expert rows straight into their tokens' output (the combine).
    Only the selected experts' weights are read.
  }];
  let dependentDialects = ["::moir::llm::LLMDialect", "::moir::moe::MoEDialect",
                           "::mlir::arith::ArithDialect"];
}

def MoEExpertParallelPass : Pass<"moe-expert-parallel", "::mlir::ModuleOp"> {
  let summary = "splits the routed experts over the ranks of a parallel artifact";
  let description = [{
    For rank `rank` of `ranks`, rewrites each `moe.fused_experts` into this
    rank's share of the experts, an all-reduce that gives every rank every
    expert's rows, and a combine in the 1-rank op's order:

    ```mlir
    // before
    %y = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd) : ...
    // after (rank 1 of 2, experts 2 and 3 of 4)
    %wg1 = llm.stacked_weight ["...experts.2.w1.weight", "...experts.3.w1.weight"] : ...
    %rows = moe.expert_rows silu %x, %ids, %w experts(%wg1, %wu1, %wd1)
        owners = [0, 0, 1, 1] rank = 1 : ...
    %all = llm.all_reduce %rows ranks = 2 : tensor<?x64xf32>
    %y = moe.combine_rows %all, %ids experts = 4 shared = 0 : ...
    ```

    The stacked expert weights keep only this rank's experts, so its artifact
    packs and maps only them. Attention, the router, dense layers and shared
    experts' weights are replicated; a shared expert is computed by the rank
    that owns it. Owners: with `loads` for the layer (keyed by MoE layer:
    the k-th `moe.fused_experts`), the experts in
    decreasing load, each to the least-loaded rank that has room (every rank
    gets `E / ranks` experts, rounded up or down), with a remark giving the
    ranks' loads both ways; otherwise contiguous blocks (expert `e` of `E`
    on rank `e * ranks / E`). Shared expert `s` goes to rank `s % ranks`.

    Every row holds one expert's output on exactly one rank and zero on the
    others, so the all-reduce's sum is that output bit for bit, and the
    combine adds a token's rows in ascending expert order as
    `moe.fused_experts` does: the logits equal the 1-rank artifact's.
    Experts stored as one tensor (GGUF's `ffn_*_exps`, an `llm.weight`)
    become an `llm.stacked_weight` of the weight store's views of the rank's
    experts, `"<name>[expert=<k>]"`.
  }];
  let options = [
    Option<"ranks", "ranks", "int64_t", "1", "ranks the experts are split over">,
    Option<"rank", "rank", "int64_t", "0", "the rank whose artifact this is">,
    Option<"loads", "loads", "std::string", "\"\"",
           "expert loads to balance, per MoE layer (k-th moe.fused_experts): "
           "'<k>=<count>,...;...' (from routing profiles); layers not named get "
           "contiguous blocks">,
  ];
  let dependentDialects = ["::moir::llm::LLMDialect", "::moir::moe::MoEDialect"];
}

def LLMTensorParallelPass : Pass<"llm-tensor-parallel", "::mlir::ModuleOp"> {
  let summary = "splits attention heads, FFN columns and the LM head over the ranks";
  let description = [{
    For rank `rank` of `ranks`, cuts every matrix along its outputs and
    gathers the ranks' columns with `llm.all_gather`, so that each output
    element is one dot product over the whole input computed on one rank, as
    the 1-rank artifact computes it: the logits do not depend on the rank
    count (the usual split along o_proj's and down_proj's inputs would add
    partial sums in a rank-dependent order).

    - Attention (`llm.attention` over KV caches): the rank keeps KV heads
      `[rank * KV / ranks, (rank + 1) * KV / ranks)` and the query heads
      that read them (whole groups), so q/k/v keep those heads' rows,
      per-head RMSNorm and RoPE run on them, the KV caches (entry arguments)
      shrink to the rank's KV heads, and the heads are gathered before
      o_proj. Fewer KV heads than ranks is refused: splitting a group's
      query heads would change the attention kernel's blocks (a group's
      heads go together) and with them the last bits.
    - o_proj, and the down projection of an FFN (`llm.glu`,
      `llm.activation` or `llm.xielu` of projections of one input): output
      rows split, then gathered; the FFN's projections' rows split, the
      activation runs on the rank's columns, which are gathered for down.
    - The LM head, when its weight is not shared (a tied embedding is held
      whole for the lookup): vocabulary rows split, then gathered.

    Output rows split in units of 64, 32, 16 or 8 (the widest that gives
    every rank at least 4; the last unit may be short), the units of
    `llm.all_gather`, so that split points fall on the CPU kernels' tiles. Weights are cut as weight-store views,
    `"<name>[rows=<a>:<b>]"`, so a rank's artifact packs only its rows.
    Quantized weights with separate scale tensors, MLA attention and MoE
    experts (see `moe-expert-parallel`) are not split.

    ```mlir
    // rank 0 of 2, before: %o = llm.linear %x, %w : (tensor<?x72xf32>, tensor<72x72xf32>) -> ...
    %w0 = llm.weight "model.layers.0.self_attn.o_proj.weight[rows=0:32]" : tensor<32x72xf32>
    %o0 = llm.linear %x, %w0 : (tensor<?x72xf32>, tensor<32x72xf32>) -> tensor<?x32xf32>
    %o = llm.all_gather %o0 unit = 8 rank = 0 ranks = 2 : tensor<?x32xf32> -> tensor<?x72xf32>
    ```
  }];
  let options = [
    Option<"ranks", "ranks", "int64_t", "1", "ranks the model is split over">,
    Option<"rank", "rank", "int64_t", "0", "the rank whose artifact this is">,
  ];
  let dependentDialects = ["::moir::llm::LLMDialect", "::mlir::tensor::TensorDialect"];
}

def MoERecordRoutingPass : Pass<"moe-record-routing"> {
  let summary = "hands every MoE layer's expert choices to the runtime's routing recorder";
  let description = [{
    Inserts `moe.record_routing` on the routing ids of each `moe.fused_experts`
    (or `moe.dispatch`) of a decoder layer, so that `moir-run
    --record-routing FILE` can count how often each expert is chosen:

    ```mlir
    // after
    moe.record_routing %ids experts = 8 : tensor<?x2xi32>
    %y = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd) : ...
    ```

    When the runtime is not recording, each is one call that returns at
    once. The op names no layer (the recorder numbers a forward pass's calls),
    so identical decoder layers still outline to one function.
  }];
  let dependentDialects = ["::moir::moe::MoEDialect"];
}

def MLADecomposeAttentionPass : Pass<"mla-decompose-attention"> {
  let summary = "expands mla.attention into projections, RoPE, cache updates and mla.attend";
  let description = [{
    Rewrites each `mla.attention` into `llm.linear` projections (through the
    query LoRA and its `llm.rms_norm` when `q_lora_rank > 0`), slices that
    split the query into its nope and RoPE parts and the `kv_a_proj` output
    into the latent and the shared RoPE key, `llm.rms_norm` of the latent,
    `llm.rope` of both RoPE parts, two `llm.kv_cache_update`s and an
    `mla.attend` in the materialized form, then `o_proj`:

    ```mlir
    // before
    %o, %c1, %r1 = mla.attention %x, %pos, %c0, %r0[%off] q(%wq) kv(...) out(%wo) ...
    // after
    %q = llm.linear %x, %wq ...
    ...
    %c1 = llm.kv_cache_update %c into %c0[%off] ...
    %r1 = llm.kv_cache_update %kpe into %r0[%off] ...
    %a = mla.attend %qn, %qp, %c1, %r1, %pos, %wkvb ... form = materialized ...
    %o = llm.linear %a2, %wo ...
    ```
  }];
  let dependentDialects = [
    "::moir::llm::LLMDialect", "::moir::mla::MLADialect",
    "::mlir::tensor::TensorDialect"
  ];
}

def MLAAbsorbWeightsPass : Pass<"mla-absorb-weights"> {
  let summary = "chooses per phase how each mla.attend applies kv_b_proj (cost model)";
  let description = [{
    Latent attention can run two ways (`mla.attend`'s `form`):

    - materialized: expand keys `W_UK[h] c[j]` and values `W_UV[h] c[j]` of
      every cache row per head, then ordinary attention. Per call with `T`
      queries over `S` cache rows, per head, in multiply-adds:
      `S * rank * (nope + v) + T * S * (nope + rope + v)`;
    - absorbed: fold `W_UK` into the query and `W_UV` into the output and
      attend in the latent space, reading the compressed cache (`rank + rope`
      values per row) directly:
      `T * (rank * (nope + v) + S * (2 * rank + rope))`.

    Decode (`T = 1`) is always cheaper absorbed (no expansion of the whole
    cache per step). A prefill from an empty cache (`S = T`) is cheaper
    materialized exactly when `nope + v < 2 * rank`, as for every DeepSeek
    configuration. The pass rewrites each materialized `mla.attend` to
    `form = absorbed` and, where a prefill is cheaper materialized, adds
    `prefill = materialized`; the lowering then evaluates both costs
    with the call's `T` and `S` and runs the cheaper form. The choice is in the
    IR: `form` for decode, `prefill` for prefill.

    ```mlir
    // before (mla-decompose-attention's output)
    %o = mla.attend %qn, %qp, %c, %r, %pos, %w config <...> scale = 0.1 form = materialized
    // after
    %o = mla.attend %qn, %qp, %c, %r, %pos, %w config <...> scale = 0.1 form = absorbed
           prefill = materialized
    ```
  }];
  let dependentDialects = ["::moir::mla::MLADialect"];
}

def QuantizeKVCachePass : Pass<"moir-quantize-kv-cache", "mlir::ModuleOp"> {
  let summary = "stores the KV caches of @forward quantized (int8 or FP8 E4M3, row scales)";
  let description = [{
    Every cache argument of `@forward` written by `llm.kv_cache_update`
    becomes storage of the chosen format (`i8` or `f8E4M3FN`) with a new f32
    scales argument right after it (one scale per row: per token, and per
    KV head for a `[capacity, kv_heads, dim]` cache); the update becomes
    `llm.quantized_cache_update`, its readers (attention) read
    `llm.dequantize_cache`, and `@forward` returns the updated storage and
    scales in the cache's place:

    ```mlir
    // before
    func.func @forward(..., %c: tensor<4096x512xf32>) -> (..., tensor<4096x512xf32>) {
      %c1 = llm.kv_cache_update %x into %c[%off] : ...
      %a = mla.attend %qn, %qp, %c1, ...
      return ..., %c1
    // after
    func.func @forward(..., %c: tensor<4096x512xi8>, %s: tensor<4096xf32>) -> (..., tensor<4096x512xi8>, tensor<4096xf32>) {
      %c1, %s1 = llm.quantized_cache_update int8 %x into %c, %s[%off] : ...
      %d = llm.dequantize_cache int8 %c1, %s1 : ...
      %a = mla.attend %qn, %qp, %d, ...
      return ..., %c1, %s1
    ```

    The attention lowerings fuse the dequantization: a row's scale factors
    out of its dot products (scores) and into the probabilities (weighted
    sums), so the cache is read as stored, 1 byte per value.
  }];
  let options = [
    Option<"format", "format", "std::string", /*default=*/"\"int8\"",
           "cache storage: int8 or fp8 (E4M3)">
  ];
  let dependentDialects = ["::moir::llm::LLMDialect", "::mlir::func::FuncDialect"];
}

def FlashAttentionPass : Pass<"moir-flash-attention"> {
  let summary = "marks attention for the online-softmax (flash-style) algorithm";
  let description = [{
    Sets `flash` on every `llm.attention` and `mla.attend`:

    ```mlir
    // before
    %o = llm.attention %q, %kc, %vc, %pos scale = 0.125 : ...
    // after
    %o = llm.attention %q, %kc, %vc, %pos scale = 0.125 flash : ...
    ```

    Lowered for a CPU, a flash attention is one parallel loop over (block of
    queries, KV head, split of the keys). Each work item keeps its queries of
    all the heads that share the KV head as the rows of one product, and
    walks its split of the key blocks the block's queries can see (causal
    and sliding-window blocks past them are skipped): scores of the block (a
    register-blocked kernel), masking, the running row maximum and sum
    (online softmax), rescaling of the accumulated output, and the weighted
    sum of the block's value rows (a second kernel). The keys are split only
    when there are too few (block, head) items for the cores (decode); a
    second parallel loop then combines the splits by their maxima (flash
    decoding). The [tokens, heads, keys] scores and probabilities are never
    materialized. A quantized cache is read as stored: the key scales
    multiply the block's scores, the value scales its probabilities.

    `mla.attend` runs the same kernel in both forms: materialized, with keys
    `k_nope` per head plus the RoPE key shared by every head; absorbed, over
    the latent cache as keys (with the RoPE cache) and values, all heads
    sharing it (one KV head).
  }];
  let dependentDialects = ["::moir::llm::LLMDialect", "::moir::mla::MLADialect"];
}

def BindWeightsPass : Pass<"moir-bind-weights", "mlir::ModuleOp"> {
  let summary = "turns weight references into arguments of the entry function";
  let description = [{
    Every `llm.weight` / `llm.stacked_weight` of `@forward` becomes a new
    trailing function argument of the same type (one per distinct tensor, in
    order of first use), marked read-only for bufferization. The function's
    `moir.weights` attribute lists, per new argument, the weight-store names it
    holds (several for a stack), which is what a backend packs into the
    artifact in that order.

    ```mlir
    // before
    func.func @forward(%ids: tensor<?xi32>) -> tensor<?x8xf32> {
      %w = llm.weight "embed" : tensor<16x8xf32>
      ...
    // after
    func.func @forward(%ids: tensor<?xi32>, %w: tensor<16x8xf32> {bufferization.writable = false})
        -> tensor<?x8xf32> attributes {moir.weights = [["embed"]]} {
    ```

    A quantized weight is bound as its packed form's codes and scales
    (include/moir/Frontend/Quantization.h); K-quants keep their superblock
    scales unless `superblocks` is off (or a consumer slices the weight's
    columns at other than multiples of 256), in which case they get one f32
    scale (and offset) per group.
  }];
  let options = [
    Option<"superblocks", "superblocks", "bool", /*default=*/"true",
           "bind K-quant weights (Q4_K, Q5_K, Q6_K) with their superblock scales">,
  ];
}

def OutlineLayersPass : Pass<"moir-outline-layers", "mlir::ModuleOp"> {
  let summary = "moves each decoder layer of @forward into its own function";
  let description = [{
    The importer gives every op of decoder layer N the location
    `NameLoc("<model>: layer N")`. This pass moves each maximal run of ops of
    one layer into `func.func private @layer_N`, called from `@forward` with
    the values the run uses and returning the values used after it
    (constants are cloned, not passed). Code generation then optimizes one
    layer at a time instead of one function holding every layer, whose
    optimization time grows faster than linearly (minutes for 27 layers).
    Each carries `moir.layer = N`; the CPU backend keeps such functions out of
    line in LLVM (`moir-cpu-export-entry`).

    Layers of one shape outline to functions that differ only in name (their
    weights and caches are arguments): every call then goes to the first of
    them and the copies are erased, so a 27-layer model whose layers 1..26
    are alike compiles two layer functions, not 27 (DeepSeek-V2-Lite-shaped:
    `moirc` 130 s -> 25 s).

    ```mlir
    // before: @forward holds layers 0..L-1 inline
    // after
    %h1, %k1, %v1 = func.call @layer_0(%h0, %pos, %off, %k0, %v0, %w0...) : ...
    %h2, %k2, %v2 = func.call @layer_0(%h1, %pos, %off, %k1, %v1, %w1...) : ...
    ```
  }];
}

#endif // MOIR_TRANSFORMS_PASSES
