//===- LLMOps.cpp - common LLM ops ----------------------------------------===//

#include "LLM/IR/LLMOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/StringSet.h"

using namespace mlir;
using namespace moir::llm;

#include "LLM/IR/LLMInterfaces.cpp.inc"

#define GET_OP_CLASSES
#include "LLM/IR/LLMOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Shared helpers
//===----------------------------------------------------------------------===//

ArrayRef<int64_t> moir::llm::getWeightShape(Type type) {
  if (auto qtensor = dyn_cast<QTensorType>(type))
    return qtensor.getShape();
  return cast<RankedTensorType>(type).getShape();
}

Value moir::llm::quantizeRows(OpBuilder &b, Location loc, Value x,
                              std::optional<DynamicQuant> quant) {
  return quant ? DynamicQuantOp::create(b, loc, x.getType(), *quant, x).getResult() : x;
}

LinearOp moir::llm::createLinearOnQuantized(OpBuilder &b, Location loc, Value input,
                                            Value weight, std::optional<DynamicQuant> quant,
                                            Value bias) {
  auto linear = LinearOp::create(b, loc, input, weight, bias);
  linear.setPrecise(quant == DynamicQuant::int8);
  return linear;
}

LogicalResult moir::llm::verifyRank(Operation *op, StringRef what, Type type,
                                    int64_t rank) {
  int64_t actual = isa<QTensorType>(type) ? cast<QTensorType>(type).getRank()
                                          : cast<ShapedType>(type).getRank();
  if (actual != rank)
    return op->emitOpError() << what << " must have rank " << rank << ", got "
                             << type;
  return success();
}

int64_t moir::llm::multiplyDims(int64_t a, int64_t b) {
  if (ShapedType::isDynamic(a) || ShapedType::isDynamic(b))
    return ShapedType::kDynamic;
  return a * b;
}

LogicalResult moir::llm::verifyDim(Operation *op, StringRef what,
                                   int64_t actual, int64_t expected) {
  if (ShapedType::isDynamic(actual) || ShapedType::isDynamic(expected) ||
      actual == expected)
    return success();
  return op->emitOpError() << what << " is " << actual << ", expected "
                           << expected;
}

/// A quantized weight names its scales unless its format embeds them (GGUF)
/// or the compiler computes them (a float tensor quantized at compile time,
/// moirc --weight-type=int4|fp8: no scale tensor exists).
static LogicalResult verifyScaleNaming(Operation *op, Type type,
                                       bool hasScaleNames) {
  auto qtensor = dyn_cast<QTensorType>(type);
  if (!qtensor) {
    if (hasScaleNames)
      return op->emitOpError("float weight takes no scale tensor");
    return success();
  }
  bool embedded = qtensor.getScheme().getKind() == QuantKind::gguf;
  if (embedded && hasScaleNames)
    return op->emitOpError("GGUF weight embeds its scales; no scale tensor");
  return success();
}

static LogicalResult verifyStaticWeight(Operation *op, Type type) {
  if (auto tensor = dyn_cast<RankedTensorType>(type); tensor && !tensor.hasStaticShape())
    return op->emitOpError("weight must have a static shape, got ") << type;
  return success();
}

//===----------------------------------------------------------------------===//
// WeightOp / StackedWeightOp / DequantizeOp
//===----------------------------------------------------------------------===//

LogicalResult WeightOp::verify() {
  if (getName().empty())
    return emitOpError("weight name must not be empty");
  if (failed(verifyStaticWeight(*this, getType())))
    return failure();
  return verifyScaleNaming(*this, getType(), getScaleName().has_value());
}

SmallVector<StringRef> WeightOp::getWeightNames() {
  SmallVector<StringRef> names{getName()};
  if (std::optional<StringRef> scale = getScaleName())
    names.push_back(*scale);
  return names;
}

LogicalResult StackedWeightOp::verify() {
  ArrayAttr names = getNames();
  if (names.empty())
    return emitOpError("needs at least one weight name");
  llvm::StringSet<> seen;
  for (Attribute name : names) {
    StringRef str = cast<StringAttr>(name).getValue();
    if (str.empty())
      return emitOpError("weight name must not be empty");
    if (!seen.insert(str).second)
      return emitOpError("weight '") << str << "' is stacked twice";
  }
  if (failed(verifyStaticWeight(*this, getType())))
    return failure();
  ArrayRef<int64_t> shape = getWeightShape(getType());
  if (shape.size() < 2)
    return emitOpError("stacked weight must have rank >= 2, got ") << getType();
  if (shape.front() != static_cast<int64_t>(names.size()))
    return emitOpError("leading dimension ")
           << shape.front() << " must equal the number of names ("
           << names.size() << ")";
  std::optional<ArrayAttr> scales = getScaleNames();
  if (scales && scales->size() != names.size())
    return emitOpError("needs one scale name per weight, got ")
           << scales->size() << " for " << names.size();
  return verifyScaleNaming(*this, getType(), scales.has_value());
}

SmallVector<StringRef> StackedWeightOp::getWeightNames() {
  SmallVector<StringRef> result;
  for (Attribute name : getNames())
    result.push_back(cast<StringAttr>(name).getValue());
  if (std::optional<ArrayAttr> scales = getScaleNames())
    for (Attribute name : *scales)
      result.push_back(cast<StringAttr>(name).getValue());
  return result;
}

bool PackedWeightOp::isNibbles() {
  int64_t cols = getType().getShape().back();
  return getData().getType().getShape().back() * 2 == cols;
}

LogicalResult PackedWeightOp::verify() {
  QTensorType type = getType();
  ArrayRef<int64_t> shape = type.getShape();
  int64_t group = getGroup(), cols = shape.back();
  if (group <= 0 || cols % group != 0)
    return emitOpError("group ") << group << " must divide the innermost dimension " << cols;
  RankedTensorType data = getData().getType(), scales = getScales().getType();
  SmallVector<int64_t> nibbles(shape), bytes(shape), scaleShape(shape);
  nibbles.back() = cols / 2;
  scaleShape.back() = cols / group;
  scaleShape.push_back(scales.getRank() ? scales.getShape().back() : 0);
  bool fp8 = isa<Float8E4M3FNType>(data.getElementType());
  if (data.getShape() != ArrayRef<int64_t>(bytes) &&
      (fp8 || group != 32 || data.getShape() != ArrayRef<int64_t>(nibbles)))
    return emitOpError("data must be ") << (fp8 ? "" : "4-bit codes in ")
                                        << "the weight's shape with "
                                        << (fp8 ? "" : "half the ") << "innermost dimension";
  if (hasSuperblocks()) {
    // Per superblock of 256: P f16 numbers (2 bytes each) and a byte per
    // group and number.
    int64_t perBlock = 256 / group;
    scaleShape[scaleShape.size() - 2] = cols / 256;
    if (cols % 256 != 0 || 256 % group != 0 || scales.getShape() != ArrayRef<int64_t>(scaleShape) ||
        (scaleShape.back() != 2 + perBlock && scaleShape.back() != 2 * (2 + perBlock)))
      return emitOpError("superblock scales (i8) need whole superblocks of 256 and ")
             << "[..., rows, cols / 256, P * (2 + 256 / group)] bytes with P = 1 or 2";
    return success();
  }
  if (scales.getShape() != ArrayRef<int64_t>(scaleShape) ||
      (scaleShape.back() != 1 && scaleShape.back() != 2))
    return emitOpError("scales must have one (scale, offset) pair or one scale per group");
  return success();
}

LogicalResult DequantizeOp::verify() {
  if (getInput().getType().getShape() != getType().getShape())
    return emitOpError("result shape must equal the quantized shape");
  return success();
}

//===----------------------------------------------------------------------===//
// Layer ops
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingOp::verify() {
  auto ids = getIds().getType();
  auto result = getType();
  ArrayRef<int64_t> table = getWeightShape(getTable().getType());
  if (failed(verifyRank(*this, "ids", ids, 1)) ||
      failed(verifyRank(*this, "table", getTable().getType(), 2)) ||
      failed(verifyRank(*this, "result", result, 2)) ||
      failed(verifyDim(*this, "result token dimension", result.getDimSize(0),
                       ids.getDimSize(0))) ||
      failed(verifyDim(*this, "result hidden dimension", result.getDimSize(1),
                       table[1])))
    return failure();
  if (std::optional<APFloat> scale = getScale())
    if (!scale->isFiniteNonZero())
      return emitOpError("scale must be finite and non-zero");
  return success();
}

bool EmbeddingOp::acceptsQuantizedOperand(unsigned index) {
  return index == getTableMutable().getOperandNumber();
}

LogicalResult RMSNormOp::verify() {
  auto input = getInput().getType();
  auto weight = getWeight().getType();
  if (getEpsilon().convertToDouble() <= 0.0)
    return emitOpError("epsilon must be positive");
  if (std::optional<APFloat> offset = getOffset())
    if (!offset->isFinite())
      return emitOpError("offset must be finite");
  if (input.getRank() < 1)
    return emitOpError("input must have rank >= 1");
  if (failed(verifyRank(*this, "weight", weight, 1)) ||
      failed(verifyDim(*this, "weight size", weight.getDimSize(0),
                       input.getShape().back())))
    return failure();
  return success();
}

LogicalResult LinearOp::verify() {
  auto input = getInput().getType();
  auto result = getType();
  ArrayRef<int64_t> weight = getWeightShape(getWeight().getType());
  if (input.getRank() < 1)
    return emitOpError("input must have rank >= 1");
  if (failed(verifyRank(*this, "weight", getWeight().getType(), 2)) ||
      failed(verifyRank(*this, "result", result, input.getRank())))
    return failure();
  if (failed(verifyDim(*this, "weight in_features", weight[1],
                       input.getShape().back())) ||
      failed(verifyDim(*this, "result features", result.getShape().back(),
                       weight[0])))
    return failure();
  for (int64_t i = 0, e = input.getRank() - 1; i < e; ++i)
    if (failed(verifyDim(*this, "result leading dimension", result.getDimSize(i),
                         input.getDimSize(i))))
      return failure();
  if (Value bias = getBias()) {
    auto biasType = cast<RankedTensorType>(bias.getType());
    if (failed(verifyRank(*this, "bias", biasType, 1)) ||
        failed(verifyDim(*this, "bias size", biasType.getDimSize(0), weight[0])))
      return failure();
  }
  return success();
}

void LinearOp::build(OpBuilder &builder, OperationState &state, Value input,
                     Value weight, Value bias) {
  auto inputType = cast<RankedTensorType>(input.getType());
  SmallVector<int64_t> shape(inputType.getShape());
  shape.back() = getWeightShape(weight.getType())[0];
  build(builder, state, inputType.clone(shape), input, weight, bias, /*precise=*/false);
}

bool LinearOp::acceptsQuantizedOperand(unsigned index) {
  return index == getWeightMutable().getOperandNumber();
}

LogicalResult PermuteOp::verify() {
  auto input = getInput().getType();
  auto order = getOrder().getType();
  if (input.getRank() < 1)
    return emitOpError("input must have rank >= 1");
  if (failed(verifyRank(*this, "order", order, 1)) ||
      failed(verifyDim(*this, "order size", order.getDimSize(0), input.getShape().back())))
    return failure();
  return success();
}

LogicalResult DynamicQuantOp::verify() {
  auto input = cast<RankedTensorType>(getInput().getType());
  if (input.getRank() < 1)
    return emitOpError("input must have rank >= 1");
  if (ShapedType::isDynamic(input.getShape().back()))
    return emitOpError("the rows (innermost dimension) must have a static size");
  return success();
}

LogicalResult StaticQuantOp::verify() {
  auto scale = cast<RankedTensorType>(getScale().getType());
  if (!scale.hasStaticShape() || scale.getNumElements() != 1)
    return emitOpError("scale must hold one value, got ") << scale;
  return success();
}

LogicalResult RopeOp::verify() {
  auto input = getInput().getType();
  auto positions = getPositions().getType();
  if (failed(verifyRank(*this, "input", input, 3)) ||
      failed(verifyRank(*this, "positions", positions, 1)) ||
      failed(verifyDim(*this, "positions size", positions.getDimSize(0),
                       input.getDimSize(0))))
    return failure();
  int64_t headDim = input.getDimSize(2);
  if (!ShapedType::isDynamic(headDim) && getRope().getDim() > headDim)
    return emitOpError("rope dim ") << getRope().getDim()
                                    << " exceeds the head dimension " << headDim;
  return success();
}

LogicalResult KVCacheUpdateOp::verify() {
  auto update = getUpdate().getType();
  auto cache = getCache().getType();
  if (cache.getRank() < 2)
    return emitOpError("cache must have rank >= 2 (capacity first)");
  if (failed(verifyRank(*this, "update", update, cache.getRank())))
    return failure();
  if (update.getElementType() != cache.getElementType())
    return emitOpError("update element type ")
           << update.getElementType() << " differs from the cache's "
           << cache.getElementType();
  for (int64_t i = 1, e = cache.getRank(); i < e; ++i)
    if (failed(verifyDim(*this, "update trailing dimension",
                         update.getDimSize(i), cache.getDimSize(i))))
      return failure();
  if (!ShapedType::isDynamic(update.getDimSize(0)) &&
      !ShapedType::isDynamic(cache.getDimSize(0)) &&
      update.getDimSize(0) > cache.getDimSize(0))
    return emitOpError("update of ") << update.getDimSize(0)
                                     << " rows exceeds the cache capacity "
                                     << cache.getDimSize(0);
  return success();
}

OpFoldResult KVCacheUpdateOp::fold(FoldAdaptor) {
  // Writing zero rows leaves the cache as it is.
  if (getUpdate().getType().getDimSize(0) == 0)
    return getCache();
  return {};
}

/// The storage element type of a cache `format`.
static bool isStorageOf(Type elem, CacheFormat format) {
  return format == CacheFormat::int8 ? elem.isSignlessInteger(8) : isa<Float8E4M3FNType>(elem);
}

/// A quantized cache and its scales: storage type, and one scale per row.
static LogicalResult verifyQuantizedCache(Operation *op, CacheFormat format,
                                          RankedTensorType cache, RankedTensorType scales) {
  if (!isStorageOf(cache.getElementType(), format))
    return op->emitOpError("a ") << stringifyCacheFormat(format) << " cache stores "
                                 << (format == CacheFormat::int8 ? "i8" : "f8E4M3FN")
                                 << ", not " << cache.getElementType();
  if (cache.getRank() < 2)
    return op->emitOpError("cache must have rank >= 2 (capacity first)");
  if (failed(verifyRank(op, "scales", scales, cache.getRank() - 1)))
    return failure();
  for (int64_t i = 0, e = scales.getRank(); i < e; ++i)
    if (failed(verifyDim(op, "scales dimension", scales.getDimSize(i), cache.getDimSize(i))))
      return failure();
  return success();
}

LogicalResult QuantizedCacheUpdateOp::verify() {
  auto update = getUpdate().getType();
  auto cache = cast<RankedTensorType>(getCache().getType());
  if (failed(verifyQuantizedCache(*this, getFormat(), cache, getScales().getType())) ||
      failed(verifyRank(*this, "update", update, cache.getRank())))
    return failure();
  for (int64_t i = 1, e = cache.getRank(); i < e; ++i)
    if (failed(verifyDim(*this, "update trailing dimension", update.getDimSize(i),
                         cache.getDimSize(i))))
      return failure();
  return success();
}

LogicalResult DequantizeCacheOp::verify() {
  auto cache = cast<RankedTensorType>(getCache().getType());
  if (failed(verifyQuantizedCache(*this, getFormat(), cache, getScales().getType())))
    return failure();
  if (getType().getShape() != cache.getShape())
    return emitOpError("result shape must be the cache's");
  return success();
}

LogicalResult AttentionOp::verify() {
  auto q = getQuery().getType();
  auto k = getKey().getType();
  auto v = getValue().getType();
  auto result = getType();
  if (failed(verifyRank(*this, "query", q, 3)) ||
      failed(verifyRank(*this, "key", k, 3)) ||
      failed(verifyRank(*this, "value", v, 3)) ||
      failed(verifyRank(*this, "result", result, 3)) ||
      failed(verifyRank(*this, "positions", getPositions().getType(), 1)))
    return failure();
  if (failed(verifyDim(*this, "value capacity", v.getDimSize(0), k.getDimSize(0))) ||
      failed(verifyDim(*this, "value kv heads", v.getDimSize(1), k.getDimSize(1))) ||
      failed(verifyDim(*this, "key head dimension", k.getDimSize(2), q.getDimSize(2))) ||
      failed(verifyDim(*this, "positions size",
                       getPositions().getType().getDimSize(0), q.getDimSize(0))) ||
      failed(verifyDim(*this, "result tokens", result.getDimSize(0), q.getDimSize(0))) ||
      failed(verifyDim(*this, "result heads", result.getDimSize(1), q.getDimSize(1))) ||
      failed(verifyDim(*this, "result head dimension", result.getDimSize(2),
                       v.getDimSize(2))))
    return failure();
  int64_t heads = q.getDimSize(1), kvHeads = k.getDimSize(1);
  if (!ShapedType::isDynamic(heads) && !ShapedType::isDynamic(kvHeads) &&
      (kvHeads == 0 || heads % kvHeads != 0))
    return emitOpError("query heads (") << heads
                                        << ") must be a multiple of kv heads ("
                                        << kvHeads << ")";
  if (getScale().convertToDouble() <= 0.0)
    return emitOpError("scale must be positive");
  if (std::optional<uint64_t> window = getSlidingWindow(); window && *window == 0)
    return emitOpError("sliding window must be positive");
  return success();
}

LogicalResult XIELUOp::verify() {
  auto alpha = getAlphaP().getType();
  if (alpha.getNumElements() != 1)
    return emitOpError("alpha_p and alpha_n must hold one element, got ") << alpha;
  return success();
}

LogicalResult AllReduceOp::verify() {
  if (getRanks() < 2)
    return emitOpError("needs at least 2 ranks, got ") << getRanks();
  return success();
}

LogicalResult AllGatherOp::verify() {
  int64_t ranks = getRanks(), rank = getRank(), unit = getUnit();
  if (ranks < 2)
    return emitOpError("needs at least 2 ranks, got ") << ranks;
  if (rank < 0 || rank >= ranks)
    return emitOpError("rank ") << rank << " is not one of the " << ranks << " ranks";
  auto in = getInput().getType(), out = getResult().getType();
  if (in.getRank() != out.getRank() || in.getRank() < 1)
    return emitOpError("input and result must have the same rank, at least 1");
  for (int64_t d = 0; d + 1 < in.getRank(); ++d)
    if (in.getDimSize(d) != out.getDimSize(d))
      return emitOpError("input and result differ in dimension ") << d;
  int64_t total = out.getShape().back(), mine = in.getShape().back();
  if (ShapedType::isDynamic(total) || ShapedType::isDynamic(mine) || unit < 1)
    return emitOpError("needs static last dimensions and a unit of at least 1 column");
  if ((total + unit - 1) / unit < ranks)
    return emitOpError("splits ") << total << " columns in units of " << unit << " over "
                                  << ranks << " ranks: some would hold none";
  int64_t expected = firstColumn(rank + 1, total, unit, ranks) - firstColumn(rank, total, unit, ranks);
  if (mine != expected)
    return emitOpError("rank ") << rank << " holds " << expected << " of the " << total
                                << " columns, but the input has " << mine;
  return success();
}

//===----------------------------------------------------------------------===//
// Canonicalization
//===----------------------------------------------------------------------===//

namespace {
/// consumer(llm.dequantize(%q) : f32) -> consumer(%q): the consumer's kernel
/// dequantizes to f32 itself, so the math is unchanged and the weight stays in
/// its stored precision. A dequantize to a narrower float rounds, so it stays.
struct FoldDequantizeIntoConsumer
    : OpInterfaceRewritePattern<QuantizedWeightConsumerOpInterface> {
  using OpInterfaceRewritePattern::OpInterfaceRewritePattern;

  LogicalResult matchAndRewrite(QuantizedWeightConsumerOpInterface op,
                                PatternRewriter &rewriter) const override {
    SmallVector<std::pair<unsigned, Value>> replacements;
    for (OpOperand &operand : op->getOpOperands()) {
      auto dequant = operand.get().getDefiningOp<DequantizeOp>();
      if (!dequant || !dequant.getType().getElementType().isF32() ||
          !op.acceptsQuantizedOperand(operand.getOperandNumber()))
        continue;
      replacements.emplace_back(operand.getOperandNumber(), dequant.getInput());
    }
    if (replacements.empty())
      return failure();
    rewriter.modifyOpInPlace(op, [&] {
      for (auto [index, value] : replacements)
        op->setOperand(index, value);
    });
    return success();
  }
};
} // namespace

void moir::llm::populateFoldDequantizeIntoConsumerPatterns(
    RewritePatternSet &patterns) {
  patterns.add<FoldDequantizeIntoConsumer>(patterns.getContext());
}

void LLMDialect::getCanonicalizationPatterns(RewritePatternSet &results) const {
  populateFoldDequantizeIntoConsumerPatterns(results);
}
