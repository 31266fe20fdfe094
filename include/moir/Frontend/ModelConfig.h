//===- ModelConfig.h - what the importer knows of a model -------*- C++ -*-===//
//
// Every hyperparameter that changes a model's math, normalized from
// config.json or GGUF metadata. The importer builds IR from this and the
// weight store only.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_FRONTEND_MODELCONFIG_H
#define MOIR_FRONTEND_MODELCONFIG_H

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <optional>
#include <string>

namespace moir::frontend {

enum class Family {
  Llama,     // LlamaForCausalLM
  Mistral,   // MistralForCausalLM
  Mixtral,   // MixtralForCausalLM
  Apertus,   // ApertusForCausalLM
  Qwen2MoE,  // Qwen2MoeForCausalLM
  Qwen3MoE,  // Qwen3MoeForCausalLM
  OLMoE,     // OlmoeForCausalLM
  DeepSeekV2, // DeepseekV2ForCausalLM
  DeepSeekV3, // DeepseekV3ForCausalLM
  Gemma3,    // Gemma3ForCausalLM (model_type gemma3_text)
};

llvm::StringRef stringifyFamily(Family family);

/// Upper bound on layer counts the parsers accept.
constexpr int64_t kMaxLayers = 4096;

struct RopeConfig {
  double theta = 10000.0;
  /// none, linear, llama3 or yarn.
  std::string scaling = "none";
  double factor = 1.0;
  double lowFreqFactor = 1.0, highFreqFactor = 4.0;
  int64_t originalMaxPosition = 0;
  double betaFast = 32.0, betaSlow = 1.0, mscale = 1.0, mscaleAllDim = 0.0;
  /// Pairs (2i, 2i+1) instead of Hugging Face's rotate_half (i, i + d/2).
  bool interleaved = false;
  /// Per-pair divisors of the frequencies, applied after `scaling`
  /// (llama.cpp's rope_freqs tensor); empty when none.
  llvm::SmallVector<double> freqFactors;
};

struct MoEConfig {
  int64_t experts = 0;
  int64_t topK = 0;
  int64_t ffn = 0;
  /// softmax or sigmoid.
  std::string scoring = "softmax";
  /// greedy, group_limited or noaux_tc.
  std::string method = "greedy";
  int64_t nGroup = 1, topkGroup = 1;
  bool normTopkProb = false;
  double scaling = 1.0;
  /// FFN width of the (concatenated) shared experts; 0 when none.
  int64_t sharedFFN = 0;
  /// Qwen2-MoE's sigmoid gate on the shared expert.
  bool sharedGate = false;
};

struct MLAConfig {
  int64_t qLoraRank = 0, kvLoraRank = 0;
  int64_t nopeDim = 0, ropeDim = 0, vDim = 0;
};

/// config.json's quantization_config: how the checkpoint's weights are
/// stored (the importer types them, the packer reads them).
struct QuantizationConfig {
  /// "" (float checkpoint), "fp8" (E4M3 with 128x128-block scales,
  /// DeepSeek-V3), "fbgemm_fp8" (E4M3 with one scale per row), "awq" (GEMM
  /// layout) or "gptq" (v1 layout).
  std::string method;
  /// AWQ/GPTQ: 4; group_size along the inputs (-1: GPTQ's one group per row).
  int64_t bits = 0, groupSize = 0;
  /// compressed-tensors: "int-quantized" (INT8 per channel) or
  /// "pack-quantized" (4- or 8-bit codes packed in int32, `weight_packed`),
  /// and whether the weights have zero points (`weight_zero_point`).
  std::string format;
  bool symmetric = true;
  /// compressed-tensors W8A8: the inputs of the quantized linears are
  /// quantized per token at run time, "int8" or "fp8_e4m3" ("" for
  /// weight-only schemes); with staticActivations, with the one scale per
  /// linear its `input_scale` stores (llm-compressor's FP8 preset).
  std::string activations;
  bool staticActivations = false;
  /// Modules the quantizer left in float (their weights are plain tensors).
  llvm::SmallVector<std::string> modulesToNotConvert;
};

struct ModelConfig {
  Family family = Family::Llama;
  int64_t hidden = 0, layers = 0, heads = 0, kvHeads = 0, headDim = 0;
  int64_t vocab = 0, ffn = 0;
  double rmsNormEps = 1e-6;
  RopeConfig rope;
  bool tieWordEmbeddings = false;
  /// Biases on q/k/v (and o for Llama's attention_bias).
  bool qkvBias = false, oBias = false, mlpBias = false;
  std::optional<int64_t> slidingWindow;
  /// Per layer, whether it attends within `slidingWindow` (Gemma 3
  /// interleaves sliding and global layers); empty: every layer does.
  llvm::SmallVector<bool> slidingLayers;
  /// RoPE of the sliding-window layers where it differs from `rope` (Gemma
  /// 3's local base frequency, unscaled).
  std::optional<RopeConfig> slidingRope;
  /// Added to every RMSNorm weight (in f32) before it scales: Gemma's
  /// `x * (1 + w)` in Hugging Face checkpoints; 0 in GGUF files, whose
  /// converter has added the 1 already.
  double normWeightOffset = 0.0;
  /// Gemma's sandwich norms: the attention and FFN outputs are normalized
  /// (post_attention_layernorm, post_feedforward_layernorm) before their
  /// residual adds.
  bool postNorms = false;
  /// Factor on the embedding rows (Gemma: sqrt(hidden)); 1 when none.
  double embeddingScale = 1.0;
  /// The gated FFN's activation: SiLU (SwiGLU) or tanh-approximated GELU
  /// (Gemma's GeGLU, gelu_pytorch_tanh).
  enum class FFNActivation { SiLU, GELUTanh } ffnActivation = FFNActivation::SiLU;
  /// QK-norm: none, per head (Qwen3, Apertus) or over the whole projection
  /// (OLMoE).
  enum class QKNorm { None, PerHead, Full } qkNorm = QKNorm::None;
  /// The dense FFN: SwiGLU or Apertus' up-xIELU-down.
  bool xielu = false;
  /// xIELU's parameters per layer where the file keeps them as metadata
  /// (GGUF); empty when they are tensors of each layer (Hugging Face).
  struct XIELUParams {
    double alphaP, alphaN, beta, eps;
  };
  llvm::SmallVector<XIELUParams> xieluParams;
  std::optional<MoEConfig> moe;
  /// Per layer: true where the FFN is the MoE layer.
  llvm::SmallVector<bool> moeLayer;
  std::optional<MLAConfig> mla;
  /// Softmax scale of attention (DeepSeek's YaRN mscale folded in).
  double attentionScale = 0;
  QuantizationConfig quantization;
};

/// Reads config.json at `path`. Unknown keys and values MoIR cannot honour
/// are errors naming the file and the key.
llvm::Expected<ModelConfig> parseHFConfig(llvm::StringRef path);
/// The same for config text already read; `path` names it in errors.
llvm::Expected<ModelConfig> parseHFConfigText(llvm::StringRef path,
                                              llvm::StringRef text);

} // namespace moir::frontend

#endif // MOIR_FRONTEND_MODELCONFIG_H
