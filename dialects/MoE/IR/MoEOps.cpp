//===- MoEOps.cpp - Mixture-of-Experts ops --------------------------------===//

#include "MoE/IR/MoEOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/PatternMatch.h"

using namespace mlir;
using namespace moir;
using namespace moir::moe;
using llm::getWeightShape;
using llm::verifyDim;
using llm::verifyRank;

#define GET_OP_CLASSES
#include "MoE/IR/MoEOps.cpp.inc"

/// Checks stacked expert weights: gate/up `[E, I, H]`, down `[E, H, I]`.
/// Returns the number of experts.
static FailureOr<int64_t> verifyExpertWeights(Operation *op, Type gate, Type up,
                                              Type down, int64_t hidden) {
  if (failed(verifyRank(op, "expert gate weight", gate, 3)) ||
      failed(verifyRank(op, "expert up weight", up, 3)) ||
      failed(verifyRank(op, "expert down weight", down, 3)))
    return failure();
  ArrayRef<int64_t> g = getWeightShape(gate), u = getWeightShape(up),
                    d = getWeightShape(down);
  if (g != u)
    return op->emitOpError("expert gate and up weights must have the same "
                           "shape");
  if (failed(verifyDim(op, "expert gate hidden dimension", g[2], hidden)) ||
      failed(verifyDim(op, "expert down experts", d[0], g[0])) ||
      failed(verifyDim(op, "expert down output dimension", d[1], hidden)) ||
      failed(verifyDim(op, "expert down ffn dimension", d[2], g[1])))
    return failure();
  return g[0];
}

/// Checks an act-order input order: `[experts, hidden]` i32 (or none).
static LogicalResult verifyInputOrder(Operation *op, Value order, int64_t experts,
                                      int64_t hidden) {
  if (!order)
    return success();
  auto type = cast<RankedTensorType>(order.getType());
  if (failed(verifyRank(op, "input_order", type, 2)) ||
      failed(verifyDim(op, "input_order experts", type.getDimSize(0), experts)) ||
      failed(verifyDim(op, "input_order hidden dimension", type.getDimSize(1), hidden)))
    return failure();
  return success();
}

/// Checks the routing against `experts` experts and the correction bias
/// operand (present exactly for noaux_tc, one value per expert).
/// A dense shared expert's weights (`[ffn, hidden]` gate and up, `[hidden,
/// ffn]` down) for a layer of width `hidden`; returns its FFN width.
static FailureOr<int64_t> verifySharedExpert(Operation *op, Type sg, Type su, Type sd,
                                             int64_t hidden) {
  if (failed(verifyRank(op, "shared gate weight", sg, 2)) ||
      failed(verifyRank(op, "shared up weight", su, 2)) ||
      failed(verifyRank(op, "shared down weight", sd, 2)))
    return failure();
  ArrayRef<int64_t> g = getWeightShape(sg), u = getWeightShape(su), d = getWeightShape(sd);
  if (g != u)
    return op->emitOpError("shared gate and up weights must have the same shape");
  if (failed(verifyDim(op, "shared gate hidden dimension", g[1], hidden)) ||
      failed(verifyDim(op, "shared down output dimension", d[0], hidden)) ||
      failed(verifyDim(op, "shared down ffn dimension", d[1], g[0])))
    return failure();
  return g[0];
}

static LogicalResult verifyRoutingFor(Operation *op, RoutingAttr routing,
                                      Value bias, int64_t experts) {
  if (failed(routing.verifyForExperts([&] { return op->emitOpError(); }, experts)))
    return failure();
  if (routing.needsCorrectionBias() != (bias != nullptr))
    return op->emitOpError(bias ? "correction bias given but routing method is "
                                  "not noaux_tc"
                                : "noaux_tc routing needs the correction bias");
  if (bias && (failed(verifyRank(op, "correction bias", bias.getType(), 1)) ||
               failed(verifyDim(op, "correction bias size",
                                cast<RankedTensorType>(bias.getType()).getDimSize(0),
                                experts))))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// RouteOp
//===----------------------------------------------------------------------===//

LogicalResult RouteOp::verify() {
  auto logits = getLogits().getType();
  auto weights = getWeights().getType();
  auto ids = getIds().getType();
  RoutingAttr routing = getRouting();
  if (failed(verifyRank(*this, "logits", logits, 2)) ||
      failed(verifyRank(*this, "weights", weights, 2)) ||
      failed(verifyRank(*this, "ids", ids, 2)))
    return failure();
  int64_t experts = logits.getDimSize(1);
  if (ShapedType::isDynamic(experts))
    return emitOpError("the number of experts (logits dimension 1) must be static");
  if (weights.getShape() != ids.getShape())
    return emitOpError("weights and ids must have the same shape");
  if (failed(verifyDim(*this, "weights token dimension", weights.getDimSize(0),
                       logits.getDimSize(0))) ||
      failed(verifyDim(*this, "weights top-k dimension", weights.getDimSize(1),
                       routing.getTopK())))
    return failure();
  return verifyRoutingFor(*this, routing, getCorrectionBias(), experts);
}

LogicalResult FusedRouteOp::verify() {
  auto input = getInput().getType();
  auto weights = getWeights().getType();
  auto ids = getIds().getType();
  if (failed(verifyRank(*this, "input", input, 2)) ||
      failed(verifyRank(*this, "router weight", getRouter().getType(), 2)) ||
      failed(verifyRank(*this, "weights", weights, 2)) || failed(verifyRank(*this, "ids", ids, 2)))
    return failure();
  if (isa<llm::QTensorType>(getRouter().getType()))
    return emitOpError("the router weight must not be quantized");
  ArrayRef<int64_t> router = getWeightShape(getRouter().getType());
  int64_t experts = router[0];
  if (ShapedType::isDynamic(experts))
    return emitOpError("the number of experts (router dimension 0) must be static");
  if (weights.getShape() != ids.getShape())
    return emitOpError("weights and ids must have the same shape");
  if (failed(verifyDim(*this, "router hidden dimension", router[1], input.getDimSize(1))) ||
      failed(verifyDim(*this, "weights token dimension", weights.getDimSize(0),
                       input.getDimSize(0))) ||
      failed(verifyDim(*this, "weights top-k dimension", weights.getDimSize(1),
                       getRouting().getTopK())))
    return failure();
  return verifyRoutingFor(*this, getRouting(), getCorrectionBias(), experts);
}

namespace {
/// Selecting all expert groups is no group limit at all: drop the groups
/// (group_limited becomes greedy; noaux_tc keeps its biased selection).
struct DropTrivialExpertGroups : OpRewritePattern<RouteOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RouteOp op,
                                PatternRewriter &rewriter) const override {
    RoutingAttr r = op.getRouting();
    if (r.getNGroup() == 1 || r.getTopkGroup() != r.getNGroup())
      return failure();
    TopkMethod method = r.getMethod() == TopkMethod::group_limited
                            ? TopkMethod::greedy
                            : r.getMethod();
    auto simplified =
        RoutingAttr::get(op.getContext(), r.getTopK(), r.getScoring(), method,
                         /*n_group=*/1, /*topk_group=*/1, r.getNormTopkProb(),
                         r.getScaling());
    rewriter.modifyOpInPlace(op, [&] { op.setRoutingAttr(simplified); });
    return success();
  }
};
} // namespace

void RouteOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                          MLIRContext *context) {
  results.add<DropTrivialExpertGroups>(context);
}

//===----------------------------------------------------------------------===//
// DispatchOp / ExpertFFNOp / CombineOp
//===----------------------------------------------------------------------===//

LogicalResult DispatchOp::verify() {
  auto input = getInput().getType();
  auto ids = getIds().getType();
  auto rows = getRows().getType();
  auto offsets = getOffsets().getType();
  auto sources = getSources().getType();
  int64_t experts = getNumExperts();
  if (experts < 1)
    return emitOpError("needs at least one expert");
  if (failed(verifyRank(*this, "input", input, 2)) ||
      failed(verifyRank(*this, "ids", ids, 2)) ||
      failed(verifyRank(*this, "rows", rows, 2)) ||
      failed(verifyRank(*this, "offsets", offsets, 1)) ||
      failed(verifyRank(*this, "sources", sources, 1)))
    return failure();
  if (rows.getElementType() != input.getElementType())
    return emitOpError("rows must have the input's element type");
  int64_t copies = llm::multiplyDims(input.getDimSize(0), ids.getDimSize(1));
  if (failed(verifyDim(*this, "ids token dimension", ids.getDimSize(0),
                       input.getDimSize(0))) ||
      failed(verifyDim(*this, "rows count", rows.getDimSize(0), copies)) ||
      failed(verifyDim(*this, "rows hidden dimension", rows.getDimSize(1),
                       input.getDimSize(1))) ||
      failed(verifyDim(*this, "offsets size", offsets.getDimSize(0), experts + 1)) ||
      failed(verifyDim(*this, "sources size", sources.getDimSize(0),
                       rows.getDimSize(0))))
    return failure();
  return success();
}

LogicalResult ExpertFFNOp::verify() {
  auto rows = getRows().getType();
  auto offsets = getOffsets().getType();
  auto result = getType();
  if (failed(verifyRank(*this, "rows", rows, 2)) ||
      failed(verifyRank(*this, "offsets", offsets, 1)) ||
      failed(verifyRank(*this, "result", result, 2)))
    return failure();
  FailureOr<int64_t> experts =
      verifyExpertWeights(*this, getGate().getType(), getUp().getType(),
                          getDown().getType(), rows.getDimSize(1));
  if (failed(experts))
    return failure();
  if (failed(verifyInputOrder(*this, getInputOrder(), *experts, rows.getDimSize(1))) ||
      failed(verifyDim(*this, "offsets size", offsets.getDimSize(0), *experts + 1)) ||
      failed(verifyDim(*this, "result rows", result.getDimSize(0), rows.getDimSize(0))) ||
      failed(verifyDim(*this, "result hidden dimension", result.getDimSize(1),
                       rows.getDimSize(1))))
    return failure();
  return success();
}

bool ExpertFFNOp::acceptsQuantizedOperand(unsigned index) {
  return index == getGateMutable().getOperandNumber() ||
         index == getUpMutable().getOperandNumber() ||
         index == getDownMutable().getOperandNumber();
}

LogicalResult CombineOp::verify() {
  auto rows = getRows().getType();
  auto sources = getSources().getType();
  auto weights = getWeights().getType();
  auto result = getType();
  if (failed(verifyRank(*this, "rows", rows, 2)) ||
      failed(verifyRank(*this, "sources", sources, 1)) ||
      failed(verifyRank(*this, "weights", weights, 2)) ||
      failed(verifyRank(*this, "result", result, 2)))
    return failure();
  if (failed(verifyDim(*this, "sources size", sources.getDimSize(0),
                       rows.getDimSize(0))) ||
      failed(verifyDim(*this, "rows count", rows.getDimSize(0),
                       llm::multiplyDims(weights.getDimSize(0), weights.getDimSize(1)))) ||
      failed(verifyDim(*this, "result tokens", result.getDimSize(0),
                       weights.getDimSize(0))) ||
      failed(verifyDim(*this, "result hidden dimension", result.getDimSize(1),
                       rows.getDimSize(1))))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// FusedExpertsOp, ExpertRowsOp: the same operands
//===----------------------------------------------------------------------===//

/// Shared experts as routed-width experts (0 without a shared expert).
template <typename OpTy> static int64_t numSharedExperts(OpTy op) {
  if (!op.hasSharedExpert())
    return 0;
  return getWeightShape(op.getSharedGateProj().getType())[0] /
         getWeightShape(op.getGate().getType())[1];
}

/// Checks the operands the fused expert ops share (input, routing, expert
/// and shared weights) and the result's hidden dimension; returns the
/// number of experts the stacked weights hold.
template <typename OpTy> static FailureOr<int64_t> verifyExpertOperands(OpTy op) {
  auto input = op.getInput().getType();
  auto ids = op.getIds().getType();
  auto weights = op.getWeights().getType();
  if (failed(verifyRank(op, "input", input, 2)) || failed(verifyRank(op, "ids", ids, 2)) ||
      failed(verifyRank(op, "weights", weights, 2)) ||
      failed(verifyRank(op, "result", op.getType(), 2)))
    return failure();
  int64_t hidden = input.getDimSize(1);
  FailureOr<int64_t> experts = verifyExpertWeights(op, op.getGate().getType(), op.getUp().getType(),
                                                   op.getDown().getType(), hidden);
  if (failed(experts) || failed(verifyDim(op, "weights shape", weights.getDimSize(0),
                                          ids.getDimSize(0))) ||
      failed(verifyDim(op, "weights top-k", weights.getDimSize(1), ids.getDimSize(1))) ||
      failed(verifyDim(op, "ids tokens", ids.getDimSize(0), input.getDimSize(0))) ||
      failed(verifyDim(op, "result hidden dimension", op.getType().getDimSize(1), hidden)))
    return failure();
  if constexpr (std::is_same_v<OpTy, FusedExpertsOp>)
    if (failed(verifyInputOrder(op, op.getInputOrder(), *experts, hidden)))
      return failure();
  if (!op.hasSharedExpert())
    return experts;
  FailureOr<int64_t> width =
      verifySharedExpert(op, op.getSharedGateProj().getType(), op.getSharedUpProj().getType(),
                         op.getSharedDownProj().getType(), hidden);
  if (failed(width))
    return failure();
  int64_t ffn = getWeightShape(op.getGate().getType())[1];
  if (ShapedType::isDynamic(*width) || ShapedType::isDynamic(ffn) || ffn <= 0 || *width % ffn != 0)
    return op.emitOpError("shared expert FFN width (")
           << *width << ") must be a multiple of the routed experts' (" << ffn << ")";
  return experts;
}

/// Only the weights may be quantized.
template <typename OpTy> static bool acceptsQuantizedWeight(OpTy op, unsigned index) {
  if constexpr (std::is_same_v<OpTy, FusedExpertsOp>)
    if (Value order = op.getInputOrder(); order && op->getOperand(index) == order)
      return false;
  return index != op.getInputMutable().getOperandNumber() &&
         index != op.getIdsMutable().getOperandNumber() &&
         index != op.getWeightsMutable().getOperandNumber();
}

int64_t FusedExpertsOp::getNumSharedExperts() { return numSharedExperts(*this); }

LogicalResult FusedExpertsOp::verify() {
  if (failed(verifyExpertOperands(*this)))
    return failure();
  // moe-fuse-experts leaves a W8A8 shared expert as its own linears: its
  // down input is quantized over the shared FFN's whole width, not per
  // routed-width slot.
  if (getActivationQuant() && getSharedGateProj())
    return emitOpError("activation_quant applies to routed experts only; this op has shared "
                       "experts");
  return verifyDim(*this, "result tokens", getType().getDimSize(0),
                   getInput().getType().getDimSize(0));
}

bool FusedExpertsOp::acceptsQuantizedOperand(unsigned index) {
  return acceptsQuantizedWeight(*this, index);
}

//===----------------------------------------------------------------------===//
// ExpertRowsOp, CombineRowsOp
//===----------------------------------------------------------------------===//

int64_t ExpertRowsOp::getNumSharedExperts() { return numSharedExperts(*this); }

int64_t ExpertRowsOp::getNumRoutedExperts() {
  return static_cast<int64_t>(getOwners().size()) - getNumSharedExperts();
}

LogicalResult ExpertRowsOp::verify() {
  FailureOr<int64_t> local = verifyExpertOperands(*this);
  if (failed(local))
    return failure();
  if (getRank() < 0)
    return emitOpError("rank must not be negative, got ") << getRank();
  if (getActivationQuant() && getSharedGateProj())
    return emitOpError("activation_quant applies to routed experts only; this op has shared "
                       "experts");
  int64_t routed = getNumRoutedExperts();
  if (routed <= 0)
    return emitOpError("owners must name an owner for every routed expert");
  int64_t owned = 0;
  for (int32_t owner : getOwners().take_front(routed)) {
    if (owner < 0)
      return emitOpError("owners must not be negative");
    owned += owner == static_cast<int64_t>(getRank());
  }
  if (failed(verifyDim(*this, "expert weights' experts (those rank owns)", *local, owned)))
    return failure();
  auto ids = getIds().getType();
  int64_t slots = ids.getDimSize(1) + getNumSharedExperts();
  if (!ShapedType::isDynamic(ids.getDimSize(0)) && !ShapedType::isDynamic(getType().getDimSize(0)))
    return verifyDim(*this, "result rows (tokens x slots)", getType().getDimSize(0),
                     ids.getDimSize(0) * slots);
  return success();
}

bool ExpertRowsOp::acceptsQuantizedOperand(unsigned index) {
  return acceptsQuantizedWeight(*this, index);
}

LogicalResult CombineRowsOp::verify() {
  auto rows = getRows().getType();
  auto ids = getIds().getType();
  if (failed(verifyRank(*this, "rows", rows, 2)) || failed(verifyRank(*this, "ids", ids, 2)) ||
      failed(verifyRank(*this, "result", getType(), 2)))
    return failure();
  if (getNumExperts() <= 0 || getNumShared() < 0)
    return emitOpError("needs a positive number of experts and no negative shared ones");
  if (failed(verifyDim(*this, "result hidden dimension", getType().getDimSize(1),
                       rows.getDimSize(1))) ||
      failed(verifyDim(*this, "result tokens", getType().getDimSize(0), ids.getDimSize(0))))
    return failure();
  int64_t slots = ids.getDimSize(1) + getNumShared();
  if (!ShapedType::isDynamic(ids.getDimSize(0)) && !ShapedType::isDynamic(rows.getDimSize(0)))
    return verifyDim(*this, "rows (tokens x slots)", rows.getDimSize(0), ids.getDimSize(0) * slots);
  return success();
}

//===----------------------------------------------------------------------===//
// LayerOp
//===----------------------------------------------------------------------===//

LogicalResult LayerOp::verify() {
  auto input = getInput().getType();
  auto result = getType();
  if (failed(verifyRank(*this, "input", input, 2)) ||
      failed(verifyRank(*this, "router weight", getRouter().getType(), 2)))
    return failure();
  if (result != input)
    return emitOpError("result type must equal the input type");
  int64_t hidden = input.getDimSize(1);
  ArrayRef<int64_t> router = getWeightShape(getRouter().getType());
  if (failed(verifyDim(*this, "router hidden dimension", router[1], hidden)))
    return failure();
  FailureOr<int64_t> experts = verifyExpertWeights(
      *this, getGate().getType(), getUp().getType(), getDown().getType(), hidden);
  if (failed(experts) ||
      failed(verifyDim(*this, "router experts", router[0], *experts)))
    return failure();
  if (failed(verifyRoutingFor(*this, getRouting(), getCorrectionBias(), *experts)) ||
      failed(verifyInputOrder(*this, getInputOrder(), *experts, hidden)))
    return failure();

  if (!hasSharedExpert()) {
    if (getSharedExpertGate())
      return emitOpError("shared_gate needs a shared expert");
    return success();
  }
  if (failed(verifySharedExpert(*this, getSharedGateProj().getType(),
                                getSharedUpProj().getType(), getSharedDownProj().getType(),
                                hidden)))
    return failure();
  if (Value gate = getSharedExpertGate()) {
    if (failed(verifyRank(*this, "shared_gate", gate.getType(), 2)))
      return failure();
    ArrayRef<int64_t> s = getWeightShape(gate.getType());
    if (failed(verifyDim(*this, "shared_gate outputs", s[0], 1)) ||
        failed(verifyDim(*this, "shared_gate hidden dimension", s[1], hidden)))
      return failure();
  }
  return success();
}

bool LayerOp::acceptsQuantizedOperand(unsigned index) {
  // Every weight operand has a quantized kernel; the activations and the
  // correction bias (ODS operand group 2) and the input order do not.
  if (index == getInputMutable().getOperandNumber() ||
      (getInputOrder() && getOperand(index) == getInputOrder()))
    return false;
  auto [biasStart, biasLength] = getODSOperandIndexAndLength(2);
  return index < biasStart || index >= biasStart + biasLength;
}
