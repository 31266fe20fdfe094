//===- Builders.cpp - small helpers for building linalg on tensors ---------===//

#include "Builders.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"

#include <array>
#include <cmath>
#include <limits>

using namespace mlir;

namespace moir::lowering {

Value generic(OpBuilder &b, Location loc, ValueRange inputs, Value init,
              ArrayRef<SmallVector<AffineExpr>> exprs,
              ArrayRef<utils::IteratorType> iterators, BodyFn body) {
  SmallVector<AffineMap> maps;
  for (const SmallVector<AffineExpr> &e : exprs)
    maps.push_back(AffineMap::get(iterators.size(), 0, e, b.getContext()));
  auto op = linalg::GenericOp::create(b, loc, TypeRange{init.getType()}, inputs,
                                      ValueRange{init}, maps, iterators, body);
  return op.getResult(0);
}

Value gatherInner(OpBuilder &b, Location loc, Value x, Value order, ValueRange orderPrefix) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  SmallVector<AffineExpr> ids;
  for (int64_t i = 0; i < rank; ++i)
    ids.push_back(b.getAffineDimExpr(i));
  Value init = tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, x),
                                       type.getElementType());
  return generic(b, loc, ValueRange{}, init, {ids},
                 SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel),
                 [&](OpBuilder &b, Location loc, ValueRange) {
                   SmallVector<Value> at(orderPrefix), from;
                   at.push_back(linalg::IndexOp::create(b, loc, rank - 1));
                   for (int64_t i = 0; i + 1 < rank; ++i)
                     from.push_back(linalg::IndexOp::create(b, loc, i));
                   Value k = tensor::ExtractOp::create(b, loc, order, at);
                   from.push_back(arith::IndexCastOp::create(b, loc, b.getIndexType(), k));
                   linalg::YieldOp::create(b, loc,
                                           tensor::ExtractOp::create(b, loc, x, from).getResult());
                 });
}

SmallVector<AffineExpr> dims(OpBuilder &b, unsigned n, unsigned from) {
  SmallVector<AffineExpr> e;
  for (unsigned i = from; i < n; ++i)
    e.push_back(b.getAffineDimExpr(i));
  return e;
}

Value rowAbsMax(OpBuilder &b, Location loc, Value x) {
  unsigned rank = cast<RankedTensorType>(x.getType()).getRank();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  sizes.pop_back();
  SmallVector<utils::IteratorType> iters(rank, par);
  iters.back() = red;
  return generic(b, loc, x, filled(b, loc, sizes, b.getF32Type(), 0.0),
                 {dims(b, rank), dims(b, rank - 1)}, iters,
                 [](OpBuilder &b, Location loc, ValueRange a) {
    Value v = math::AbsFOp::create(b, loc, toF32(b, loc, a[0]));
    linalg::YieldOp::create(b, loc, arith::MaximumFOp::create(b, loc, v, a[1]).getResult());
  });
}

/// One value quantized with scale `s` and dequantized: compressed-tensors'
/// fake_quantize of a symmetric scheme.
static Value quantizeDequantize(OpBuilder &b, Location loc, Value x, Value s,
                                llm::DynamicQuant format) {
  bool int8 = format == llm::DynamicQuant::int8;
  double lo = int8 ? -128.0 : -448.0, hi = int8 ? 127.0 : 448.0;
  // True division, as compressed-tensors divides (not a reciprocal's
  // product): the codes must match its bit for bit.
  Value v = arith::DivFOp::create(b, loc, x, s);
  v = arith::MinimumFOp::create(b, loc, arith::MaximumFOp::create(b, loc, v, f32Const(b, loc, lo)),
                                f32Const(b, loc, hi));
  Value q = int8 ? math::RoundEvenOp::create(b, loc, v).getResult()
                 : arith::ExtFOp::create(b, loc, b.getF32Type(),
                                         arith::TruncFOp::create(b, loc, b.getType<Float8E4M3FNType>(), v)
                                             .getResult())
                       .getResult();
  return arith::MulFOp::create(b, loc, q, s);
}

Value dynamicQuantRows(OpBuilder &b, Location loc, Value x, llm::DynamicQuant format,
                       bool parallel) {
  int64_t rank = cast<RankedTensorType>(x.getType()).getRank();
  SmallVector<AffineExpr> all = dims(b, rank), rows = dims(b, rank - 1);
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  Value absMax = rowAbsMax(b, loc, x);
  if (parallel && rank > 1)
    markParallel(absMax);
  // compressed-tensors' symmetric ranges: (qmax - qmin) / 2 = 127.5 for
  // int8 ([-128, 127]) and 448 for E4M3 ([-448, 448]).
  double divisor = format == llm::DynamicQuant::int8 ? 127.5 : 448.0;
  Value out = generic(b, loc, ValueRange{x, absMax},
                 tensor::EmptyOp::create(b, loc, sizes, b.getF32Type()), {all, rows, all},
                 SmallVector<utils::IteratorType>(rank, par),
                 [&](OpBuilder &b, Location loc, ValueRange a) {
    Value s = arith::DivFOp::create(b, loc, a[1], f32Const(b, loc, divisor));
    Value isZero = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OEQ, s, f32Const(b, loc, 0.0));
    s = arith::SelectOp::create(b, loc, isZero,
                                f32Const(b, loc, std::numeric_limits<float>::epsilon()), s);
    linalg::YieldOp::create(b, loc, quantizeDequantize(b, loc, a[0], s, format));
  });
  return parallel && rank > 1 ? markParallel(out) : out;
}

Value staticQuant(OpBuilder &b, Location loc, Value x, Value scale, llm::DynamicQuant format) {
  int64_t rank = cast<RankedTensorType>(x.getType()).getRank();
  // The one scale read by every element (an input of the generic, so that
  // a device kernel reads it too, not the host).
  SmallVector<AffineExpr> one(cast<RankedTensorType>(scale.getType()).getRank(),
                              b.getAffineConstantExpr(0));
  Value out = generic(b, loc, ValueRange{x, scale},
                      tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, x), b.getF32Type()),
                      {dims(b, rank), one, dims(b, rank)}, SmallVector<utils::IteratorType>(rank, par),
                      [&](OpBuilder &b, Location loc, ValueRange a) {
    linalg::YieldOp::create(b, loc, quantizeDequantize(b, loc, toF32(b, loc, a[0]),
                                                       toF32(b, loc, a[1]), format));
  });
  return rank > 1 ? markParallel(out) : out;
}

Value filled(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes, Type type,
             double value) {
  Value empty = tensor::EmptyOp::create(b, loc, sizes, type);
  Value cst = arith::ConstantOp::create(b, loc, type, b.getFloatAttr(type, value));
  return linalg::FillOp::create(b, loc, ValueRange{cst}, ValueRange{empty}).getResult(0);
}

Value toF32(OpBuilder &b, Location loc, Value v) {
  if (v.getType().isF32())
    return v;
  // int8 cache storage.
  if (v.getType().isSignlessInteger())
    return arith::SIToFPOp::create(b, loc, b.getF32Type(), v);
  return arith::ExtFOp::create(b, loc, b.getF32Type(), v);
}

CacheRows readCache(OpBuilder &b, Location loc, Value cache, Value len) {
  if (auto dq = cache.getDefiningOp<llm::DequantizeCacheOp>())
    return {prefix(b, loc, dq.getCache(), len), prefix(b, loc, dq.getScales(), len)};
  return {prefix(b, loc, cache, len), Value()};
}

Value dequantized(OpBuilder &b, Location loc, const CacheRows &rows) {
  if (!rows.scales)
    return rows.values;
  auto type = cast<RankedTensorType>(rows.values.getType());
  unsigned rank = type.getRank();
  SmallVector<AffineExpr> all = dims(b, rank), row = dims(b, rank - 1);
  return markParallel(generic(
      b, loc, ValueRange{rows.values, rows.scales},
      tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, rows.values), b.getF32Type()),
      {all, row, all}, SmallVector<utils::IteratorType>(rank, par),
      [](OpBuilder &b, Location loc, ValueRange a) {
        linalg::YieldOp::create(b, loc, arith::MulFOp::create(b, loc, toF32(b, loc, a[0]), a[1]).getResult());
      }));
}

Value scaleBy(OpBuilder &b, Location loc, Value t, Value scales,
              llvm::ArrayRef<mlir::AffineExpr> scaleExprs) {
  if (!scales)
    return t;
  auto type = cast<RankedTensorType>(t.getType());
  unsigned rank = type.getRank();
  SmallVector<AffineExpr> all;
  for (unsigned i = 0; i < rank; ++i)
    all.push_back(b.getAffineDimExpr(i));
  return markParallel(generic(
      b, loc, ValueRange{t, scales},
      tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, t), b.getF32Type()),
      {all, SmallVector<AffineExpr>(scaleExprs), all}, SmallVector<utils::IteratorType>(rank, par),
      [](OpBuilder &b, Location loc, ValueRange a) {
        linalg::YieldOp::create(b, loc, arith::MulFOp::create(b, loc, a[0], a[1]).getResult());
      }));
}

Value markParallel(Value result) {
  moir::attrs::mark(result.getDefiningOp(), moir::attrs::parallelName());
  return result;
}

Value markKernel(Value result) {
  moir::attrs::mark(result.getDefiningOp(), moir::attrs::kernelName());
  return result;
}

void parallelInsert(OpBuilder &b, Location loc, scf::ForallOp forall, Value value, Value into,
                    ArrayRef<OpFoldResult> offsets, ArrayRef<OpFoldResult> sizes) {
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToEnd(forall.getTerminator().getBody());
  SmallVector<OpFoldResult> strides(offsets.size(), b.getIndexAttr(1));
  tensor::ParallelInsertSliceOp::create(b, loc, value, into, offsets, sizes, strides);
}

void multiplyAccumulate(OpBuilder &b, Location loc, ValueRange a) {
  auto flags = arith::FastMathFlagsAttr::get(
      b.getContext(), arith::FastMathFlags::contract | arith::FastMathFlags::reassoc);
  Value p = arith::MulFOp::create(b, loc, toF32(b, loc, a[0]), toF32(b, loc, a[1]), flags);
  linalg::YieldOp::create(b, loc, arith::AddFOp::create(b, loc, p, a[2], flags).getResult());
}

Value f32Const(OpBuilder &b, Location loc, double value) {
  return arith::ConstantOp::create(b, loc, b.getF32Type(), b.getF32FloatAttr(value));
}

Value indexConst(OpBuilder &b, Location loc, int64_t value) {
  return arith::ConstantIndexOp::create(b, loc, value);
}

Value validLength(OpBuilder &b, Location loc, Value positions, int64_t capacity) {
  auto type = cast<RankedTensorType>(positions.getType());
  Type elem = type.getElementType();
  Value zero = arith::ConstantOp::create(b, loc, elem, b.getIntegerAttr(elem, 0));
  Value init = tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{}, elem);
  init = linalg::FillOp::create(b, loc, ValueRange{zero}, ValueRange{init}).getResult(0);
  AffineExpr t = b.getAffineDimExpr(0);
  Value maxPos = generic(b, loc, positions, init, {{t}, {}},
                         {utils::IteratorType::reduction},
                         [](OpBuilder &b, Location loc, ValueRange args) {
                           Value m = arith::MaxSIOp::create(b, loc, args[0], args[1]);
                           linalg::YieldOp::create(b, loc, m);
                         });
  Value scalar = tensor::ExtractOp::create(b, loc, maxPos, ValueRange{});
  Value len = arith::IndexCastOp::create(b, loc, b.getIndexType(), scalar);
  len = arith::AddIOp::create(b, loc, len, indexConst(b, loc, 1));
  return arith::MinSIOp::create(b, loc, len, indexConst(b, loc, capacity));
}

Value slice(OpBuilder &b, Location loc, RankedTensorType type, Value t,
            ArrayRef<OpFoldResult> offsets, ArrayRef<OpFoldResult> sizes) {
  SmallVector<OpFoldResult> strides(offsets.size(), b.getIndexAttr(1));
  return tensor::ExtractSliceOp::create(b, loc, type, t, offsets, sizes, strides);
}

Value prefix(OpBuilder &b, Location loc, Value x, Value len) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> offsets(rank, b.getIndexAttr(0));
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> strides(rank, b.getIndexAttr(1));
  sizes[0] = len;
  SmallVector<int64_t> shape(type.getShape());
  shape[0] = ShapedType::kDynamic;
  return tensor::ExtractSliceOp::create(b, loc, type.clone(shape), x, offsets, sizes,
                                        strides);
}

Value toI64(OpBuilder &b, Location loc, Value v) {
  Type i64 = b.getI64Type();
  if (v.getType().isIndex())
    return arith::IndexCastOp::create(b, loc, i64, v);
  if (v.getType() != i64)
    return arith::ExtSIOp::create(b, loc, i64, v);
  return v;
}

Value keyHidden(OpBuilder &b, Location loc, Value key, Value position,
                std::optional<int64_t> window) {
  Type i64 = b.getI64Type();
  key = toI64(b, loc, key);
  position = toI64(b, loc, position);
  Value hidden = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, key, position);
  if (!window)
    return hidden;
  Value w = arith::ConstantOp::create(b, loc, i64, b.getI64IntegerAttr(*window));
  Value age = arith::SubIOp::create(b, loc, position, key);
  return arith::OrIOp::create(b, loc, hidden,
                              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, age, w));
}

Value maskedSoftmax(OpBuilder &b, Location loc, Value scores, Value positions,
                    double scale, std::optional<int64_t> window) {
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, scores);
  AffineExpr t = b.getAffineDimExpr(0), h = b.getAffineDimExpr(1),
             s = b.getAffineDimExpr(2);
  float negInf = -std::numeric_limits<float>::infinity();

  Value masked = markParallel(generic(
      b, loc, ValueRange{scores, positions}, tensor::EmptyOp::create(b, loc, sizes, b.getF32Type()),
      {{t, h, s}, {t}, {t, h, s}}, {par, par, par},
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value hidden = keyHidden(b, loc, linalg::IndexOp::create(b, loc, 2), args[1], window);
        Value scaled = arith::MulFOp::create(b, loc, args[0], f32Const(b, loc, scale));
        Value result = arith::SelectOp::create(b, loc, hidden, f32Const(b, loc, negInf), scaled);
        linalg::YieldOp::create(b, loc, result);
      }));

  SmallVector<OpFoldResult> rowSizes(sizes.begin(), sizes.begin() + 2);
  Value maxInit = filled(b, loc, rowSizes, b.getF32Type(), negInf);
  Value rowMax = markParallel(generic(b, loc, masked, maxInit, {{t, h, s}, {t, h}}, {par, par, red},
                         [](OpBuilder &b, Location loc, ValueRange args) {
                           linalg::YieldOp::create(
                               b, loc, arith::MaximumFOp::create(b, loc, args[0], args[1]).getResult());
                         }));
  Value exps = markParallel(generic(b, loc, ValueRange{masked, rowMax},
                       tensor::EmptyOp::create(b, loc, sizes, b.getF32Type()),
                       {{t, h, s}, {t, h}, {t, h, s}}, {par, par, par},
                       [](OpBuilder &b, Location loc, ValueRange args) {
                         Value d = arith::SubFOp::create(b, loc, args[0], args[1]);
                         linalg::YieldOp::create(b, loc, math::ExpOp::create(b, loc, d).getResult());
                       }));
  Value sum = markParallel(generic(b, loc, exps, filled(b, loc, rowSizes, b.getF32Type(), 0.0),
                      {{t, h, s}, {t, h}}, {par, par, red},
                      [](OpBuilder &b, Location loc, ValueRange args) {
                        linalg::YieldOp::create(b, loc, arith::AddFOp::create(b, loc, args[0], args[1]).getResult());
                      }));
  return markParallel(generic(b, loc, ValueRange{exps, sum},
                 tensor::EmptyOp::create(b, loc, sizes, b.getF32Type()),
                 {{t, h, s}, {t, h}, {t, h, s}}, {par, par, par},
                 [](OpBuilder &b, Location loc, ValueRange args) {
                   linalg::YieldOp::create(b, loc, arith::DivFOp::create(b, loc, args[0], args[1]).getResult());
                 }));
}

Value activation(OpBuilder &b, Location loc, llm::ActivationKind kind, Value x) {
  Value one = f32Const(b, loc, 1.0), half = f32Const(b, loc, 0.5);
  switch (kind) {
  case llm::ActivationKind::silu:
  case llm::ActivationKind::sigmoid: {
    Value e = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, x));
    Value sig = arith::DivFOp::create(b, loc, one, arith::AddFOp::create(b, loc, one, e));
    return kind == llm::ActivationKind::silu ? arith::MulFOp::create(b, loc, x, sig).getResult() : sig;
  }
  case llm::ActivationKind::relu:
    return arith::MaximumFOp::create(b, loc, x, f32Const(b, loc, 0.0));
  case llm::ActivationKind::gelu: {
    Value erf = math::ErfOp::create(b, loc, arith::MulFOp::create(b, loc, x, f32Const(b, loc, M_SQRT1_2)));
    return arith::MulFOp::create(b, loc, arith::MulFOp::create(b, loc, half, x),
                                 arith::AddFOp::create(b, loc, one, erf));
  }
  case llm::ActivationKind::gelu_tanh: {
    Value x3 = arith::MulFOp::create(b, loc, x, arith::MulFOp::create(b, loc, x, x));
    Value inner = arith::AddFOp::create(b, loc, x, arith::MulFOp::create(b, loc, f32Const(b, loc, 0.044715), x3));
    Value th = math::TanhOp::create(b, loc, arith::MulFOp::create(b, loc, f32Const(b, loc, std::sqrt(2.0 / M_PI)), inner));
    return arith::MulFOp::create(b, loc, arith::MulFOp::create(b, loc, half, x),
                                 arith::AddFOp::create(b, loc, one, th));
  }
  }
  return x;
}

FailureOr<WeightOperand> WeightOperand::of(Value w) {
  WeightOperand result;
  if (!isa<llm::QTensorType>(w.getType())) {
    result.tensor = w;
    return result;
  }
  auto packed = w.getDefiningOp<llm::PackedWeightOp>();
  if (!packed)
    return failure();
  result.data = packed.getData();
  result.scales = packed.getScales();
  result.group = packed.getGroup();
  result.nibbles = packed.isNibbles();
  result.superblocks = packed.hasSuperblocks();
  int64_t last = packed.getScales().getType().getShape().back();
  result.offsets = result.superblocks ? last == 2 * (2 + 256 / result.group) : last == 2;
  StringRef storage = result.nibbles ? "u4"
                      : isa<Float8E4M3FNType>(packed.getData().getType().getElementType())
                          ? "f8e4m3"
                          : "i8";
  // storage:group, then ":k" for superblock scales (the kernels read the
  // rest from the operands' types).
  result.form = (storage + ":" + Twine(result.group) + (result.superblocks ? ":k" : "")).str();
  return result;
}

FailureOr<WeightOperand> weightOperand(Operation *user, Value w) {
  FailureOr<WeightOperand> result = WeightOperand::of(w);
  if (failed(result))
    user->emitError() << "quantized weight " << w.getType()
                      << " reaches the lowering without its packed form (run moir-bind-weights)";
  return result;
}

SmallVector<int64_t> WeightOperand::getShape() const {
  if (tensor)
    return SmallVector<int64_t>(cast<RankedTensorType>(tensor.getType()).getShape());
  SmallVector<int64_t> shape(cast<RankedTensorType>(data.getType()).getShape());
  if (nibbles)
    shape.back() *= 2;
  return shape;
}

/// `v` / `divisor` as an OpFoldResult (folded when constant).
static OpFoldResult divided(OpBuilder &b, Location loc, OpFoldResult v, int64_t divisor) {
  if (divisor == 1)
    return v;
  if (std::optional<int64_t> c = getConstantIntValue(v))
    return b.getIndexAttr(*c / divisor);
  return arith::DivUIOp::create(b, loc, getValueOrCreateConstantIndexOp(b, loc, v),
                                arith::ConstantIndexOp::create(b, loc, divisor))
      .getResult();
}

/// A (possibly rank-reducing) extract_slice of `t`.
static Value sliceDropping(OpBuilder &b, Location loc, Value t, ArrayRef<OpFoldResult> offsets,
                           ArrayRef<OpFoldResult> sizes, ArrayRef<int64_t> dropped) {
  auto type = cast<RankedTensorType>(t.getType());
  SmallVector<int64_t> shape;
  for (auto [i, size] : llvm::enumerate(sizes))
    if (!llvm::is_contained(dropped, static_cast<int64_t>(i)))
      shape.push_back(getConstantIntValue(size).value_or(ShapedType::kDynamic));
  SmallVector<OpFoldResult> strides(offsets.size(), b.getIndexAttr(1));
  return tensor::ExtractSliceOp::create(b, loc, RankedTensorType::get(shape, type.getElementType()),
                                        t, offsets, sizes, strides);
}

WeightOperand WeightOperand::slice(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> offsets,
                                   ArrayRef<OpFoldResult> sizes, ArrayRef<int64_t> dropped) const {
  WeightOperand result = *this;
  if (tensor) {
    result.tensor = sliceDropping(b, loc, tensor, offsets, sizes, dropped);
    return result;
  }
  SmallVector<OpFoldResult> dataOffsets(offsets), dataSizes(sizes);
  if (nibbles) {
    dataOffsets.back() = divided(b, loc, offsets.back(), 2);
    dataSizes.back() = divided(b, loc, sizes.back(), 2);
  }
  result.data = sliceDropping(b, loc, data, dataOffsets, dataSizes, dropped);
  // Superblock scales are sliced by superblock (moir-bind-weights gives
  // weights sliced otherwise the per-group form).
  int64_t unit = superblocks ? 256 : group;
  SmallVector<OpFoldResult> scaleOffsets(offsets), scaleSizes(sizes);
  scaleOffsets.back() = divided(b, loc, offsets.back(), unit);
  scaleSizes.back() = divided(b, loc, sizes.back(), unit);
  scaleOffsets.push_back(b.getIndexAttr(0));
  scaleSizes.push_back(
      b.getIndexAttr(cast<RankedTensorType>(scales.getType()).getShape().back()));
  result.scales = sliceDropping(b, loc, scales, scaleOffsets, scaleSizes, dropped);
  return result;
}

Value WeightOperand::param(OpBuilder &b, Location loc, Value element) {
  if (element.getType().isF32())
    return element;
  return arith::ExtFOp::create(b, loc, b.getF32Type(), element);
}

/// The f32 value of an f16 stored as two bytes (low, high) of i8.
static Value f16FromBytes(OpBuilder &b, Location loc, Value low, Value high) {
  Type i16 = b.getI16Type();
  Value lo = arith::ExtUIOp::create(b, loc, i16, low);
  Value hi = arith::ShLIOp::create(b, loc, arith::ExtUIOp::create(b, loc, i16, high),
                                   arith::ConstantIntOp::create(b, loc, i16, 8));
  Value bits = arith::OrIOp::create(b, loc, lo, hi);
  Value half = arith::BitcastOp::create(b, loc, b.getF16Type(), bits);
  return arith::ExtFOp::create(b, loc, b.getF32Type(), half);
}

std::pair<Value, Value> WeightOperand::params(OpBuilder &b, Location loc, ValueRange args) const {
  Value parts[2];
  for (int64_t p = 0, e = offsets ? 2 : 1; p < e; ++p) {
    if (!superblocks) {
      parts[p] = param(b, loc, args[p]);
      continue;
    }
    Value number = f16FromBytes(b, loc, args[3 * p], args[3 * p + 1]);
    Value sub = arith::SIToFPOp::create(b, loc, b.getF32Type(), args[3 * p + 2]);
    parts[p] = arith::MulFOp::create(b, loc, number, sub);
  }
  return {parts[0], parts[1]};
}

std::pair<Value, Value> WeightOperand::paramsAt(OpBuilder &b, Location loc, Value row,
                                                Value col) const {
  auto index = [&](int64_t v) { return arith::ConstantIndexOp::create(b, loc, v).getResult(); };
  auto at = [&](Value g, Value i) {
    return tensor::ExtractOp::create(b, loc, scales, ValueRange{row, g, i}).getResult();
  };
  SmallVector<Value> args;
  int64_t parts = offsets ? 2 : 1;
  if (!superblocks) {
    Value g = arith::DivUIOp::create(b, loc, col, index(group));
    for (int64_t p = 0; p < parts; ++p)
      args.push_back(at(g, index(p)));
    return params(b, loc, args);
  }
  int64_t perBlock = 256 / group;
  Value block = arith::DivUIOp::create(b, loc, col, index(256));
  Value inBlock = arith::DivUIOp::create(
      b, loc, arith::RemUIOp::create(b, loc, col, index(256)), index(group));
  for (int64_t p = 0; p < parts; ++p) {
    args.push_back(at(block, index(2 * p)));
    args.push_back(at(block, index(2 * p + 1)));
    args.push_back(at(block, arith::AddIOp::create(b, loc, inBlock,
                                                   index(2 * parts + p * perBlock))));
  }
  return params(b, loc, args);
}

Value WeightOperand::dequantized(OpBuilder &b, Location loc, Value code, Value scale,
                                 Value offset) {
  Value scaled = arith::MulFOp::create(b, loc, param(b, loc, scale), code);
  if (!offset)
    return scaled;
  return arith::AddFOp::create(b, loc, scaled, param(b, loc, offset));
}

Value decodeCode(OpBuilder &b, Location loc, const WeightOperand &w, Value code, Value col) {
  Type f32 = b.getF32Type();
  if (isa<Float8E4M3FNType>(code.getType()))
    return arith::ExtFOp::create(b, loc, f32, code);
  if (!w.nibbles)
    return arith::SIToFPOp::create(b, loc, f32, code);
  // Elements 16..31 of a group of 32 are the high nibbles.
  Value inGroup = arith::RemUIOp::create(b, loc, col, arith::ConstantIndexOp::create(b, loc, 32));
  Value high = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, inGroup,
                                     arith::ConstantIndexOp::create(b, loc, 16));
  Type i8 = b.getI8Type();
  Value shift = arith::SelectOp::create(b, loc, high, arith::ConstantIntOp::create(b, loc, i8, 4),
                                        arith::ConstantIntOp::create(b, loc, i8, 0));
  Value nibble = arith::AndIOp::create(b, loc, arith::ShRUIOp::create(b, loc, code, shift),
                                       arith::ConstantIntOp::create(b, loc, i8, 15));
  return arith::UIToFPOp::create(b, loc, f32, nibble);
}

/// The packed weight's inputs of a linalg.generic and their indexing over
/// loops whose last two are (row, col): codes, scale, and the offset unless
/// the form is symmetric.
static std::pair<SmallVector<Value>, SmallVector<SmallVector<AffineExpr>>>
packedInputs(OpBuilder &b, const WeightOperand &w, ArrayRef<AffineExpr> leading, AffineExpr row,
             AffineExpr col) {
  SmallVector<SmallVector<AffineExpr>> maps(1 + w.numScaleArgs(), SmallVector<AffineExpr>(leading));
  maps[0].push_back(row);
  maps[0].push_back(w.nibbles ? col.floorDiv(32) * 16 + col % 16 : col);
  int64_t parts = w.offsets ? 2 : 1;
  // Per part: its number (per-group forms), or the two bytes of its f16 and
  // the group's byte (superblocks).
  SmallVector<AffineExpr> inner;
  for (int64_t p = 0; p < parts; ++p) {
    if (!w.superblocks) {
      inner.push_back(b.getAffineConstantExpr(p));
      continue;
    }
    inner.push_back(b.getAffineConstantExpr(2 * p));
    inner.push_back(b.getAffineConstantExpr(2 * p + 1));
    inner.push_back((col % 256).floorDiv(w.group) + 2 * parts + p * (256 / w.group));
  }
  for (auto [i, last] : llvm::enumerate(inner)) {
    maps[i + 1].push_back(row);
    maps[i + 1].push_back(col.floorDiv(w.superblocks ? 256 : w.group));
    maps[i + 1].push_back(last);
  }
  SmallVector<Value> inputs = {w.data};
  inputs.append(w.numScaleArgs(), w.scales);
  return {inputs, maps};
}

Value dequantizeWeight(OpBuilder &b, Location loc, const WeightOperand &w) {
  if (!w.isPacked())
    return w.tensor;
  SmallVector<int64_t> shape = w.getShape();
  unsigned rank = shape.size();
  SmallVector<AffineExpr> all, leading;
  for (unsigned i = 0; i < rank; ++i)
    all.push_back(b.getAffineDimExpr(i));
  leading.assign(all.begin(), all.end() - 2);
  auto [inputs, maps] = packedInputs(b, w, leading, all[rank - 2], all[rank - 1]);
  maps.push_back(all);
  return markParallel(generic(
      b, loc, inputs, tensor::EmptyOp::create(b, loc, shape, b.getF32Type()), maps,
      SmallVector<utils::IteratorType>(rank, par), [&](OpBuilder &b, Location loc, ValueRange a) {
        Value col = linalg::IndexOp::create(b, loc, rank - 1);
        Value v = decodeCode(b, loc, w, a[0], col);
        auto [scale, offset] = w.params(b, loc, a.slice(1, w.numScaleArgs()));
        linalg::YieldOp::create(b, loc, WeightOperand::dequantized(b, loc, v, scale, offset));
      }));
}

Value packedProduct(OpBuilder &b, Location loc, Value a, ArrayRef<AffineExpr> aExprs,
                    const WeightOperand &w, AffineExpr row, AffineExpr col,
                    ArrayRef<AffineExpr> outExprs, ArrayRef<utils::IteratorType> iterators,
                    Value init) {
  auto [inputs, maps] = packedInputs(b, w, {}, row, col);
  inputs.insert(inputs.begin(), a);
  maps.insert(maps.begin(), SmallVector<AffineExpr>(aExprs));
  maps.push_back(SmallVector<AffineExpr>(outExprs));
  unsigned colLoop = cast<AffineDimExpr>(col).getPosition();
  Value out = generic(b, loc, inputs, init, maps, iterators,
                      [&](OpBuilder &b, Location loc, ValueRange v) {
                        Value index = linalg::IndexOp::create(b, loc, colLoop);
                        Value code = decodeCode(b, loc, w, v[1], index);
                        auto [scale, offset] = w.params(b, loc, v.slice(2, w.numScaleArgs()));
                        Value weight = WeightOperand::dequantized(b, loc, code, scale, offset);
                        Value prod = arith::MulFOp::create(b, loc, toF32(b, loc, v[0]), weight);
                        linalg::YieldOp::create(
                            b, loc, arith::AddFOp::create(b, loc, v.back(), prod).getResult());
                      });
  out.getDefiningOp()->setAttr(attrs::packedName(), b.getStringAttr(w.form));
  return out;
}

Value weightContraction(OpBuilder &b, Location loc, Value a, const WeightOperand &w, Value init) {
  if (!w.isPacked())
    return rowContraction(b, loc, a, w.tensor, init);
  AffineExpr m = b.getAffineDimExpr(0), n = b.getAffineDimExpr(1), k = b.getAffineDimExpr(2);
  return packedProduct(b, loc, a, {m, k}, w, n, k, {m, n}, {par, par, red}, init);
}

Value weightRowCombination(OpBuilder &b, Location loc, Value a, const WeightOperand &w,
                           Value init) {
  AffineExpr m = b.getAffineDimExpr(0), n = b.getAffineDimExpr(1), k = b.getAffineDimExpr(2);
  return packedProduct(b, loc, a, {m, k}, w, k, n, {m, n}, {par, par, red}, init);
}

Value rowContraction(OpBuilder &b, Location loc, Value a, Value w, Value init) {
  AffineExpr m = b.getAffineDimExpr(0), n = b.getAffineDimExpr(1), k = b.getAffineDimExpr(2);
  return generic(b, loc, ValueRange{a, w}, init, {{m, k}, {n, k}, {m, n}}, {par, par, red},
                 multiplyAccumulate);
}

} // namespace moir::lowering
