//===- GGUFConfig.cpp - GGUF metadata to ModelConfig -----------------------===//
//
// llama.cpp's conventions, which differ from the Hugging Face configs: the
// llama architecture also carries Mistral and Mixtral (experts present) with
// Q/K rows permuted so RoPE pairs (2i, 2i+1); qwen2moe, qwen3moe and olmoe use
// rotate_half pairing, and so does apertus (whose xIELU parameters are
// per-layer metadata arrays); deepseek2 carries both DeepSeek-V2 and V3. llama3
// RoPE scaling arrives as per-frequency divisors (tensor rope_freqs.weight).
// Metadata keys of the architecture that MoIR does not know are refused.
//
//===----------------------------------------------------------------------===//

#include "ConfigMacros.h"
#include "moir/Frontend/GGUF.h"

#include "llvm/ADT/StringSet.h"

#include <cmath>
#include <cstring>

using namespace llvm;

namespace moir::frontend {

namespace {

class MetadataReader {
public:
  MetadataReader(const GGUFFile &file, StringRef arch) : file(file), arch(arch) {}

  Error error(StringRef key, const Twine &message) const {
    return fileError(file.path, "metadata '" + arch + "." + key + "' " + message);
  }
  const GGUFValue *get(StringRef key) {
    used.insert(key);
    return file.get((arch + "." + key).str());
  }
  Expected<int64_t> integer(StringRef key, std::optional<int64_t> fallback,
                            int64_t min = 1) {
    const GGUFValue *v = get(key);
    if (!v) {
      if (fallback)
        return *fallback;
      return error(key, "is required");
    }
    std::optional<int64_t> i = v->getInteger();
    if (!i)
      return error(key, "must be an integer");
    if (*i < min)
      return error(key, "must be >= " + Twine(min));
    return *i;
  }
  Expected<double> number(StringRef key, double fallback) {
    const GGUFValue *v = get(key);
    if (!v)
      return fallback;
    std::optional<double> d = v->getNumber();
    if (!d || !std::isfinite(*d))
      return error(key, "must be a finite number");
    return *d;
  }
  bool has(StringRef key) const {
    return file.get((arch + "." + key).str()) != nullptr;
  }
  Expected<std::optional<std::string>> string(StringRef key) {
    const GGUFValue *v = get(key);
    if (!v)
      return std::optional<std::string>();
    if (v->kind != GGUFValue::Kind::String)
      return error(key, "must be a string");
    return std::optional<std::string>(v->s);
  }
  /// Every metadata key of the architecture must have been read or be inert.
  Error checkAllUsed(const StringSet<> &inert) const {
    std::string prefix = (arch + ".").str();
    for (const auto &entry : file.metadata) {
      StringRef key = entry.getKey();
      if (!key.starts_with(prefix))
        continue;
      StringRef rest = key.drop_front(prefix.size());
      if (!used.contains(rest) && !inert.contains(rest))
        return fileError(file.path, "metadata '" + key +
                                        "' is not supported by MoIR (it may change "
                                        "the model's math; refusing rather than "
                                        "ignoring it)");
    }
    return Error::success();
  }

private:
  const GGUFFile &file;
  StringRef arch;
  StringSet<> used;
};

/// Apertus' xIELU parameters: global keys xielu.{alpha_p,alpha_n,beta,eps},
/// each one number per layer (or one for all).
Expected<SmallVector<ModelConfig::XIELUParams>> readXIELUParams(const GGUFFile &file,
                                                                int64_t layers) {
  SmallVector<ModelConfig::XIELUParams> params(layers);
  auto read = [&](StringRef key, double ModelConfig::XIELUParams::*field) -> Error {
    const GGUFValue *v = file.get(key);
    if (!v)
      return fileError(file.path, "metadata '" + key + "' is required (apertus' xIELU "
                                                       "activation)");
    if (v->kind == GGUFValue::Kind::Array) {
      if (v->numbers.size() != static_cast<size_t>(layers))
        return fileError(file.path, "metadata '" + key + "' must hold one number per "
                                    "layer (" + Twine(layers) + "), got " +
                                    Twine(v->count) + " elements");
      for (int64_t l = 0; l < layers; ++l)
        params[l].*field = v->numbers[l];
      return Error::success();
    }
    std::optional<double> d = v->getNumber();
    if (!d)
      return fileError(file.path, "metadata '" + key + "' must be a number or an array "
                                                       "of numbers");
    for (auto &p : params)
      p.*field = *d;
    return Error::success();
  };
  CHECK_ERR(read("xielu.alpha_p", &ModelConfig::XIELUParams::alphaP));
  CHECK_ERR(read("xielu.alpha_n", &ModelConfig::XIELUParams::alphaN));
  CHECK_ERR(read("xielu.beta", &ModelConfig::XIELUParams::beta));
  CHECK_ERR(read("xielu.eps", &ModelConfig::XIELUParams::eps));
  for (const auto &p : params)
    if (!std::isfinite(p.alphaP) || !std::isfinite(p.alphaN) || !std::isfinite(p.beta) ||
        !std::isfinite(p.eps))
      return fileError(file.path, "metadata 'xielu.*' must be finite numbers");
  return params;
}

/// llama.cpp's rope_freqs.weight: one divisor per rotated pair (llama3
/// scaling precomputed by the converter). Read here because it is a
/// hyperparameter, not a weight: the RoPE tables are built at compile time.
Error readRopeFreqs(const GGUFFile &file, const WeightStore &store, int64_t ropeDim,
                    RopeConfig &rope) {
  const TensorInfo *info = store.lookup("rope_freqs.weight");
  if (!info)
    return Error::success();
  int64_t pairs = ropeDim / 2;
  if (info->dtype != DType::F32 || info->shape.size() != 1 || info->shape[0] != pairs)
    return fileError(file.path, "tensor 'rope_freqs.weight' is " +
                                    stringifyDType(info->dtype) + " " +
                                    shapeString(info->shape) + "; MoIR needs F32 [" +
                                    Twine(pairs) + "] (one divisor per rotated pair of "
                                    "rope.dimension_count " + Twine(ropeDim) + ")");
  ArrayRef<uint8_t> data = store.getData(*info);
  for (int64_t i = 0; i < pairs; ++i) {
    float f;
    std::memcpy(&f, data.data() + 4 * i, 4);
    if (!(f > 0.0f) || !std::isfinite(f))
      return fileError(file.path, "tensor 'rope_freqs.weight' element " + Twine(i) +
                                      " is " + std::to_string(f) +
                                      "; RoPE frequency divisors must be positive and "
                                      "finite");
    rope.freqFactors.push_back(f);
  }
  return Error::success();
}

/// gemma3 as llama.cpp reads it: the converter has added Gemma's 1 to every
/// norm weight already (so norms are plain x * w here), rotate_half RoPE,
/// sliding layers from attention.sliding_window with a pattern (a period,
/// default 6: every 6th layer global, or one flag per layer), their RoPE base
/// rope.freq_base_swa (default 10000) unscaled. The attention scale is not
/// stored: llama.cpp takes 1/sqrt(key_length), except for the 62-layer 27B,
/// whose query_pre_attn_scalar is hidden / heads.
Error readGemma3(const GGUFFile &file, MetadataReader &r, ModelConfig &c) {
  c.family = Family::Gemma3;
  TRY(ffn, r.integer("feed_forward_length", std::nullopt));
  c.ffn = ffn;
  TRY(headDim, r.integer("attention.key_length", 256));
  c.headDim = headDim;
  TRY(valueLength, r.integer("attention.value_length", headDim));
  if (valueLength != headDim)
    return r.error("attention.value_length", "must equal attention.key_length");
  TRY(ropeDim, r.integer("rope.dimension_count", headDim));
  if (ropeDim != headDim)
    return r.error("rope.dimension_count", "must equal the head dimension");
  c.rope.interleaved = false;
  c.qkNorm = ModelConfig::QKNorm::PerHead;
  c.postNorms = true;
  c.ffnActivation = ModelConfig::FFNActivation::GELUTanh;
  c.embeddingScale = std::sqrt(static_cast<double>(c.hidden));
  c.attentionScale = c.layers == 62
                         ? 1.0 / std::sqrt(static_cast<double>(c.hidden / c.heads))
                         : 1.0 / std::sqrt(static_cast<double>(headDim));
  TRY(softcap, r.number("final_logit_softcapping", 0.0));
  if (softcap != 0.0)
    return r.error("final_logit_softcapping", "is not supported (Gemma 3 has none)");
  TRY(window, r.integer("attention.sliding_window", 0, 0));
  if (!window) {
    if (r.has("attention.sliding_window_pattern") || r.has("rope.freq_base_swa"))
      return r.error("attention.sliding_window",
                     "is missing, but a sliding-window pattern or RoPE base is given");
    return Error::success();
  }
  c.slidingWindow = window;
  c.slidingLayers.assign(c.layers, false);
  const GGUFValue *pattern = r.get("attention.sliding_window_pattern");
  if (pattern && pattern->kind == GGUFValue::Kind::Array) {
    if (pattern->numbers.size() != static_cast<size_t>(c.layers))
      return r.error("attention.sliding_window_pattern",
                     "must hold one flag per layer (" + Twine(c.layers) + ")");
    for (int64_t l = 0; l < c.layers; ++l)
      c.slidingLayers[l] = pattern->numbers[l] != 0;
  } else {
    std::optional<int64_t> every = pattern ? pattern->getInteger() : 6;
    if (!every || *every < 0)
      return r.error("attention.sliding_window_pattern",
                     "must be a non-negative integer or an array of flags");
    // Period p: layers with l % p < p - 1 slide; 0: all of them.
    for (int64_t l = 0; l < c.layers; ++l)
      c.slidingLayers[l] = *every == 0 || l % *every < *every - 1;
  }
  RopeConfig local;
  TRY(localTheta, r.number("rope.freq_base_swa", 10000.0));
  local.theta = localTheta;
  local.interleaved = false;
  c.slidingRope = local;
  return Error::success();
}

} // namespace

Expected<ModelConfig> parseGGUFConfig(const GGUFFile &file, const WeightStore &store) {
  const GGUFValue *archValue = file.get("general.architecture");
  if (!archValue || archValue->kind != GGUFValue::Kind::String)
    return fileError(file.path, "metadata 'general.architecture' must be a string");
  std::string arch = archValue->s;
  if (arch != "llama" && arch != "apertus" && arch != "qwen2moe" &&
      arch != "qwen3moe" && arch != "olmoe" && arch != "deepseek2" && arch != "gemma3")
    return fileError(file.path, "unknown architecture '" + arch +
                                    "' (supported: llama, apertus, qwen2moe, qwen3moe, "
                                    "olmoe, deepseek2, gemma3)");
  MetadataReader r(file, arch);
  ModelConfig c;
  TRY(hidden, r.integer("embedding_length", std::nullopt));
  TRY(layers, r.integer("block_count", std::nullopt));
  // Bounds keep a corrupt count from allocating per-layer state unboundedly;
  // they are far above any real model's.
  if (layers > kMaxLayers)
    return r.error("block_count", "(" + Twine(layers) + ") exceeds " + Twine(kMaxLayers));
  TRY(heads, r.integer("attention.head_count", std::nullopt));
  TRY(kvHeads, r.integer("attention.head_count_kv", heads));
  TRY(eps, r.number("attention.layer_norm_rms_epsilon", 1e-6));
  TRY(theta, r.number("rope.freq_base", 10000.0));
  TRY(experts, r.integer("expert_count", 0, 0));
  TRY(topK, r.integer("expert_used_count", 0, 0));
  c.hidden = hidden;
  c.layers = layers;
  c.heads = heads;
  c.kvHeads = kvHeads;
  c.rmsNormEps = eps;
  c.rope.theta = theta;
  if (heads % kvHeads)
    return r.error("attention.head_count_kv", "must divide attention.head_count");

  const TensorInfo *embed = store.lookup("token_embd.weight");
  if (!embed || embed->shape.size() != 2)
    return fileError(file.path, "missing tensor 'token_embd.weight'");
  TRY(vocab, r.integer("vocab_size", embed->shape[0]));
  c.vocab = vocab;
  c.tieWordEmbeddings = store.lookup("output.weight") == nullptr;

  TRY(scalingType, r.string("rope.scaling.type"));
  if (scalingType && *scalingType != "none") {
    if (*scalingType != "linear" && *scalingType != "yarn")
      return r.error("rope.scaling.type", "is '" + *scalingType +
                                              "'; supported: none, linear, yarn");
    c.rope.scaling = *scalingType;
    TRY(factor, r.number("rope.scaling.factor", 0.0));
    if (factor <= 0)
      return r.error("rope.scaling.factor", "must be positive");
    c.rope.factor = factor;
    if (*scalingType == "yarn") {
      TRY(orig, r.integer("rope.scaling.original_context_length", std::nullopt));
      c.rope.originalMaxPosition = orig;
      // llama.cpp's yarn_log_multiplier is 0.1 * mscale_all_dim.
      TRY(logMul, r.number("rope.scaling.yarn_log_multiplier", 0.0));
      // Stored as a float32: round away the representation error of 0.1.
      c.rope.mscaleAllDim = std::round(logMul / 0.1 * 1e6) / 1e6;
      c.rope.mscale = c.rope.mscaleAllDim;
      TRY(betaFast, r.number("rope.scaling.yarn_beta_fast", c.rope.betaFast));
      TRY(betaSlow, r.number("rope.scaling.yarn_beta_slow", c.rope.betaSlow));
      c.rope.betaFast = betaFast;
      c.rope.betaSlow = betaSlow;
    }
  } else {
    // Without scaling, llama.cpp's deepseek2 still reads the YaRN log
    // multiplier (its attention scale is 1 + multiplier * ln(factor), with
    // factor 1): inert, whatever its value.
    TRY(logMul, r.number("rope.scaling.yarn_log_multiplier", 0.0));
    (void)logMul;
  }

  // Full-rotary attention with equal key and value widths (all but MLA).
  auto readHeadDim = [&]() -> Error {
    TRY(headDim, r.integer("attention.key_length", hidden / heads));
    c.headDim = headDim;
    TRY(ropeDim, r.integer("rope.dimension_count", headDim));
    if (ropeDim != headDim)
      return r.error("rope.dimension_count", "must equal the head dimension");
    TRY(valueLength, r.integer("attention.value_length", headDim));
    if (valueLength != headDim)
      return r.error("attention.value_length", "must equal attention.key_length");
    return Error::success();
  };
  bool deepseek = arch == "deepseek2";
  c.rope.interleaved = arch == "llama" || deepseek;
  c.moeLayer.assign(layers, false);

  if (arch == "gemma3") {
    CHECK_ERR(readGemma3(file, r, c));
  } else if (arch == "apertus") {
    c.family = Family::Apertus;
    TRY(ffn, r.integer("feed_forward_length", std::nullopt));
    c.ffn = ffn;
    CHECK_ERR(readHeadDim());
    c.qkNorm = ModelConfig::QKNorm::PerHead;
    c.qkvBias = store.lookup("blk.0.attn_q.bias") != nullptr;
    c.oBias = store.lookup("blk.0.attn_output.bias") != nullptr;
    c.xielu = true;
    TRY(params, readXIELUParams(file, layers));
    c.xieluParams = std::move(params);
  } else if (arch == "llama") {
    c.family = experts ? Family::Mixtral : Family::Llama;
    TRY(ffn, r.integer("feed_forward_length", std::nullopt));
    c.ffn = ffn;
    CHECK_ERR(readHeadDim());
    TRY(window, r.integer("attention.sliding_window", 0, 0));
    if (window)
      c.slidingWindow = window;
    c.qkvBias = store.lookup("blk.0.attn_q.bias") != nullptr;
    c.oBias = store.lookup("blk.0.attn_output.bias") != nullptr;
    c.mlpBias = !experts && store.lookup("blk.0.ffn_gate.bias") != nullptr;
    if (experts) {
      MoEConfig m;
      m.experts = experts;
      m.topK = topK;
      m.ffn = ffn;
      m.normTopkProb = true;
      c.moe = m;
      c.moeLayer.assign(layers, true);
    }
  } else if (!deepseek) {
    c.family = arch == "qwen2moe"   ? Family::Qwen2MoE
               : arch == "qwen3moe" ? Family::Qwen3MoE
                                    : Family::OLMoE;
    CHECK_ERR(readHeadDim());
    TRY(ffn, r.integer("feed_forward_length", 0, 0));
    c.ffn = ffn;
    TRY(expertFFN, r.integer("expert_feed_forward_length", ffn));
    c.qkvBias = store.lookup("blk.0.attn_q.bias") != nullptr;
    c.qkNorm = arch == "qwen3moe" ? ModelConfig::QKNorm::PerHead
               : arch == "olmoe"  ? ModelConfig::QKNorm::Full
                                  : ModelConfig::QKNorm::None;
    MoEConfig m;
    m.experts = experts;
    m.topK = topK;
    m.ffn = expertFFN;
    // llama.cpp normalizes top-k weights for qwen3moe only.
    TRY(norm, r.integer("expert_weights_norm", arch == "qwen3moe" ? 1 : 0, 0));
    m.normTopkProb = norm != 0;
    if (arch == "qwen2moe") {
      TRY(shared, r.integer("expert_shared_feed_forward_length", 0, 0));
      m.sharedFFN = shared;
      m.sharedGate = shared > 0;
    }
    if (!experts || !topK)
      return r.error("expert_count", "and expert_used_count must be positive");
    c.moe = m;
    // A layer without a router is dense (Qwen's mlp_only_layers).
    for (int64_t l = 0; l < layers; ++l)
      c.moeLayer[l] = store.lookup("blk." + std::to_string(l) + ".ffn_gate_inp.weight") != nullptr;
  } else {
    TRY(qLora, r.integer("attention.q_lora_rank", 0, 0));
    TRY(kvLora, r.integer("attention.kv_lora_rank", std::nullopt));
    TRY(keyLength, r.integer("attention.key_length", std::nullopt));
    TRY(valueLength, r.integer("attention.value_length", std::nullopt));
    TRY(ropeDim, r.integer("rope.dimension_count", std::nullopt));
    // llama.cpp's converter writes MLA as the multi-query attention it runs
    // (key_length = kv_lora_rank + rope, value_length = kv_lora_rank) and
    // the per-head widths under *_mla.
    if (r.has("attention.key_length_mla") || r.has("attention.value_length_mla")) {
      if (keyLength != kvLora + ropeDim)
        return r.error("attention.key_length",
                       "must be kv_lora_rank + rope.dimension_count (" +
                           Twine(kvLora + ropeDim) + ") when key_length_mla is present");
      if (valueLength != kvLora)
        return r.error("attention.value_length",
                       "must be kv_lora_rank (" + Twine(kvLora) +
                           ") when value_length_mla is present");
      TRY(keyMLA, r.integer("attention.key_length_mla", std::nullopt));
      TRY(valueMLA, r.integer("attention.value_length_mla", std::nullopt));
      keyLength = keyMLA;
      valueLength = valueMLA;
    }
    if (keyLength <= ropeDim || ropeDim % 2)
      return r.error("rope.dimension_count", "must be even and below attention.key_length");
    MLAConfig mla;
    mla.qLoraRank = qLora;
    mla.kvLoraRank = kvLora;
    mla.nopeDim = keyLength - ropeDim;
    mla.ropeDim = ropeDim;
    mla.vDim = valueLength;
    c.mla = mla;
    c.headDim = keyLength;
    TRY(ffn, r.integer("feed_forward_length", std::nullopt));
    c.ffn = ffn;
    TRY(leadingDense, r.integer("leading_dense_block_count", 0, 0));
    TRY(expertFFN, r.integer("expert_feed_forward_length", std::nullopt));
    TRY(sharedCount, r.integer("expert_shared_count", 0, 0));
    TRY(scale, r.number("expert_weights_scale", 1.0));
    TRY(norm, r.integer("expert_weights_norm", 0, 0));
    bool bias = store.lookup("blk." + std::to_string(leadingDense) + ".exp_probs_b.bias") != nullptr;
    // Without the key, a score-correction bias means DeepSeek-V3, whose
    // router transformers always scores with a sigmoid (the converter writes
    // the key only when config.json names scoring_func).
    TRY(gating, r.integer("expert_gating_func", bias ? 2 : 1, 1));
    TRY(groups, r.integer("expert_group_count", 1));
    TRY(groupsUsed, r.integer("expert_group_used_count", 1));
    c.family = gating == 2 || bias ? Family::DeepSeekV3 : Family::DeepSeekV2;
    MoEConfig m;
    m.experts = experts;
    m.topK = topK;
    m.ffn = expertFFN;
    m.sharedFFN = sharedCount * expertFFN;
    m.scaling = scale;
    m.normTopkProb = norm != 0;
    if (gating != 1 && gating != 2)
      return r.error("expert_gating_func", "must be 1 (softmax) or 2 (sigmoid)");
    m.scoring = gating == 2 ? "sigmoid" : "softmax";
    m.method = bias ? "noaux_tc" : (groups > 1 ? "group_limited" : "greedy");
    m.nGroup = m.method == "greedy" ? 1 : groups;
    m.topkGroup = m.method == "greedy" ? 1 : groupsUsed;
    if (c.family == Family::DeepSeekV2 && m.normTopkProb)
      return r.error("expert_weights_norm", "must be false for DeepSeek-V2 (transformers "
                                            "does not normalize its top-k weights)");
    if (!experts || !topK || experts % m.nGroup)
      return r.error("expert_count", "must be positive and divisible by the groups");
    c.moe = m;
    for (int64_t l = 0; l < layers; ++l)
      c.moeLayer[l] = l >= leadingDense;
    c.attentionScale = 1.0 / std::sqrt(static_cast<double>(keyLength));
    if (c.rope.scaling == "yarn" && c.rope.mscaleAllDim != 0.0 && c.rope.factor > 1.0) {
      double ms = 0.1 * c.rope.mscaleAllDim * std::log(c.rope.factor) + 1.0;
      c.attentionScale *= ms * ms;
    }
  }
  if (!deepseek && arch != "gemma3")
    c.attentionScale = 1.0 / std::sqrt(static_cast<double>(c.headDim));
  CHECK_ERR(readRopeFreqs(file, store, c.mla ? c.mla->ropeDim : c.headDim, c.rope));

  static const StringSet<> inert = {"context_length", "rope.scaling.finetuned",
                                    "expert_weights_scale_ignored"};
  CHECK_ERR(r.checkAllUsed(inert));
  return c;
}

} // namespace moir::frontend
