//===- LLMEnums.td - common LLM enums ------------------------*- tablegen -*-===//

#ifndef MOIR_LLM_ENUMS
#define MOIR_LLM_ENUMS

include "mlir/IR/EnumAttr.td"

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

// Used directly as an op attribute: printed as a bare keyword (`silu`), like
// arith.cmpi's predicate.
def LLM_ActivationKindAttr : I32EnumAttr<"ActivationKind",
    "element-wise activation function", [
      I32EnumAttrCase<"silu", 0>,
      I32EnumAttrCase<"gelu", 1>,
      I32EnumAttrCase<"gelu_tanh", 2>,
      I32EnumAttrCase<"relu", 3>,
      I32EnumAttrCase<"sigmoid", 4>
    ]> {
  let cppNamespace = "::moir::llm";
}

// How a quantized KV cache stores its rows: int8 (round(x / scale), scale =
// max|row| / 127) or FP8 E4M3 (x / scale rounded to nearest even, scale =
// max|row| / 448), one f32 scale per row (token, and head where the cache
// has heads). Printed as a bare keyword.
def LLM_CacheFormatAttr : I32EnumAttr<"CacheFormat", "storage of a quantized KV cache", [
      I32EnumAttrCase<"int8", 0>,
      I32EnumAttrCase<"fp8_e4m3", 1>
    ]> {
  let cppNamespace = "::moir::llm";
}

// Dynamic activation quantization of W8A8 checkpoints (compressed-tensors'
// per-token schemes): each row rounded onto a symmetric grid scaled by its
// largest magnitude, int8 (scale = max|row| / 127.5, codes clamped to
// [-128, 127]) or FP8 E4M3 (scale = max|row| / 448). Printed as a bare
// keyword.
def LLM_DynamicQuantAttr : I32EnumAttr<"DynamicQuant",
    "per-row dynamic activation quantization", [
      I32EnumAttrCase<"int8", 0>,
      I32EnumAttrCase<"fp8_e4m3", 1>
    ]> {
  let cppNamespace = "::moir::llm";
}

def LLM_RopeScaling : I32EnumAttr<"RopeScaling",
    "RoPE frequency scaling variant (config.json rope_scaling.rope_type)", [
      I32EnumAttrCase<"none", 0>,
      I32EnumAttrCase<"linear", 1>,
      I32EnumAttrCase<"llama3", 2>,
      I32EnumAttrCase<"yarn", 3>
    ]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::moir::llm";
}

def LLM_QuantKind : I32EnumAttr<"QuantKind", "how scales cover a quantized tensor", [
      I32EnumAttrCase<"per_tensor", 0>,
      I32EnumAttrCase<"per_channel", 1>,
      I32EnumAttrCase<"block", 2>,
      I32EnumAttrCase<"group", 3>,
      I32EnumAttrCase<"gguf", 4>
    ]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::moir::llm";
}

def LLM_GGUFBlockType : I32EnumAttr<"GGUFBlockType",
    "llama.cpp (GGUF) block-quantized formats", [
      I32EnumAttrCase<"none", 0>,
      I32EnumAttrCase<"q8_0", 1>,
      I32EnumAttrCase<"q4_0", 2>,
      I32EnumAttrCase<"q4_k", 3>,
      I32EnumAttrCase<"q6_k", 4>,
      I32EnumAttrCase<"q4_1", 5>,
      I32EnumAttrCase<"q5_0", 6>,
      I32EnumAttrCase<"q5_1", 7>,
      I32EnumAttrCase<"q5_k", 8>
    ]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::moir::llm";
}

#endif // MOIR_LLM_ENUMS
