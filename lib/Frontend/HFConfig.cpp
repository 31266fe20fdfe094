//===- HFConfig.cpp - config.json to ModelConfig ---------------------------===//
//
// Strict: every key is either honoured, checked to have a value whose math
// MoIR reproduces, or known not to affect inference. Anything else is refused
// with the file and the key, so a checkpoint never compiles to silently wrong
// math.
//
//===----------------------------------------------------------------------===//

#include "ConfigMacros.h"
#include "moir/Frontend/ModelConfig.h"
#include "moir/Frontend/WeightStore.h"

#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include <cmath>

using namespace llvm;

namespace moir::frontend {

StringRef stringifyFamily(Family family) {
  switch (family) {
  case Family::Llama: return "LlamaForCausalLM";
  case Family::Mistral: return "MistralForCausalLM";
  case Family::Mixtral: return "MixtralForCausalLM";
  case Family::Apertus: return "ApertusForCausalLM";
  case Family::Qwen2MoE: return "Qwen2MoeForCausalLM";
  case Family::Qwen3MoE: return "Qwen3MoeForCausalLM";
  case Family::OLMoE: return "OlmoeForCausalLM";
  case Family::DeepSeekV2: return "DeepseekV2ForCausalLM";
  case Family::DeepSeekV3: return "DeepseekV3ForCausalLM";
  case Family::Gemma3: return "Gemma3ForCausalLM";
  }
  return "?";
}

namespace {

/// Keys that do not change inference math (training knobs, token ids,
/// bookkeeping). Everything else must be read by the family's parser.
const StringSet<> kInertKeys = {
    "_name_or_path", "architectures", "model_type", "transformers_version",
    "dtype", "torch_dtype", "bos_token_id", "eos_token_id", "pad_token_id",
    "initializer_range", "use_cache", "output_router_logits",
    "router_aux_loss_coef", "router_jitter_noise", "aux_loss_alpha",
    "seq_aux", "attention_dropout", "hidden_dropout", "max_position_embeddings",
    "pretraining_tp", "num_nextn_predict_layers", "ep_size", "auto_map",
    "tokenizer_class", "generation_config", "return_dict", "output_attentions",
    "output_hidden_states", "tie_encoder_decoder", "is_encoder_decoder",
    "router_z_loss_coef", "qk_head_dim", "cache_implementation"};

/// Reads typed values from one JSON object and remembers which keys it read.
class ConfigReader {
public:
  ConfigReader(StringRef path, const json::Object &object, StringRef scope = "")
      : path(path), object(object), scope(scope) {}

  Error error(StringRef key, const Twine &message) const {
    return fileError(path, "config key '" + scope + key + "' " + message);
  }

  const json::Value *get(StringRef key) {
    used.insert(key);
    const json::Value *v = object.get(key);
    return v && v->kind() != json::Value::Null ? v : nullptr;
  }
  bool has(StringRef key) { return get(key) != nullptr; }
  /// Marks a key as read without reading it.
  void consume(StringRef key) { used.insert(key); }

  Expected<std::optional<int64_t>> optInt(StringRef key, int64_t min = 0) {
    const json::Value *v = get(key);
    if (!v)
      return std::optional<int64_t>();
    std::optional<int64_t> i = v->getAsInteger();
    if (!i)
      return error(key, "must be an integer");
    if (*i < min)
      return error(key, "must be >= " + Twine(min) + ", got " + Twine(*i));
    return i;
  }
  Expected<int64_t> integer(StringRef key, std::optional<int64_t> fallback,
                            int64_t min = 1) {
    Expected<std::optional<int64_t>> v = optInt(key, min);
    if (!v)
      return v.takeError();
    if (*v)
      return **v;
    if (fallback)
      return *fallback;
    return error(key, "is required");
  }
  Expected<double> number(StringRef key, std::optional<double> fallback) {
    const json::Value *v = get(key);
    if (!v) {
      if (fallback)
        return *fallback;
      return error(key, "is required");
    }
    std::optional<double> d = v->getAsNumber();
    if (!d || !std::isfinite(*d))
      return error(key, "must be a finite number");
    return *d;
  }
  Expected<bool> boolean(StringRef key, bool fallback) {
    const json::Value *v = get(key);
    if (!v)
      return fallback;
    std::optional<bool> b = v->getAsBoolean();
    if (!b)
      return error(key, "must be true or false");
    return *b;
  }
  Expected<std::optional<std::string>> string(StringRef key) {
    const json::Value *v = get(key);
    if (!v)
      return std::optional<std::string>();
    std::optional<StringRef> s = v->getAsString();
    if (!s)
      return error(key, "must be a string");
    return std::optional<std::string>(s->str());
  }
  /// The key must be absent/null or equal `expected`.
  Error expectString(StringRef key, StringRef expected, StringRef why) {
    Expected<std::optional<std::string>> s = string(key);
    if (!s)
      return s.takeError();
    if (*s && **s != expected)
      return error(key, "is '" + **s + "'; " + why);
    return Error::success();
  }

  /// Every key not read and not inert is an error.
  Error checkAllUsed(const StringSet<> &inert) const {
    for (const auto &[key, value] : object)
      if (!used.contains(key) && !inert.contains(key))
        return error(key.str(), "is not supported by MoIR (it may change the "
                                "model's math; refusing rather than ignoring it)");
    return Error::success();
  }

private:
  StringRef path;
  const json::Object &object;
  std::string scope;
  StringSet<> used;
};

Error parseRopeBlock(StringRef path, const json::Object &object, StringRef scope,
                     RopeConfig &rope);

/// rope_parameters (transformers 5) or rope_theta + rope_scaling (earlier
/// configs and hub checkpoints).
Error parseRope(StringRef path, ConfigReader &top, RopeConfig &rope) {
  const json::Value *params = top.get("rope_parameters");
  const json::Value *scaling = top.get("rope_scaling");
  TRY(theta, top.number("rope_theta", rope.theta));
  rope.theta = theta;
  const json::Value *block = params ? params : scaling;
  if (params && scaling)
    return top.error("rope_scaling", "and rope_parameters are both given");
  if (!block)
    return Error::success();
  const json::Object *object = block->getAsObject();
  StringRef blockKey = params ? "rope_parameters" : "rope_scaling";
  if (!object)
    return top.error(blockKey, "must be an object");
  return parseRopeBlock(path, *object, (blockKey + ".").str(), rope);
}

/// One RoPE parameter object: rope_type (or type), rope_theta and the
/// scaling's own keys.
Error parseRopeBlock(StringRef path, const json::Object &object, StringRef scope,
                     RopeConfig &rope) {
  ConfigReader r(path, object, scope);
  if (r.has("rope_theta")) {
    TRY(t, r.number("rope_theta", std::nullopt));
    rope.theta = t;
  }
  TRY(type, r.string("rope_type"));
  TRY(legacyType, r.string("type"));
  std::string kind = type ? *type : legacyType ? *legacyType : "default";
  if (kind == "default") {
    rope.scaling = "none";
  } else if (kind == "linear" || kind == "llama3" || kind == "yarn") {
    rope.scaling = kind;
    TRY(factor, r.number("factor", std::nullopt));
    if (factor <= 0)
      return r.error("factor", "must be positive");
    rope.factor = factor;
  } else {
    return r.error(type ? "rope_type" : "type",
                   "is '" + kind + "'; supported: default, linear, llama3, yarn");
  }
  if (kind == "llama3") {
    TRY(low, r.number("low_freq_factor", std::nullopt));
    TRY(high, r.number("high_freq_factor", std::nullopt));
    TRY(orig, r.integer("original_max_position_embeddings", std::nullopt));
    rope.lowFreqFactor = low;
    rope.highFreqFactor = high;
    rope.originalMaxPosition = orig;
  } else if (kind == "yarn") {
    TRY(orig, r.integer("original_max_position_embeddings", std::nullopt));
    TRY(betaFast, r.number("beta_fast", 32.0));
    TRY(betaSlow, r.number("beta_slow", 1.0));
    TRY(mscale, r.number("mscale", 1.0));
    TRY(mscaleAll, r.number("mscale_all_dim", 0.0));
    rope.originalMaxPosition = orig;
    rope.betaFast = betaFast;
    rope.betaSlow = betaSlow;
    rope.mscale = mscale;
    rope.mscaleAllDim = mscaleAll;
  }
  return r.checkAllUsed({});
}

/// Gemma 3's two RoPEs: global layers use rope_theta (1e6 by default) with
/// rope_scaling, sliding layers rope_local_base_freq (1e4), unscaled; or,
/// as transformers 5 writes them, rope_parameters.{full_attention,
/// sliding_attention}.
Error parseGemma3Rope(StringRef path, ConfigReader &top, RopeConfig &global,
                      RopeConfig &local) {
  TRY(theta, top.number("rope_theta", 1e6));
  TRY(localTheta, top.number("rope_local_base_freq", 1e4));
  global.theta = theta;
  local.theta = localTheta;
  const json::Value *params = top.get("rope_parameters");
  const json::Value *scaling = top.get("rope_scaling");
  if (params && scaling)
    return top.error("rope_scaling", "and rope_parameters are both given");
  if (scaling) {
    const json::Object *object = scaling->getAsObject();
    if (!object)
      return top.error("rope_scaling", "must be an object");
    return parseRopeBlock(path, *object, "rope_scaling.", global);
  }
  if (!params)
    return Error::success();
  const json::Object *object = params->getAsObject();
  if (!object)
    return top.error("rope_parameters", "must be an object");
  ConfigReader r(path, *object, "rope_parameters.");
  for (auto [key, rope] : {std::pair<StringRef, RopeConfig *>{"full_attention", &global},
                           {"sliding_attention", &local}}) {
    const json::Value *block = r.get(key);
    if (!block)
      continue;
    const json::Object *layerObject = block->getAsObject();
    if (!layerObject)
      return r.error(key, "must be an object");
    CHECK_ERR(parseRopeBlock(path, *layerObject, ("rope_parameters." + key + ".").str(), *rope));
  }
  return r.checkAllUsed({});
}

Expected<Family> parseFamily(StringRef path, ConfigReader &r) {
  const json::Value *archs = r.get("architectures");
  const json::Array *list = archs ? archs->getAsArray() : nullptr;
  if (!list || list->size() != 1 || !(*list)[0].getAsString())
    return r.error("architectures", "must be a list of one architecture name");
  StringRef arch = *(*list)[0].getAsString();
  std::optional<Family> family = StringSwitch<std::optional<Family>>(arch)
      .Case("LlamaForCausalLM", Family::Llama)
      .Case("MistralForCausalLM", Family::Mistral)
      .Case("MixtralForCausalLM", Family::Mixtral)
      .Case("ApertusForCausalLM", Family::Apertus)
      .Case("Qwen2MoeForCausalLM", Family::Qwen2MoE)
      .Case("Qwen3MoeForCausalLM", Family::Qwen3MoE)
      .Case("OlmoeForCausalLM", Family::OLMoE)
      .Case("DeepseekV2ForCausalLM", Family::DeepSeekV2)
      .Case("DeepseekV3ForCausalLM", Family::DeepSeekV3)
      .Case("Gemma3ForCausalLM", Family::Gemma3)
      .Default(std::nullopt);
  if (arch == "Gemma3ForConditionalGeneration")
    return r.error("architectures",
                   "is Gemma3ForConditionalGeneration, the multimodal Gemma 3 (a vision "
                   "tower and text_config): MoIR imports the text-only Gemma3ForCausalLM "
                   "(model_type gemma3_text)");
  if (!family)
    return fileError(path, "unknown architecture '" + arch +
                               "' (supported: LlamaForCausalLM, MistralForCausalLM, "
                               "MixtralForCausalLM, ApertusForCausalLM, "
                               "Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, "
                               "OlmoeForCausalLM, DeepseekV2ForCausalLM, "
                               "DeepseekV3ForCausalLM, Gemma3ForCausalLM)");
  return *family;
}

/// A list of layer indices (Qwen's mlp_only_layers).
Expected<SmallVector<int64_t>> intList(ConfigReader &r, StringRef key) {
  SmallVector<int64_t> result;
  const json::Value *v = r.get(key);
  if (!v)
    return result;
  const json::Array *list = v->getAsArray();
  if (!list)
    return r.error(key, "must be a list of integers");
  for (const json::Value &item : *list) {
    std::optional<int64_t> i = item.getAsInteger();
    if (!i || *i < 0)
      return r.error(key, "must be a list of non-negative integers");
    result.push_back(*i);
  }
  return result;
}

/// Gemma 3's layers: which attend within the sliding window (layer_types,
/// or else every sliding_window_pattern-th layer global), the window, its
/// norms and embedding scale, and the softcappings it must not have.
Error parseGemma3Layers(ConfigReader &r, ModelConfig &c) {
  TRY(bidirectional, r.boolean("use_bidirectional_attention", false));
  if (bidirectional)
    return r.error("use_bidirectional_attention",
                   "= true (bidirectional attention) is not supported; MoIR runs causal "
                   "decoders");
  for (StringRef key : {"final_logit_softcapping", "attn_logit_softcapping"})
    if (r.has(key))
      return r.error(key, "is not supported (Gemma 3 has no softcapping; it must be null)");
  TRY(window, r.integer("sliding_window", 4096));
  // Hub configs spell the pattern either way; layer_types, when given, wins.
  TRY(pattern, r.optInt("sliding_window_pattern", 1));
  TRY(privatePattern, r.optInt("_sliding_window_pattern", 1));
  int64_t every = pattern ? *pattern : privatePattern ? *privatePattern : 6;
  c.slidingLayers.assign(c.layers, false);
  if (const json::Value *types = r.get("layer_types")) {
    const json::Array *list = types->getAsArray();
    if (!list || static_cast<int64_t>(list->size()) != c.layers)
      return r.error("layer_types", "must list one type per layer (" + Twine(c.layers) + ")");
    for (auto [i, t] : llvm::enumerate(*list)) {
      std::optional<StringRef> kind = t.getAsString();
      if (kind == StringRef("sliding_attention"))
        c.slidingLayers[i] = true;
      else if (kind != StringRef("full_attention"))
        return r.error("layer_types", "entry " + Twine(i) + " is " +
                                          (kind ? "'" + kind->str() + "'" : "not a string") +
                                          "; expected sliding_attention or full_attention");
    }
  } else {
    for (int64_t l = 0; l < c.layers; ++l)
      c.slidingLayers[l] = (l + 1) % every != 0;
  }
  c.slidingWindow = window;
  c.normWeightOffset = 1.0;
  c.postNorms = true;
  c.embeddingScale = std::sqrt(static_cast<double>(c.hidden));
  return Error::success();
}

double yarnMscale(double factor, double mscale) {
  return factor <= 1.0 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0;
}

} // namespace

Expected<ModelConfig> parseHFConfig(StringRef path) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer = MemoryBuffer::getFile(path);
  if (std::error_code ec = buffer.getError())
    return fileError(path, "cannot open: " + ec.message());
  return parseHFConfigText(path, (*buffer)->getBuffer());
}

/// quantization_config: DeepSeek-V3's block FP8, fbgemm's per-channel FP8,
/// AWQ (GEMM) and GPTQ (v1) 4-bit, compressed-tensors' INT8 per channel and
/// 4- and 8-bit pack-quantized. Keys that change how weights decode are
/// checked; a few bookkeeping keys of each quantizer are inert.
static Error parseQuantization(StringRef path, const json::Object &object, QuantizationConfig &q) {
  ConfigReader qr(path, object, "quantization_config.");
  TRY(method, qr.string("quant_method"));
  if (!method)
    return qr.error("quant_method", "is required");
  q.method = *method;
  auto modules = [&]() -> Error {
    const json::Value *list = qr.get("modules_to_not_convert");
    if (!list)
      return Error::success();
    const json::Array *names = list->getAsArray();
    if (!names)
      return qr.error("modules_to_not_convert", "must be a list of module names");
    for (const json::Value &name : *names) {
      std::optional<StringRef> s = name.getAsString();
      if (!s)
        return qr.error("modules_to_not_convert", "must be a list of module names");
      q.modulesToNotConvert.push_back(s->str());
    }
    return Error::success();
  };
  auto fourBits = [&]() -> Error {
    TRY(bits, qr.integer("bits", std::nullopt));
    if (bits != 4)
      return qr.error("bits", "is " + Twine(bits) + "; only 4-bit " + *method +
                                  " is supported");
    q.bits = bits;
    return Error::success();
  };
  auto groupSize = [&](bool allowRow) -> Error {
    TRY(size, qr.integer("group_size", std::nullopt, allowRow ? -1 : 1));
    if (size == -1 && allowRow) {
      q.groupSize = -1;
      return Error::success();
    }
    if (size <= 0 || size % 32 != 0)
      return qr.error("group_size", "is " + Twine(size) + "; it must be a multiple of 32" +
                                        (allowRow ? " (or -1)" : ""));
    q.groupSize = size;
    return Error::success();
  };

  if (*method == "fp8") {
    if (Error err = qr.expectString("fmt", "e4m3", "only e4m3 is supported"))
      return err;
    if (Error err = qr.expectString("activation_scheme", "dynamic",
                                    "only dynamic activation scaling is supported"))
      return err;
    const json::Value *block = qr.get("weight_block_size");
    const json::Array *sizes = block ? block->getAsArray() : nullptr;
    if (!sizes || sizes->size() != 2 || (*sizes)[0].getAsInteger() != 128 ||
        (*sizes)[1].getAsInteger() != 128)
      return qr.error("weight_block_size", "must be [128, 128]");
    return qr.checkAllUsed({});
  }
  if (*method == "fbgemm_fp8") {
    if (Error err = modules())
      return err;
    // The bound of dynamic activation scales: MoIR keeps activations in
    // float, so it has nothing to bound.
    qr.consume("activation_scale_ub");
    return qr.checkAllUsed({});
  }
  if (*method == "awq") {
    if (Error err = fourBits())
      return err;
    if (Error err = groupSize(false))
      return err;
    TRY(zeroPoint, qr.boolean("zero_point", true));
    if (!zeroPoint)
      return qr.error("zero_point", "is false; only AWQ with zero points is supported");
    if (Error err = qr.expectString("version", "gemm", "only gemm is supported"))
      return err;
    if (Error err = modules())
      return err;
    // Kernel choices of the loaders, not the math.
    return qr.checkAllUsed({"backend", "do_fuse", "fuse_max_seq_len", "modules_to_fuse",
                            "exllama_config"});
  }
  if (*method == "gptq") {
    if (Error err = fourBits())
      return err;
    if (Error err = groupSize(true))
      return err;
    // Act-order (desc_act) shows in each weight's g_idx, which the importer
    // reads: it sorts the inputs by group and gathers the activations.
    TRY(descAct, qr.boolean("desc_act", false));
    (void)descAct;
    TRY(sym, qr.boolean("sym", true));
    (void)sym; // the zero points are stored either way
    if (Error err = qr.expectString("checkpoint_format", "gptq",
                                    "only the gptq (v1) checkpoint format is supported"))
      return err;
    if (Error err = qr.expectString("format", "gptq",
                                    "only the gptq (v1) checkpoint format is supported"))
      return err;
    if (Error err = modules())
      return err;
    // The quantizer's own settings and the loaders' kernel choices.
    return qr.checkAllUsed({"damp_percent", "damp_auto_increment", "true_sequential",
                            "static_groups", "model_name_or_path", "model_file_base_name",
                            "use_exllama", "exllama_config", "use_cuda_fp16",
                            "cache_block_outputs", "batch_size", "dataset", "tokenizer",
                            "max_input_length", "module_name_preceding_first_block",
                            "block_name_to_quantize", "backend", "meta", "pack_dtype",
                            "quantizer", "lm_head", "modules_in_block_to_quantize"});
  }
  if (*method == "compressed-tensors") {
    // W8A16: llm-compressor's int-quantized format with one symmetric scale
    // per output channel (`weight` I8, `weight_scale` [rows, 1]), the layout
    // fbgemm's FP8 has with int8 storage. W4A16 and W8A16: its
    // pack-quantized format, 4- or 8-bit codes packed in int32 along the
    // inputs (`weight_packed` I32 [rows, cols * bits / 32]) with a scale per
    // group or output channel (`weight_scale` [rows, groups]) and,
    // asymmetric, packed zero points. float-quantized: FP8 E4M3 `weight`
    // with one scale per output channel (`weight_scale` [rows, 1]). W8A8:
    // `input_activations` quantized per token at run time (int8 or FP8,
    // dynamic, symmetric), which the importer puts in front of each
    // quantized linear. Everything else that changes the math (static or
    // grouped activation scales, KV-cache quantization, other widths,
    // act-order groups, sparsity) is refused naming its key.
    TRY(formatKey, qr.string("format"));
    if (!formatKey)
      return qr.error("format", "is required");
    std::string format = *formatKey;
    if (format != "int-quantized" && format != "pack-quantized" && format != "float-quantized")
      return qr.error("format", "is '" + format +
                                    "'; only int-quantized (INT8 per channel), pack-quantized "
                                    "(4- or 8-bit, W4A16/W8A16) and float-quantized (FP8 per "
                                    "channel) are supported");
    q.format = format;
    if (Error err = qr.expectString("quantization_status", "compressed",
                                    "only compressed checkpoints are supported"))
      return err;
    // compressed-tensors writes `sparsity_config` and `transform_config` as
    // {} when there are none (ModelCompressor.update_config), and
    // `moe_sparsity_config` as null. A dense sparsity config stores the
    // weights as they are (its other keys describe measured sparsity).
    auto setObject = [&](StringRef key) {
      const json::Value *v = qr.get(key);
      const json::Object *object = v ? v->getAsObject() : nullptr;
      return v && !(object && object->empty());
    };
    if (const json::Value *sparsity = qr.get("sparsity_config"); setObject("sparsity_config")) {
      const json::Object *object = sparsity->getAsObject();
      const json::Value *storage = object ? object->get("format") : nullptr;
      if (!storage || storage->getAsString() != StringRef("dense"))
        return qr.error("sparsity_config", "is set with a sparse format; only dense weights "
                                           "are supported");
    }
    for (StringRef key : {"kv_cache_scheme", "transform_config", "moe_sparsity_config"})
      if (setObject(key))
        return qr.error(key, "is set; only weight and activation quantization are supported");
    if (const json::Value *ignore = qr.get("ignore")) {
      const json::Array *names = ignore->getAsArray();
      if (!names || llvm::any_of(*names, [](const json::Value &v) { return !v.getAsString(); }))
        return qr.error("ignore", "must be a list of module names");
    }
    const json::Value *groups = qr.get("config_groups");
    const json::Object *groupObject = groups ? groups->getAsObject() : nullptr;
    if (!groupObject || groupObject->empty())
      return qr.error("config_groups", "must be an object of quantization groups");
    for (const auto &[name, value] : *groupObject) {
      std::string scope = "quantization_config.config_groups." + name.str() + ".";
      const json::Object *group = value.getAsObject();
      if (!group)
        return fileError(path, "config key '" + scope.substr(0, scope.size() - 1) +
                                   "' must be an object");
      ConfigReader gr(path, *group, scope);
      if (gr.get("output_activations"))
        return gr.error("output_activations", "is set; only weights and the linears' inputs "
                                              "(W8A8) are quantized by MoIR");
      std::string activations;
      bool staticActivations = false;
      if (const json::Value *inputs = gr.get("input_activations")) {
        const json::Object *a = inputs->getAsObject();
        if (!a)
          return gr.error("input_activations", "must be an object");
        ConfigReader ar(path, *a, scope + "input_activations.");
        TRY(abits, ar.integer("num_bits", std::nullopt));
        TRY(atype, ar.string("type"));
        if (abits != 8 || !atype || (*atype != "int" && *atype != "float"))
          return ar.error(abits != 8 ? "num_bits" : "type",
                          "is " + (abits != 8 ? Twine(abits) : Twine("'") + atype.value_or("") + "'") +
                              "; only 8-bit int or float activations (W8A8) are supported");
        // Dynamic: a scale per token computed at run time. Static: one
        // scale per linear, its calibrated `input_scale`.
        TRY(adynamic, ar.boolean("dynamic", false));
        TRY(astrategy, ar.string("strategy"));
        if (adynamic && astrategy != "token")
          return ar.error("strategy", "is '" + astrategy.value_or("") +
                                          "'; only per-token dynamic activation scales are "
                                          "supported");
        if (!adynamic && astrategy != "tensor")
          return ar.error("strategy", "is '" + astrategy.value_or("") +
                                          "'; only one static activation scale per linear "
                                          "(strategy 'tensor', input_scale) is supported");
        TRY(asymmetric, ar.boolean("symmetric", false));
        if (!asymmetric)
          return ar.error("symmetric", "is false; only symmetric activation scales are "
                                       "supported");
        for (StringRef key : {"group_size", "block_structure", "actorder", "scale_dtype",
                              "zp_dtype"})
          if (ar.get(key))
            return ar.error(key, "is set; only plain per-token activation scales are "
                                 "supported");
        // How the calibration observed them (static) or would (dynamic:
        // none): not the math.
        if (Error err = ar.checkAllUsed({"observer", "observer_kwargs"}))
          return std::move(err);
        activations = *atype == "int" ? "int8" : "fp8_e4m3";
        staticActivations = !adynamic;
      }
      if (q.bits && (activations != q.activations || staticActivations != q.staticActivations))
        return gr.error("input_activations", "differs from another group's; one activation "
                                             "scheme per checkpoint is supported");
      q.activations = activations;
      q.staticActivations = staticActivations;
      if (Error err = gr.expectString("format", format,
                                      "the groups must share the checkpoint's format"))
        return std::move(err);
      gr.consume("targets"); // which modules: the checkpoint's dtypes say which are int8
      const json::Value *weights = gr.get("weights");
      const json::Object *w = weights ? weights->getAsObject() : nullptr;
      if (!w)
        return gr.error("weights", "must be an object");
      ConfigReader wr(path, *w, scope + "weights.");
      TRY(bits, wr.integer("num_bits", std::nullopt));
      bool packed = format == "pack-quantized", floats = format == "float-quantized";
      if (bits != 8 && !(packed && bits == 4))
        return wr.error("num_bits", "is " + Twine(bits) + "; only " +
                                        (packed ? "4- and 8-bit" : "8-bit") + " " + format +
                                        " weights are supported");
      if (Error err = wr.expectString("type", floats ? "float" : "int",
                                      floats ? "float-quantized weights are FP8 E4M3"
                                             : "only integer weights are supported in " + format))
        return std::move(err);
      for (StringRef key : {"scale_dtype", "zp_dtype"})
        if (wr.get(key))
          return wr.error(key, "is set; only scales in the checkpoint's own dtype are "
                               "supported");
      TRY(symmetric, wr.boolean("symmetric", false));
      if (!symmetric && !packed)
        return wr.error("symmetric", "is false; only symmetric weights (no zero points) are "
                                     "supported");
      TRY(dynamic, wr.boolean("dynamic", false));
      if (dynamic)
        return wr.error("dynamic", "is true; only static weight scales are supported");
      TRY(strategyKey, wr.string("strategy"));
      if (!strategyKey)
        return wr.error("strategy", "is required");
      std::string strategy = *strategyKey;
      int64_t groupSize = -1;
      if (packed && strategy == "group") {
        TRY(size, wr.integer("group_size", std::nullopt, 1));
        if (size % 32 != 0)
          return wr.error("group_size", "is " + Twine(size) + "; it must be a multiple of 32");
        groupSize = size;
      } else if (strategy != "channel" && !(strategy == "tensor" && !packed)) {
        return wr.error("strategy", "is '" + strategy + "'; only " +
                                        (packed ? "group and channel scales are"
                                                : "one scale per output channel or per "
                                                  "tensor is") +
                                        " supported");
      } else if (wr.get("group_size")) {
        return wr.error("group_size", "is set; only per-channel scales are supported");
      }
      if (wr.get("block_structure"))
        return wr.error("block_structure", "is set; only group and channel scales are supported");
      // Activation order: "weight" quantizes in activation order but keeps
      // the groups contiguous (nothing to read); "group" (weight_g_idx) is
      // refused by compressed-tensors itself since 0.20 ("removed").
      if (const json::Value *order = wr.get("actorder")) {
        std::optional<StringRef> text = order->getAsString();
        if (!text || *text != "weight")
          return wr.error("actorder", "is set; only contiguous groups (actorder null or "
                                      "'weight') are supported");
      }
      if (q.bits && (q.bits != bits || q.groupSize != groupSize || q.symmetric != symmetric))
        return gr.error("weights", "differs from another group's; one weight scheme per "
                                   "checkpoint is supported");
      q.bits = bits;
      q.groupSize = groupSize;
      q.symmetric = symmetric;
      // The calibration's observer: how the scales were found, not the math.
      if (Error err = wr.checkAllUsed({"observer", "observer_kwargs"}))
        return std::move(err);
      if (Error err = gr.checkAllUsed({}))
        return std::move(err);
    }
    return qr.checkAllUsed({"global_compression_ratio", "version"});
  }
  return qr.error("quant_method", "is '" + *method +
                                      "'; only fp8, fbgemm_fp8, awq, gptq and "
                                      "compressed-tensors (INT8 per channel, 4- and 8-bit "
                                      "packed, FP8 per channel; W8A8) are supported");
}

Expected<ModelConfig> parseHFConfigText(StringRef path, StringRef text) {
  Expected<json::Value> parsed = json::parse(text);
  if (!parsed)
    return fileError(path, "not valid JSON: " + toString(parsed.takeError()));
  const json::Object *object = parsed->getAsObject();
  if (!object)
    return fileError(path, "must hold a JSON object");
  ConfigReader r(path, *object);

  ModelConfig c;
  TRY(family, parseFamily(path, r));
  c.family = family;
  bool deepseek = family == Family::DeepSeekV2 || family == Family::DeepSeekV3;
  bool gemma = family == Family::Gemma3;
  TRY(hidden, r.integer("hidden_size", std::nullopt));
  TRY(layers, r.integer("num_hidden_layers", std::nullopt));
  // Bounds keep a corrupt count from allocating per-layer state unboundedly;
  // they are far above any real model's.
  if (layers > kMaxLayers)
    return r.error("num_hidden_layers", "(" + Twine(layers) + ") exceeds " + Twine(kMaxLayers));
  TRY(heads, r.integer("num_attention_heads", std::nullopt));
  TRY(kvHeads, r.integer("num_key_value_heads", heads));
  TRY(vocab, r.integer("vocab_size", std::nullopt));
  TRY(ffn, r.integer("intermediate_size", std::nullopt));
  TRY(eps, r.number("rms_norm_eps", 1e-6));
  // Gemma ties its LM head to the embeddings unless told otherwise.
  TRY(tie, r.boolean("tie_word_embeddings", gemma));
  c.hidden = hidden;
  c.layers = layers;
  c.heads = heads;
  c.kvHeads = kvHeads;
  c.vocab = vocab;
  c.ffn = ffn;
  c.rmsNormEps = eps;
  c.tieWordEmbeddings = tie;
  if (eps <= 0)
    return r.error("rms_norm_eps", "must be positive");
  if (heads % kvHeads != 0)
    return r.error("num_key_value_heads",
                   "(" + Twine(kvHeads) + ") must divide num_attention_heads (" +
                       Twine(heads) + ")");
  RopeConfig localRope;
  if (gemma) {
    CHECK_ERR(parseGemma3Rope(path, r, c.rope, localRope));
    // Gemma 3 reads hidden_activation; transformers ignores a hidden_act.
    r.consume("hidden_act");
    CHECK_ERR(r.expectString("hidden_activation", "gelu_pytorch_tanh",
                             "MoIR implements Gemma 3's GeGLU with the tanh-approximated "
                             "GELU only"));
    c.ffnActivation = ModelConfig::FFNActivation::GELUTanh;
  } else {
    CHECK_ERR(parseRope(path, r, c.rope));
    CHECK_ERR(r.expectString("hidden_act", family == Family::Apertus ? "xielu" : "silu",
                             "MoIR implements this family with its reference "
                             "activation only"));
  }
  c.xielu = family == Family::Apertus;

  // Head dimension: an explicit head_dim overrides hidden / heads (MLA's
  // head_dim is the RoPE dimension and is checked below).
  if (!deepseek) {
    // Gemma 3's configuration class defaults head_dim to 256.
    TRY(headDim, r.integer("head_dim", gemma ? 256 : hidden / heads));
    c.headDim = headDim;
    if (!gemma && !r.has("head_dim") && hidden % heads != 0)
      return r.error("num_attention_heads", "must divide hidden_size when "
                                            "head_dim is not given");
  }

  // Biases.
  if (family == Family::Qwen2MoE) {
    // Qwen2-MoE always has q/k/v biases; transformers 5 names the flag.
    TRY(qkvBias, r.boolean("qkv_bias", true));
    c.qkvBias = qkvBias;
  } else {
    TRY(attnBias, r.boolean("attention_bias", false));
    c.qkvBias = attnBias;
    // Llama-style attention_bias also puts a bias on o_proj.
    c.oBias = attnBias && (family == Family::Llama || family == Family::Mistral ||
                           family == Family::Mixtral || family == Family::Apertus);
    if (attnBias && (deepseek || gemma || family == Family::OLMoE ||
                     family == Family::Qwen3MoE))
      return r.error("attention_bias", "= true is not supported for " +
                                           stringifyFamily(family));
  }
  TRY(mlpBias, r.boolean("mlp_bias", false));
  if (mlpBias && family != Family::Llama)
    return r.error("mlp_bias", "= true is only supported for LlamaForCausalLM");
  c.mlpBias = mlpBias;

  // Sliding windows.
  if (gemma) {
    CHECK_ERR(parseGemma3Layers(r, c));
    c.slidingRope = localRope;
  } else {
    TRY(useSliding, r.boolean("use_sliding_window", family != Family::Qwen2MoE &&
                                                        family != Family::Qwen3MoE));
    r.consume("max_window_layers");
    TRY(window, r.optInt("sliding_window", 0));
    if (window && *window > 0 && useSliding) {
      if (family != Family::Mistral && family != Family::Mixtral)
        return r.error("sliding_window", "is only supported for Mistral and Mixtral");
      c.slidingWindow = *window;
    }
    if (const json::Value *types = r.get("layer_types")) {
      const json::Array *list = types->getAsArray();
      if (!list || static_cast<int64_t>(list->size()) != layers)
        return r.error("layer_types", "must list one type per layer");
      for (const json::Value &t : *list)
        if (t.getAsString() != StringRef("full_attention") &&
            !(c.slidingWindow && t.getAsString() == StringRef("sliding_attention")))
          return r.error("layer_types", "may only hold full_attention layers here");
    }
  }

  // QK-norm.
  if (family == Family::Apertus || family == Family::Qwen3MoE || gemma)
    c.qkNorm = ModelConfig::QKNorm::PerHead;
  if (family == Family::OLMoE) {
    c.qkNorm = ModelConfig::QKNorm::Full;
    if (r.has("clip_qkv"))
      return r.error("clip_qkv", "is not supported (must be null)");
  }

  // Mixture of experts.
  c.moeLayer.assign(layers, false);
  if (family == Family::Mixtral || family == Family::Qwen2MoE ||
      family == Family::Qwen3MoE || family == Family::OLMoE || deepseek) {
    MoEConfig moe;
    StringRef expertsKey = family == Family::Mixtral ? "num_local_experts"
                           : deepseek                ? "n_routed_experts"
                           : r.has("num_experts")    ? "num_experts"
                                                     : "num_local_experts";
    TRY(experts, r.integer(expertsKey, std::nullopt));
    TRY(topK, r.integer("num_experts_per_tok", std::nullopt));
    moe.experts = experts;
    moe.topK = topK;
    if (topK > experts)
      return r.error("num_experts_per_tok", "(" + Twine(topK) +
                                                ") exceeds the number of experts (" +
                                                Twine(experts) + ")");
    if (family == Family::Mixtral || family == Family::OLMoE) {
      moe.ffn = ffn;
    } else {
      TRY(moeFFN, r.integer("moe_intermediate_size", std::nullopt));
      moe.ffn = moeFFN;
    }
    // Mixtral always renormalizes the top-k softmax weights.
    TRY(norm, r.boolean("norm_topk_prob", family == Family::Mixtral ||
                                              family == Family::DeepSeekV3));
    moe.normTopkProb = family == Family::Mixtral ? true : norm;
    if (family == Family::DeepSeekV2 && norm)
      return r.error("norm_topk_prob", "= true: transformers' DeepseekV2 does not "
                                       "normalize top-k weights; refusing to guess");

    if (family == Family::Qwen2MoE) {
      TRY(shared, r.integer("shared_expert_intermediate_size", 0, 0));
      moe.sharedFFN = shared;
      moe.sharedGate = shared > 0;
    }
    if (family == Family::Qwen2MoE || family == Family::Qwen3MoE) {
      TRY(step, r.integer("decoder_sparse_step", 1));
      TRY(mlpOnly, intList(r, "mlp_only_layers"));
      for (int64_t l = 0; l < layers; ++l)
        c.moeLayer[l] = !llvm::is_contained(mlpOnly, l) && (l + 1) % step == 0;
    } else if (deepseek) {
      TRY(shared, r.integer("n_shared_experts", 0, 0));
      moe.sharedFFN = shared * moe.ffn;
      TRY(firstDense, r.integer("first_k_dense_replace", 0, 0));
      TRY(freq, r.integer("moe_layer_freq", 1));
      for (int64_t l = 0; l < layers; ++l)
        c.moeLayer[l] = l >= firstDense && l % freq == 0;
      TRY(scale, r.number("routed_scaling_factor", 1.0));
      if (scale <= 0)
        return r.error("routed_scaling_factor", "must be positive");
      moe.scaling = scale;
      TRY(scoring, r.string("scoring_func"));
      moe.scoring = scoring ? *scoring
                            : (family == Family::DeepSeekV3 ? "sigmoid" : "softmax");
      if (moe.scoring != "softmax" && moe.scoring != "sigmoid")
        return r.error("scoring_func", "is '" + moe.scoring +
                                           "'; supported: softmax, sigmoid");
      if (family == Family::DeepSeekV2 && moe.scoring != "softmax")
        return r.error("scoring_func", "must be softmax for DeepseekV2");
      TRY(method, r.string("topk_method"));
      std::string m = method ? *method
                             : (family == Family::DeepSeekV3 ? "noaux_tc" : "greedy");
      TRY(nGroup, r.optInt("n_group", 1));
      TRY(topkGroup, r.optInt("topk_group", 1));
      if (m == "greedy") {
        moe.method = "greedy";
      } else if (m == "group_limited_greedy" && family == Family::DeepSeekV2) {
        moe.method = "group_limited";
      } else if (m == "noaux_tc" && family == Family::DeepSeekV3) {
        moe.method = "noaux_tc";
      } else {
        return r.error("topk_method", "is '" + m + "', which " +
                                          stringifyFamily(family) +
                                          " does not implement");
      }
      if (moe.method != "greedy") {
        moe.nGroup = nGroup.value_or(1);
        moe.topkGroup = topkGroup.value_or(1);
        if (experts % moe.nGroup != 0)
          return r.error("n_group", "(" + Twine(moe.nGroup) +
                                        ") must divide the number of experts (" +
                                        Twine(experts) + ")");
        if (moe.topkGroup > moe.nGroup)
          return r.error("topk_group", "exceeds n_group");
      }
    } else {
      for (int64_t l = 0; l < layers; ++l)
        c.moeLayer[l] = true;
    }
    c.moe = moe;
  }

  // Multi-head latent attention.
  if (deepseek) {
    MLAConfig mla;
    TRY(qLora, r.optInt("q_lora_rank", 1));
    mla.qLoraRank = qLora.value_or(0);
    TRY(kvLora, r.integer("kv_lora_rank", std::nullopt));
    TRY(nope, r.integer("qk_nope_head_dim", std::nullopt));
    TRY(ropeDim, r.integer("qk_rope_head_dim", std::nullopt));
    TRY(vDim, r.integer("v_head_dim", std::nullopt));
    mla.kvLoraRank = kvLora;
    mla.nopeDim = nope;
    mla.ropeDim = ropeDim;
    mla.vDim = vDim;
    if (ropeDim % 2)
      return r.error("qk_rope_head_dim", "must be even");
    TRY(headDim, r.integer("head_dim", ropeDim));
    if (headDim != ropeDim)
      return r.error("head_dim", "must equal qk_rope_head_dim for MLA");
    c.headDim = nope + ropeDim;
    c.mla = mla;
    // DeepSeek pairs RoPE dimensions (2i, 2i+1).
    TRY(interleave, r.boolean("rope_interleave", true));
    if (!interleave)
      return r.error("rope_interleave", "= false is not supported");
    c.rope.interleaved = true;
    c.attentionScale = 1.0 / std::sqrt(static_cast<double>(nope + ropeDim));
    if (c.rope.scaling == "yarn" && c.rope.mscaleAllDim != 0.0) {
      double m = yarnMscale(c.rope.factor, c.rope.mscaleAllDim);
      c.attentionScale *= m * m;
    }
  } else if (gemma) {
    TRY(scalar, r.number("query_pre_attn_scalar", 256.0));
    if (scalar <= 0)
      return r.error("query_pre_attn_scalar", "must be positive");
    c.attentionScale = 1.0 / std::sqrt(scalar);
  } else {
    c.attentionScale = 1.0 / std::sqrt(static_cast<double>(c.headDim));
  }

  if (const json::Value *quant = r.get("quantization_config")) {
    const json::Object *q = quant->getAsObject();
    if (!q)
      return r.error("quantization_config", "must be an object");
    CHECK_ERR(parseQuantization(path, *q, c.quantization));
  }

  CHECK_ERR(r.checkAllUsed(kInertKeys));
  return c;
}

} // namespace moir::frontend
