//===- Importer.cpp - checkpoints to MoIR's input IR -----------------------===//
//
// Builds the input-contract module of a model from its ModelConfig and weight
// store. Weights are looked up by the checkpoint's own tensor names (Hugging
// Face or llama.cpp's GGUF names), checked against the shapes the config
// implies, and referenced by name; their bytes are never read (two scalar
// activation parameters of Apertus' xIELU aside). A GGUF tensor the import
// does not read is refused: it could change the model's math.
//
//===----------------------------------------------------------------------===//

#include "moir/Frontend/Importer.h"
#include "moir/Frontend/GGUF.h"
#include "moir/Frontend/FloatBits.h"
#include "moir/Frontend/Quantization.h"

#include "LLM/IR/LLMOps.h"
#include "MLA/IR/MLAOps.h"
#include "MoE/IR/MoEOps.h"
#include "MoIR/IR/MoIRDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Regex.h"

#include <cstring>
#include <map>

using namespace mlir;
using namespace llvm;

namespace moir::frontend {

namespace {

enum class Format { HF, GGUF };

/// Which weight of a layer.
enum class Role {
  AttnNorm, FFNNorm, PostAttnNorm, PostFFNNorm, Q, K, V, O, QNorm, KNorm,
  Gate, Up, Down, XIELUAlphaP, XIELUAlphaN, XIELUBeta, XIELUEps,
  Router, RouterBias, ExpertGate, ExpertUp, ExpertDown,
  SharedGate, SharedUp, SharedDown, SharedExpertGate,
  MLAQ, MLAQA, MLAQANorm, MLAQB, MLAKVA, MLAKVANorm, MLAKVB,
  // llama.cpp's split form of MLAKVB (GGUF only).
  MLAKB, MLAVB,
};

/// Tensor names of a layer weight in each format; `expert` >= 0 names one
/// expert of a Hugging Face checkpoint (GGUF stacks experts).
std::string weightName(Format format, Family family, Role role, int64_t layer,
                       int64_t expert = -1, bool bias = false) {
  std::string suffix = bias ? ".bias" : ".weight";
  if (format == Format::GGUF) {
    std::string p = "blk." + std::to_string(layer) + ".";
    switch (role) {
    case Role::AttnNorm: return p + "attn_norm.weight";
    case Role::FFNNorm: return p + "ffn_norm.weight";
    case Role::PostAttnNorm: return p + "post_attention_norm.weight";
    case Role::PostFFNNorm: return p + "post_ffw_norm.weight";
    case Role::Q: return p + "attn_q" + suffix;
    case Role::K: return p + "attn_k" + suffix;
    case Role::V: return p + "attn_v" + suffix;
    case Role::O: return p + "attn_output" + suffix;
    case Role::QNorm: return p + "attn_q_norm.weight";
    case Role::KNorm: return p + "attn_k_norm.weight";
    case Role::Gate: return p + "ffn_gate" + suffix;
    case Role::Up: return p + "ffn_up" + suffix;
    case Role::Down: return p + "ffn_down" + suffix;
    case Role::Router: return p + "ffn_gate_inp.weight";
    case Role::RouterBias: return p + "exp_probs_b.bias";
    case Role::ExpertGate: return p + "ffn_gate_exps.weight";
    case Role::ExpertUp: return p + "ffn_up_exps.weight";
    case Role::ExpertDown: return p + "ffn_down_exps.weight";
    case Role::SharedGate: return p + "ffn_gate_shexp.weight";
    case Role::SharedUp: return p + "ffn_up_shexp.weight";
    case Role::SharedDown: return p + "ffn_down_shexp.weight";
    case Role::SharedExpertGate: return p + "ffn_gate_inp_shexp.weight";
    case Role::MLAQ: return p + "attn_q.weight";
    case Role::MLAQA: return p + "attn_q_a.weight";
    case Role::MLAQANorm: return p + "attn_q_a_norm.weight";
    case Role::MLAQB: return p + "attn_q_b.weight";
    case Role::MLAKVA: return p + "attn_kv_a_mqa.weight";
    case Role::MLAKVANorm: return p + "attn_kv_a_norm.weight";
    case Role::MLAKVB: return p + "attn_kv_b.weight";
    case Role::MLAKB: return p + "attn_k_b.weight";
    case Role::MLAVB: return p + "attn_v_b.weight";
    default: return p + "?";
    }
  }
  std::string p = "model.layers." + std::to_string(layer) + ".";
  std::string attn = p + "self_attn.";
  bool mixtral = family == Family::Mixtral;
  std::string moe = p + (mixtral ? "block_sparse_moe." : "mlp.");
  std::string e = moe + "experts." + std::to_string(expert) + ".";
  bool deepseek = family == Family::DeepSeekV2 || family == Family::DeepSeekV3;
  std::string shared = moe + (deepseek ? "shared_experts." : "shared_expert.");
  switch (role) {
  case Role::AttnNorm:
    return p + (family == Family::Apertus ? "attention_layernorm" : "input_layernorm") + ".weight";
  case Role::FFNNorm:
    // Gemma's post_attention_layernorm normalizes the attention output; its
    // FFN input norm is pre_feedforward_layernorm.
    return p + (family == Family::Apertus  ? "feedforward_layernorm"
                : family == Family::Gemma3 ? "pre_feedforward_layernorm"
                                           : "post_attention_layernorm") +
           ".weight";
  case Role::PostAttnNorm: return p + "post_attention_layernorm.weight";
  case Role::PostFFNNorm: return p + "post_feedforward_layernorm.weight";
  case Role::Q: return attn + "q_proj" + suffix;
  case Role::K: return attn + "k_proj" + suffix;
  case Role::V: return attn + "v_proj" + suffix;
  case Role::O: return attn + "o_proj" + suffix;
  case Role::QNorm: return attn + "q_norm.weight";
  case Role::KNorm: return attn + "k_norm.weight";
  case Role::Gate: return p + "mlp.gate_proj" + suffix;
  case Role::Up: return p + "mlp.up_proj" + suffix;
  case Role::Down: return p + "mlp.down_proj" + suffix;
  case Role::XIELUAlphaP: return p + "mlp.act_fn.alpha_p";
  case Role::XIELUAlphaN: return p + "mlp.act_fn.alpha_n";
  case Role::XIELUBeta: return p + "mlp.act_fn.beta";
  case Role::XIELUEps: return p + "mlp.act_fn.eps";
  case Role::Router: return moe + "gate.weight";
  case Role::RouterBias: return moe + "gate.e_score_correction_bias";
  case Role::ExpertGate: return e + (mixtral ? "w1.weight" : "gate_proj.weight");
  case Role::ExpertUp: return e + (mixtral ? "w3.weight" : "up_proj.weight");
  case Role::ExpertDown: return e + (mixtral ? "w2.weight" : "down_proj.weight");
  case Role::SharedGate: return shared + "gate_proj.weight";
  case Role::SharedUp: return shared + "up_proj.weight";
  case Role::SharedDown: return shared + "down_proj.weight";
  case Role::SharedExpertGate: return moe + "shared_expert_gate.weight";
  case Role::MLAQ: return attn + "q_proj.weight";
  case Role::MLAQA: return attn + "q_a_proj.weight";
  case Role::MLAQANorm: return attn + "q_a_layernorm.weight";
  case Role::MLAQB: return attn + "q_b_proj.weight";
  case Role::MLAKVA: return attn + "kv_a_proj_with_mqa.weight";
  case Role::MLAKVANorm: return attn + "kv_a_layernorm.weight";
  case Role::MLAKVB: return attn + "kv_b_proj.weight";
  case Role::MLAKB:
  case Role::MLAVB:
    break;
  }
  return p + "?";
}

constexpr const char *kWeightTypeNames = "f32, bf16, f16, q8_0, q4_k, q6_k, int4, fp8";

bool isWeightTypeName(StringRef type) {
  return is_contained({"f32", "bf16", "f16", "q8_0", "q4_k", "q6_k", "int4", "fp8"}, type);
}

Error parseWeightTypeOverrides(StringRef text,
                               std::vector<std::pair<Regex, std::string>> &overrides) {
  SmallVector<StringRef> entries;
  text.split(entries, ',', -1, /*KeepEmpty=*/false);
  for (StringRef entry : entries) {
    auto [pattern, type] = entry.rsplit('=');
    auto error = [&](const Twine &message) {
      return createStringError(inconvertibleErrorCode(),
                               "--weight-type-override '" + entry + "': " + message);
    };
    if (pattern.empty() || type.empty())
      return error("expected <regex>=<type>");
    if (!isWeightTypeName(type))
      return error("type '" + type + "' is not one of " + kWeightTypeNames);
    Regex regex(pattern);
    std::string why;
    if (!regex.isValid(why))
      return error("invalid regex: " + why);
    overrides.emplace_back(std::move(regex), type.str());
  }
  return Error::success();
}

/// Gives each op inserted while building a decoder layer that layer's number.
class LayerListener : public OpBuilder::Listener {
public:
  explicit LayerListener(int64_t layer) : layer(layer) {}
  void notifyOperationInserted(Operation *op, OpBuilder::InsertPoint) override {
    if (!matchPattern(op, m_Constant()))
      attrs::setLayer(op, layer);
  }

private:
  int64_t layer;
};

class ModelBuilder {
public:
  ModelBuilder(MLIRContext &context, const ModelConfig &config,
               WeightStore &store, Format format, StringRef source,
               StringRef configSource, const ImportOptions &options)
      : ctx(context), b(&context), loc(UnknownLoc::get(&context)), c(config),
        store(store), format(format), source(source),
        configSource(configSource), capacity(options.cacheCapacity),
        requestedWeightType(options.weightType) {
    // importModel checked the overrides.
    cantFail(parseWeightTypeOverrides(options.weightTypeOverrides, overrides));
    // Named locations (layer by layer, below) tell diagnostics where an op
    // came from; a file:line location would mean nothing for a checkpoint.
    loc = NameLoc::get(StringAttr::get(&context, source));
  }

  Expected<OwningOpRef<ModuleOp>> build();

private:
  // Weights. A failed lookup records the error and returns a null Value;
  // callers stop at the first one.
  Value weight(StringRef name, ArrayRef<int64_t> shape);
  Value layerWeight(Role role, int64_t layer, ArrayRef<int64_t> shape,
                    bool bias = false) {
    return weight(weightName(format, c.family, role, layer, -1, bias), shape);
  }
  Value experts(Role role, int64_t layer, ArrayRef<int64_t> shape);
  FailureOr<double> scalar(StringRef name);
  /// The stored tensor behind weight `name` of logical `shape` (an AWQ/GPTQ
  /// checkpoint stores `<module>.qweight` instead of `<module>.weight`), its
  /// IR type and the name of its scale tensor (empty if none).
  struct Resolved {
    std::string name, scaleName;
    Type type;
    /// Act-order GPTQ: the input order tensor its input is gathered by
    /// (empty: none).
    std::string order;
  };
  std::optional<Resolved> resolve(StringRef name, ArrayRef<int64_t> shape);
  Type weightType(const TensorInfo &info, StringRef &scaleName, std::string &scaleStorage);
  /// `group` 0: quantization_config's group_size.
  Type int4Type(const TensorInfo &qweight, ArrayRef<int64_t> shape, std::string &scaleName,
                int64_t group = 0);
  /// compressed-tensors' pack-quantized `<module>.weight_packed` (4- or
  /// 8-bit codes, quantization_config's num_bits).
  Type packedIntType(const TensorInfo &packed, ArrayRef<int64_t> shape, std::string &scaleName);

  // Act-order GPTQ (desc_act): `<base>.g_idx` puts input k in group
  // g_idx[k], and a group's inputs are not contiguous. MoIR sorts each
  // weight's inputs by group (addSortedGPTQ: derived tensors
  // `<base>.act_order.*`, made while the artifact is written) and gathers
  // the activations by the same order in front of it (llm.permute; moe
  // input_order for experts, whose gate/up rows take their down
  // projection's input order, so the FFN's hidden units come out in the
  // order down reads them).
  FailureOr<GPTQGroupOrder> groupOrder(const TensorInfo &qweight, int64_t rows, int64_t cols) {
    Expected<GPTQGroupOrder> order = readGPTQGroupOrder(store, qweight, rows, cols);
    if (!order)
      return fail(order.takeError()), failure();
    return std::move(*order);
  }
  /// The GPTQ weight `qweight` of logical `shape` read from its sorted form
  /// (addSortedGPTQ), output rows in `rowOrder` (empty: as stored).
  FailureOr<Resolved> sortedInt4(const TensorInfo &qweight, ArrayRef<int64_t> shape,
                                 const GPTQGroupOrder &in, ArrayRef<int32_t> rowOrder) {
    Expected<std::string> name = addSortedGPTQ(store, qweight, shape[0], shape[1], in, rowOrder);
    if (!name)
      return fail(name.takeError()), failure();
    StringRef base = StringRef(qweight.name).drop_back(strlen(".qweight"));
    for (StringRef part : {".qweight", ".scales", ".qzeros", ".g_idx"})
      used.insert((base + part).str());
    Resolved resolved;
    resolved.name = *name;
    resolved.type = int4Type(*store.lookup(*name), shape, resolved.scaleName, 32);
    if (!resolved.type)
      return failure();
    return resolved;
  }
  /// The name of a derived I32 [n] tensor holding `order`, `name`; with
  /// `shared`, the first such tensor of the same order when there is one
  /// (q/k/v of a layer read one). Empty after an error (a checkpoint tensor
  /// of that name).
  std::string orderTensor(ArrayRef<int32_t> order, unsigned file, std::string name,
                          bool shared);
  /// Layer l's experts under act-order GPTQ: prepares their sorted tensors
  /// (resolve() then reads them) and returns their stacked gate/up input
  /// order ([E, hidden] i32), or a null Value when no expert reads its
  /// inputs out of order; failure after an error.
  FailureOr<Value> actOrderExperts(int64_t l, int64_t E, int64_t I, int64_t hidden);
  /// `<module>.weight` -> its act-order sorted form (resolve() reads it).
  llvm::StringMap<Resolved> actOrdered;
  std::map<std::vector<int32_t>, std::string> sharedOrders;
  /// Weights whose linear gathers its input: the weight -> the order.
  llvm::DenseMap<Value, Value> inputOrders;
  /// Checks that each act-order weight is read by a linear whose input is
  /// gathered by its order.
  Error checkActOrderUses();
  /// W8A8 (compressed-tensors input_activations): the quantization in front
  /// of the weights the checkpoint stores quantized.
  std::optional<llm::DynamicQuant> activationQuant() const {
    return llm::symbolizeDynamicQuant(c.quantization.activations);
  }
  /// Whether `w` is stored quantized in the checkpoint (it names a scale
  /// tensor), as opposed to a float weight or one --weight-type quantizes.
  static bool checkpointQuantized(Value w) {
    if (auto op = w.getDefiningOp<llm::WeightOp>())
      return op.getScaleName().has_value();
    if (auto op = w.getDefiningOp<llm::StackedWeightOp>())
      return op.getScaleNames().has_value();
    return false;
  }
  /// Checks that each W8A8 weight is read by a linear or the routed experts,
  /// which quantize its input.
  Error checkActivationQuantUses(ModuleOp module);
  /// The type a float matrix gets under --weight-type and its overrides.
  Type floatWeightType(const TensorInfo &info, Type stored);
  Value fail(Error err) {
    if (!firstError)
      firstError = std::move(err);
    else
      consumeError(std::move(err));
    return nullptr;
  }

  // Activations.
  RankedTensorType act(ArrayRef<int64_t> shape) {
    return RankedTensorType::get(shape, b.getF32Type());
  }
  Value linear(Value x, Value w, Value bias = nullptr) {
    if (Value order = inputOrders.lookup(w))
      x = llm::PermuteOp::create(b, loc, x.getType(), x, order);
    // W8A8: the input quantized as the checkpoint says; int8 codes times a
    // scale are products the kernels must not round again (precise: the
    // CPU's int8 dot products would requantize them in blocks of 32).
    std::optional<llm::DynamicQuant> quant = activationQuant();
    if (!checkpointQuantized(w))
      quant = std::nullopt;
    if (quant && c.quantization.staticActivations) {
      // The calibrated scale beside the weight: `<module>.input_scale`.
      StringRef name = w.getDefiningOp<llm::WeightOp>().getName();
      if (!name.consume_back(".weight"))
        return fail(fileError(source, "tensor '" + name + "' has static activation scales "
                                      "(quantization_config input_activations) but is not "
                                      "a '<module>.weight'"));
      Value scale = weight((name + ".input_scale").str(), {1});
      if (!scale)
        return nullptr;
      x = llm::StaticQuantOp::create(b, loc, x.getType(), *quant, x, scale);
    } else {
      x = llm::quantizeRows(b, loc, x, quant);
    }
    return llm::createLinearOnQuantized(b, loc, x, w, quant, bias);
  }
  Value rmsNorm(Value x, Value w) {
    return llm::RMSNormOp::create(
        b, loc, x.getType(), x, w, b.getF64FloatAttr(c.rmsNormEps),
        c.normWeightOffset != 0.0 ? b.getF64FloatAttr(c.normWeightOffset) : FloatAttr());
  }
  /// Whether layer `l` attends within the sliding window only.
  bool sliding(int64_t l) const {
    return c.slidingWindow && (c.slidingLayers.empty() || c.slidingLayers[l]);
  }
  Value splitHeads(Value x, int64_t heads, int64_t dim);
  Value mergeHeads(Value x);
  llm::RopeAttr ropeAttr(const RopeConfig &rope, int64_t dim);
  llm::RopeAttr ropeAttr(int64_t dim) { return ropeAttr(c.rope, dim); }
  Value splitKVB(int64_t l);

  FailureOr<std::pair<Value, SmallVector<Value>>> attention(int64_t l, Value n,
                                                            ArrayRef<Value> caches);
  FailureOr<Value> ffn(int64_t l, Value n);

  MLIRContext &ctx;
  OpBuilder b;
  Location loc;
  const ModelConfig &c;
  WeightStore &store;
  Format format;
  std::string source, configSource;
  int64_t capacity;
  std::string requestedWeightType;
  std::vector<std::pair<Regex, std::string>> overrides;
  Error firstError = Error::success();
  Value tokens, positions, offset;
  llvm::StringMap<Value> weights;
  /// Tensors read other than as weights (scales, scalars).
  llvm::StringSet<> used;
};

/// llama.cpp keeps the MoE router (and Qwen2-MoE's shared-expert gate) in
/// float: a few small matrices whose errors change which experts run.
static bool isRouter(StringRef name) {
  return name.ends_with("mlp.gate.weight") || name.ends_with("block_sparse_moe.gate.weight") ||
         name.contains("ffn_gate_inp") || name.ends_with("shared_expert_gate.weight");
}

Type ModelBuilder::floatWeightType(const TensorInfo &info, Type stored) {
  ArrayRef<int64_t> shape = info.shape;
  std::string requested = requestedWeightType;
  bool overridden = false;
  for (auto &[pattern, type] : overrides)
    if (pattern.match(info.name)) {
      requested = type;
      overridden = true;
      break;
    }
  if (shape.size() < 2 || requested.empty())
    return RankedTensorType::get(shape, stored);
  if (requested == "bf16")
    return RankedTensorType::get(shape, b.getBF16Type());
  if (requested == "f16")
    return RankedTensorType::get(shape, b.getF16Type());
  if (requested == "f32")
    return RankedTensorType::get(shape, b.getF32Type());
  // Float conversions apply to the router too (as before); quantization
  // does not, unless an override names it.
  if (isRouter(info.name) && !overridden)
    return RankedTensorType::get(shape, stored);
  MLIRContext *context = &ctx;
  int64_t cols = shape.back();
  auto gguf = [&](llm::GGUFBlockType format, unsigned bits) -> Type {
    auto scheme = llm::QuantSchemeAttr::get(context, llm::QuantKind::gguf, {}, -1, 0, false,
                                            format, Type());
    return llm::QTensorType::get(context, shape, IntegerType::get(context, bits), scheme);
  };
  // K-quants need rows of 256; like llama.cpp, narrower matrices fall back
  // to Q8_0 (rows of 32), and those narrower still stay float.
  if ((requested == "q4_k" || requested == "q6_k") && cols % 256 == 0)
    return requested == "q4_k" ? gguf(llm::GGUFBlockType::q4_k, 4)
                               : gguf(llm::GGUFBlockType::q6_k, 6);
  if (requested == "q4_k" || requested == "q6_k" || requested == "q8_0")
    return cols % 32 == 0 ? gguf(llm::GGUFBlockType::q8_0, 8)
                          : RankedTensorType::get(shape, stored);
  if (requested == "int4") {
    if (cols % 32 != 0)
      return RankedTensorType::get(shape, stored);
    auto scheme = llm::QuantSchemeAttr::get(context, llm::QuantKind::group, {}, -1, 32, true,
                                            llm::GGUFBlockType::none, Type());
    return llm::QTensorType::get(context, shape, IntegerType::get(context, 4), scheme);
  }
  // fp8: one scale per row (of each matrix of a stack).
  auto scheme = llm::QuantSchemeAttr::get(context, llm::QuantKind::per_channel, {},
                                          shape.size() - 2, 0, false,
                                          llm::GGUFBlockType::none, Type());
  return llm::QTensorType::get(context, shape, Float8E4M3FNType::get(context), scheme);
}

Type ModelBuilder::int4Type(const TensorInfo &qweight, ArrayRef<int64_t> shape,
                            std::string &scaleName, int64_t groupSize) {
  // AWQ stores [inputs, outputs / 8], GPTQ [inputs / 8, outputs], 8 nibbles
  // per int32; the packer reads both (Quantization.cpp).
  const QuantizationConfig &q = c.quantization;
  bool awq = q.method == "awq";
  int64_t rows = shape[0], cols = shape[1];
  SmallVector<int64_t> expected = awq ? SmallVector<int64_t>{cols, rows / 8}
                                      : SmallVector<int64_t>{cols / 8, rows};
  StringRef file = store.getFilePath(qweight.file);
  if (qweight.dtype != DType::I32 || rows % 8 != 0 || cols % 8 != 0 ||
      ArrayRef<int64_t>(qweight.shape) != ArrayRef<int64_t>(expected))
    return fail(fileError(file, "tensor '" + qweight.name + "' (" +
                                    stringifyDType(qweight.dtype) + " " +
                                    shapeString(qweight.shape) + ") must be I32 " +
                                    shapeString(expected) + " for the " + q.method +
                                    " weight " + shapeString(shape))),
           Type();
  int64_t group = groupSize ? groupSize : q.groupSize == -1 ? cols : q.groupSize;
  if (group <= 0 || cols % group != 0 || group % 32 != 0)
    return fail(fileError(file, "tensor '" + qweight.name + "': " + Twine(cols) +
                                    " inputs do not split into groups of " + Twine(group) +
                                    " (quantization_config.group_size), a multiple of 32")),
           Type();
  StringRef base = StringRef(qweight.name).drop_back(strlen(".qweight"));
  scaleName = (base + ".scales").str();
  if (!store.lookup(scaleName) || !store.lookup((base + ".qzeros").str()))
    return fail(fileError(file, "tensor '" + qweight.name + "' has no '" + base +
                                    ".scales' or '" + base + ".qzeros'")),
           Type();
  auto scheme = llm::QuantSchemeAttr::get(&ctx, llm::QuantKind::group, {}, -1, group, true,
                                          llm::GGUFBlockType::none, b.getF16Type());
  return llm::QTensorType::get(&ctx, shape, IntegerType::get(&ctx, 4), scheme);
}

std::string ModelBuilder::orderTensor(ArrayRef<int32_t> order, unsigned file, std::string name,
                                      bool shared) {
  std::vector<int32_t> key(order.begin(), order.end());
  if (shared) {
    auto [it, added] = sharedOrders.try_emplace(key, name);
    if (!added)
      return it->second;
  }
  if (const TensorInfo *known = store.lookup(name)) {
    if (known->derived >= 0)
      return name;
    fail(fileError(store.getFilePath(known->file),
                   "the checkpoint has a tensor '" + name + "', the name of an act-order "
                   "input order MoIR derives"));
    return "";
  }
  TensorInfo info;
  info.name = name;
  info.dtype = DType::I32;
  info.shape = {static_cast<int64_t>(order.size())};
  info.file = file;
  info.bytes = 4 * order.size();
  cantFail(store.addDerivedTensor(std::move(info), [key](MutableArrayRef<uint8_t> out) {
    std::memcpy(out.data(), key.data(), out.size());
  }));
  return name;
}

FailureOr<Value> ModelBuilder::actOrderExperts(int64_t l, int64_t E, int64_t I, int64_t hidden) {
  if (format != Format::HF || c.quantization.method != "gptq")
    return Value();
  struct Expert {
    std::string names[3];
    const TensorInfo *qweights[3];
    GPTQGroupOrder orders[3];
  };
  std::vector<Expert> all(E);
  const Role roles[3] = {Role::ExpertGate, Role::ExpertUp, Role::ExpertDown};
  const int64_t rowsOf[3] = {I, I, hidden}, colsOf[3] = {hidden, hidden, I};
  bool any = false, gathered = false;
  for (int64_t e = 0; e < E; ++e)
    for (int r = 0; r < 3; ++r) {
      Expert &x = all[e];
      x.names[r] = weightName(format, c.family, roles[r], l, e);
      std::string qname = StringRef(x.names[r]).drop_back(strlen("weight")).str() + "qweight";
      x.qweights[r] = store.lookup(qname);
      // resolve() reports what is missing or malformed.
      if (!x.qweights[r] || store.lookup(x.names[r]) ||
          !store.lookup(StringRef(qname).drop_back(strlen("qweight")).str() + "g_idx") ||
          ArrayRef<int64_t>(x.qweights[r]->shape) != ArrayRef<int64_t>{colsOf[r] / 8, rowsOf[r]})
        return Value();
      FailureOr<GPTQGroupOrder> order = groupOrder(*x.qweights[r], rowsOf[r], colsOf[r]);
      if (failed(order))
        return failure();
      x.orders[r] = std::move(*order);
      any |= !x.orders[r].trivial;
      gathered |= r < 2 && !x.orders[r].trivial;
    }
  if (!any)
    return Value();
  SmallVector<Attribute> orderNames;
  for (int64_t e = 0; e < E; ++e) {
    Expert &x = all[e];
    if (x.orders[0].trivial != x.orders[1].trivial || x.orders[0].order != x.orders[1].order)
      return fail(fileError(store.getFilePath(x.qweights[1]->file),
                            "act-order experts: '" + x.qweights[0]->name + "' and '" +
                                x.qweights[1]->name +
                                "' have different g_idx; MoIR gathers one input order per "
                                "expert (GPTQ quantizes both from the same inputs, so their "
                                "orders agree)")),
             failure();
    for (int r = 0; r < 3; ++r) {
      FailureOr<Resolved> resolved =
          sortedInt4(*x.qweights[r], {rowsOf[r], colsOf[r]}, x.orders[r],
                     r < 2 ? ArrayRef<int32_t>(x.orders[2].order) : ArrayRef<int32_t>());
      if (failed(resolved))
        return failure();
      actOrdered[x.names[r]] = *resolved;
    }
    if (gathered) {
      std::string base = StringRef(x.qweights[0]->name).drop_back(strlen(".qweight")).str();
      std::string name = orderTensor(x.orders[0].order, x.qweights[0]->file,
                                     base + ".act_order.order", /*shared=*/false);
      if (name.empty())
        return failure();
      orderNames.push_back(b.getStringAttr(name));
    }
  }
  if (!gathered)
    return Value();
  return llm::StackedWeightOp::create(b, loc, RankedTensorType::get({E, hidden}, b.getI32Type()),
                                      b.getArrayAttr(orderNames), ArrayAttr())
      .getResult();
}

Error ModelBuilder::checkActOrderUses() {
  for (auto [weight, order] : inputOrders)
    for (Operation *user : weight.getUsers()) {
      auto linear = dyn_cast<llm::LinearOp>(user);
      auto permute = linear ? linear.getInput().getDefiningOp<llm::PermuteOp>() : nullptr;
      if (permute && permute.getOrder() == order && linear.getWeight() == weight)
        continue;
      return fileError(source, "tensor '" +
                                   weight.getDefiningOp<llm::WeightOp>().getName() +
                                   "' is an act-order GPTQ weight (its g_idx is not k / "
                                   "group_size), which MoIR reads in linear projections and "
                                   "routed experts only, not in '" +
                                   user->getName().getStringRef() + "'");
    }
  return Error::success();
}

Error ModelBuilder::checkActivationQuantUses(ModuleOp module) {
  if (!activationQuant())
    return Error::success();
  auto nameOf = [](Operation *op) -> StringRef {
    if (auto weight = dyn_cast<llm::WeightOp>(op))
      return weight.getName();
    return cast<StringAttr>(cast<llm::StackedWeightOp>(op).getNames()[0]).getValue();
  };
  auto fail = [&](Operation *weightOp, const Twine &message) {
    StringRef name = nameOf(weightOp);
    const TensorInfo *info = store.lookup(name);
    return fileError(info ? store.getFilePath(info->file) : source,
                     "tensor '" + name + "' " + message);
  };
  // The ops that quantize the inputs of all their projections (the routed
  // and shared experts, MLA's five projections) need all of them stored
  // quantized: a float one would multiply quantized inputs the reference
  // does not quantize.
  auto allQuantized = [&](Operation *user, ValueRange weights) -> Error {
    for (Value w : weights)
      if (w && !checkpointQuantized(w) && w.getDefiningOp())
        return fail(w.getDefiningOp(),
                    "is not quantized, while the other projections of its '" +
                        user->getName().getStringRef() +
                        "' are W8A8 (quantization_config input_activations): MoIR "
                        "quantizes the inputs of all of them or of none");
    return Error::success();
  };
  Error err = Error::success();
  module.walk([&](Operation *op) {
    if (auto layer = dyn_cast<moe::LayerOp>(op); layer && layer.getActivationQuant()) {
      err = allQuantized(op, {layer.getGate(), layer.getUp(), layer.getDown(),
                              layer.getSharedGateProj(), layer.getSharedUpProj(),
                              layer.getSharedDownProj()});
      return err ? WalkResult::interrupt() : WalkResult::advance();
    }
    if (auto mla = dyn_cast<mla::AttentionOp>(op); mla && mla.getActivationQuant()) {
      err = allQuantized(op, {mla.getQProj(), mla.getQAProj(), mla.getQBProj(), mla.getKvAProj(),
                              mla.getKvBProj(), mla.getOProj()});
      return err ? WalkResult::interrupt() : WalkResult::advance();
    }
    if (!isa<llm::WeightOp, llm::StackedWeightOp>(op) || !checkpointQuantized(op->getResult(0)))
      return WalkResult::advance();
    Value w = op->getResult(0);
    for (Operation *user : w.getUsers()) {
      auto linear = dyn_cast<llm::LinearOp>(user);
      if (linear && linear.getWeight() == w &&
          (linear.getInput().getDefiningOp<llm::DynamicQuantOp>() ||
           linear.getInput().getDefiningOp<llm::StaticQuantOp>()))
        continue;
      auto layer = dyn_cast<moe::LayerOp>(user);
      if (layer && layer.getActivationQuant() &&
          llvm::is_contained(ValueRange{layer.getGate(), layer.getUp(), layer.getDown(),
                                        layer.getSharedGateProj(), layer.getSharedUpProj(),
                                        layer.getSharedDownProj()},
                             w))
        continue;
      auto mla = dyn_cast<mla::AttentionOp>(user);
      if (mla && mla.getActivationQuant() && w != mla.getQANorm() && w != mla.getKvANorm())
        continue;
      err = fail(op, "is quantized with W8A8 activation quantization (quantization_config "
                     "input_activations), which MoIR applies to the inputs of linear "
                     "projections, MLA's projections and the routed and shared experts, not "
                     "of '" + user->getName().getStringRef() + "'" +
                     (layer ? " (the router or the shared expert's gate)" : ""));
      return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  return err;
}

Type ModelBuilder::packedIntType(const TensorInfo &packed, ArrayRef<int64_t> shape,
                                 std::string &scaleName) {
  const QuantizationConfig &q = c.quantization;
  int64_t rows = shape[0], cols = shape[1];
  StringRef file = store.getFilePath(packed.file);
  std::string base = StringRef(packed.name).drop_back(strlen("_packed")).str();
  auto error = [&](const Twine &message) {
    return fail(fileError(file, message)), Type();
  };
  int64_t perWord = 32 / q.bits;
  if (packed.dtype != DType::I32 || cols % 32 != 0 ||
      ArrayRef<int64_t>(packed.shape) != ArrayRef<int64_t>{rows, cols / perWord})
    return error("tensor '" + packed.name + "' (" + stringifyDType(packed.dtype) + " " +
                 shapeString(packed.shape) + ") must be I32 [" + Twine(rows) + ", " +
                 Twine(cols / perWord) + "] (" + Twine(q.bits) + "-bit codes, " +
                 Twine(perWord) + " a word) for the weight " + shapeString(shape) +
                 ", whose " + Twine(cols) + " inputs must be a multiple of 32");
  int64_t group = q.groupSize == -1 ? cols : q.groupSize;
  int64_t groups = cols % group == 0 ? cols / group : 0;
  const TensorInfo *scale = store.lookup(base + "_scale");
  if (!groups || group % 32 != 0)
    return error("tensor '" + packed.name + "': " + Twine(cols) +
                 " inputs do not split into groups of " + Twine(group) + ", a multiple of 32");
  if (!scale || ArrayRef<int64_t>(scale->shape) != ArrayRef<int64_t>{rows, groups} ||
      !is_contained({DType::F32, DType::F16, DType::BF16}, scale->dtype))
    return error("tensor '" + packed.name + "' needs a scale tensor '" + base +
                 "_scale' (F32, F16 or BF16 [" + Twine(rows) + ", " + Twine(groups) + "])");
  const TensorInfo *zero = store.lookup(base + "_zero_point");
  if (q.symmetric && zero)
    return error("tensor '" + base + "_zero_point' is stored, but quantization_config says the "
                 "weights are symmetric");
  if (!q.symmetric && !zero)
    return error("tensor '" + packed.name + "' has no '" + base +
                 "_zero_point', which asymmetric weights need");
  // weight_shape, when stored, must be the logical shape.
  if (const TensorInfo *stored = store.lookup(base + "_shape")) {
    ArrayRef<uint8_t> bytes = store.getData(*stored);
    bool ok = stored->dtype == DType::I64 && stored->getNumElements() == 2 && bytes.size() == 16;
    int64_t dims[2] = {0, 0};
    if (ok)
      std::memcpy(dims, bytes.data(), 16);
    if (!ok || dims[0] != rows || dims[1] != cols)
      return error("tensor '" + base + "_shape' must be I64 [2] holding " + shapeString(shape));
    used.insert(stored->name);
  }
  scaleName = base + "_scale";
  if (zero)
    used.insert(zero->name);
  Type scaleType = scale->dtype == DType::F16    ? Type(b.getF16Type())
                   : scale->dtype == DType::BF16 ? Type(b.getBF16Type())
                                                 : Type(b.getF32Type());
  // Symmetric 8-bit with one scale per row is INT8 per channel (the
  // int-quantized form's); the rest keeps groups with offsets.
  if (q.bits == 8 && groups == 1 && !zero) {
    auto scheme = llm::QuantSchemeAttr::get(&ctx, llm::QuantKind::per_channel, {}, 0, 0, false,
                                            llm::GGUFBlockType::none, Type());
    return llm::QTensorType::get(&ctx, shape, b.getI8Type(), scheme);
  }
  auto scheme = llm::QuantSchemeAttr::get(&ctx, llm::QuantKind::group, {}, -1, group, true,
                                          llm::GGUFBlockType::none, scaleType);
  return llm::QTensorType::get(&ctx, shape, IntegerType::get(&ctx, q.bits), scheme);
}

Type ModelBuilder::weightType(const TensorInfo &info, StringRef &scaleName,
                              std::string &scaleStorage) {
  MLIRContext *context = &ctx;
  auto ggufType = [&](llm::GGUFBlockType format, unsigned bits) -> Type {
    auto scheme = llm::QuantSchemeAttr::get(context, llm::QuantKind::gguf, {}, -1, 0,
                                            false, format, Type());
    return llm::QTensorType::get(context, info.shape,
                                 IntegerType::get(context, bits), scheme);
  };
  auto channelScale = [&](StringRef what) -> Type {
    // One scale per output row in <name>_scale: INT8 ([rows]) and fbgemm's
    // FP8 / compressed-tensors' weight_scale ([rows, 1]).
    scaleStorage = info.name + "_scale";
    const TensorInfo *scale = store.lookup(scaleStorage);
    int64_t rows = info.getNumElements() / info.shape.back();
    // compressed-tensors' per-tensor scale (strategy "tensor", the FP8
    // preset): one value for every row, repeated into a derived per-row
    // scale tensor of the same dtype (exact).
    if (scale && scale->getNumElements() == 1 && rows > 1 &&
        is_contained({DType::F32, DType::BF16, DType::F16}, scale->dtype)) {
      std::string perRow = perRowScaleName(scaleStorage);
      if (!store.lookup(perRow)) {
        TensorInfo derived;
        derived.name = perRow;
        derived.dtype = scale->dtype;
        derived.shape = {rows, 1};
        derived.file = scale->file;
        int64_t width = getBlockBytes(scale->dtype);
        derived.bytes = static_cast<uint64_t>(rows * width);
        auto produce = [&store = store, one = *scale, width](MutableArrayRef<uint8_t> out) {
          ArrayRef<uint8_t> value = store.getData(one).take_front(width);
          for (size_t i = 0; i < out.size(); i += width)
            std::memcpy(&out[i], value.data(), width);
        };
        if (Error err = store.addDerivedTensor(std::move(derived), produce))
          return fail(std::move(err)), Type();
      }
      used.insert(scaleStorage);
      scaleStorage = perRow;
      scale = store.lookup(perRow);
    }
    if (!scale ||
        !is_contained({DType::F32, DType::BF16, DType::F16}, scale->dtype) ||
        scale->getNumElements() != rows)
      return fail(fileError(store.getFilePath(info.file),
                            what + " tensor '" + info.name +
                                "' needs an F32 (or BF16/F16) scale tensor '" + scaleStorage +
                                "' with one value per row")),
             Type();
    auto scheme = llm::QuantSchemeAttr::get(context, llm::QuantKind::per_channel, {},
                                            info.shape.size() - 2, 0, false,
                                            llm::GGUFBlockType::none, Type());
    scaleName = scaleStorage;
    Type storage = what == "I8" ? Type(b.getI8Type()) : Type(Float8E4M3FNType::get(context));
    return llm::QTensorType::get(context, info.shape, storage, scheme);
  };
  switch (info.dtype) {
  case DType::F32: return floatWeightType(info, b.getF32Type());
  case DType::F16: return floatWeightType(info, b.getF16Type());
  case DType::BF16: return floatWeightType(info, b.getBF16Type());
  case DType::Q8_0: return ggufType(llm::GGUFBlockType::q8_0, 8);
  case DType::Q4_0: return ggufType(llm::GGUFBlockType::q4_0, 4);
  case DType::Q4_1: return ggufType(llm::GGUFBlockType::q4_1, 4);
  case DType::Q5_0: return ggufType(llm::GGUFBlockType::q5_0, 5);
  case DType::Q5_1: return ggufType(llm::GGUFBlockType::q5_1, 5);
  case DType::Q4_K: return ggufType(llm::GGUFBlockType::q4_k, 4);
  case DType::Q5_K: return ggufType(llm::GGUFBlockType::q5_k, 5);
  case DType::Q6_K: return ggufType(llm::GGUFBlockType::q6_k, 6);
  case DType::F8E4M3: {
    // fbgemm_fp8: one scale per row in <name>_scale.
    if (c.quantization.method == "fbgemm_fp8" ||
        (!store.lookup(info.name + "_scale_inv") && store.lookup(info.name + "_scale")))
      return channelScale("FP8");
    // DeepSeek-V3 FP8: one f32 scale per 128x128 tile in <name>_scale_inv.
    scaleStorage = info.name + "_scale_inv";
    const TensorInfo *scale = store.lookup(scaleStorage);
    SmallVector<int64_t> block(info.shape.size(), 128);
    if (info.shape.size() == 3)
      block[0] = 1;
    auto scheme = llm::QuantSchemeAttr::get(context, llm::QuantKind::block, block,
                                            -1, 0, false, llm::GGUFBlockType::none,
                                            Type());
    auto type = llm::QTensorType::get(context, info.shape,
                                      Float8E4M3FNType::get(context), scheme);
    SmallVector<int64_t> expected = *type.getScaleShape();
    if (!scale)
      return fail(fileError(store.getFilePath(info.file),
                            "FP8 tensor '" + info.name + "' has no scale tensor '" +
                                scaleStorage + "'")),
             Type();
    if (scale->dtype != DType::F32 || ArrayRef<int64_t>(scale->shape) != ArrayRef<int64_t>(expected))
      return fail(fileError(store.getFilePath(scale->file),
                            "scale tensor '" + scaleStorage + "' must be F32 " +
                                shapeString(expected) + " (128x128 blocks of " +
                                shapeString(info.shape) + "), got " +
                                stringifyDType(scale->dtype) + " " +
                                shapeString(scale->shape))),
             Type();
    scaleName = scaleStorage;
    return type;
  }
  case DType::I8:
    return channelScale("I8");
  default:
    return fail(fileError(store.getFilePath(info.file),
                          "tensor '" + info.name + "' has dtype " +
                              stringifyDType(info.dtype) +
                              ", which is not a weight format")),
           Type();
  }
}

std::optional<ModelBuilder::Resolved> ModelBuilder::resolve(StringRef name,
                                                            ArrayRef<int64_t> shape) {
  Resolved result;
  result.name = name.str();
  const TensorInfo *info = store.lookup(name);
  StringRef method = c.quantization.method;
  // AWQ/GPTQ store `<module>.qweight` and compressed-tensors' packed format
  // `<module>.weight_packed` where a float checkpoint has `<module>.weight`.
  bool int4 = method == "awq" || method == "gptq";
  bool packed = method == "compressed-tensors" && c.quantization.format == "pack-quantized";
  if (!info && (int4 || packed) && shape.size() == 2 && name.ends_with(".weight")) {
    if (auto it = actOrdered.find(name); it != actOrdered.end())
      return it->second;
    result.name = int4 ? (name.drop_back(strlen("weight")) + "qweight").str()
                       : (name + "_packed").str();
    const TensorInfo *stored = store.lookup(result.name);
    if (!stored)
      return fail(fileError(source, "missing tensor '" + name + "' (nor '" + result.name +
                                        "')")),
             std::nullopt;
    if (method == "gptq" && store.lookup((name.drop_back(strlen("weight")) + "g_idx").str())) {
      // Act-order: read the sorted form and gather the input.
      FailureOr<GPTQGroupOrder> in = groupOrder(*stored, shape[0], shape[1]);
      if (failed(in))
        return std::nullopt;
      if (!in->trivial) {
        FailureOr<Resolved> sorted = sortedInt4(*stored, shape, *in, {});
        if (failed(sorted))
          return std::nullopt;
        sorted->order =
            orderTensor(in->order, stored->file,
                        StringRef(sorted->name).drop_back(strlen("qweight")).str() + "order",
                        /*shared=*/true);
        if (sorted->order.empty())
          return std::nullopt;
        actOrdered[name] = *sorted;
        return *sorted;
      }
    }
    result.type = packed ? packedIntType(*stored, shape, result.scaleName)
                         : int4Type(*stored, shape, result.scaleName);
    if (!result.type)
      return std::nullopt;
    return result;
  }
  if (!info)
    return fail(fileError(source, "missing tensor '" + name + "'")), std::nullopt;
  if (ArrayRef<int64_t>(info->shape) != shape)
    return fail(fileError(store.getFilePath(info->file),
                          "tensor '" + name + "' (" + stringifyDType(info->dtype) +
                              ") has shape " + shapeString(info->shape) + ", but " +
                              configSource + " implies " + shapeString(shape))),
           std::nullopt;
  StringRef scaleName;
  std::string scaleStorage;
  result.type = weightType(*info, scaleName, scaleStorage);
  if (!result.type)
    return std::nullopt;
  result.scaleName = scaleName.str();
  return result;
}

Value ModelBuilder::weight(StringRef name, ArrayRef<int64_t> shape) {
  // One reference per tensor: tied embeddings read the same value.
  if (Value known = weights.lookup(name))
    return known;
  std::optional<Resolved> resolved = resolve(name, shape);
  if (!resolved)
    return nullptr;
  if (shape.size() == 1 && !isa<RankedTensorType>(resolved->type))
    return fail(fileError(store.getFilePath(store.lookup(resolved->name)->file),
                          "tensor '" + name + "' is a vector and must be stored as a float"));
  Value result = llm::WeightOp::create(
      b, loc, resolved->type, b.getStringAttr(resolved->name),
      resolved->scaleName.empty() ? StringAttr() : b.getStringAttr(resolved->scaleName));
  weights[name] = result;
  if (!resolved->order.empty()) {
    Value order = weights.lookup(resolved->order);
    if (!order) {
      order = llm::WeightOp::create(b, loc, RankedTensorType::get({shape.back()}, b.getI32Type()),
                                    b.getStringAttr(resolved->order), StringAttr());
      weights[resolved->order] = order;
    }
    inputOrders[result] = order;
  }
  used.insert(resolved->name);
  if (!resolved->scaleName.empty())
    used.insert(resolved->scaleName);
  return result;
}

/// The type of a stack of `shape[0]` matrices each of type `matrix`.
static Type stackedType(Type matrix, ArrayRef<int64_t> shape) {
  auto q = dyn_cast<llm::QTensorType>(matrix);
  if (!q)
    return RankedTensorType::get(shape, cast<RankedTensorType>(matrix).getElementType());
  llm::QuantSchemeAttr s = q.getScheme();
  SmallVector<int64_t> block(s.getBlock());
  if (!block.empty())
    block.insert(block.begin(), 1);
  int64_t axis = s.getAxis() >= 0 ? s.getAxis() + 1 : s.getAxis();
  auto scheme = llm::QuantSchemeAttr::get(matrix.getContext(), s.getKind(), block, axis,
                                          s.getGroup(), s.getZeroPoint(), s.getFormat(),
                                          s.getScale());
  return llm::QTensorType::get(matrix.getContext(), shape, q.getStorageType(), scheme);
}

Value ModelBuilder::experts(Role role, int64_t layer, ArrayRef<int64_t> shape) {
  if (format == Format::GGUF)
    return layerWeight(role, layer, shape);
  // Hugging Face keeps one tensor per expert: stack them by name.
  SmallVector<Attribute> names, scaleNames;
  Type matrixType;
  for (int64_t e = 0; e < shape[0]; ++e) {
    std::string name = weightName(format, c.family, role, layer, e);
    std::optional<Resolved> resolved = resolve(name, shape.drop_front());
    if (!resolved)
      return nullptr;
    if (matrixType && (resolved->type != matrixType ||
                       resolved->scaleName.empty() != scaleNames.empty()))
      return fail(fileError(store.getFilePath(store.lookup(resolved->name)->file),
                            "tensor '" + resolved->name + "' is stored as " +
                                stringifyDType(store.lookup(resolved->name)->dtype) +
                                ", unlike the other experts of layer " + Twine(layer)));
    matrixType = resolved->type;
    names.push_back(b.getStringAttr(resolved->name));
    if (!resolved->scaleName.empty())
      scaleNames.push_back(b.getStringAttr(resolved->scaleName));
  }
  return llm::StackedWeightOp::create(
      b, loc, stackedType(matrixType, shape), b.getArrayAttr(names),
      scaleNames.empty() ? ArrayAttr() : b.getArrayAttr(scaleNames));
}

FailureOr<double> ModelBuilder::scalar(StringRef name) {
  used.insert(name);
  const TensorInfo *info = store.lookup(name);
  if (!info)
    return fail(fileError(source, "missing tensor '" + name + "'")), failure();
  if (info->getNumElements() != 1 || info->dtype != DType::F32)
    return fail(fileError(store.getFilePath(info->file),
                          "tensor '" + name + "' must be one F32 value")),
           failure();
  float value;
  std::memcpy(&value, store.getData(*info).data(), 4);
  return static_cast<double>(value);
}

Value ModelBuilder::splitHeads(Value x, int64_t heads, int64_t dim) {
  return tensor::ExpandShapeOp::create(
      b, loc, act({ShapedType::kDynamic, heads, dim}), x,
      ArrayRef<ReassociationIndices>{{0}, {1, 2}},
      ArrayRef<OpFoldResult>{tokens, b.getIndexAttr(heads), b.getIndexAttr(dim)});
}

Value ModelBuilder::mergeHeads(Value x) {
  return tensor::CollapseShapeOp::create(b, loc, x,
                                         ArrayRef<ReassociationIndices>{{0}, {1, 2}});
}

llm::RopeAttr ModelBuilder::ropeAttr(const RopeConfig &r, int64_t dim) {
  auto f = [&](double v) { return b.getF64FloatAttr(v); };
  FloatAttr none;
  llm::RopeScaling scaling = llvm::StringSwitch<llm::RopeScaling>(r.scaling)
                                 .Case("linear", llm::RopeScaling::linear)
                                 .Case("llama3", llm::RopeScaling::llama3)
                                 .Case("yarn", llm::RopeScaling::yarn)
                                 .Default(llm::RopeScaling::none);
  bool llama3 = scaling == llm::RopeScaling::llama3, yarn = scaling == llm::RopeScaling::yarn;
  return llm::RopeAttr::get(
      &ctx, f(r.theta), dim, scaling,
      scaling == llm::RopeScaling::none ? none : f(r.factor),
      llama3 ? f(r.lowFreqFactor) : none, llama3 ? f(r.highFreqFactor) : none,
      llama3 || yarn ? r.originalMaxPosition : 0, yarn ? f(r.betaFast) : none,
      yarn ? f(r.betaSlow) : none, yarn ? f(r.mscale) : none,
      yarn ? f(r.mscaleAllDim) : none, r.interleaved,
      r.freqFactors.empty() ? DenseF64ArrayAttr() : b.getDenseF64ArrayAttr(r.freqFactors));
}

/// kv_b_proj from llama.cpp's split MLA layout: attn_k_b holds each head's
/// key block transposed ([H, kv_lora_rank, nope]), attn_v_b its value block
/// ([H, v, kv_lora_rank]). kv_b ([H * (nope + v), kv_lora_rank], rows
/// head-major as in Hugging Face's kv_b_proj, so one MLA form serves both) is
/// a derived tensor of the store: rearranged once, while the artifact is
/// written, not on every call. It keeps the halves' float type, or is f32
/// (exact) when they are quantized (llama.cpp's Q8_0 files store attn_v_b
/// Q8_0).
Value ModelBuilder::splitKVB(int64_t l) {
  const MLAConfig &m = *c.mla;
  int64_t H = c.heads, nope = m.nopeDim, vd = m.vDim, rank = m.kvLoraRank;
  std::string kbName = weightName(format, c.family, Role::MLAKB, l);
  std::string vbName = weightName(format, c.family, Role::MLAVB, l);
  const TensorInfo *kb = store.lookup(kbName), *vb = store.lookup(vbName);
  if (!kb || !vb)
    return fail(fileError(source, "missing tensor '" + (kb ? vbName : kbName) +
                                      "' (the split MLA layout needs attn_k_b and attn_v_b)"));
  for (auto [info, shape] : {std::pair{kb, SmallVector<int64_t>{H, rank, nope}},
                             std::pair{vb, SmallVector<int64_t>{H, vd, rank}}}) {
    StringRef path = store.getFilePath(info->file);
    std::string what = "tensor '" + info->name + "' (" + stringifyDType(info->dtype).str() + ")";
    if (ArrayRef<int64_t>(info->shape) != ArrayRef<int64_t>(shape))
      return fail(fileError(path, what + " has shape " + shapeString(info->shape) + ", but " +
                                      configSource + " implies " + shapeString(shape)));
    if (!canDequantize(info->dtype))
      return fail(fileError(path, what + ": MoIR rebuilds attn_kv_b from split halves stored "
                                         "as F32, F16, BF16 or a GGUF block type"));
  }
  DType dtype = kb->dtype == vb->dtype && (kb->dtype == DType::BF16 || kb->dtype == DType::F16)
                    ? kb->dtype
                    : DType::F32;
  int64_t stride = nope + vd, width = getBlockBytes(dtype);
  auto produce = [&store = store, k = *kb, v = *vb, H, nope, vd, rank, stride,
                  dtype](MutableArrayRef<uint8_t> out) {
    std::vector<float> keys(H * rank * nope), values(H * vd * rank);
    dequantizeTensor(store, k, keys);
    store.releaseData(k);
    dequantizeTensor(store, v, values);
    store.releaseData(v);
    // The halves' values, written back in their own type: exact.
    auto put = [&](int64_t row, int64_t col, float x) {
      int64_t i = row * rank + col;
      if (dtype == DType::F32) {
        std::memcpy(&out[4 * i], &x, 4);
        return;
      }
      uint16_t h = dtype == DType::F16 ? toF16(x) : toBF16(x);
      std::memcpy(&out[2 * i], &h, 2);
    };
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t r = 0; r < nope; ++r)
        for (int64_t col = 0; col < rank; ++col)
          put(h * stride + r, col, keys[(h * rank + col) * nope + r]);
      for (int64_t r = 0; r < vd; ++r)
        for (int64_t col = 0; col < rank; ++col)
          put(h * stride + nope + r, col, values[(h * vd + r) * rank + col]);
    }
  };
  TensorInfo info;
  info.name = weightName(format, c.family, Role::MLAKVB, l);
  info.dtype = dtype;
  info.shape = {H * stride, rank};
  info.file = kb->file;
  info.bytes = static_cast<uint64_t>(H * stride * rank * width);
  if (Error err = store.addDerivedTensor(std::move(info), produce))
    return fail(std::move(err));
  used.insert(kbName);
  used.insert(vbName);
  return layerWeight(Role::MLAKVB, l, {H * stride, rank});
}

#define W(var, expr)                                                           \
  Value var = (expr);                                                          \
  if (!var)                                                                    \
    return failure()

FailureOr<std::pair<Value, SmallVector<Value>>>
ModelBuilder::attention(int64_t l, Value n, ArrayRef<Value> caches) {
  int64_t H = c.heads, KV = c.kvHeads, D = c.headDim, hidden = c.hidden;
  Value pos = positions;
  if (c.mla) {
    const MLAConfig &m = *c.mla;
    int64_t qRows = H * (m.nopeDim + m.ropeDim);
    Value q, qa, qan, qb;
    if (m.qLoraRank == 0) {
      q = layerWeight(Role::MLAQ, l, {qRows, hidden});
      if (!q)
        return failure();
    } else {
      qa = layerWeight(Role::MLAQA, l, {m.qLoraRank, hidden});
      qan = qa ? layerWeight(Role::MLAQANorm, l, {m.qLoraRank}) : nullptr;
      qb = qan ? layerWeight(Role::MLAQB, l, {qRows, m.qLoraRank}) : nullptr;
      if (!qb)
        return failure();
    }
    W(kva, layerWeight(Role::MLAKVA, l, {m.kvLoraRank + m.ropeDim, hidden}));
    W(kvan, layerWeight(Role::MLAKVANorm, l, {m.kvLoraRank}));
    bool split = format == Format::GGUF &&
                 store.lookup(weightName(format, c.family, Role::MLAKB, l)) &&
                 !store.lookup(weightName(format, c.family, Role::MLAKVB, l));
    W(kvb, split ? splitKVB(l)
                 : layerWeight(Role::MLAKVB, l, {H * (m.nopeDim + m.vDim), m.kvLoraRank}));
    W(o, layerWeight(Role::O, l, {hidden, H * m.vDim}));
    auto config = mla::ConfigAttr::get(&ctx, H, m.qLoraRank, m.kvLoraRank, m.nopeDim,
                                       m.ropeDim, m.vDim);
    auto op = mla::AttentionOp::create(
        b, loc, TypeRange{n.getType(), caches[0].getType(), caches[1].getType()}, n,
        pos, caches[0], caches[1], offset, q, qa, qan, qb, kva, kvan, kvb, o, config,
        ropeAttr(m.ropeDim), b.getF64FloatAttr(c.attentionScale),
        b.getF64FloatAttr(c.rmsNormEps), llm::DynamicQuantAttr());
    // W8A8: the projections' inputs quantized per token
    // (checkActivationQuantUses: all of them stored quantized, or none).
    if (std::optional<llm::DynamicQuant> quant = activationQuant();
        quant && llvm::any_of(ValueRange{q, qa, qb, kva, kvb, o},
                              [](Value w) { return w && checkpointQuantized(w); })) {
      if (c.quantization.staticActivations)
        return fail(fileError(source, "layer " + Twine(l) + "'s MLA projections are quantized "
                                      "with static activation scales (quantization_config "
                                      "input_activations dynamic false, input_scale), which "
                                      "MoIR supports for linear projections only")),
               failure();
      op.setActivationQuant(*quant);
    }
    return std::make_pair(Value(op.getResult()),
                          SmallVector<Value>{op.getNewLatentCache(), op.getNewRopeCache()});
  }

  auto project = [&](Role role, int64_t heads) -> Value {
    Value w = layerWeight(role, l, {heads * D, hidden});
    if (!w)
      return nullptr;
    Value bias;
    if (c.qkvBias && (bias = layerWeight(role, l, {heads * D}, /*bias=*/true)) == nullptr)
      return nullptr;
    return linear(n, w, bias);
  };
  W(q, project(Role::Q, H));
  W(k, project(Role::K, KV));
  W(v, project(Role::V, KV));
  if (c.qkNorm == ModelConfig::QKNorm::Full) {
    W(qn, layerWeight(Role::QNorm, l, {H * D}));
    W(kn, layerWeight(Role::KNorm, l, {KV * D}));
    q = rmsNorm(q, qn);
    k = rmsNorm(k, kn);
  }
  q = splitHeads(q, H, D);
  k = splitHeads(k, KV, D);
  v = splitHeads(v, KV, D);
  if (c.qkNorm == ModelConfig::QKNorm::PerHead) {
    W(qn, layerWeight(Role::QNorm, l, {D}));
    W(kn, layerWeight(Role::KNorm, l, {D}));
    q = rmsNorm(q, qn);
    k = rmsNorm(k, kn);
  }
  // Sliding layers may have their own RoPE (Gemma 3's local base).
  llm::RopeAttr rope = ropeAttr(sliding(l) && c.slidingRope ? *c.slidingRope : c.rope, D);
  q = llm::RopeOp::create(b, loc, q.getType(), q, pos, rope);
  k = llm::RopeOp::create(b, loc, k.getType(), k, pos, rope);
  Value kc = llm::KVCacheUpdateOp::create(b, loc, caches[0].getType(), k, caches[0], offset);
  Value vc = llm::KVCacheUpdateOp::create(b, loc, caches[1].getType(), v, caches[1], offset);
  IntegerAttr window = sliding(l) ? b.getI64IntegerAttr(*c.slidingWindow) : IntegerAttr();
  Value a = llm::AttentionOp::create(b, loc, q.getType(), q, kc, vc, pos,
                                     b.getF64FloatAttr(c.attentionScale), window);
  W(wo, layerWeight(Role::O, l, {hidden, H * D}));
  Value ob;
  if (c.oBias && !(ob = layerWeight(Role::O, l, {hidden}, /*bias=*/true)))
    return failure();
  return std::make_pair(linear(mergeHeads(a), wo, ob), SmallVector<Value>{kc, vc});
}

FailureOr<Value> ModelBuilder::ffn(int64_t l, Value n) {
  int64_t hidden = c.hidden;
  auto silu = llm::ActivationKindAttr::get(&ctx, llm::ActivationKind::silu);
  if (c.moe && c.moeLayer[l]) {
    const MoEConfig &m = *c.moe;
    int64_t E = m.experts, I = m.ffn;
    W(router, layerWeight(Role::Router, l, {E, hidden}));
    Value bias;
    if (m.method == "noaux_tc" && !(bias = layerWeight(Role::RouterBias, l, {E})))
      return failure();
    FailureOr<Value> inputOrder = actOrderExperts(l, E, I, hidden);
    if (failed(inputOrder))
      return failure();
    W(g, experts(Role::ExpertGate, l, {E, I, hidden}));
    W(u, experts(Role::ExpertUp, l, {E, I, hidden}));
    W(d, experts(Role::ExpertDown, l, {E, hidden, I}));
    Value sg, su, sd, sgate;
    if (m.sharedFFN) {
      sg = layerWeight(Role::SharedGate, l, {m.sharedFFN, hidden});
      su = sg ? layerWeight(Role::SharedUp, l, {m.sharedFFN, hidden}) : nullptr;
      sd = su ? layerWeight(Role::SharedDown, l, {hidden, m.sharedFFN}) : nullptr;
      if (!sd)
        return failure();
      if (m.sharedGate) {
        const TensorInfo *gateInfo =
            store.lookup(weightName(format, c.family, Role::SharedExpertGate, l));
        if (format == Format::GGUF && !(gateInfo && gateInfo->shape.size() == 2)) {
          // Our writer stores the shared-expert gate as a vector; llama.cpp's
          // converter as Hugging Face's [1, hidden] (taken below).
          W(vec, layerWeight(Role::SharedExpertGate, l, {hidden}));
          sgate = tensor::ExpandShapeOp::create(
              b, loc, RankedTensorType::get({1, hidden}, cast<RankedTensorType>(vec.getType()).getElementType()),
              vec, ArrayRef<ReassociationIndices>{{0, 1}});
        } else {
          sgate = layerWeight(Role::SharedExpertGate, l, {1, hidden});
        }
        if (!sgate)
          return failure();
      }
    }
    moe::Scoring scoring = m.scoring == "sigmoid" ? moe::Scoring::sigmoid : moe::Scoring::softmax;
    moe::TopkMethod method = m.method == "noaux_tc"        ? moe::TopkMethod::noaux_tc
                             : m.method == "group_limited" ? moe::TopkMethod::group_limited
                                                           : moe::TopkMethod::greedy;
    auto routing = moe::RoutingAttr::get(
        &ctx, m.topK, scoring, method, m.nGroup, m.topkGroup, m.normTopkProb,
        m.scaling == 1.0 ? FloatAttr() : b.getF64FloatAttr(m.scaling));
    // W8A8: the routed and shared experts quantize their inputs (the router
    // and the shared expert's gate do not: checkActivationQuantUses refuses
    // quantized ones, and float experts beside quantized ones).
    std::optional<llm::DynamicQuant> quant = activationQuant();
    if (quant && c.quantization.staticActivations && checkpointQuantized(g))
      return fail(fileError(source, "layer " + Twine(l) + "'s experts are quantized with static "
                                    "activation scales (quantization_config input_activations "
                                    "dynamic false, each expert's input_scale), which MoIR "
                                    "supports for linear projections only")),
             failure();
    auto expertQuant = quant && (checkpointQuantized(g) || (sg && checkpointQuantized(sg)))
                           ? llm::DynamicQuantAttr::get(&ctx, *quant)
                           : llm::DynamicQuantAttr();
    return moe::LayerOp::create(b, loc, n.getType(), n, router, bias, g, u, d, sg, su,
                                sd, sgate, *inputOrder, routing, silu, expertQuant)
        .getResult();
  }
  int64_t F = c.ffn;
  auto mlpBias = [&](Role role, int64_t size) -> Value {
    return c.mlpBias ? layerWeight(role, l, {size}, /*bias=*/true) : Value();
  };
  if (c.xielu) {
    W(up, layerWeight(Role::Up, l, {F, hidden}));
    Value ap, an;
    FailureOr<double> beta, eps;
    if (!c.xieluParams.empty()) {
      // GGUF keeps the four parameters as metadata: the two learned ones
      // become one-element constants, as the op takes them as tensors.
      const ModelConfig::XIELUParams &p = c.xieluParams[l];
      auto one = [&](double v) -> Value {
        auto type = act({1});
        return arith::ConstantOp::create(
            b, loc, type, DenseElementsAttr::get(type, static_cast<float>(v)));
      };
      ap = one(p.alphaP);
      an = one(p.alphaN);
      beta = p.beta;
      eps = p.eps;
    } else {
      ap = layerWeight(Role::XIELUAlphaP, l, {1});
      an = ap ? layerWeight(Role::XIELUAlphaN, l, {1}) : nullptr;
      if (!an)
        return failure();
      beta = scalar(weightName(format, c.family, Role::XIELUBeta, l));
      if (failed(beta))
        return failure();
      eps = scalar(weightName(format, c.family, Role::XIELUEps, l));
      if (failed(eps))
        return failure();
    }
    W(down, layerWeight(Role::Down, l, {hidden, F}));
    Value h = llm::XIELUOp::create(b, loc, act({ShapedType::kDynamic, F}), linear(n, up),
                                   ap, an, b.getF64FloatAttr(*beta), b.getF64FloatAttr(*eps));
    return linear(h, down);
  }
  W(gate, layerWeight(Role::Gate, l, {F, hidden}));
  W(up, layerWeight(Role::Up, l, {F, hidden}));
  W(down, layerWeight(Role::Down, l, {hidden, F}));
  Value gb = mlpBias(Role::Gate, F), ub = mlpBias(Role::Up, F), db = mlpBias(Role::Down, hidden);
  if (c.mlpBias && (!gb || !ub || !db))
    return failure();
  Value gv = linear(n, gate, gb), uv = linear(n, up, ub);
  auto activation = c.ffnActivation == ModelConfig::FFNActivation::GELUTanh
                        ? llm::ActivationKindAttr::get(&ctx, llm::ActivationKind::gelu_tanh)
                        : silu;
  Value h = llm::GLUOp::create(b, loc, gv.getType(), activation, gv, uv);
  return linear(h, down, db);
}

Expected<OwningOpRef<ModuleOp>> ModelBuilder::build() {
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  module->getOperation()->setAttr(attrs::familyName(),
                                  b.getStringAttr(stringifyFamily(c.family)));
  module->getOperation()->setAttr(attrs::sourceName(), b.getStringAttr(source));
  b.setInsertionPointToEnd(module->getBody());

  int64_t hidden = c.hidden;
  SmallVector<Type> cacheTypes;
  if (c.mla)
    cacheTypes = {act({capacity, c.mla->kvLoraRank}), act({capacity, c.mla->ropeDim})};
  else
    cacheTypes = {act({capacity, c.kvHeads, c.headDim}), act({capacity, c.kvHeads, c.headDim})};
  SmallVector<Type> args = {RankedTensorType::get({ShapedType::kDynamic}, b.getI32Type()),
                            RankedTensorType::get({ShapedType::kDynamic}, b.getI64Type()),
                            b.getIndexType()};
  SmallVector<Type> results = {act({ShapedType::kDynamic, c.vocab})};
  for (int64_t l = 0; l < c.layers; ++l) {
    args.append(cacheTypes);
    results.append(cacheTypes);
  }
  // The first token whose logits are computed, after the caches.
  args.push_back(b.getIndexType());
  auto func = func::FuncOp::create(b, loc, "forward", b.getFunctionType(args, results));
  // What each argument holds, for every later stage (the manifest is written
  // from these, not from positions).
  auto describe = [&](unsigned i, ArgKind kind) {
    func.setArgAttr(i, attrs::argName(), EntryArgAttr::get(&ctx, kind, nullptr));
  };
  describe(0, ArgKind::tokens);
  describe(1, ArgKind::positions);
  describe(2, ArgKind::offset);
  for (unsigned i = 3; i + 1 < args.size(); ++i)
    describe(i, ArgKind::cache);
  describe(args.size() - 1, ArgKind::logits_from);
  Block *body = func.addEntryBlock();
  b.setInsertionPointToEnd(body);
  Value ids = body->getArgument(0);
  positions = body->getArgument(1);
  offset = body->getArgument(2);
  tokens = tensor::DimOp::create(b, loc, ids, 0);

  auto fin = [&]() -> Expected<OwningOpRef<ModuleOp>> {
    if (firstError)
      return std::move(firstError);
    return createStringError(inconvertibleErrorCode(), source + ": import failed");
  };
  std::string embedName = format == Format::GGUF ? "token_embd.weight" : "model.embed_tokens.weight";
  Value embed = weight(embedName, {c.vocab, hidden});
  if (!embed)
    return fin();
  FloatAttr embedScale;
  if (c.embeddingScale != 1.0) {
    // transformers casts Gemma's sqrt(hidden) to the weights' dtype: a
    // bf16/f16 checkpoint, run as stored, scales by the rounded value.
    double scale = c.embeddingScale;
    const TensorInfo *info = store.lookup(embedName);
    if (format == Format::HF && info && info->dtype == DType::BF16)
      scale = fromBF16(toBF16(static_cast<float>(scale)));
    else if (format == Format::HF && info && info->dtype == DType::F16)
      scale = fromF16(toF16(static_cast<float>(scale)));
    embedScale = b.getF64FloatAttr(scale);
  }
  Value h = llm::EmbeddingOp::create(b, loc, act({ShapedType::kDynamic, hidden}), ids, embed,
                                     embedScale);
  SmallVector<Value> newCaches;
  Location modelLoc = loc;
  for (int64_t l = 0; l < c.layers; ++l) {
    loc = NameLoc::get(b.getStringAttr(source + ": layer " + std::to_string(l)));
    // Every op of the layer carries its number (moir.layer); the graph passes
    // keep it on what they rewrite.
    LayerListener layerOps(l);
    b.setListener(&layerOps);
    auto unset = llvm::make_scope_exit([&] { b.setListener(nullptr); });
    Value norm1 = layerWeight(Role::AttnNorm, l, {hidden});
    if (!norm1)
      return fin();
    auto attn = attention(l, rmsNorm(h, norm1),
                          {body->getArgument(3 + 2 * l), body->getArgument(4 + 2 * l)});
    if (failed(attn))
      return fin();
    newCaches.append(attn->second);
    // Gemma's sandwich norms: each sublayer's output is normalized before
    // its residual add.
    auto postNorm = [&](Role role, Value x) -> Value {
      if (!c.postNorms)
        return x;
      Value w = layerWeight(role, l, {hidden});
      return w ? rmsNorm(x, w) : nullptr;
    };
    Value a = postNorm(Role::PostAttnNorm, attn->first);
    if (!a)
      return fin();
    h = arith::AddFOp::create(b, loc, h, a);
    Value norm2 = layerWeight(Role::FFNNorm, l, {hidden});
    if (!norm2)
      return fin();
    FailureOr<Value> y = ffn(l, rmsNorm(h, norm2));
    if (failed(y))
      return fin();
    Value f = postNorm(Role::PostFFNNorm, *y);
    if (!f)
      return fin();
    h = arith::AddFOp::create(b, loc, h, f);
  }
  loc = modelLoc;
  Value finalNorm = weight(format == Format::GGUF ? "output_norm.weight" : "model.norm.weight", {hidden});
  if (!finalNorm)
    return fin();
  std::string headName = c.tieWordEmbeddings
                             ? embedName
                             : (format == Format::GGUF ? "output.weight" : "lm_head.weight");
  Value head = weight(headName, {c.vocab, hidden});
  if (!head)
    return fin();
  // Logits of tokens [from, tokens) only, from = min(logits_from, tokens -
  // 1): a generating runtime asks for the last token's (the other rows skip
  // the final norm and the LM head, a fifth of a Mixtral-shaped prefill's
  // products), a checker for every token's (0).
  Value from = arith::MinUIOp::create(
      b, loc, body->getArgument(args.size() - 1),
      arith::SubIOp::create(b, loc, tokens, arith::ConstantIndexOp::create(b, loc, 1)));
  Value rows = arith::SubIOp::create(b, loc, tokens, from);
  h = tensor::ExtractSliceOp::create(b, loc, h, ArrayRef<OpFoldResult>{from, b.getIndexAttr(0)},
                                     ArrayRef<OpFoldResult>{rows, b.getIndexAttr(hidden)},
                                     ArrayRef<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1)});
  SmallVector<Value> outs = {linear(rmsNorm(h, finalNorm), head)};
  outs.append(newCaches);
  func::ReturnOp::create(b, loc, outs);
  if (format == Format::GGUF) {
    // A GGUF tensor the import did not read could change the model's math
    // (a bias, a norm): refuse it by name, as unknown metadata keys are.
    if (!c.rope.freqFactors.empty())
      used.insert("rope_freqs.weight");
    for (StringRef name : store.names()) {
      if (weights.count(name) || used.contains(name))
        continue;
      const TensorInfo *info = store.lookup(name);
      return fileError(store.getFilePath(info->file),
                       "tensor '" + name + "' (" + stringifyDType(info->dtype) + " " +
                           shapeString(info->shape) + ") has no place in MoIR's " +
                           stringifyFamily(c.family) +
                           " (it may change the model's math; refusing rather than "
                           "ignoring it)");
    }
  }
  if (Error err = checkActOrderUses())
    return std::move(err);
  if (Error err = checkActivationQuantUses(*module))
    return std::move(err);
  if (failed(verify(*module)))
    return createStringError(inconvertibleErrorCode(),
                             source + ": the imported IR does not verify (an importer bug)");
  return std::move(module);
}

} // namespace

Error readHFCheckpoint(StringRef dir, WeightStore &store) {
  SmallString<256> single(dir), index(dir);
  sys::path::append(single, "model.safetensors");
  sys::path::append(index, "model.safetensors.index.json");
  if (sys::fs::exists(index)) {
    ErrorOr<std::unique_ptr<MemoryBuffer>> buffer = MemoryBuffer::getFile(index);
    if (std::error_code ec = buffer.getError())
      return fileError(index, "cannot open: " + ec.message());
    Expected<json::Value> parsed = json::parse((*buffer)->getBuffer());
    if (!parsed)
      return fileError(index, "not valid JSON: " + toString(parsed.takeError()));
    const json::Object *object = parsed->getAsObject();
    const json::Object *map = object ? object->getObject("weight_map") : nullptr;
    if (!map)
      return fileError(index, "needs an object 'weight_map' from tensor names to files");
    StringMap<std::string> expected;
    std::vector<std::string> shards;
    for (const auto &[name, file] : *map) {
      std::optional<StringRef> shard = file.getAsString();
      if (!shard || shard->contains('/') || shard->empty())
        return fileError(index, "weight_map entry '" + name.str() +
                                    "' must name a file in the checkpoint folder");
      expected[name.str()] = shard->str();
      if (!llvm::is_contained(shards, shard->str()))
        shards.push_back(shard->str());
    }
    std::sort(shards.begin(), shards.end());
    for (const std::string &shard : shards) {
      SmallString<256> path(dir);
      sys::path::append(path, shard);
      if (Error err = readSafetensors(path, store))
        return err;
    }
    for (const auto &entry : expected) {
      const TensorInfo *info = store.lookup(entry.getKey());
      if (!info)
        return fileError(index, "lists tensor '" + entry.getKey() + "' in " +
                                    entry.getValue() + ", which does not hold it");
      if (sys::path::filename(store.getFilePath(info->file)) != entry.getValue())
        return fileError(index, "lists tensor '" + entry.getKey() + "' in " +
                                    entry.getValue() + ", but it is in " +
                                    store.getFilePath(info->file));
    }
    return Error::success();
  }
  if (!sys::fs::exists(single))
    return fileError(dir, "no model.safetensors or model.safetensors.index.json");
  return readSafetensors(single, store);
}

Expected<OwningOpRef<ModuleOp>> importModel(MLIRContext &context, StringRef path,
                                            WeightStore &store,
                                            const ImportOptions &options) {
  context.loadDialect<MoIRDialect, llm::LLMDialect, moe::MoEDialect, mla::MLADialect,
                      func::FuncDialect, arith::ArithDialect, tensor::TensorDialect,
                      linalg::LinalgDialect>();
  if (options.cacheCapacity < 1)
    return createStringError(inconvertibleErrorCode(), "cache capacity must be positive");
  if (!options.weightType.empty() && !isWeightTypeName(options.weightType))
    return createStringError(inconvertibleErrorCode(),
                             "weight type '" + options.weightType + "' is not one of " +
                                 kWeightTypeNames);
  std::vector<std::pair<Regex, std::string>> overrides;
  if (Error err = parseWeightTypeOverrides(options.weightTypeOverrides, overrides))
    return std::move(err);
  if (sys::fs::is_directory(path)) {
    SmallString<256> configPath(path);
    sys::path::append(configPath, "config.json");
    Expected<ModelConfig> config = parseHFConfig(configPath);
    if (!config)
      return config.takeError();
    if (Error err = readHFCheckpoint(path, store))
      return std::move(err);
    ModelBuilder builder(context, *config, store, Format::HF, path, "config.json",
                         options);
    return builder.build();
  }
  if (!sys::fs::exists(path))
    return fileError(path, "no such file or directory");
  Expected<GGUFFile> gguf = readGGUF(path, store);
  if (!gguf)
    return gguf.takeError();
  Expected<ModelConfig> config = parseGGUFConfig(*gguf, store);
  if (!config)
    return config.takeError();
  ModelBuilder builder(context, *config, store, Format::GGUF, path, "its metadata",
                       options);
  return builder.build();
}

} // namespace moir::frontend
