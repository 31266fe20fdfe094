//===- LLMBase.td - common LLM dialect, enums and attributes -*- tablegen -*-===//
//
// The `llm` dialect holds what every language model MoIR compiles shares:
// weight references, quantized weight types, norms, RoPE, attention over a KV
// cache and activations. The MoE and MLA dialects build on it.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_LLM_BASE
#define MOIR_LLM_BASE

include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"
include "mlir/IR/OpBase.td"

def LLM_Dialect : Dialect {
  let name = "llm";
  let cppNamespace = "::moir::llm";
  let summary = "Common building blocks of transformer language models";
  let description = [{
    Ops shared by dense and Mixture-of-Experts language models (Llama,
    Mistral, Mixtral, Apertus, Qwen, OLMoE, DeepSeek). Activations are ranked
    tensors whose leading dimension is the token dimension. Weights are never
    stored in the IR: `llm.weight` names a tensor in the model's weight store.
    Quantized weights have the type `!llm.qtensor`, which carries the
    quantization scheme so passes can reason about it.
  }];
  let useDefaultTypePrinterParser = 1;
  let useDefaultAttributePrinterParser = 1;
  let hasCanonicalizer = 1;
  // The contract attributes (moir.layer, moir.arg, ...) travel with llm IR.
  let dependentDialects = ["::moir::MoIRDialect"];
}

include "LLM/IR/LLMEnums.td"

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

// `[a, b, ...]`: a list of sizes in brackets, as users write block shapes.
def LLM_BracketedI64List : OptionalArrayRefParameter<"int64_t"> {
  let parser = "::moir::llm::parseBracketedI64List($_parser)";
  let printer = "::moir::llm::printBracketedI64List($_printer, $_self)";
}

class LLM_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<LLM_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def LLM_RopeAttr : LLM_Attr<"Rope", "rope"> {
  let summary = "rotary position embedding parameters";
  let description = [{
    Everything that changes RoPE's math: the base `theta`, the number of
    rotated dimensions `dim` (partial rotary when smaller than the head
    dimension), the pairing (`interleaved`: pairs (2i, 2i+1) as in
    DeepSeek's and GGUF's layout; otherwise (i, i + dim/2) as in Hugging
    Face's `rotate_half`), and the frequency scaling from config.json's
    `rope_scaling`: `linear` (positions divided by `factor`), `llama3`
    (wavelength-dependent, with `low_freq_factor`, `high_freq_factor`,
    `original_max_position`) and `yarn` (`beta_fast`, `beta_slow`, `mscale`,
    `mscale_all_dim`). `freq_factors` (one per rotated pair) divide the
    frequencies after any scaling: llama.cpp's GGUF files store llama3
    scaling that way (tensor `rope_freqs.weight`) instead of its parameters.

    ```mlir
    #llm.rope<theta = 500000.0, dim = 128, scaling = llama3, factor = 8.0,
              low_freq_factor = 1.0, high_freq_factor = 4.0,
              original_max_position = 8192>
    #llm.rope<theta = 500000.0, dim = 8,
              freq_factors = [1.0, 1.0, 3.2, 8.0]>
    ```
  }];
  let parameters = (ins
    "::mlir::FloatAttr":$theta,
    "int64_t":$dim,
    DefaultValuedParameter<"::moir::llm::RopeScaling",
                           "::moir::llm::RopeScaling::none">:$scaling,
    OptionalParameter<"::mlir::FloatAttr">:$factor,
    OptionalParameter<"::mlir::FloatAttr">:$low_freq_factor,
    OptionalParameter<"::mlir::FloatAttr">:$high_freq_factor,
    DefaultValuedParameter<"int64_t", "0">:$original_max_position,
    OptionalParameter<"::mlir::FloatAttr">:$beta_fast,
    OptionalParameter<"::mlir::FloatAttr">:$beta_slow,
    OptionalParameter<"::mlir::FloatAttr">:$mscale,
    OptionalParameter<"::mlir::FloatAttr">:$mscale_all_dim,
    DefaultValuedParameter<"bool", "false">:$interleaved,
    OptionalParameter<"::mlir::DenseF64ArrayAttr">:$freq_factors
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def LLM_QuantSchemeAttr : LLM_Attr<"QuantScheme", "quant"> {
  let summary = "quantization scheme of a weight tensor";
  let description = [{
    How the scales of a quantized tensor cover it:

    - `per_tensor`: one scale for the whole tensor;
    - `per_channel`: one scale per index of dimension `axis` (INT8
      per-output-channel weights use `axis = 0`);
    - `block`: one scale per tile of shape `block` (DeepSeek-V3's FP8
      checkpoints: `block = [128, 128]`, scales stored as
      `weight_scale_inv`; partial tiles at the edges have their own scale);
    - `group`: one scale (and with `zero_point` one offset) per `group`
      consecutive elements of the innermost dimension (INT4 with group
      scales);
    - `gguf`: llama.cpp's self-describing block formats (`format`), whose
      scales live inside the blocks.

    `scale` is the element type of the scales (f32 when omitted). Dequantized value =
    stored value * scale (minus zero point for asymmetric groups).

    ```mlir
    #llm.quant<kind = block, block = [128, 128]>
    #llm.quant<kind = group, group = 32, zero_point = true, scale = f16>
    #llm.quant<kind = gguf, format = q4_k>
    ```
  }];
  let parameters = (ins
    "::moir::llm::QuantKind":$kind,
    LLM_BracketedI64List:$block,
    DefaultValuedParameter<"int64_t", "-1">:$axis,
    DefaultValuedParameter<"int64_t", "0">:$group,
    DefaultValuedParameter<"bool", "false">:$zero_point,
    DefaultValuedParameter<"::moir::llm::GGUFBlockType",
                           "::moir::llm::GGUFBlockType::none">:$format,
    OptionalParameter<"::mlir::Type">:$scale
  );
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// Element type of the scales (f32 when not given).
    ::mlir::Type getScaleElementType() const;
    /// Elements per GGUF block (32 for q8_0/q4_0, 256 for the k-quants), or 0.
    static int64_t getGGUFBlockElements(::moir::llm::GGUFBlockType format);
    /// Bits of one stored value of a GGUF format (its storage type's width).
    static unsigned getGGUFBits(::moir::llm::GGUFBlockType format);
    /// Bytes of one GGUF block including its scales, or 0.
    static int64_t getGGUFBlockBytes(::moir::llm::GGUFBlockType format);
  }];
}

#endif // MOIR_LLM_BASE
