//===- MLAOps.td - Multi-head Latent Attention dialect -------*- tablegen -*-===//
//
// DeepSeek-V2/V3's attention: keys and values are compressed into a per-token
// latent (kv_lora_rank values) plus one shared decoupled-RoPE key; the cache
// holds only those.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_MLA_OPS
#define MOIR_MLA_OPS

include "LLM/IR/LLMBase.td"
include "LLM/IR/LLMTypes.td"
include "LLM/IR/LLMInterfaces.td"
include "MLA/IR/MLAEnums.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def MLA_Dialect : Dialect {
  let name = "mla";
  let cppNamespace = "::moir::mla";
  let summary = "Multi-head Latent Attention with a compressed latent KV cache";
  let description = [{
    `mla.attention` is a whole DeepSeek attention block as the importer
    emits it; `--mla-decompose` expands it into `llm` projections, norms and
    RoPE, cache updates and `mla.attend`, the attention over the latent
    cache, whose `form` says whether `kv_b_proj` is applied to the cache
    (materialized) or folded into the query and output (absorbed).
  }];
  let dependentDialects = ["::moir::llm::LLMDialect"];
  let useDefaultAttributePrinterParser = 1;
}

class MLA_Op<string mnemonic, list<Trait> traits = []>
    : Op<MLA_Dialect, mnemonic, traits>;

def MLA_ConfigAttr : AttrDef<MLA_Dialect, "Config"> {
  let mnemonic = "config";
  let summary = "MLA dimensions from config.json";
  let description = [{
    `q_lora_rank = 0` means queries are projected directly (DeepSeek-V2-Lite);
    otherwise through a rank-`q_lora_rank` bottleneck with an RMSNorm. Each
    head's query/key has `qk_nope_head_dim + qk_rope_head_dim` dimensions,
    its value `v_head_dim`. The cache holds `kv_lora_rank +
    qk_rope_head_dim` values per token (576 for DeepSeek-V3).

    ```mlir
    #mla.config<num_heads = 128, q_lora_rank = 1536, kv_lora_rank = 512,
                qk_nope_head_dim = 128, qk_rope_head_dim = 64, v_head_dim = 128>
    ```
  }];
  let parameters = (ins
    "int64_t":$num_heads,
    DefaultValuedParameter<"int64_t", "0">:$q_lora_rank,
    "int64_t":$kv_lora_rank,
    "int64_t":$qk_nope_head_dim,
    "int64_t":$qk_rope_head_dim,
    "int64_t":$v_head_dim
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    int64_t getQHeadDim() const { return getQkNopeHeadDim() + getQkRopeHeadDim(); }
    /// Cached values per token and layer.
    int64_t getCacheWidth() const { return getKvLoraRank() + getQkRopeHeadDim(); }
  }];
}

def MLA_AttentionOp : MLA_Op<"attention", [Pure, AttrSizedOperandSegments,
    DeclareOpInterfaceMethods<LLM_QuantizedWeightConsumerOpInterface>]> {
  let summary = "a whole Multi-head Latent Attention block with its cache update";
  let description = [{
    With `x` the normalized hidden states `[tokens, hidden]`:
    queries `q = q_proj(x)` or `q_b_proj(rms_norm(q_a_proj(x), q_a_norm))`,
    split per head into `q_nope` and `q_pe`; `kv_a_proj(x)` splits into the
    latent `c` (`kv_lora_rank`) and the shared key `k_pe` (`qk_rope_head_dim`);
    `rms_norm(c, kv_a_norm)` and `rope(k_pe)` are written into the caches at
    `offset`; `rope(q_pe)`; then `mla.attend` over the caches and `o_proj`.
    Returns the output and the updated latent and RoPE caches.

    With `activation_quant` (W8A8), the input of each projection is
    quantized per token (`llm.dynamic_quant`), as its linear would be: `x`
    (once, for `q_proj` / `q_a_proj` and `kv_a_proj`), the normalized
    `q_a`, the normalized latent `c` (so the cache holds what `kv_b_proj`
    multiplies) and the attention output before `o_proj`.

    ```mlir
    %o, %c1, %r1 = mla.attention %x, %pos, %c0, %r0[%off]
        q(%wq) kv(%wkva, %wkvn, %wkvb) out(%wo)
        #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16,
                    qk_rope_head_dim = 8, v_head_dim = 16>
        #llm.rope<theta = 1.0e+04, dim = 8, interleaved = true>
        scale = 0.2 epsilon = 1.0e-06
        : (tensor<?x64xf32>, tensor<?xi64>, tensor<128x32xf32>, tensor<128x8xf32>, index,
           tensor<96x64xf32>, tensor<40x64xf32>, tensor<32xf32>, tensor<128x32xf32>,
           tensor<64x64xf32>) -> (tensor<?x64xf32>, tensor<128x32xf32>, tensor<128x8xf32>)
    ```
  }];
  let arguments = (ins RankedTensorOf<[AnyFloat]>:$input,
                       RankedTensorOf<[AnySignlessInteger]>:$positions,
                       RankedTensorOf<[AnyFloat]>:$latent_cache,
                       RankedTensorOf<[AnyFloat]>:$rope_cache,
                       Index:$offset,
                       Optional<LLM_WeightType>:$q_proj,
                       Optional<LLM_WeightType>:$q_a_proj,
                       Optional<RankedTensorOf<[AnyFloat]>>:$q_a_norm,
                       Optional<LLM_WeightType>:$q_b_proj,
                       LLM_WeightType:$kv_a_proj,
                       RankedTensorOf<[AnyFloat]>:$kv_a_norm,
                       LLM_WeightType:$kv_b_proj,
                       LLM_WeightType:$o_proj,
                       MLA_ConfigAttr:$config, LLM_RopeAttr:$rope,
                       F64Attr:$scale, F64Attr:$epsilon,
                       OptionalAttr<LLM_DynamicQuantAttr>:$activation_quant);
  let results = (outs RankedTensorOf<[AnyFloat]>:$result,
                      RankedTensorOf<[AnyFloat]>:$new_latent_cache,
                      RankedTensorOf<[AnyFloat]>:$new_rope_cache);
  let assemblyFormat = [{
    $input `,` $positions `,` $latent_cache `,` $rope_cache `[` $offset `]`
    (`q` `(` $q_proj^ `)`)?
    (`q_lora` `(` $q_a_proj^ `,` $q_a_norm `,` $q_b_proj `)`)?
    `kv` `(` $kv_a_proj `,` $kv_a_norm `,` $kv_b_proj `)` `out` `(` $o_proj `)`
    $config $rope `scale` `=` $scale `epsilon` `=` $epsilon
    (`activation_quant` $activation_quant^)? attr-dict
    `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MLA_AttendOp : MLA_Op<"attend", [Pure,
    DeclareOpInterfaceMethods<LLM_QuantizedWeightConsumerOpInterface>]> {
  let summary = "causal attention over the latent and RoPE caches";
  let description = [{
    `kv_b_proj` (`[heads * (qk_nope_head_dim + v_head_dim), kv_lora_rank]`)
    holds per head `W_UK` (first `qk_nope_head_dim` rows) and `W_UV`. Query
    `t`, head `h`, sees cache rows `j <= positions[t]` with score
    `scale * (q_nope[t,h] . W_UK[h] c[j] + q_pe[t,h] . k_pe[j])` and outputs
    `sum_j p_j W_UV[h] c[j]`. `form = materialized` expands keys and values
    per head from the cache; `form = absorbed` folds `W_UK` into the query
    and `W_UV` into the output and attends in the latent space. Both compute
    the same function; the form is a cost decision. `flash` (set by
    `moir-flash-attention`) runs either form's attention with the online-softmax
    algorithm, as for `llm.attention`.

    ```mlir
    %o = mla.attend %qn, %qp, %c, %r, %pos, %wkvb
           config #mla.config<num_heads = 4, kv_lora_rank = 32, qk_nope_head_dim = 16,
                       qk_rope_head_dim = 8, v_head_dim = 16>
           scale = 0.2 form = absorbed
           : (tensor<?x4x16xf32>, tensor<?x4x8xf32>, tensor<128x32xf32>, tensor<128x8xf32>,
              tensor<?xi64>, tensor<128x32xf32>) -> tensor<?x4x16xf32>
    ```
  }];
  let arguments = (ins RankedTensorOf<[AnyFloat]>:$q_nope,
                       RankedTensorOf<[AnyFloat]>:$q_pe,
                       RankedTensorOf<[AnyFloat]>:$latent_cache,
                       RankedTensorOf<[AnyFloat]>:$rope_cache,
                       RankedTensorOf<[AnySignlessInteger]>:$positions,
                       LLM_WeightType:$kv_b_proj,
                       MLA_ConfigAttr:$config, F64Attr:$scale,
                       MLA_FormAttr:$form, OptionalAttr<MLA_FormAttr>:$prefill_form,
                       UnitAttr:$flash);
  let results = (outs RankedTensorOf<[AnyFloat]>:$result);
  let assemblyFormat = [{
    $q_nope `,` $q_pe `,` $latent_cache `,` $rope_cache `,` $positions `,` $kv_b_proj
    `config` $config `scale` `=` $scale `form` `=` $form (`prefill` `=` $prefill_form^)? (`flash` $flash^)? attr-dict
    `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

#endif // MOIR_MLA_OPS
