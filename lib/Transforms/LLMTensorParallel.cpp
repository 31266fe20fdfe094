//===- LLMTensorParallel.cpp - one rank's heads and FFN columns ------------===//
//
// Tensor parallelism that reproduces the 1-rank numbers bit for bit. The
// usual split (Megatron's) cuts o_proj and down_proj along their inputs and
// adds the ranks' partial sums with an all-reduce: the sums then depend on
// the rank count. Here every matrix is cut along its *outputs* only, so each
// output element is one dot product over the whole input, computed on one
// rank exactly as the 1-rank artifact computes it, and all-gathers copy the
// ranks' columns together (copies, no arithmetic):
//
//   attention  q/k/v rows of this rank's heads -> per-head norm, RoPE, KV
//              cache (of its KV heads only), attention -> all-gather heads
//              -> o_proj rows of its share of the hidden size -> all-gather
//   FFN        gate/up rows of its share of the intermediate size -> the
//              activation -> all-gather -> down rows -> all-gather
//   LM head    rows of its share of the vocabulary -> all-gather
//
// Four all-gathers per layer instead of Megatron's two all-reduces, of the
// same sizes: the price of exactness. Weights, KV caches and the FLOPs of
// every split matrix divide by the rank count.
//
// W8A8 (llm.dynamic_quant, llm.static_quant in front of a linear) follows:
// every linear's input is whole on every rank, so each rank quantizes the
// same rows the 1-rank artifact does (a dynamic row scale is the row's
// maximum over all of its columns); the gathers go in front of o_proj's and
// down's quantizations.
//
//===----------------------------------------------------------------------===//

#include "LLM/IR/LLMOps.h"
#include "MoIR/IR/MoIRDialect.h"
#include "moir/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/STLExtras.h"

namespace moir {
#define GEN_PASS_DEF_LLMTENSORPARALLELPASS
#include "moir/Transforms/Passes.h.inc"
} // namespace moir

using namespace mlir;
using namespace moir;

namespace {

/// The first of `units` units rank `r` of `ranks` holds.
int64_t firstUnit(int64_t r, int64_t units, int64_t ranks) { return r * units / ranks; }

/// W8A8's activation quantization in front of a linear (llm.dynamic_quant,
/// llm.static_quant): its input operand, or null for any other op.
OpOperand *quantInput(Operation *op) {
  if (auto dq = dyn_cast_or_null<llm::DynamicQuantOp>(op))
    return &dq.getInputMutable();
  if (auto sq = dyn_cast_or_null<llm::StaticQuantOp>(op))
    return &sq.getInputMutable();
  return nullptr;
}

/// `v`, or the input of the W8A8 quantization that makes it.
Value throughQuant(Value v) {
  OpOperand *in = quantInput(v.getDefiningOp());
  return in ? in->get() : v;
}

std::string layerLabel(Operation *op) {
  if (std::optional<int64_t> layer = attrs::getLayer(op))
    return "layer " + std::to_string(*layer);
  return "the model";
}

/// `type` (a tensor or a quantized tensor) with dimension `dim` set to `size`.
Type withDim(Type type, int64_t dim, int64_t size) {
  if (auto tensor = dyn_cast<RankedTensorType>(type)) {
    SmallVector<int64_t> shape(tensor.getShape());
    shape[dim] = size;
    return tensor.clone(shape);
  }
  auto q = cast<llm::QTensorType>(type);
  SmallVector<int64_t> shape(q.getShape());
  shape[dim] = size;
  return llm::QTensorType::get(type.getContext(), shape, q.getStorageType(), q.getScheme());
}

void copyLayer(Operation *from, Operation *to) {
  if (std::optional<int64_t> layer = attrs::getLayer(from))
    attrs::setLayer(to, *layer);
}

struct Splitter {
  int64_t ranks, rank;
  std::string error;
  Operation *errorAt = nullptr;

  bool fail(Operation *op, const Twine &why) {
    if (error.empty()) {
      error = ("llm-tensor-parallel: " + layerLabel(op) + ": " + why).str();
      errorAt = op;
    }
    return false;
  }

  /// Rows [a, b) of the weight (or bias) `w`: a weight-store view
  /// "<name>[rows=a:b]", so the rank's artifact packs only those rows.
  FailureOr<Value> rows(OpBuilder &b, Operation *user, Value w, int64_t a, int64_t e) {
    Value source = w;
    auto dequant = w.getDefiningOp<llm::DequantizeOp>();
    if (dequant)
      source = dequant.getInput();
    auto weight = source.getDefiningOp<llm::WeightOp>();
    if (!weight || (weight.getScaleName() && !perChannel(weight))) {
      (void)sliceable(user, w, "weight or bias");
      return failure();
    }
    auto view = [&](StringRef whole) {
      return b.getStringAttr(whole + "[rows=" + Twine(a) + ":" + Twine(e) + "]");
    };
    auto part = llm::WeightOp::create(
        b, weight.getLoc(), withDim(source.getType(), 0, e - a), view(weight.getName()),
        weight.getScaleName() ? view(*weight.getScaleName()) : StringAttr());
    copyLayer(weight, part);
    if (!dequant)
      return part.getResult();
    auto floats = llm::DequantizeOp::create(b, dequant.getLoc(), withDim(w.getType(), 0, e - a),
                                            part.getResult());
    copyLayer(dequant, floats);
    return floats.getResult();
  }

  /// `linear` computing only its output rows [a, e) (same input).
  FailureOr<llm::LinearOp> sliceLinear(llm::LinearOp linear, int64_t a, int64_t e) {
    OpBuilder b(linear);
    FailureOr<Value> w = rows(b, linear, linear.getWeight(), a, e);
    if (failed(w))
      return failure();
    Value bias;
    if (linear.getBias()) {
      FailureOr<Value> part = rows(b, linear, linear.getBias(), a, e);
      if (failed(part))
        return failure();
      bias = *part;
    }
    auto type = cast<RankedTensorType>(linear.getType());
    auto sliced = llm::LinearOp::create(b, linear.getLoc(), withDim(type, type.getRank() - 1, e - a),
                                        linear.getInput(), *w, bias, linear.getPreciseAttr());
    sliced->setDiscardableAttrs(linear->getDiscardableAttrDictionary());
    return sliced;
  }

  /// The columns per unit to split `size` columns in: the widest of 64,
  /// 32, 16 and 8 that gives every rank at least 4 units (so the ranks'
  /// shares differ by at most a quarter), else 4, 2 or 1 with a unit per
  /// rank. Split points on multiples of 8 keep the CPU kernels' tiles of
  /// weight rows (4 rows; int8 kernels interleave up to 8) where the 1-rank
  /// kernel has them, so each output is computed the same way. (Only
  /// projections of under 32 x ranks outputs, in tiny test models, fall back
  /// to smaller units; their splits may then cut a tile.)
  int64_t unitOf(int64_t size) {
    for (int64_t unit : {64, 32, 16, 8})
      if ((size + unit - 1) / unit >= 4 * ranks)
        return unit;
    for (int64_t unit : {4, 2})
      if ((size + unit - 1) / unit >= ranks)
        return unit;
    return 1;
  }

  /// `all_gather(value)` of this rank's columns of `full`, units of `unit`.
  Value gather(OpBuilder &b, Operation *at, Value value, RankedTensorType full, int64_t unit) {
    auto all = llm::AllGatherOp::create(b, at->getLoc(), full, value, b.getI64IntegerAttr(unit),
                                        b.getI64IntegerAttr(rank), b.getI64IntegerAttr(ranks));
    copyLayer(at, all);
    return all.getResult();
  }

  int64_t firstColumn(int64_t r, int64_t cols, int64_t unit) {
    return llm::AllGatherOp::firstColumn(r, cols, unit, ranks);
  }

  /// `linear`'s output rows split over the ranks and gathered back.
  bool splitOutputs(llm::LinearOp linear) {
    auto type = cast<RankedTensorType>(linear.getType());
    int64_t n = type.getShape().back();
    if (ShapedType::isDynamic(n) || n < ranks)
      return fail(linear, "a projection with " +
                              (ShapedType::isDynamic(n) ? "dynamic" : Twine(n)) +
                              " outputs cannot be split over " + Twine(ranks) + " ranks");
    if (!sliceable(linear))
      return false;
    int64_t unit = unitOf(n);
    FailureOr<llm::LinearOp> mine =
        sliceLinear(linear, firstColumn(rank, n, unit), firstColumn(rank + 1, n, unit));
    if (failed(mine))
      return false;
    OpBuilder b(linear);
    Value all = gather(b, linear, mine->getResult(), type, unit);
    linear.getResult().replaceAllUsesWith(all);
    linear.erase();
    return true;
  }

  /// Whether a reshape between [T, H*D] and [T, H, D] keeps the tokens
  /// whole and splits (or joins) the last dimension: [[0], [1, 2]].
  template <typename Reshape>
  static bool splitsHeads(Reshape op) {
    SmallVector<ReassociationIndices> groups = op.getReassociationIndices();
    return groups.size() == 2 && groups[0] == ReassociationIndices{0} &&
           groups[1] == ReassociationIndices{1, 2};
  }

  /// Whether `w` (a projection's weight or bias) can be cut into row views;
  /// else records why. Checked for every weight before anything is
  /// rewritten, so a refusal leaves the IR as it was.
  bool sliceable(Operation *user, Value w, StringRef what) {
    Value source = w;
    if (auto dequant = w.getDefiningOp<llm::DequantizeOp>())
      source = dequant.getInput();
    auto weight = source.getDefiningOp<llm::WeightOp>();
    if (!weight)
      return fail(user, "a projection's " + what + " is not one stored tensor: it cannot be "
                        "split by rows");
    if (weight.getScaleName() && !perChannel(weight))
      return fail(user, "'" + weight.getName() + "' is quantized with a separate scale tensor ('" +
                            *weight.getScaleName() +
                            "', FP8 blocks, AWQ or GPTQ): tensor parallelism splits float, GGUF "
                            "and per-channel FP8/INT8 weights only, not these yet");
    return true;
  }
  /// A weight with one scale per output row (fbgemm FP8, INT8 per channel):
  /// its rows and their scales cut the same way.
  static bool perChannel(llm::WeightOp weight) {
    auto q = dyn_cast<llm::QTensorType>(weight.getType());
    return q && q.getScheme().getKind() == llm::QuantKind::per_channel;
  }
  bool sliceable(llm::LinearOp linear) {
    return sliceable(linear, linear.getWeight(), "weight") &&
           (!linear.getBias() || sliceable(linear, linear.getBias(), "bias"));
  }

  /// The projection behind a [T, H, D] attention operand: the chain of
  /// per-head ops (RMSNorm over D, RoPE), the expand_shape from [T, H*D] and
  /// the linear, or a failure naming what stands in the way.
  struct HeadChain {
    SmallVector<Operation *> perHead;
    tensor::ExpandShapeOp expand;
    llm::LinearOp linear;
  };
  FailureOr<HeadChain> headChain(Operation *attention, Value v) {
    HeadChain chain;
    while (true) {
      Operation *def = v.getDefiningOp();
      if (!def || !v.hasOneUse()) {
        fail(attention, "an attention operand is not a projection reshaped into heads, used "
                        "only by the attention");
        return failure();
      }
      if (auto rope = dyn_cast<llm::RopeOp>(def)) {
        chain.perHead.push_back(def);
        v = rope.getInput();
      } else if (auto norm = dyn_cast<llm::RMSNormOp>(def);
                 norm && cast<RankedTensorType>(norm.getType()).getRank() == 3) {
        chain.perHead.push_back(def);
        v = norm.getInput();
      } else if (auto expand = dyn_cast<tensor::ExpandShapeOp>(def);
                 expand && expand.getSrcType().getRank() == 2 &&
                 expand.getResultType().getRank() == 3 && splitsHeads(expand)) {
        chain.expand = expand;
        chain.linear = expand.getSrc().getDefiningOp<llm::LinearOp>();
        if (!chain.linear || !expand.getSrc().hasOneUse()) {
          fail(attention, "the heads are not reshaped from one projection's output");
          return failure();
        }
        return chain;
      } else {
        fail(attention, "'" + def->getName().getStringRef() +
                            "' between a projection and the attention is not known to be per head");
        return failure();
      }
    }
  }

  /// `chain` computing only heads [a, e): the projection's rows of those
  /// heads, and every op of the chain on the smaller shape. Returns the new
  /// value at the chain's end.
  FailureOr<Value> sliceHeads(HeadChain &chain, int64_t a, int64_t e) {
    int64_t d = chain.expand.getResultType().getDimSize(2);
    FailureOr<llm::LinearOp> mine = sliceLinear(chain.linear, a * d, e * d);
    if (failed(mine))
      return failure();
    OpBuilder b(chain.expand);
    SmallVector<OpFoldResult> shape = chain.expand.getMixedOutputShape();
    shape[1] = b.getIndexAttr(e - a);
    auto expand = tensor::ExpandShapeOp::create(
        b, chain.expand.getLoc(), withDim(chain.expand.getResultType(), 1, e - a),
        mine->getResult(), chain.expand.getReassociationIndices(), shape);
    expand->setDiscardableAttrs(chain.expand->getDiscardableAttrDictionary());
    chain.expand.getResult().replaceAllUsesWith(expand.getResult());
    chain.expand.erase();
    chain.linear.erase();
    Value v = expand.getResult();
    // Per-head ops keep their operands' type: retype them in order.
    for (Operation *op : llvm::reverse(chain.perHead)) {
      op->getResult(0).setType(withDim(op->getResult(0).getType(), 1, e - a));
      v = op->getResult(0);
    }
    return v;
  }

  bool splitAttention(llm::AttentionOp attention) {
    auto qType = cast<RankedTensorType>(attention.getQuery().getType());
    int64_t heads = qType.getDimSize(1);
    auto kUpdate = attention.getKey().getDefiningOp<llm::KVCacheUpdateOp>();
    auto vUpdate = attention.getValue().getDefiningOp<llm::KVCacheUpdateOp>();
    if (!kUpdate || !vUpdate || kUpdate == vUpdate)
      return fail(attention, "the attention does not read a key and a value cache this step "
                             "updates");
    int64_t kvHeads = cast<ShapedType>(kUpdate.getType()).getDimSize(1);
    if (kvHeads < 1 || heads % kvHeads != 0)
      return fail(attention, "query heads are not a multiple of KV heads");
    // Whole groups (a KV head and the query heads that read it) split over
    // the ranks. Splitting a group's query heads over ranks (replicating
    // its KV head, as vLLM does past the KV head count) would change the
    // attention kernel's blocks, which hold a group's heads together, and
    // with them the last bits: refused, to keep the numbers the 1-rank ones.
    if (kvHeads < ranks)
      return fail(attention, "has " + Twine(kvHeads) + " KV heads, fewer than the " +
                                 Twine(ranks) + " ranks: every rank needs whole query groups "
                                 "(a KV head and its " + Twine(heads / kvHeads) +
                                 " query heads) for the 1-rank numbers; use at most " +
                                 Twine(kvHeads) + " ranks");
    int64_t group = heads / kvHeads;
    int64_t ka = firstUnit(rank, kvHeads, ranks), ke = firstUnit(rank + 1, kvHeads, ranks);
    int64_t qa = ka * group, qe = ke * group;
    // Each cache: a function argument, updated here and read by this
    // attention only (and returned).
    SmallVector<std::pair<llm::KVCacheUpdateOp, HeadChain>> caches;
    for (llm::KVCacheUpdateOp update : {kUpdate, vUpdate}) {
      auto arg = dyn_cast<BlockArgument>(update.getCache());
      if (!arg || !arg.hasOneUse())
        return fail(attention, "a KV cache is not an entry argument of its own");
      for (Operation *user : update->getUsers())
        if (user != attention && !isa<func::ReturnOp>(user))
          return fail(attention, "a KV cache is read by more than this attention");
      FailureOr<HeadChain> chain = headChain(attention, update.getUpdate());
      if (failed(chain))
        return false;
      caches.push_back({update, *chain});
    }
    FailureOr<HeadChain> query = headChain(attention, attention.getQuery());
    if (failed(query))
      return false;
    // The output: [T, H, D] -> collapse -> o_proj.
    if (!attention->hasOneUse())
      return fail(attention, "the attention's output has more than one user");
    auto collapse = dyn_cast<tensor::CollapseShapeOp>(*attention->getUsers().begin());
    if (!collapse || collapse.getResultType().getRank() != 2 || !collapse->hasOneUse() ||
        !splitsHeads(collapse))
      return fail(attention, "the attention's output is not flattened for one projection");
    // (W8A8: through the quantization of o_proj's input, which then reads
    // the gathered heads: the whole row, as on 1 rank.)
    Operation *next = *collapse->getUsers().begin();
    if (quantInput(next) && next->hasOneUse())
      next = *next->getUsers().begin();
    auto out = dyn_cast<llm::LinearOp>(next);
    if (!out || throughQuant(out.getInput()) != collapse.getResult())
      return fail(attention, "the attention's output does not feed a projection");

    if (!sliceable(query->linear) || !sliceable(caches[0].second.linear) ||
        !sliceable(caches[1].second.linear) || !sliceable(out))
      return false;

    // Everything matched: rewrite.
    FailureOr<Value> q = sliceHeads(*query, qa, qe);
    if (failed(q))
      return false;
    for (auto &[update, chain] : caches) {
      FailureOr<Value> rows = sliceHeads(chain, ka, ke);
      if (failed(rows))
        return false;
      auto arg = cast<BlockArgument>(update.getCache());
      arg.setType(withDim(arg.getType(), 1, ke - ka));
      cast<Value>(update.getResult()).setType(arg.getType());
    }
    cast<Value>(attention.getResult()).setType(withDim(attention.getType(), 1, qe - qa));
    OpBuilder b(collapse);
    auto flat = tensor::CollapseShapeOp::create(b, collapse.getLoc(), attention.getResult(),
                                                collapse.getReassociationIndices());
    flat->setDiscardableAttrs(collapse->getDiscardableAttrDictionary());
    // (Values may be narrower than queries and keys: the output's head dim.)
    int64_t valueDim = cast<RankedTensorType>(attention.getType()).getDimSize(2);
    Value all = gather(b, collapse, flat.getResult(), collapse.getResultType(),
                       group * valueDim);
    collapse.getResult().replaceAllUsesWith(all);
    collapse.erase();
    return splitOutputs(out);
  }

  /// An FFN: `down` reads an element-wise activation (GLU, activation,
  /// xIELU) of projections of one input. Those projections' rows split, the
  /// activation runs on the rank's columns, and the columns are gathered for
  /// down, whose rows split in turn.
  bool splitFFN(llm::LinearOp down) {
    // W8A8: down's input quantized; the gather goes in front of the
    // quantization, which then sees the whole row, as on 1 rank.
    OpOperand *downInput = quantInput(down.getInput().getDefiningOp());
    if (downInput && !down.getInput().hasOneUse())
      return false;
    if (!downInput)
      downInput = &down.getInputMutable();
    Operation *act = downInput->get().getDefiningOp();
    if (!act || !isa<llm::GLUOp, llm::ActivationOp, llm::XIELUOp>(act) || !act->hasOneUse())
      return false;
    auto type = cast<RankedTensorType>(act->getResult(0).getType());
    SmallVector<llm::LinearOp> projections;
    SmallVector<unsigned> slots;
    for (OpOperand &operand : act->getOpOperands()) {
      if (operand.get().getType() != type)
        continue; // xIELU's scalar parameters
      auto linear = operand.get().getDefiningOp<llm::LinearOp>();
      if (!linear || !linear->hasOneUse())
        return false;
      if (!projections.empty() &&
          throughQuant(linear.getInput()) != throughQuant(projections.front().getInput()))
        return false;
      projections.push_back(linear);
      slots.push_back(operand.getOperandNumber());
    }
    if (projections.empty())
      return false;
    int64_t n = type.getShape().back();
    if (ShapedType::isDynamic(n) || n < ranks)
      return fail(down, "an FFN of " + (ShapedType::isDynamic(n) ? "dynamic" : Twine(n)) +
                            " columns cannot be split over " + Twine(ranks) + " ranks");
    if (!sliceable(down) || !llvm::all_of(projections, [&](llm::LinearOp p) { return sliceable(p); }))
      return false;
    int64_t unit = unitOf(n);
    int64_t a = firstColumn(rank, n, unit), e = firstColumn(rank + 1, n, unit);
    for (auto [linear, slot] : llvm::zip(projections, slots)) {
      FailureOr<llm::LinearOp> mine = sliceLinear(linear, a, e);
      if (failed(mine))
        return false;
      act->setOperand(slot, mine->getResult());
      linear.erase();
    }
    act->getResult(0).setType(withDim(type, type.getRank() - 1, e - a));
    OpBuilder b(downInput->getOwner());
    Value all = gather(b, act, act->getResult(0), type, unit);
    downInput->assign(all);
    return splitOutputs(down);
  }

  /// Whether weight `w` (through a dequantize) has no other user.
  static bool ownWeight(Value w) {
    if (!w.hasOneUse())
      return false;
    auto dequant = w.getDefiningOp<llm::DequantizeOp>();
    return !dequant || dequant.getInput().hasOneUse();
  }

  bool run(func::FuncOp func) {
    // Act-order GPTQ weights read their inputs gathered (llm.permute):
    // a rank's slice of such an input is not a contiguous block.
    llm::PermuteOp permute;
    func.walk([&](llm::PermuteOp op) {
      permute = op;
      return WalkResult::interrupt();
    });
    if (permute)
      return fail(permute, "act-order (GPTQ desc_act) weights, whose inputs are gathered, are "
                           "not split yet");
    SmallVector<llm::AttentionOp> attentions;
    func.walk([&](llm::AttentionOp attention) { attentions.push_back(attention); });
    int64_t split = 0;
    for (llm::AttentionOp attention : attentions) {
      if (!splitAttention(attention))
        return false;
      ++split;
    }
    // (Collected after the attentions: splitting them replaced projections.)
    SmallVector<llm::LinearOp> linears;
    func.walk([&](llm::LinearOp linear) { linears.push_back(linear); });
    // FFNs, then the LM head: the projection that makes the logits (the
    // function's first result) when its weight is its own (a weight tied to
    // the embedding is held whole for the lookup anyway).
    auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
    for (llm::LinearOp linear : linears) {
      // splitFFN erases the projections it slices, all before `linear`
      // (the down projection) in this list: only visited ones go.
      Operation *input = throughQuant(linear.getInput()).getDefiningOp();
      if (!input || !isa<llm::GLUOp, llm::ActivationOp, llm::XIELUOp>(input))
        continue;
      if (!splitFFN(linear)) {
        if (!error.empty())
          return false;
        continue;
      }
      ++split;
    }
    if (ret.getNumOperands() > 0)
      if (auto head = ret.getOperand(0).getDefiningOp<llm::LinearOp>();
          head && head->hasOneUse() && ownWeight(head.getWeight())) {
        if (!splitOutputs(head))
          return false;
        ++split;
      }
    if (split == 0)
      return fail(func, "found no attention or FFN it can split (MLA attention is not split "
                        "yet)");
    // The KV caches' argument types changed: so did the function's.
    func.setType(FunctionType::get(func.getContext(), func.getBody().front().getArgumentTypes(),
                                   ret.getOperandTypes()));
    return true;
  }
};

struct LLMTensorParallelPass
    : moir::impl::LLMTensorParallelPassBase<LLMTensorParallelPass> {
  using Base::Base;

  void runOnOperation() override {
    if (ranks < 2 || rank < 0 || rank >= ranks) {
      getOperation().emitError() << "llm-tensor-parallel: needs ranks >= 2 and 0 <= rank < ranks, "
                                    "got ranks="
                                 << ranks << " rank=" << rank;
      return signalPassFailure();
    }
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      Splitter splitter{ranks, rank, {}};
      if (!splitter.run(func)) {
        (splitter.errorAt ? splitter.errorAt : func.getOperation())->emitError() << splitter.error;
        return signalPassFailure();
      }
    }
  }
};

} // namespace
