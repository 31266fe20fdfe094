//===- LLMOps.td - common LLM ops ----------------------------*- tablegen -*-===//

#ifndef MOIR_LLM_OPS
#define MOIR_LLM_OPS

include "LLM/IR/LLMBase.td"
include "LLM/IR/LLMTypes.td"
include "LLM/IR/LLMInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/IR/BuiltinAttributes.td"

class LLM_Op<string mnemonic, list<Trait> traits = []>
    : Op<LLM_Dialect, mnemonic, traits>;

def LLM_FloatTensor : RankedTensorOf<[AnyFloat]>;

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

def LLM_WeightOp : LLM_Op<"weight", [Pure,
    DeclareOpInterfaceMethods<LLM_WeightRefOpInterface>]> {
  let summary = "reference to a tensor of the model's weight store";
  let description = [{
    Names one tensor of the weight store (the checkpoint's tensor name). The
    data is never held in the IR; backends pack it into the artifact. A
    quantized weight names its scale tensor too, unless its format embeds the
    scales (GGUF's) or the named tensor is float and quantized at compile time
    (`moirc --weight-type=int4|fp8`), whose scales the packer computes.
    Identical references are merged by CSE, so tied embeddings read one
    tensor.

    ```mlir
    %w = llm.weight "model.layers.0.self_attn.q_proj.weight" : tensor<4096x4096xbf16>
    %q = llm.weight "model.layers.0.mlp.gate_proj.weight"
           scales "model.layers.0.mlp.gate_proj.weight_scale_inv"
           : !llm.qtensor<18432x7168xf8E4M3FN, #llm.quant<kind = block, block = [128, 128]>>
    ```
  }];
  let arguments = (ins StrAttr:$name, OptionalAttr<StrAttr>:$scale_name);
  let results = (outs LLM_WeightType:$result);
  let assemblyFormat = "$name (`scales` $scale_name^)? attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def LLM_StackedWeightOp : LLM_Op<"stacked_weight", [Pure,
    DeclareOpInterfaceMethods<LLM_WeightRefOpInterface>]> {
  let summary = "several weight-store tensors stacked along a new leading dimension";
  let description = [{
    Stacks same-shaped tensors of the weight store, one per entry of `names`,
    along a new leading dimension: how per-expert checkpoint tensors
    (Mixtral's `experts.<e>.w1.weight`) become one `[experts, ...]` operand of
    the grouped expert ops. The backend packs the stack; nothing is copied in
    the compiler.

    ```mlir
    %w1 = llm.stacked_weight ["layers.0.experts.0.w1.weight",
                              "layers.0.experts.1.w1.weight"] : tensor<2x2816x1024xf32>
    ```
  }];
  let arguments = (ins StrArrayAttr:$names, OptionalAttr<StrArrayAttr>:$scale_names);
  let results = (outs LLM_WeightType:$result);
  let assemblyFormat = "$names (`scales` $scale_names^)? attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def LLM_DequantizeOp : LLM_Op<"dequantize", [Pure]> {
  let summary = "converts a quantized weight to a float tensor";
  let description = [{
    Applies the scales of the `!llm.qtensor` scheme. Canonicalization removes
    it in front of ops that read the quantized form directly.

    ```mlir
    %f = llm.dequantize %q : !llm.qtensor<256x512xi8, #llm.quant<kind = per_channel, axis = 0>> -> tensor<256x512xf32>
    ```
  }];
  let arguments = (ins LLM_AnyQTensor:$input);
  let results = (outs LLM_FloatTensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
}

def LLM_PackedWeightOp : LLM_Op<"packed_weight", [Pure]> {
  let summary = "a quantized weight as the two tensors a backend binds";
  let description = [{
    `moir-bind-weights` binds a quantized weight as two entry arguments in
    the packed form of include/moir/Frontend/Quantization.h: `data`, the
    codes (`[..., rows, cols / 2] x i8` for 4-bit codes, two per byte;
    `[..., rows, cols] x i8` or `x f8E4M3FN` otherwise) and `scales`,
    `[..., rows, cols / group, 2]` (scale, offset) per group of `group`
    elements, `w = scale * code + offset`, or `[..., rows, cols / group, 1]`
    (the scale alone: offsets zero) for symmetric schemes; f32, or f16 where
    the scheme's scales are f16 numbers (GGUF's legacy blocks). K-quants
    keep their superblock scales: `[..., rows, cols / 256, P * (2 + 256 /
    group)] x i8`, per 256 elements P f16 numbers (d, and -dmin unless
    symmetric) as bytes, then a signed byte per group and number; the
    group's scale (offset) is the f16 number times its byte. This op
    gives the consumers their quantized operand back; the lowerings read
    its operands.

    ```mlir
    %w = llm.packed_weight %data, %scales group 32
           : tensor<64x48xi8>, tensor<64x3x2xf32> -> !llm.qtensor<64x96xi4, #llm.quant<kind = gguf, format = q4_0>>
    ```
  }];
  let arguments = (ins RankedTensorOf<[I8, F8E4M3FN]>:$data, RankedTensorOf<[F32, F16, I8]>:$scales,
                       I64Attr:$group);
  let results = (outs LLM_AnyQTensor:$result);
  let assemblyFormat = [{
    $data `,` $scales `group` $group attr-dict `:` type($data) `,` type($scales) `->` type($result)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Whether the codes are 4-bit, two per byte.
    bool isNibbles();
    /// Whether the scales are K-quant superblocks (i8 bytes).
    bool hasSuperblocks() { return getScales().getType().getElementType().isInteger(8); }
  }];
}

//===----------------------------------------------------------------------===//
// Layers
//===----------------------------------------------------------------------===//

def LLM_EmbeddingOp : LLM_Op<"embedding", [Pure,
    DeclareOpInterfaceMethods<LLM_QuantizedWeightConsumerOpInterface>]> {
  let summary = "token embedding lookup";
  let description = [{
    Gathers rows of the `[vocab, hidden]` table for each token id. With
    `scale`, each gathered value is multiplied by it, rounded to f32 (Gemma
    scales its embeddings by `sqrt(hidden)`).

    ```mlir
    %h = llm.embedding %ids, %table : (tensor<?xi32>, tensor<32000x1024xf32>) -> tensor<?x1024xf32>
    %g = llm.embedding %ids, %table scale = 25.298 : (tensor<?xi32>, tensor<262144x640xf32>) -> tensor<?x640xf32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[AnySignlessInteger]>:$ids, LLM_WeightType:$table,
                       OptionalAttr<F64Attr>:$scale);
  let results = (outs LLM_FloatTensor:$result);
  let assemblyFormat = [{
    $ids `,` $table (`scale` `=` $scale^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def LLM_RMSNormOp : LLM_Op<"rms_norm", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "root-mean-square normalization over the innermost dimension";
  let description = [{
    `result = input / sqrt(mean(input^2) + epsilon) * (offset + weight)`,
    computed in float32, over the innermost dimension; `offset` is 0 unless
    given (Gemma's norms scale by `1 + weight`, the offset added in f32 as
    Hugging Face does). Applied to `[tokens, heads, head_dim]` it is the
    per-head QK-norm of Qwen3, OLMoE, Apertus and Gemma 3.

    ```mlir
    %n = llm.rms_norm %x, %w epsilon = 1.0e-05 : tensor<?x1024xf32>, tensor<1024xf32>
    %g = llm.rms_norm %x, %w epsilon = 1.0e-06 offset = 1.0 : tensor<?x640xf32>, tensor<640xf32>
    ```
  }];
  let arguments = (ins LLM_FloatTensor:$input, LLM_FloatTensor:$weight,
                       F64Attr:$epsilon, OptionalAttr<F64Attr>:$offset);
  let results = (outs LLM_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight `epsilon` `=` $epsilon (`offset` `=` $offset^)? attr-dict
    `:` type($input) `,` type($weight)
  }];
  let hasVerifier = 1;
}

def LLM_LinearOp : LLM_Op<"linear", [Pure,
    DeclareOpInterfaceMethods<LLM_QuantizedWeightConsumerOpInterface>]> {
  let summary = "x * W^T (+ bias), with W in the checkpoint's [out, in] layout";
  let description = [{
    `result[..., n] = sum_k input[..., k] * weight[n, k] (+ bias[n])`. The
    weight keeps the `[out_features, in_features]` layout of Hugging Face
    checkpoints and may be quantized. `precise` asks a backend to keep the
    product in f32 even where it rounds activations for speed (the MoE
    router: expert choice is discrete, and rounding could flip a near-tie).

    ```mlir
    %y = llm.linear %x, %w, %b : (tensor<?x1024xf32>, tensor<3072x1024xf32>, tensor<3072xf32>) -> tensor<?x3072xf32>
    %l = llm.linear %x, %router precise : (tensor<?x1024xf32>, tensor<8x1024xf32>) -> tensor<?x8xf32>
    ```
  }];
  let arguments = (ins LLM_FloatTensor:$input, LLM_WeightType:$weight,
                       Optional<LLM_FloatTensor>:$bias, UnitAttr:$precise);
  let results = (outs LLM_FloatTensor:$result);
  let builders = [
    // The result shape follows from the input and the weight's out_features.
    OpBuilder<(ins "::mlir::Value":$input, "::mlir::Value":$weight,
                   CArg<"::mlir::Value", "{}">:$bias)>
  ];
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? (`precise` $precise^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def LLM_PermuteOp : LLM_Op<"permute", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "reorders the innermost dimension by an index tensor";
  let description = [{
    `result[..., k] = input[..., order[k]]`, `order` a permutation of the
    innermost dimension. GPTQ checkpoints quantized in activation order
    (`desc_act`) store each weight's input columns in groups that are not
    contiguous; the importer sorts the columns so that each group is, and
    gathers the activations by the same `order` in front of the linear.
    Bad indices are the importer's to refuse: the op reads `order` as given.

    ```mlir
    %order = llm.weight "model.layers.0.self_attn.q_proj.act_order.order" : tensor<4096xi32>
    %xs = llm.permute %x, %order : (tensor<?x4096xf32>, tensor<4096xi32>) -> tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins LLM_FloatTensor:$input, RankedTensorOf<[I32]>:$order);
  let results = (outs LLM_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $order attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def LLM_DynamicQuantOp : LLM_Op<"dynamic_quant", [Pure,
    AllTypesMatch<["input", "result"]>]> {
  let summary = "per-row quantize-dequantize: W8A8 activation quantization";
  let description = [{
    The values each row (innermost dimension) takes when it is quantized with
    its own symmetric scale and dequantized again, as compressed-tensors
    quantizes the inputs of W8A8 linears at run time (dynamic, per token):
    with `m = max|row|`,

    - `int8`: `s = m / 127.5`, `q = roundeven(clamp(x / s, -128, 127))`;
    - `fp8_e4m3`: `s = m / 448`, `q = clamp(x / s, -448, 448)` rounded to
      E4M3 (nearest, ties to even);

    `s` is f32's machine epsilon (2^-23) where `m` is 0; the
    result is `q * s`. The importer puts it in front of each linear whose
    checkpoint asks for it, so that the kernels multiply exactly what the
    reference multiplies.

    ```mlir
    %xq = llm.dynamic_quant int8 %x : tensor<?x4096xf32>
    ```
  }];
  let arguments = (ins LLM_DynamicQuantAttr:$format, LLM_FloatTensor:$input);
  let results = (outs LLM_FloatTensor:$result);
  let assemblyFormat = "$format $input attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def LLM_StaticQuantOp : LLM_Op<"static_quant", [Pure,
    AllTypesMatch<["input", "result"]>]> {
  let summary = "quantize-dequantize with a stored scale: W8A8 static activations";
  let description = [{
    The values `input` takes when it is quantized with the checkpoint's
    one symmetric scale `s` (`scale`, one element: compressed-tensors'
    `input_scale` of a static per-tensor scheme, llm-compressor's FP8
    preset) and dequantized again:

    - `int8`: `q = roundeven(clamp(x / s, -128, 127))`;
    - `fp8_e4m3`: `q = clamp(x / s, -448, 448)` rounded to E4M3 (nearest,
      ties to even);

    the result is `q * s`. Elementwise: no row's values affect another's.
    The importer puts it in front of each linear whose checkpoint asks for
    it, so that the kernels multiply exactly what the reference multiplies.

    ```mlir
    %xq = llm.static_quant fp8_e4m3 %x, %s : tensor<?x4096xf32>, tensor<1xf32>
    ```
  }];
  let arguments = (ins LLM_DynamicQuantAttr:$format, LLM_FloatTensor:$input,
                       LLM_FloatTensor:$scale);
  let results = (outs LLM_FloatTensor:$result);
  let assemblyFormat = "$format $input `,` $scale attr-dict `:` type($result) `,` type($scale)";
  let hasVerifier = 1;
}

def LLM_RopeOp : LLM_Op<"rope", [Pure, AllTypesMatch<["input", "result"]>]> {
  let summary = "rotary position embedding";
  let description = [{
    Rotates the first `rope.dim` dimensions of each head of a
    `[tokens, heads, head_dim]` tensor by angles `position * freq_i`, with
    the frequencies and pairing given by the `#llm.rope` attribute. The
    remaining dimensions pass through (partial rotary).

    ```mlir
    %r = llm.rope %q, %pos with <theta = 1.0e+06, dim = 64> : tensor<?x16x64xf32>, tensor<?xi64>
    ```
  }];
  let arguments = (ins LLM_FloatTensor:$input,
                       RankedTensorOf<[AnySignlessInteger]>:$positions,
                       LLM_RopeAttr:$rope);
  let results = (outs LLM_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $positions `with` $rope attr-dict `:` type($input) `,` type($positions)
  }];
  let hasVerifier = 1;
}

def LLM_KVCacheUpdateOp : LLM_Op<"kv_cache_update", [Pure,
    AllTypesMatch<["cache", "result"]>]> {
  let summary = "writes new rows into a KV cache at an offset";
  let description = [{
    Returns `cache` with rows `[offset, offset + tokens)` replaced by
    `update`. The cache's leading dimension is its capacity; the trailing
    dimensions (e.g. `[kv_heads, head_dim]`, or MLA's latent width) must
    match. Bufferization makes the update in place. Writing past the
    capacity is a runtime error raised by the runtime before the step runs.

    ```mlir
    %c1 = llm.kv_cache_update %k into %c0[%off] : tensor<?x4x64xf32> into tensor<4096x4x64xf32>
    ```
  }];
  let arguments = (ins LLM_FloatTensor:$update, LLM_FloatTensor:$cache, Index:$offset);
  let results = (outs LLM_FloatTensor:$result);
  let assemblyFormat = [{
    $update `into` $cache `[` $offset `]` attr-dict `:` type($update) `into` type($cache)
  }];
  let hasVerifier = 1;
  let hasFolder = 1;
}

def LLM_QuantizedCacheUpdateOp : LLM_Op<"quantized_cache_update", [Pure,
    AllTypesMatch<["cache", "result"]>, AllTypesMatch<["scales", "result_scales"]>]> {
  let summary = "quantizes new rows into a quantized KV cache at an offset";
  let description = [{
    `llm.kv_cache_update` for a cache stored as `format` (`--quantize-kv-cache`
    forms it): each new row (the last dimension) gets the scale
    `max|row| / qmax` (127 for int8, 448 for FP8 E4M3; 1 for an all-zero
    row), written to `scales` at the same position, and is stored as
    `row / scale` rounded to the format (int8: nearest, ties away from zero;
    E4M3: nearest even).

    ```mlir
    %c1, %s1 = llm.quantized_cache_update int8 %x into %c0, %s0[%off]
        : tensor<?x512xf32> into tensor<4096x512xi8>, tensor<4096xf32>
    ```
  }];
  let arguments = (ins LLM_CacheFormatAttr:$format, LLM_FloatTensor:$update,
                       AnyRankedTensor:$cache, RankedTensorOf<[F32]>:$scales, Index:$offset);
  let results = (outs AnyRankedTensor:$result, RankedTensorOf<[F32]>:$result_scales);
  let assemblyFormat = [{
    $format $update `into` $cache `,` $scales `[` $offset `]` attr-dict `:` type($update)
    `into` type($cache) `,` type($scales)
  }];
  let hasVerifier = 1;
}

def LLM_DequantizeCacheOp : LLM_Op<"dequantize_cache", [Pure]> {
  let summary = "a quantized KV cache's values (storage times row scale)";
  let description = [{
    `result[..., i] = float(cache[..., i]) * scales[...]`. Attention lowerings
    that read it fuse the scales into their products (a row scale factors
    out of a dot product along the row) instead of materializing it.

    ```mlir
    %c = llm.dequantize_cache int8 %c1, %s1 : tensor<4096x512xi8>, tensor<4096xf32> -> tensor<4096x512xf32>
    ```
  }];
  let arguments = (ins LLM_CacheFormatAttr:$format, AnyRankedTensor:$cache,
                       RankedTensorOf<[F32]>:$scales);
  let results = (outs LLM_FloatTensor:$result);
  let assemblyFormat = [{
    $format $cache `,` $scales attr-dict `:` type($cache) `,` type($scales) `->` type($result)
  }];
  let hasVerifier = 1;
}

def LLM_AttentionOp : LLM_Op<"attention", [Pure]> {
  let summary = "causal grouped-query attention over a KV cache";
  let description = [{
    Queries `[tokens, heads, d_qk]` attend to cache rows `[capacity,
    kv_heads, d_qk]` (keys) and `[capacity, kv_heads, d_v]` (values); query
    head `h` uses KV head `h / (heads / kv_heads)`. Query `t` sees cache row
    `j` iff `j <= positions[t]` and, with `sliding_window = W`,
    `positions[t] - j < W`. Scores are scaled by `scale` before the softmax.
    Rows past the last position are never read, so the cache may hold
    garbage there.

    `flash` (set by `moir-flash-attention`) asks for the online-softmax algorithm:
    key blocks are visited in order with a running row maximum and sum, the
    score matrix is never materialized, and blocks a query cannot see (past
    its position, outside its window) are skipped. The function is the same.

    ```mlir
    %o = llm.attention %q, %kc, %vc, %pos scale = 0.125 flash
           : (tensor<?x16x64xf32>, tensor<4096x4x64xf32>, tensor<4096x4x64xf32>, tensor<?xi64>) -> tensor<?x16x64xf32>
    ```
  }];
  let arguments = (ins LLM_FloatTensor:$query, LLM_FloatTensor:$key,
                       LLM_FloatTensor:$value,
                       RankedTensorOf<[AnySignlessInteger]>:$positions,
                       F64Attr:$scale, OptionalAttr<I64Attr>:$sliding_window,
                       UnitAttr:$flash);
  let results = (outs LLM_FloatTensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value `,` $positions `scale` `=` $scale
    (`window` `=` $sliding_window^)? (`flash` $flash^)? attr-dict
    `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def LLM_ActivationOp : LLM_Op<"activation", [Pure, Elementwise,
    SameOperandsAndResultType]> {
  let summary = "element-wise activation";
  let description = [{
    ```mlir
    %s = llm.activation sigmoid %g : tensor<?x1xf32>
    ```
  }];
  let arguments = (ins LLM_ActivationKindAttr:$kind, LLM_FloatTensor:$input);
  let results = (outs LLM_FloatTensor:$result);
  let assemblyFormat = "$kind $input attr-dict `:` type($result)";
}

def LLM_GLUOp : LLM_Op<"glu", [Pure, Elementwise, SameOperandsAndResultType]> {
  let summary = "gated linear unit: act(gate) * up";
  let description = [{
    The gating of SwiGLU FFNs: `activation(gate) * up`, element-wise.

    ```mlir
    %h = llm.glu silu %g, %u : tensor<?x2816xf32>
    ```
  }];
  let arguments = (ins LLM_ActivationKindAttr:$activation, LLM_FloatTensor:$gate,
                       LLM_FloatTensor:$up);
  let results = (outs LLM_FloatTensor:$result);
  let assemblyFormat = "$activation $gate `,` $up attr-dict `:` type($result)";
}

def LLM_XIELUOp : LLM_Op<"xielu", [Pure, AllTypesMatch<["input", "result"]>,
    AllTypesMatch<["alpha_p", "alpha_n"]>]> {
  let summary = "Apertus' xIELU activation with learned alpha_p, alpha_n";
  let description = [{
    With `ap = softplus(alpha_p)` and `an = beta + softplus(alpha_n)`:
    `x > 0: ap * x^2 + beta * x`;
    `x <= 0: an * (expm1(min(x, eps)) - x) + beta * x`.
    `alpha_p` and `alpha_n` are one-element weights of the layer.

    ```mlir
    %y = llm.xielu %x, %ap, %an beta = 5.0e-01 eps = -1.0e-06 : tensor<?x2048xf32>, tensor<1xf32>
    ```
  }];
  let arguments = (ins LLM_FloatTensor:$input, LLM_FloatTensor:$alpha_p,
                       LLM_FloatTensor:$alpha_n, F64Attr:$beta, F64Attr:$eps);
  let results = (outs LLM_FloatTensor:$result);
  let assemblyFormat = [{
    $input `,` $alpha_p `,` $alpha_n `beta` `=` $beta `eps` `=` $eps attr-dict
    `:` type($input) `,` type($alpha_p)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Collectives across ranks
//===----------------------------------------------------------------------===//

def LLM_AllReduceOp : LLM_Op<"all_reduce", [AllTypesMatch<["input", "result"]>,
    MemoryEffects<[MemRead, MemWrite]>]> {
  let summary = "element-wise sum of a tensor over the ranks of a parallel artifact";
  let description = [{
    Every rank of an `N`-rank artifact (`moirc --expert-parallel=N`) passes a
    tensor of the same shape; each gets their element-wise f32 sum. It
    communicates, so it is neither merged nor moved: every rank must reach
    the same all-reduces in the same order. Lowered to the runtime's
    `moir_rt_all_reduce_sum_f32` (runtime/include/moir/comm.h) on the
    tensor's buffer, in place.

    Exactness: an element that only one rank holds non-zero comes out as that
    rank's value bit for bit (x + 0 = x), whatever the reduction order, which
    is what lets expert parallelism (`moe-expert-parallel`) reproduce the
    1-rank artifact's numbers.

    ```mlir
    %s = llm.all_reduce %rows ranks = 4 : tensor<?x1024xf32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F32]>:$input, I64Attr:$ranks);
  let results = (outs RankedTensorOf<[F32]>:$result);
  let assemblyFormat = "$input `ranks` `=` $ranks attr-dict `:` type($input)";
  let hasVerifier = 1;
}

def LLM_AllGatherOp : LLM_Op<"all_gather", [MemoryEffects<[MemRead, MemWrite]>]> {
  let summary = "concatenates the ranks' column blocks of a matrix, in rank order";
  let description = [{
    Tensor parallelism (`llm-tensor-parallel`): the result's `N` columns are
    `U = ceil(N / unit)` units of `unit` columns (the last may be shorter),
    split over the `ranks` ranks in contiguous runs: rank `r` holds units
    `[r * U / ranks, (r + 1) * U / ranks)` (rounded down). Each rank passes
    its own columns (every row), and every rank gets the whole matrix. The
    values are copied, not computed: the result is bit for bit what one rank
    computing every column would hold. It communicates, so it is neither
    merged nor moved. Lowered to the runtime's `moir_rt_all_gather_f32`
    (runtime/include/moir/comm.h), which applies the same split.

    ```mlir
    // rank 1 of 2, 6 heads of 12 columns, units of 2 heads: heads 2 to 5
    %all = llm.all_gather %mine unit = 24 rank = 1 ranks = 2
        : tensor<?x48xf32> -> tensor<?x72xf32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F32]>:$input, I64Attr:$unit, I64Attr:$rank,
                   I64Attr:$ranks);
  let results = (outs RankedTensorOf<[F32]>:$result);
  let assemblyFormat = [{
    $input `unit` `=` $unit `rank` `=` $rank `ranks` `=` $ranks attr-dict `:`
    type($input) `->` type($result)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// The first of `cols` columns that rank `r` of `ranks` holds in units
    /// of `unit` (r = ranks: cols): the split every rank and the runtime
    /// agree on.
    static int64_t firstColumn(int64_t r, int64_t cols, int64_t unit, int64_t ranks) {
      int64_t units = (cols + unit - 1) / unit;
      return std::min(r * units / ranks * unit, cols);
    }
  }];
}

#endif // MOIR_LLM_OPS
