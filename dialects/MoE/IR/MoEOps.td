//===- MoEOps.td - Mixture-of-Experts dialect ----------------*- tablegen -*-===//
//
// The MoE structure made explicit: routing (scores -> top-k ids and weights),
// dispatch (tokens grouped per expert), grouped expert FFN, combine (weighted
// un-permute), and one composite op per MoE layer that decomposes into them.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_MOE_OPS
#define MOIR_MOE_OPS

include "LLM/IR/LLMBase.td"
include "LLM/IR/LLMTypes.td"
include "LLM/IR/LLMInterfaces.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "MoE/IR/MoEEnums.td"

def MoE_Dialect : Dialect {
  let name = "moe";
  let cppNamespace = "::moir::moe";
  let summary = "Mixture-of-Experts routing, dispatch, expert FFNs and combine";
  let description = [{
    Makes every step of an MoE layer a separate op so fusion passes can match
    and rewrite them: `moe.route` turns router logits into top-k expert ids
    and weights; `moe.dispatch` groups token copies per expert;
    `moe.expert_ffn` runs the grouped SwiGLU FFN; `moe.combine` scatters the
    weighted expert outputs back to their tokens. `moe.layer` is the whole
    layer (including shared experts) as one op, as the importer emits it.
  }];
  let dependentDialects = ["::moir::llm::LLMDialect"];
  let useDefaultAttributePrinterParser = 1;
}

class MoE_Op<string mnemonic, list<Trait> traits = []>
    : Op<MoE_Dialect, mnemonic, traits>;

def MoE_RoutingAttr : AttrDef<MoE_Dialect, "Routing"> {
  let mnemonic = "routing";
  let summary = "how router logits select experts and weigh them";
  let description = [{
    With `s = scoring(logits)` (softmax over all experts, or element-wise
    sigmoid):

    - `greedy`: the `top_k` largest `s` (Mixtral, Qwen-MoE, OLMoE,
      DeepSeek-V2 `greedy`);
    - `group_limited`: experts form `n_group` equal groups; a group's score
      is its largest `s`; only the `topk_group` best groups compete
      (DeepSeek-V2 `group_limited_greedy`);
    - `noaux_tc`: like `group_limited` but selection uses `s + bias` (the
      `e_score_correction_bias` operand) and a group's score is the sum of
      its two largest biased scores (DeepSeek-V3). Weights are the unbiased
      `s` of the selected experts.

    The selected weights are divided by their sum when `norm_topk_prob`,
    then multiplied by `scaling` (`routed_scaling_factor`).

    ```mlir
    #moe.routing<top_k = 8, scoring = sigmoid, method = noaux_tc, n_group = 8,
                 topk_group = 4, norm_topk_prob = true, scaling = 2.5>
    ```
  }];
  let parameters = (ins
    "int64_t":$top_k,
    "::moir::moe::Scoring":$scoring,
    DefaultValuedParameter<"::moir::moe::TopkMethod",
                           "::moir::moe::TopkMethod::greedy">:$method,
    DefaultValuedParameter<"int64_t", "1">:$n_group,
    DefaultValuedParameter<"int64_t", "1">:$topk_group,
    DefaultValuedParameter<"bool", "false">:$norm_topk_prob,
    OptionalParameter<"::mlir::FloatAttr">:$scaling
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// routed_scaling_factor (1.0 when absent).
    double getScalingFactor() const;
    /// Whether selection needs the correction-bias operand.
    bool needsCorrectionBias() const {
      return getMethod() == ::moir::moe::TopkMethod::noaux_tc;
    }
    /// Checks the routing against a layer with `numExperts` experts.
    ::mlir::LogicalResult verifyForExperts(
        ::llvm::function_ref<::mlir::InFlightDiagnostic()> emitError,
        int64_t numExperts) const;
  }];
}

def MoE_RouteOp : MoE_Op<"route", [Pure]> {
  let summary = "router logits to top-k expert ids and weights";
  let description = [{
    For each token row of `logits` (`[tokens, experts]`), selects `top_k`
    experts and their weights as described by the `#moe.routing`
    attribute. Ids come out in descending order of the selection score.

    ```mlir
    %w, %ids = moe.route %logits routing <top_k = 2, scoring = softmax, norm_topk_prob = true>
                 : tensor<?x8xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
    %w3, %ids3 = moe.route %l3 bias %b routing <top_k = 3, scoring = sigmoid, method = noaux_tc,
                   n_group = 4, topk_group = 2, norm_topk_prob = true, scaling = 2.5>
                 : tensor<?x16xf32>, tensor<16xf32> -> tensor<?x3xf32>, tensor<?x3xi32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[AnyFloat]>:$logits,
                       Optional<RankedTensorOf<[AnyFloat]>>:$correction_bias,
                       MoE_RoutingAttr:$routing);
  let results = (outs RankedTensorOf<[AnyFloat]>:$weights,
                      RankedTensorOf<[I32]>:$ids);
  let assemblyFormat = [{
    $logits (`bias` $correction_bias^)? `routing` $routing attr-dict `:` type($logits)
    (`,` type($correction_bias)^)? `->` type($weights) `,` type($ids)
  }];
  let hasVerifier = 1;
  let hasCanonicalizer = 1;
}

def MoE_FusedRouteOp : MoE_Op<"fused_route", [Pure]> {
  let summary = "router matmul and routing as one step";
  let description = [{
    `moe.route` of `input * router^T`: the router product, scoring,
    correction bias, group-limited top-k, normalization and scaling, as one
    op a backend lowers to one kernel (`--moe-fuse-router` forms it). The
    router product is kept in f32: expert choice is discrete.

    ```mlir
    %w, %ids = moe.fused_route %x, %wr routing <top_k = 2, scoring = softmax, norm_topk_prob = true>
        : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x2xf32>, tensor<?x2xi32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[AnyFloat]>:$input, LLM_WeightType:$router,
                       Optional<RankedTensorOf<[AnyFloat]>>:$correction_bias,
                       MoE_RoutingAttr:$routing);
  let results = (outs RankedTensorOf<[AnyFloat]>:$weights,
                      RankedTensorOf<[I32]>:$ids);
  let assemblyFormat = [{
    $input `,` $router (`bias` $correction_bias^)? `routing` $routing attr-dict `:`
    type($input) `,` type($router) (`,` type($correction_bias)^)? `->` type($weights) `,` type($ids)
  }];
  let hasVerifier = 1;
}

def MoE_DispatchOp : MoE_Op<"dispatch", [Pure]> {
  let summary = "groups token copies by expert";
  let description = [{
    Copies each token once per selected expert and orders the copies by
    expert: `rows[r]` is token `sources[r] / top_k`, sent to expert `e` for
    `offsets[e] <= r < offsets[e + 1]`; within an expert, copies keep token
    order. `sources[r]` is the flat index `token * top_k + slot` of the copy.

    ```mlir
    %rows, %offsets, %sources = moe.dispatch %x, %ids experts = 8
        : tensor<?x1024xf32>, tensor<?x2xi32> -> tensor<?x1024xf32>, tensor<9xi32>, tensor<?xi32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[AnyFloat]>:$input,
                       RankedTensorOf<[I32]>:$ids, I64Attr:$num_experts);
  let results = (outs RankedTensorOf<[AnyFloat]>:$rows,
                      RankedTensorOf<[I32]>:$offsets,
                      RankedTensorOf<[I32]>:$sources);
  let assemblyFormat = [{
    $input `,` $ids `experts` `=` $num_experts attr-dict `:` type($input) `,`
    type($ids) `->` type($rows) `,` type($offsets) `,` type($sources)
  }];
  let hasVerifier = 1;
}

def MoE_ExpertFFNOp : MoE_Op<"expert_ffn", [Pure,
    DeclareOpInterfaceMethods<LLM_QuantizedWeightConsumerOpInterface>]> {
  let summary = "grouped gated FFN over expert-sorted rows";
  let description = [{
    For rows `offsets[e] <= r < offsets[e + 1]`:
    `down[e] * (act(gate[e] * row) .* (up[e] * row))`. The stacked weights
    keep the checkpoint layout: `gate`, `up` are `[experts, ffn, hidden]`,
    `down` is `[experts, hidden, ffn]`. With `input_order` (`[experts,
    hidden]` i32; act-order GPTQ experts, whose gate/up columns the importer
    sorted by quantization group), expert `e`'s gate and up read
    `row[input_order[e, k]]` as their input `k`. With `activation_quant`
    (W8A8 checkpoints), gate and up read `llm.dynamic_quant(row)` and down
    reads `llm.dynamic_quant(act(gate * row) .* (up * row))`, each row
    quantized on its own.

    ```mlir
    %y = moe.expert_ffn silu %rows, %offsets, %wg, %wu, %wd
        : (tensor<?x1024xf32>, tensor<9xi32>, tensor<8x2816x1024xf32>,
           tensor<8x2816x1024xf32>, tensor<8x1024x2816xf32>) -> tensor<?x1024xf32>
    ```
  }];
  let arguments = (ins LLM_ActivationKindAttr:$activation,
                       RankedTensorOf<[AnyFloat]>:$rows,
                       RankedTensorOf<[I32]>:$offsets,
                       LLM_WeightType:$gate, LLM_WeightType:$up,
                       LLM_WeightType:$down,
                       Optional<RankedTensorOf<[I32]>>:$input_order,
                       OptionalAttr<LLM_DynamicQuantAttr>:$activation_quant);
  let results = (outs RankedTensorOf<[AnyFloat]>:$result);
  let assemblyFormat = [{
    $activation $rows `,` $offsets `,` $gate `,` $up `,` $down
    (`input_order` $input_order^)? (`activation_quant` $activation_quant^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MoE_CombineOp : MoE_Op<"combine", [Pure]> {
  let summary = "weighted scatter-add of expert outputs back to tokens";
  let description = [{
    `result[t] = sum_r [sources[r] / top_k == t] * weights[t, sources[r] % top_k] * rows[r]`:
    undoes `moe.dispatch`, weighting each copy by its routing weight.

    ```mlir
    %y = moe.combine %rows, %sources, %weights
        : tensor<?x1024xf32>, tensor<?xi32>, tensor<?x2xf32> -> tensor<?x1024xf32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[AnyFloat]>:$rows,
                       RankedTensorOf<[I32]>:$sources,
                       RankedTensorOf<[AnyFloat]>:$weights);
  let results = (outs RankedTensorOf<[AnyFloat]>:$result);
  let assemblyFormat = [{
    $rows `,` $sources `,` $weights attr-dict `:` type($rows) `,` type($sources)
    `,` type($weights) `->` type($result)
  }];
  let hasVerifier = 1;
}

def MoE_FusedExpertsOp : MoE_Op<"fused_experts", [Pure, AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<LLM_QuantizedWeightConsumerOpInterface>]> {
  let summary = "dispatch, grouped expert FFNs, combine and shared experts as one step";
  let description = [{
    What `moe.dispatch` + `moe.expert_ffn` + `moe.combine` (+ the dense
    shared expert added to their result) compute, as one op that a backend
    lowers to fused kernels (`--moe-fuse-experts` forms it):

    `result[t] = sum_j weights[t, j] * ffn_{ids[t, j]}(input[t]) (+ shared(input[t]))`

    The shared expert (`[S * ffn, hidden]` gate/up, `[hidden, S * ffn]`
    down, DeepSeek's `n_shared_experts` concatenated along the FFN
    dimension) runs as `S` more experts that every token selects with
    weight 1, so its weights are read in the same kernels as the routed
    ones; its FFN width must be a multiple of the routed experts'.
    `input_order` is `moe.expert_ffn`'s: the routed experts' input orders
    (act-order GPTQ); so is `activation_quant` (W8A8: the routed experts'
    inputs quantized per row; the shared experts take none).

    ```mlir
    %y = moe.fused_experts silu %x, %ids, %w experts(%wg, %wu, %wd) shared(%sg, %su, %sd)
        : (tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<8x32x64xf32>,
           tensor<8x32x64xf32>, tensor<8x64x32xf32>, tensor<64x64xf32>,
           tensor<64x64xf32>, tensor<64x64xf32>) -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins LLM_ActivationKindAttr:$activation,
                       RankedTensorOf<[AnyFloat]>:$input,
                       RankedTensorOf<[I32]>:$ids,
                       RankedTensorOf<[AnyFloat]>:$weights,
                       LLM_WeightType:$gate, LLM_WeightType:$up,
                       LLM_WeightType:$down,
                       Optional<LLM_WeightType>:$shared_gate_proj,
                       Optional<LLM_WeightType>:$shared_up_proj,
                       Optional<LLM_WeightType>:$shared_down_proj,
                       Optional<RankedTensorOf<[I32]>>:$input_order,
                       OptionalAttr<LLM_DynamicQuantAttr>:$activation_quant);
  let results = (outs RankedTensorOf<[AnyFloat]>:$result);
  let assemblyFormat = [{
    $activation $input `,` $ids `,` $weights `experts` `(` $gate `,` $up `,` $down `)`
    (`shared` `(` $shared_gate_proj^ `,` $shared_up_proj `,` $shared_down_proj `)`)?
    (`input_order` $input_order^)? (`activation_quant` $activation_quant^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    bool hasSharedExpert() { return getSharedGateProj() != nullptr; }
    /// Shared experts as routed-width experts (0 without a shared expert).
    int64_t getNumSharedExperts();
  }];
}

def MoE_ExpertRowsOp : MoE_Op<"expert_rows", [Pure, AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<LLM_QuantizedWeightConsumerOpInterface>]> {
  let summary = "one rank's share of moe.fused_experts: its experts' weighted output rows";
  let description = [{
    What `moe.fused_experts` computes before its combine, for the experts
    `owners` gives to `rank` (one entry per routed expert, then one per
    shared expert): the rows of `moe.dispatch`'s order over
    `top_k + shared` slots per token (routed copies grouped by expert id,
    tokens in order within an expert; then the shared experts' rows), each
    `weights[t, j] * ffn_e(input[t])` for an expert `e` this rank owns and
    zero for any other. The stacked routed weights hold only the owned
    experts, in expert order; the shared weights are whole.
    `moe-expert-parallel` forms it; `llm.all_reduce` then gives every rank
    every row and `moe.combine_rows` adds them in `moe.fused_experts`'s
    order. `activation_quant` is `moe.fused_experts`' (W8A8: each routed
    row, and each activated FFN row before down, quantized on its own; a
    row is whole on the rank that owns its expert).

    ```mlir
    %rows = moe.expert_rows silu %x, %ids, %w experts(%wg, %wu, %wd)
        owners = [0, 0, 1, 1] rank = 1
        : (tensor<?x64xf32>, tensor<?x2xi32>, tensor<?x2xf32>, tensor<2x32x64xf32>,
           tensor<2x32x64xf32>, tensor<2x64x32xf32>) -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins LLM_ActivationKindAttr:$activation,
                       RankedTensorOf<[AnyFloat]>:$input,
                       RankedTensorOf<[I32]>:$ids,
                       RankedTensorOf<[AnyFloat]>:$weights,
                       LLM_WeightType:$gate, LLM_WeightType:$up,
                       LLM_WeightType:$down,
                       Optional<LLM_WeightType>:$shared_gate_proj,
                       Optional<LLM_WeightType>:$shared_up_proj,
                       Optional<LLM_WeightType>:$shared_down_proj,
                       DenseI32ArrayAttr:$owners, I32Attr:$rank,
                       OptionalAttr<LLM_DynamicQuantAttr>:$activation_quant);
  let results = (outs RankedTensorOf<[F32]>:$result);
  let assemblyFormat = [{
    $activation $input `,` $ids `,` $weights `experts` `(` $gate `,` $up `,` $down `)`
    (`shared` `(` $shared_gate_proj^ `,` $shared_up_proj `,` $shared_down_proj `)`)?
    `owners` `=` $owners `rank` `=` $rank (`activation_quant` $activation_quant^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    bool hasSharedExpert() { return getSharedGateProj() != nullptr; }
    /// Shared experts as routed-width experts (0 without a shared expert).
    int64_t getNumSharedExperts();
    /// Routed experts of the whole layer (owners' size less the shared ones).
    int64_t getNumRoutedExperts();
  }];
}

def MoE_CombineRowsOp : MoE_Op<"combine_rows", [Pure]> {
  let summary = "adds expert output rows into their tokens in expert order";
  let description = [{
    `result[t] = sum of rows[r] over the rows r of token t`, where the rows
    are in the order `moe.expert_rows` writes them for `ids` (routed copies
    grouped by expert, `shared` more slots per token after them), and each
    token's rows are added in that order, starting from zero: the additions
    `moe.fused_experts` makes, so an N-rank artifact's numbers equal the
    1-rank one's.

    ```mlir
    %y = moe.combine_rows %rows, %ids experts = 8 shared = 0
        : tensor<?x64xf32>, tensor<?x2xi32> -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F32]>:$rows, RankedTensorOf<[I32]>:$ids,
                       I64Attr:$num_experts, I64Attr:$num_shared);
  let results = (outs RankedTensorOf<[F32]>:$result);
  let assemblyFormat = [{
    $rows `,` $ids `experts` `=` $num_experts `shared` `=` $num_shared attr-dict `:`
    type($rows) `,` type($ids) `->` type($result)
  }];
  let hasVerifier = 1;
}

def MoE_RecordRoutingOp : MoE_Op<"record_routing", [MemoryEffects<[MemWrite]>]> {
  let summary = "counts an MoE layer's expert choices while the runtime records routing";
  let description = [{
    Hands the routing `ids` ([tokens, top_k] of `experts` experts) to the
    runtime's routing recorder (`moir_rt_record_routing`), which counts each
    expert's selections while `moir-run --record-routing` records and returns
    at once otherwise. The recorder numbers the calls of one forward pass:
    the k-th is MoE layer k (in decoder-layer order), so identical layers
    stay one outlined function. The counts are what `moirc
    --expert-placement` balances ranks by. `moe-record-routing` inserts it.

    ```mlir
    moe.record_routing %ids experts = 64 : tensor<?x6xi32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[I32]>:$ids, I64Attr:$num_experts);
  let assemblyFormat = [{
    $ids `experts` `=` $num_experts attr-dict `:` type($ids)
  }];
}

def MoE_LayerOp : MoE_Op<"layer", [Pure, AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<LLM_QuantizedWeightConsumerOpInterface>]> {
  let summary = "a whole MoE FFN layer: routing, routed experts, shared experts";
  let description = [{
    `result = combine(expert_ffn(dispatch(x, route(x * router^T))))
              (+ shared(x) (* sigmoid(x * shared_gate^T)))`.
    The shared expert is a dense gated FFN (DeepSeek's `n_shared_experts`
    experts concatenated along the FFN dimension, Qwen2-MoE's one shared
    expert). `shared_gate` (`[1, hidden]`) is Qwen2-MoE's sigmoid gate on
    it. `input_order` (`[experts, hidden]` i32) is the routed experts'
    gate/up input order (`moe.expert_ffn`'s). `activation_quant` is the
    W8A8 quantization of every expert's inputs (`moe.expert_ffn`'s for the
    routed ones; the shared expert's gate/up input `x` and its down input,
    each row over the shared FFN's whole width, as its three linears would
    quantize them); not the router's or `shared_gate`'s. `--moe-decompose`
    expands the op into the dialect's step ops.

    ```mlir
    %y = moe.layer %x router %wr experts(%wg, %wu, %wd)
           shared(%sg, %su, %sd) shared_gate %sgate
           routing #moe.routing<top_k = 4, scoring = softmax> activation silu
           : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>,
              tensor<8x64x32xf32>, tensor<48x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>,
              tensor<1x64xf32>) -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[AnyFloat]>:$input,
                       LLM_WeightType:$router,
                       Optional<RankedTensorOf<[AnyFloat]>>:$correction_bias,
                       LLM_WeightType:$gate, LLM_WeightType:$up,
                       LLM_WeightType:$down,
                       Optional<LLM_WeightType>:$shared_gate_proj,
                       Optional<LLM_WeightType>:$shared_up_proj,
                       Optional<LLM_WeightType>:$shared_down_proj,
                       Optional<LLM_WeightType>:$shared_expert_gate,
                       Optional<RankedTensorOf<[I32]>>:$input_order,
                       MoE_RoutingAttr:$routing,
                       LLM_ActivationKindAttr:$activation,
                       OptionalAttr<LLM_DynamicQuantAttr>:$activation_quant);
  let results = (outs RankedTensorOf<[AnyFloat]>:$result);
  let assemblyFormat = [{
    $input `router` $router (`bias` $correction_bias^)?
    `experts` `(` $gate `,` $up `,` $down `)`
    (`shared` `(` $shared_gate_proj^ `,` $shared_up_proj `,` $shared_down_proj `)`)?
    (`shared_gate` $shared_expert_gate^)?
    (`input_order` $input_order^)?
    `routing` $routing `activation` $activation (`activation_quant` $activation_quant^)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    bool hasSharedExpert() { return getSharedGateProj() != nullptr; }
  }];
}

#endif // MOIR_MOE_OPS
