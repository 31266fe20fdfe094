//===- SelectKernels.cpp - the moir-halide-select-kernels pass ------------===//

#include "moir/Target/Halide/HalideTarget.h"

#include "LLM/IR/LLMOps.h"
#include "MLA/IR/MLAOps.h"
#include "MoE/IR/MoEOps.h"
#include "moir/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Support/xxhash.h"

namespace moir {
#define GEN_PASS_DEF_HALIDESELECTKERNELSPASS
#include "moir/Target/Halide/Passes.h.inc"
} // namespace moir

using namespace mlir;
namespace llm = moir::llm;
namespace moe = moir::moe;
namespace mla = moir::mla;

namespace {

bool isF32(Value v) {
  auto type = dyn_cast<RankedTensorType>(v.getType());
  return type && type.getElementType().isF32();
}

/// A float tensor Halide reads as stored: f32, bf16 or f16 (no quantized
/// weight types).
bool isPlainFloat(Value v) {
  auto type = dyn_cast<RankedTensorType>(v.getType());
  return type && (type.getElementType().isF32() || type.getElementType().isBF16() ||
                  type.getElementType().isF16());
}

/// A quantized weight whose packed form (i8, u4 or FP8 E4M3 codes with
/// per-group scales, include/moir/Frontend/Quantization.h) the Halide
/// kernels decode, on the host and on a device: rank `rank`, static. Device
/// kernels read f16 scales (OpenCL) and FP8 codes as bits
/// (Generator/Kernels.cpp, widen). On Vulkan the experts' scalar arguments
/// were 76 bytes with their hidden rows inside each output thread, past the
/// 64 that Halide 21's Vulkan runtime binds right on lavapipe; with the rows
/// at the root (vulkanExperts) the kernels pass at most 40 (docs/halide.md).
/// moir-bind-weights gives a weight a Halide kernel reads per-group scales
/// (no K-quant superblocks).
bool packedForHalide(Value v, int64_t rank, StringRef device) {
  auto type = dyn_cast<llm::QTensorType>(v.getType());
  if (!type || type.getRank() != rank ||
      llvm::any_of(type.getShape(), [](int64_t d) { return ShapedType::isDynamic(d); }))
    return false;
  std::optional<llm::QTensorType::PackedLayout> layout = type.getPackedLayout();
  return layout && (layout->storage == "i8" || layout->storage == "f8e4m3" ||
                    (layout->storage == "u4" && layout->group == 32));
}

/// The packed form of a weight the Halide kernels can multiply with int8
/// activations (blocks of 32, or 16 for groups of 16, as the MLIR kernels'
/// int8 path): its storage ("i8" or "u4"), else empty.
StringRef int8Storage(Value v) {
  auto type = dyn_cast<llm::QTensorType>(v.getType());
  if (!type)
    return {};
  std::optional<llm::QTensorType::PackedLayout> layout = type.getPackedLayout();
  if (!layout)
    return {};
  if (layout->storage == "u4" && layout->group == 32)
    return "u4";
  if (layout->storage == "i8" && (layout->group % 32 == 0 || layout->group == 16))
    return "i8";
  return {};
}

bool staticInner(Value v) {
  auto type = cast<RankedTensorType>(v.getType());
  return type.getRank() >= 1 && !ShapedType::isDynamic(type.getShape().back());
}

std::optional<StringRef> activationName(llm::ActivationKind kind) {
  switch (kind) {
  case llm::ActivationKind::silu:
    return StringRef("silu");
  case llm::ActivationKind::sigmoid:
    return StringRef("sigmoid");
  case llm::ActivationKind::relu:
    return StringRef("relu");
  case llm::ActivationKind::gelu_tanh:
    return StringRef("gelu_tanh");
  case llm::ActivationKind::gelu:
    return std::nullopt; // erf: no Halide intrinsic
  }
  return std::nullopt;
}

/// A plain float tensor of `rank` with static dimensions.
bool staticFloat(Value v, int64_t rank) {
  auto type = dyn_cast<RankedTensorType>(v.getType());
  return type && isPlainFloat(v) && type.getRank() == rank && type.hasStaticShape();
}

/// A weight the Halide kernels read: float, or packed quantized.
bool halideWeight(Value v, int64_t rank, StringRef device) {
  return staticFloat(v, rank) || packedForHalide(v, rank, device);
}

bool isI32(Value v) {
  auto type = dyn_cast<RankedTensorType>(v.getType());
  return type && type.getElementType().isInteger(32);
}

/// The static shape of a weight, float or packed quantized (empty if not).
ArrayRef<int64_t> weightShape(Value v) {
  if (auto t = dyn_cast<RankedTensorType>(v.getType()); t && t.hasStaticShape())
    return t.getShape();
  if (auto q = dyn_cast<llm::QTensorType>(v.getType()))
    return q.getShape();
  return {};
}

/// Whether Vulkan's experts kernel takes `experts`: its hidden rows (FFN x
/// top-k floats a token) and the shared expert's (its FFN) are multiples of
/// 16 floats (Generator/Kernels.cpp, vulkanRootFuncs).
bool vulkanExperts(moe::FusedExpertsOp experts) {
  ArrayRef<int64_t> gate = weightShape(experts.getGate());
  auto ids = dyn_cast<RankedTensorType>(experts.getIds().getType());
  if (gate.size() != 3 || !ids || ids.getRank() != 2 || ShapedType::isDynamic(gate[1]) ||
      ShapedType::isDynamic(ids.getDimSize(1)) || gate[1] * ids.getDimSize(1) % 16 != 0)
    return false;
  if (!experts.hasSharedExpert())
    return true;
  ArrayRef<int64_t> shared = weightShape(experts.getSharedGateProj());
  return shared.size() == 2 && !ShapedType::isDynamic(shared[0]) && shared[0] % 16 == 0;
}

/// `moir_hl_<kind>_<hash of kind, types and params>`.
std::string calleeName(StringRef kind, ValueRange operands, TypeRange results,
                       DictionaryAttr params) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << kind;
  for (Value v : operands)
    os << "|" << v.getType();
  for (Type t : results)
    os << "|" << t;
  os << "|" << params;
  return ("moir_hl_" + kind + "_" + llvm::utohexstr(llvm::xxh3_64bits(text), true)).str();
}

/// A linear Halide compiles: rank-2 f32 input with a static inner
/// dimension, a plain float or packed quantized weight, a float bias, f32
/// result. Precise ones (W8A8's int8 rows, which Halide's int8 path would
/// round again) stay on MLIR.
bool halideLinear(llm::LinearOp linear, StringRef device) {
  auto input = cast<RankedTensorType>(linear.getInput().getType());
  return !linear.getPrecise() && isF32(linear.getInput()) && input.getRank() == 2 && staticInner(linear.getInput()) &&
         (isPlainFloat(linear.getWeight()) || packedForHalide(linear.getWeight(), 2, device)) &&
         isF32(linear.getResult()) &&
         (!linear.getBias() || isPlainFloat(linear.getBias()));
}

struct HalideSelectKernelsPass
    : moir::impl::HalideSelectKernelsPassBase<HalideSelectKernelsPass> {
  using Base::Base;

  void runOnOperation() override {
    if (int8DecodeBits != 8 && int8DecodeBits != 16) {
      getOperation()->emitError() << "int8-decode-bits must be 8 or 16, not "
                                  << static_cast<int64_t>(int8DecodeBits);
      return signalPassFailure();
    }
    llvm::SmallVector<StringRef> wanted;
    StringRef(ops).split(wanted, ',', -1, false);
    // Whole layers (moirc --target=halide): every kind.
    auto want = [&](StringRef kind) {
      return wholeLayers || llvm::any_of(wanted, [&](StringRef w) { return w.trim() == kind; });
    };
    SmallVector<Operation *> candidates;
    getOperation()->walk([&](Operation *op) {
      if (isa<llm::RMSNormOp, llm::LinearOp, llm::GLUOp, llm::ActivationOp, llm::RopeOp,
              llm::AttentionOp, mla::AttendOp, moe::FusedRouteOp, moe::FusedExpertsOp,
              arith::AddFOp, llm::EmbeddingOp, llm::XIELUOp>(op))
        candidates.push_back(op);
    });
    // glu_linear first: a GLU whose only use is a linear's input becomes one
    // kernel with it (the FFN's down projection).
    llvm::DenseSet<Operation *> fused;
    if (want("glu_linear"))
      for (Operation *op : candidates)
        if (auto glu = dyn_cast<llm::GLUOp>(op)) {
          Operation *linear = glu->hasOneUse() ? *glu->getUsers().begin() : nullptr;
          if (fuseGLU(glu)) {
            fused.insert(glu);
            fused.insert(linear);
          }
        }
    for (Operation *op : candidates)
      if (!fused.contains(op))
        select(op, want);
    if (wholeLayers && failed(checkWholeLayers()))
      return signalPassFailure();
  }

  /// moirc --target=halide: every op of a layer that computes on tensors is
  /// a Halide call now. What may stay: the calls, the weights, views and
  /// shapes, the KV cache's row writes (and their device copies), the
  /// routing record, control flow and scalar arithmetic.
  LogicalResult checkWholeLayers() {
    WalkResult result = getOperation()->walk([&](Operation *op) {
      std::optional<int64_t> layer = moir::attrs::getLayer(op);
      if (!layer || op->getNumRegions() != 0 ||
          isa<moir::HalideCallOp, moir::HalideSyncRowsOp, llm::WeightRefOpInterface,
              llm::KVCacheUpdateOp, moe::RecordRoutingOp, tensor::ExpandShapeOp,
              tensor::CollapseShapeOp, tensor::ExtractSliceOp, tensor::DimOp>(op))
        return WalkResult::advance();
      auto tensorTyped = [](Type t) { return isa<ShapedType>(t) || t.getDialect().getNamespace() == "llm"; };
      if (llvm::none_of(op->getOperandTypes(), tensorTyped) &&
          llvm::none_of(op->getResultTypes(), tensorTyped))
        return WalkResult::advance();
      op->emitError() << "--target=halide runs every op of a layer on the Halide target, and "
                         "this op of layer "
                      << *layer << " has no Halide kernel (moir-halide-select-kernels takes: "
                      << "rms_norm, linear, glu, activation (not erf's gelu), rope, router, "
                         "experts (not act-order or W8A8 ones; on Vulkan those whose FFN x "
                         "top-k is a multiple of 16), attention and mla over float caches, "
                         "xielu, f32 additions, the embedding of a float table; "
                         "docs/halide.md); compile with --target=cpu --kernels=halide to run "
                         "it on MLIR";
      return WalkResult::interrupt();
    });
    return failure(result.wasInterrupted());
  }

  bool fuseGLU(llm::GLUOp glu) {
    if (!glu->hasOneUse())
      return false;
    auto linear = dyn_cast<llm::LinearOp>(*glu->getUsers().begin());
    std::optional<StringRef> act = activationName(glu.getActivation());
    if (!linear || linear.getInput() != glu.getResult() || !act || !halideLinear(linear, device))
      return false;
    Builder b(glu.getContext());
    SmallVector<Value> operands = {glu.getGate(), glu.getUp(), linear.getWeight()};
    if (linear.getBias())
      operands.push_back(linear.getBias());
    emit(linear, operands, "glu_linear", {b.getNamedAttr("activation", b.getStringAttr(*act))});
    glu->erase();
    return true;
  }

  void select(Operation *op, llvm::function_ref<bool(StringRef)> want) {
    Builder b(op->getContext());
    SmallVector<NamedAttribute> params;
    StringRef kind;
    if (auto norm = dyn_cast<llm::RMSNormOp>(op)) {
      auto type = cast<RankedTensorType>(norm.getInput().getType());
      if (!want("rms_norm") || !isF32(norm.getInput()) || !staticInner(norm.getInput()) ||
          type.getRank() > 3 || !isPlainFloat(norm.getWeight()))
        return;
      kind = "rms_norm";
      params.push_back(b.getNamedAttr("epsilon", b.getF64FloatAttr(norm.getEpsilon().convertToDouble())));
      if (std::optional<APFloat> offset = norm.getOffset())
        params.push_back(b.getNamedAttr("offset", b.getF64FloatAttr(offset->convertToDouble())));
    } else if (auto xielu = dyn_cast<llm::XIELUOp>(op)) {
      // Apertus's activation (whole layers, or --halide-ops=xielu).
      auto type = cast<RankedTensorType>(xielu.getType());
      if (!want("xielu") || !isF32(xielu.getInput()) || type.getRank() < 1 || type.getRank() > 3 ||
          !staticFloat(xielu.getAlphaP(), 1) || !staticFloat(xielu.getAlphaN(), 1))
        return;
      kind = "xielu";
      params.push_back(b.getNamedAttr("beta", b.getF64FloatAttr(xielu.getBeta().convertToDouble())));
      params.push_back(b.getNamedAttr("eps", b.getF64FloatAttr(xielu.getEps().convertToDouble())));
    } else if (auto add = dyn_cast<arith::AddFOp>(op)) {
      // The residual stream's additions (whole layers, or --halide-ops=add).
      auto type = dyn_cast<RankedTensorType>(add.getType());
      if (!want("add") || !type || !type.getElementType().isF32() || type.getRank() < 1 ||
          type.getRank() > 3 || !staticInner(add.getResult()) ||
          add.getLhs().getType() != type || add.getRhs().getType() != type)
        return;
      kind = "add";
    } else if (auto embedding = dyn_cast<llm::EmbeddingOp>(op)) {
      auto ids = dyn_cast<RankedTensorType>(embedding.getIds().getType());
      if (!want("embed") || !ids || ids.getRank() != 1 || !ids.getElementType().isInteger(32) ||
          !staticFloat(embedding.getTable(), 2) || !isF32(embedding.getResult()))
        return;
      kind = "embed";
      if (FloatAttr scale = embedding.getScaleAttr())
        params.push_back(b.getNamedAttr("scale", scale));
    } else if (auto linear = dyn_cast<llm::LinearOp>(op)) {
      if (!want("linear") || !halideLinear(linear, device))
        return;
      kind = "linear";
    } else if (auto glu = dyn_cast<llm::GLUOp>(op)) {
      std::optional<StringRef> act = activationName(glu.getActivation());
      auto type = cast<RankedTensorType>(glu.getType());
      if (!want("glu") || !act || !isF32(glu.getGate()) || type.getRank() > 3)
        return;
      kind = "glu";
      params.push_back(b.getNamedAttr("activation", b.getStringAttr(*act)));
    } else if (auto activation = dyn_cast<llm::ActivationOp>(op)) {
      std::optional<StringRef> act = activationName(activation.getKind());
      auto type = cast<RankedTensorType>(activation.getType());
      if (!want("activation") || !act || !isF32(activation.getInput()) || type.getRank() > 3 ||
          !isF32(activation.getResult()))
        return;
      kind = "activation";
      params.push_back(b.getNamedAttr("activation", b.getStringAttr(*act)));
    } else if (auto rope = dyn_cast<llm::RopeOp>(op)) {
      auto type = cast<RankedTensorType>(rope.getInput().getType());
      if (!want("rope") || !isF32(rope.getInput()) || type.getRank() != 3 ||
          !staticInner(rope.getInput()))
        return;
      moir::RopeTables tables = moir::computeRopeTables(rope.getRope());
      SmallVector<double> freq(tables.invFreq.begin(), tables.invFreq.end());
      kind = "rope";
      params.push_back(b.getNamedAttr("dim", b.getI64IntegerAttr(rope.getRope().getDim())));
      params.push_back(b.getNamedAttr("interleaved",
                                      b.getI64IntegerAttr(rope.getRope().getInterleaved())));
      params.push_back(b.getNamedAttr("factor", b.getF64FloatAttr(tables.attentionFactor)));
      params.push_back(b.getNamedAttr("inv_freq", b.getDenseF64ArrayAttr(freq)));
    } else if (auto attention = dyn_cast<llm::AttentionOp>(op)) {
      // f32 queries over a float cache (the caches stay on the device,
      // syncCaches).
      auto query = cast<RankedTensorType>(attention.getQuery().getType());
      if (!want("attention") || !isF32(attention.getQuery()) ||
          query.getRank() != 3 || ShapedType::isDynamic(query.getDimSize(1)) ||
          !staticInner(attention.getQuery()) || !staticFloat(attention.getKey(), 3) ||
          !staticFloat(attention.getValue(), 3) || !isF32(attention.getResult()))
        return;
      kind = "attention";
      syncCaches(op);
      params.push_back(b.getNamedAttr("scale", b.getF64FloatAttr(attention.getScale().convertToDouble())));
      if (std::optional<int64_t> window = attention.getSlidingWindow())
        params.push_back(b.getNamedAttr("window", b.getI64IntegerAttr(*window)));
    } else if (auto attend = dyn_cast<mla::AttendOp>(op)) {
      // The absorbed form over float caches and a float kv_b_proj. Where
      // the op asks for the materialized form in prefill (a cost
      // decision), only decode goes to Halide.
      auto qn = cast<RankedTensorType>(attend.getQNope().getType());
      if (!want("mla") || attend.getForm() != mla::Form::absorbed ||
          !isF32(attend.getQNope()) || !isF32(attend.getQPe()) || qn.getRank() != 3 ||
          ShapedType::isDynamic(qn.getDimSize(1)) || !staticInner(attend.getQNope()) ||
          !staticInner(attend.getQPe()) || !staticFloat(attend.getLatentCache(), 2) ||
          !staticFloat(attend.getRopeCache(), 2) || !staticFloat(attend.getKvBProj(), 2) ||
          !isF32(attend.getResult()))
        return;
      kind = "mla";
      params.push_back(
          b.getNamedAttr("scale", b.getF64FloatAttr(attend.getScale().convertToDouble())));
      // Whole layers: the absorbed kernel for every token count.
      if (attend.getPrefillForm() == mla::Form::materialized && !wholeLayers) {
        // No kernel for a static prefill of 4 tokens or more: no copy on
        // the device to keep current either.
        int64_t tokens = qn.getDimSize(0);
        if (ShapedType::isDynamic(tokens) || tokens < 4)
          syncCaches(op);
        emitDecodeOnly(op, kind, params);
        return;
      }
      syncCaches(op);
    } else if (auto route = dyn_cast<moe::FusedRouteOp>(op)) {
      moe::RoutingAttr routing = route.getRouting();
      Value bias = route.getCorrectionBias();
      if (!want("router") || !isF32(route.getInput()) ||
          cast<RankedTensorType>(route.getInput().getType()).getRank() != 2 ||
          !staticInner(route.getInput()) || !staticFloat(route.getRouter(), 2) ||
          (bias && !staticFloat(bias, 1)) || !isF32(route.getWeights()))
        return;
      kind = "router";
      StringRef method = routing.getMethod() == moe::TopkMethod::greedy          ? "greedy"
                         : routing.getMethod() == moe::TopkMethod::group_limited ? "group_limited"
                                                                                 : "noaux_tc";
      params.push_back(b.getNamedAttr("top_k", b.getI64IntegerAttr(routing.getTopK())));
      params.push_back(b.getNamedAttr(
          "sigmoid", b.getI64IntegerAttr(routing.getScoring() == moe::Scoring::sigmoid)));
      params.push_back(b.getNamedAttr("method", b.getStringAttr(method)));
      params.push_back(b.getNamedAttr("n_group", b.getI64IntegerAttr(routing.getNGroup())));
      params.push_back(b.getNamedAttr("topk_group", b.getI64IntegerAttr(routing.getTopkGroup())));
      params.push_back(
          b.getNamedAttr("norm_topk_prob", b.getI64IntegerAttr(routing.getNormTopkProb())));
      params.push_back(b.getNamedAttr("scaling", b.getF64FloatAttr(routing.getScalingFactor())));
    } else if (auto experts = dyn_cast<moe::FusedExpertsOp>(op)) {
      // Float weights, or packed quantized ones (i8, u4 or FP8 codes).
      std::optional<StringRef> act = activationName(experts.getActivation());
      // Act-order experts (input_order) stay on the MLIR path, which
      // gathers, and so do W8A8 ones (activation_quant), which quantizes.
      // On Vulkan, only experts whose hidden rows (FFN x top-k floats a
      // token, and the shared expert's FFN) are a multiple of 16 floats:
      // the kernel stores them at the root, where Halide 21's Vulkan
      // allocator binds only multiples of 64 bytes right on lavapipe.
      // Computed inside each output thread instead, the logits were wrong
      // there at hidden 256 and 1024 (docs/halide.md).
      if (!want("experts") || !act || (device == "vulkan" && !vulkanExperts(experts)) || experts.getInputOrder() || experts.getActivationQuant() ||
          !isF32(experts.getInput()) ||
          cast<RankedTensorType>(experts.getInput().getType()).getRank() != 2 ||
          !staticInner(experts.getInput()) || !isI32(experts.getIds()) ||
          !isF32(experts.getWeights()) || !staticInner(experts.getIds()) ||
          !halideWeight(experts.getGate(), 3, device) || !halideWeight(experts.getUp(), 3, device) ||
          !halideWeight(experts.getDown(), 3, device) || !isF32(experts.getResult()) ||
          (experts.hasSharedExpert() && (!halideWeight(experts.getSharedGateProj(), 2, device) ||
                                         !halideWeight(experts.getSharedUpProj(), 2, device) ||
                                         !halideWeight(experts.getSharedDownProj(), 2, device))))
        return;
      kind = "experts";
      params.push_back(b.getNamedAttr("activation", b.getStringAttr(*act)));
    } else {
      return;
    }

    emit(op, op->getOperands(), kind, params);
  }

  /// On OpenCL and Vulkan, the KV caches `op` reads stay on the device: each operand
  /// an `llm.kv_cache_update` writes (static, at most 4 dimensions, as
  /// every resident buffer) is read through a `moir.halide_sync_rows` of
  /// the rows it wrote, which the call then keeps resident (emit). Also in
  /// front of MLIR's prefill of a decode-only kernel (emitDecodeOnly): the
  /// device's copy must see every forward's rows.
  void syncCaches(Operation *op) {
    if (device != "opencl" && device != "vulkan")
      return;
    OpBuilder builder(op);
    Location loc = op->getLoc();
    Value zero; // at the function's start, as fewTokensBranch's constants
    for (OpOperand &operand : op->getOpOperands()) {
      auto update = operand.get().getDefiningOp<llm::KVCacheUpdateOp>();
      auto type = update ? cast<RankedTensorType>(update.getType()) : RankedTensorType();
      // The device keeps buffers under 2 GB (HalideCallBufferization.cpp,
      // mayKeep); a larger cache is copied per call.
      int64_t bytes = update && type.hasStaticShape()
                          ? type.getNumElements() * type.getElementTypeBitWidth() / 8
                          : 0;
      // On Vulkan only a multiple of 64 bytes: every copy into the kept
      // buffer is then one too, as Halide 21's Vulkan allocator needs.
      if (!update || !type.hasStaticShape() || type.getRank() > 4 ||
          bytes >= (int64_t(1) << 31) - 64 || (device == "vulkan" && bytes % 64))
        continue;
      if (!zero) {
        OpBuilder entry(op->getContext());
        entry.setInsertionPointToStart(
            &op->getParentOfType<FunctionOpInterface>().getFunctionBody().front());
        zero = arith::ConstantIndexOp::create(entry, loc, 0);
      }
      Value rows = tensor::DimOp::create(builder, loc, update.getUpdate(), zero);
      auto sync = moir::HalideSyncRowsOp::create(builder, loc, type, update.getResult(),
                                                 update.getOffset(), rows,
                                                 builder.getStringAttr(device));
      if (std::optional<int64_t> layer = moir::attrs::getLayer(op)) {
        moir::attrs::setLayer(sync, *layer);
        moir::attrs::setLayer(rows.getDefiningOp(), *layer);
      }
      operand.set(sync.getResult());
    }
  }

  /// At `builder`: `scf.if (dim(tokens, 0) < 4)` with both regions and
  /// `op`'s result types, in `op`'s layer (the dimension and comparison
  /// too; their constants at the function's start, where canonicalization
  /// keeps them: between a layer's ops they would split its outlined run).
  static scf::IfOp fewTokensBranch(OpBuilder &builder, Operation *op, Value tokens) {
    Location loc = op->getLoc();
    OpBuilder entry(op->getContext());
    entry.setInsertionPointToStart(
        &op->getParentOfType<FunctionOpInterface>().getFunctionBody().front());
    Value zero = arith::ConstantIndexOp::create(entry, loc, 0);
    Value four = arith::ConstantIndexOp::create(entry, loc, 4);
    Value rows = tensor::DimOp::create(builder, loc, tokens, zero);
    Value few = arith::CmpIOp::create(builder, loc, arith::CmpIPredicate::slt, rows, four);
    auto branch = scf::IfOp::create(builder, loc, op->getResultTypes(), few, true, true);
    if (std::optional<int64_t> layer = moir::attrs::getLayer(op)) {
      moir::attrs::setLayer(branch, *layer);
      moir::attrs::setLayer(rows.getDefiningOp(), *layer);
      moir::attrs::setLayer(few.getDefiningOp(), *layer);
    }
    return branch;
  }

  /// Replaces `op` by a call of kernel `kind` on its operands when it has
  /// fewer than 4 tokens (its first operand's leading dimension), and keeps
  /// it, on MLIR, for more.
  void emitDecodeOnly(Operation *op, StringRef kind, ArrayRef<NamedAttribute> params) {
    Value first = op->getOperand(0);
    int64_t tokens = cast<RankedTensorType>(first.getType()).getDimSize(0);
    if (!ShapedType::isDynamic(tokens)) {
      if (tokens < 4)
        emit(op, op->getOperands(), kind, params);
      return;
    }
    Location loc = op->getLoc();
    OpBuilder builder(op);
    scf::IfOp branch = fewTokensBranch(builder, op, first);
    // The op itself moves into the else branch; a clone in the then branch
    // becomes the Halide call.
    builder.setInsertionPointToStart(&branch.getThenRegion().front());
    Operation *decode = builder.clone(*op);
    scf::YieldOp::create(builder, loc, decode->getResults());
    op->replaceAllUsesWith(branch.getResults());
    Block &otherwise = branch.getElseRegion().front();
    op->moveBefore(&otherwise, otherwise.end());
    builder.setInsertionPointToEnd(&otherwise);
    scf::YieldOp::create(builder, loc, op->getResults());
    emit(decode, decode->getOperands(), kind, params);
  }

  /// The inputs of a `kind` kernel on `operands` whose packed codes
  /// multiply activations quantized to int8 in `variant` ("1,2"; empty for
  /// none): with int8-dot, every integer-coded weight in prefill; in
  /// decode those int8-decode names (nibbles: 4-bit codes; all; none). The
  /// experts' gate and up go together, when both can and share a form.
  std::string int8Inputs(StringRef kind, ValueRange operands, StringRef variant) {
    if (!int8Dot || device != "host")
      return "";
    auto wanted = [&](unsigned i) {
      StringRef storage = i < operands.size() ? int8Storage(operands[i]) : StringRef();
      if (storage.empty())
        return false;
      return variant != "decode" || int8Decode == "all" ||
             (int8Decode == "nibbles" && storage == "u4");
    };
    SmallVector<unsigned> inputs;
    if (kind == "linear" || kind == "glu_linear") {
      unsigned weight = kind == "linear" ? 1 : 2;
      if (wanted(weight))
        inputs.push_back(weight);
    } else if (kind == "experts") {
      auto pair = [&](unsigned gate) {
        if (wanted(gate) && wanted(gate + 1) &&
            operands[gate].getType() == operands[gate + 1].getType())
          inputs.append({gate, gate + 1});
      };
      pair(3);
      if (wanted(5))
        inputs.push_back(5);
      if (operands.size() == 9) {
        pair(6);
        if (wanted(8))
          inputs.push_back(8);
      }
    }
    return llvm::join(llvm::map_range(inputs, [](unsigned i) { return std::to_string(i); }), ",");
  }

  /// Replaces `op` by a call of kernel `kind` on `operands`; a linear gets a
  /// decode and a prefill kernel.
  void emit(Operation *op, ValueRange operands, StringRef kind, ArrayRef<NamedAttribute> params) {
    Builder b(op->getContext());
    OpBuilder builder(op);
    Location loc = op->getLoc();
    TypeRange resultTypes = op->getResultTypes();
    // On a device the weights stay there between calls, and so do the KV
    // caches a moir.halide_sync_rows keeps current (MoIROps.td).
    SmallVector<int64_t> resident;
    if (device != "host")
      for (auto [i, v] : llvm::enumerate(operands))
        if (isa_and_nonnull<llm::WeightRefOpInterface, moir::HalideSyncRowsOp>(v.getDefiningOp()))
          resident.push_back(static_cast<int64_t>(i));
    auto call = [&](StringRef variant) -> ValueRange {
      SmallVector<NamedAttribute> all(params.begin(), params.end());
      if (device != "host")
        all.push_back(b.getNamedAttr("device", b.getStringAttr(device)));
      if (!variant.empty())
        all.push_back(b.getNamedAttr("variant", b.getStringAttr(variant)));
      std::string int8 = int8Inputs(kind, operands, variant);
      if (!int8.empty())
        all.push_back(b.getNamedAttr("int8", b.getStringAttr(int8)));
      if (!int8.empty() && variant == "decode" && int8DecodeBits == 16)
        all.push_back(b.getNamedAttr("int8_bits", b.getI64IntegerAttr(16)));
      DictionaryAttr dict = b.getDictionaryAttr(all);
      std::string callee = calleeName(kind, operands, resultTypes, dict);
      auto created = moir::HalideCallOp::create(
          builder, loc, resultTypes, operands, builder.getStringAttr(callee),
          builder.getStringAttr(kind), dict,
          resident.empty() ? DenseI64ArrayAttr() : builder.getDenseI64ArrayAttr(resident));
      if (std::optional<int64_t> layer = moir::attrs::getLayer(op))
        moir::attrs::setLayer(created, *layer);
      return created.getResults();
    };

    SmallVector<Value> replacement;
    if (kind == "linear" || kind == "glu_linear" || kind == "experts") {
      // Decode and prefill want different schedules (a dot product per
      // weight row, read start to end, or register tiles of rows that
      // share each load of the activations): two kernels, the token count
      // picks one.
      int64_t tokens = cast<RankedTensorType>(operands[0].getType()).getDimSize(0);
      if (!ShapedType::isDynamic(tokens)) {
        llvm::append_range(replacement, call(tokens < 4 ? "decode" : "prefill"));
      } else {
        scf::IfOp branch = fewTokensBranch(builder, op, operands[0]);
        builder.setInsertionPointToStart(&branch.getThenRegion().front());
        scf::YieldOp::create(builder, loc, call("decode"));
        builder.setInsertionPointToStart(&branch.getElseRegion().front());
        scf::YieldOp::create(builder, loc, call("prefill"));
        replacement.push_back(branch.getResult(0));
      }
    } else {
      llvm::append_range(replacement, call(""));
    }
    op->replaceAllUsesWith(replacement);
    op->erase();
  }
};

} // namespace
