//===- ExpandFP8.cpp - FP8 E4M3 (and bf16 -> f32) conversions as integers -===//

#include "moir/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace moir {
#define GEN_PASS_DEF_EXPANDFP8PASS
#include "moir/Conversion/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

/// `elem` in the shape of `like` (a vector) or alone.
Type shaped(Type like, Type elem) {
  if (auto vec = dyn_cast<VectorType>(like))
    return VectorType::get(vec.getShape(), elem);
  return elem;
}

struct Bits {
  PatternRewriter &b;
  Location loc;
  Type like;
  /// The scalar `value` as a constant of `like`'s shape (splat for vectors).
  Value constant(TypedAttr value) {
    Type t = shaped(like, value.getType());
    return arith::ConstantOp::create(
        b, loc, t,
        isa<VectorType>(t) ? TypedAttr(DenseElementsAttr::get(cast<ShapedType>(t), value)) : value);
  }
  Value i16(int64_t v) { return constant(b.getI16IntegerAttr(v)); }
  Value i32(int64_t v) { return constant(b.getI32IntegerAttr(v)); }
  Value f32(double v) { return constant(b.getF32FloatAttr(v)); }
  Value and_(Value x, int64_t m) { return arith::AndIOp::create(b, loc, x, i32(m)); }
  Value shr(Value x, int64_t n) { return arith::ShRUIOp::create(b, loc, x, i32(n)); }
  Value shl(Value x, int64_t n) { return arith::ShLIOp::create(b, loc, x, i32(n)); }
  Value or_(Value x, Value y) { return arith::OrIOp::create(b, loc, x, y); }
  Value add(Value x, Value y) { return arith::AddIOp::create(b, loc, x, y); }
  Value asF32(Value x) { return arith::BitcastOp::create(b, loc, shaped(like, b.getF32Type()), x); }
  Value asI32(Value x) { return arith::BitcastOp::create(b, loc, shaped(like, b.getI32Type()), x); }
};

struct ExpandExtF : OpRewritePattern<arith::ExtFOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(arith::ExtFOp op, PatternRewriter &b) const override {
    Type in = getElementTypeOrSelf(op.getIn().getType());
    if (!isa<Float8E4M3FNType>(in) || !getElementTypeOrSelf(op.getType()).isF32())
      return failure();
    Location loc = op.getLoc();
    Type like = op.getType();
    Bits k{b, loc, like};
    // E4M3 bits s.eeee.mmm moved into an f16's fields, s.0eeee.mmm0000000,
    // read as f16 are the value times 2^-8 (the exponent biases differ by 8;
    // E4M3 subnormals land on f16 subnormals): one hardware f16 -> f32
    // conversion (vcvtph2ps, fcvtl) and a multiply by 256.
    Value raw = arith::BitcastOp::create(b, loc, shaped(like, b.getI8Type()), op.getIn());
    Value c = arith::ExtUIOp::create(b, loc, shaped(like, b.getI16Type()), raw);
    Value sign =
        arith::ShLIOp::create(b, loc, arith::AndIOp::create(b, loc, c, k.i16(0x80)), k.i16(8));
    Value rest =
        arith::ShLIOp::create(b, loc, arith::AndIOp::create(b, loc, c, k.i16(0x7F)), k.i16(7));
    Value half = arith::BitcastOp::create(b, loc, shaped(like, b.getF16Type()),
                                          arith::OrIOp::create(b, loc, sign, rest));
    Value wide = arith::ExtFOp::create(b, loc, shaped(like, b.getF32Type()), half);
    b.replaceOpWithNewOp<arith::MulFOp>(op, wide, k.f32(256.0));
    return success();
  }
};

/// bf16 -> f32: the bf16 bits are an f32's upper half (exact, NaNs and
/// subnormals included). Written as integer operations so that LLVM never
/// sees a bfloat conversion: on x86 CPUs without AVX512-BF16 its type
/// legalization of bf16 vectors promoted them to f32 and back, with calls to
/// compiler-rt's __truncsfbf2 that the compiled code cannot resolve (and a
/// call per element in the weight loops).
struct ExpandBF16ExtF : OpRewritePattern<arith::ExtFOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(arith::ExtFOp op, PatternRewriter &b) const override {
    if (!getElementTypeOrSelf(op.getIn().getType()).isBF16() ||
        !getElementTypeOrSelf(op.getType()).isF32())
      return failure();
    Location loc = op.getLoc();
    Bits k{b, loc, op.getType()};
    Value raw = arith::BitcastOp::create(b, loc, shaped(k.like, b.getI16Type()), op.getIn());
    Value wide = arith::ExtUIOp::create(b, loc, shaped(k.like, b.getI32Type()), raw);
    b.replaceOp(op, k.asF32(k.shl(wide, 16)));
    return success();
  }
};

struct ExpandTruncF : OpRewritePattern<arith::TruncFOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(arith::TruncFOp op, PatternRewriter &b) const override {
    Type out = getElementTypeOrSelf(op.getType());
    if (!isa<Float8E4M3FNType>(out) || !getElementTypeOrSelf(op.getIn().getType()).isF32())
      return failure();
    Location loc = op.getLoc();
    Bits k{b, loc, op.getType()};
    Value bits = k.asI32(op.getIn());
    Value sign = k.and_(k.shr(bits, 24), 0x80);
    // |x|, saturated at the largest finite E4M3FN value.
    Value a = arith::MinimumFOp::create(b, loc, k.asF32(k.and_(bits, 0x7FFFFFFF)), k.f32(448.0));
    Value ab = k.asI32(a);
    // Normal: round the mantissa to 3 bits, nearest even; a carry moves
    // into the exponent. (r >> 20) = f32 exponent * 8 + mantissa; rebias.
    Value r = k.add(ab, k.add(k.i32(0x7FFFF), k.and_(k.shr(ab, 20), 1)));
    Value normal = arith::SubIOp::create(b, loc, k.shr(r, 20), k.i32(120 << 3));
    // Subnormal (|x| < 2^-6): multiples of 2^-9, rounded to nearest even by
    // adding and removing 2^23.
    Value scaled = arith::MulFOp::create(b, loc, a, k.f32(512.0));
    Value rounded = arith::SubFOp::create(
        b, loc, arith::AddFOp::create(b, loc, scaled, k.f32(8388608.0)), k.f32(8388608.0));
    Value small = arith::FPToSIOp::create(b, loc, shaped(op.getType(), b.getI32Type()), rounded);
    Value isSub = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, a, k.f32(1.0 / 64.0));
    Value code = k.or_(arith::SelectOp::create(b, loc, isSub, small, normal), sign);
    Value byte = arith::TruncIOp::create(b, loc, shaped(op.getType(), b.getI8Type()), code);
    b.replaceOpWithNewOp<arith::BitcastOp>(op, op.getType(), byte);
    return success();
  }
};

struct ExpandFP8Pass : moir::impl::ExpandFP8PassBase<ExpandFP8Pass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<ExpandExtF, ExpandTruncF, ExpandBF16ExtF>(&getContext());
    // Only the conversions (and what their expansions create) are visited:
    // a whole-module greedy rewrite also visits and folds every other op:
    // 0.39 of 6.3 G instructions of moirc's MLIR phases on a Q4_K int8
    // compile (callgrind, bench/RESULTS.md), for no change to the code.
    SmallVector<Operation *> ops;
    getOperation()->walk([&](Operation *op) {
      if (isa<arith::ExtFOp, arith::TruncFOp>(op))
        ops.push_back(op);
    });
    if (ops.empty())
      return;
    GreedyRewriteConfig config;
    config.setStrictness(GreedyRewriteStrictness::ExistingAndNewOps);
    if (failed(applyOpPatternsGreedily(ops, std::move(patterns), config)))
      return signalPassFailure();
  }
};

} // namespace
