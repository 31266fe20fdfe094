//===- Builders.h - small helpers for building linalg on tensors --*- C++ -*-===//

#ifndef MOIR_LIB_CONVERSION_MOIRTOLINALG_BUILDERS_H
#define MOIR_LIB_CONVERSION_MOIRTOLINALG_BUILDERS_H

#include "LLM/IR/LLMOps.h"
#include "MoIR/IR/MoIRDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"

namespace moir::lowering {

constexpr auto par = mlir::utils::IteratorType::parallel;
constexpr auto red = mlir::utils::IteratorType::reduction;

using BodyFn = llvm::function_ref<void(mlir::OpBuilder &, mlir::Location,
                                       mlir::ValueRange)>;

/// A linalg.generic producing one result into `init`. `exprs` give each
/// operand's indexing (inputs, then the output) over `iterators.size()` loops.
mlir::Value generic(mlir::OpBuilder &b, mlir::Location loc,
                    mlir::ValueRange inputs, mlir::Value init,
                    llvm::ArrayRef<llvm::SmallVector<mlir::AffineExpr>> exprs,
                    llvm::ArrayRef<mlir::utils::IteratorType> iterators,
                    BodyFn body);

/// `x` ([..., K]) with its innermost dimension gathered by an i32 order:
/// `result[..., k] = x[..., order[orderPrefix..., k]]` (`order` indexed by
/// `orderPrefix` then k: one row of a stacked [E, K] order, say). The
/// act-order GPTQ gather (llm.permute, moe input_order).
mlir::Value gatherInner(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x,
                        mlir::Value order, mlir::ValueRange orderPrefix = {});

/// The loop dimensions d(from), ..., d(n - 1).
llvm::SmallVector<mlir::AffineExpr> dims(mlir::OpBuilder &b, unsigned n, unsigned from = 0);

/// max|x| over the innermost dimension of `x` ([..., K], any float): the
/// rows' largest magnitudes, [...] f32.
mlir::Value rowAbsMax(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x);

/// `x` ([..., K], f32) quantized and dequantized row by row with a
/// symmetric scale from each row's largest magnitude: llm.dynamic_quant's
/// numbers (W8A8 activation quantization).
/// Whether the target's contractions take `x`, rows llm.dynamic_quant
/// quantizes to int8, raw and quantize them themselves (the lowering
/// config's row_quant, moir.row_quant): then its product `user` reads the
/// raw rows. Only for quantized weights (the CPU's packed kernels).
inline bool foldsRowQuant(mlir::Operation *user, mlir::Value weight,
                          std::optional<llm::DynamicQuant> format) {
  moir::LoweringConfigAttr config = moir::attrs::getLoweringConfig(user);
  return format == llm::DynamicQuant::int8 && config && config.getRowQuant() &&
         llvm::isa<llm::QTensorType>(weight.getType());
}

/// Whether products reading rows quantized this way keep them in f32
/// (moir.precise): int8 codes times a per-row scale would be rounded again
/// by the CPU's int8 dot products (blocks of 32, each with its own scale).
inline bool keepsActivations(std::optional<llm::DynamicQuant> format) {
  return format == llm::DynamicQuant::int8;
}

/// `parallel`: both of its generics (the rows' maxima, the rounding) are
/// split across cores (markParallel).
mlir::Value dynamicQuantRows(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x,
                             llm::DynamicQuant format, bool parallel);

/// llm.static_quant: every value of `x` quantized with the one stored
/// `scale` and dequantized.
mlir::Value staticQuant(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x, mlir::Value scale,
                        llm::DynamicQuant format);

/// Marks a linalg op worth splitting across cores (its parallel loops run on
/// the runtime's thread pool; small element-wise ops stay serial).
mlir::Value markParallel(mlir::Value linalgResult);

/// Marks a contraction inside a work item of an enclosing parallel loop: the
/// backend gives it its register-blocked kernel, run sequentially.
mlir::Value markKernel(mlir::Value linalgResult);

/// Inserts `value` at `offsets` (sizes: `sizes`, unit strides; `value` may
/// drop unit dimensions) into the shared output `into` of `forall`'s
/// terminator.
void parallelInsert(mlir::OpBuilder &b, mlir::Location loc, mlir::scf::ForallOp forall,
                    mlir::Value value, mlir::Value into,
                    llvm::ArrayRef<mlir::OpFoldResult> offsets,
                    llvm::ArrayRef<mlir::OpFoldResult> sizes);

/// A weight operand of a contraction: a float tensor, or a quantized weight
/// as bound (llm.packed_weight: its codes and its (scale, offset) groups,
/// include/moir/Frontend/Quantization.h).
struct WeightOperand {
  /// The float weight (null when packed).
  mlir::Value tensor;
  /// The packed weight's codes and scales, and the form ("u4:32").
  mlir::Value data, scales;
  int64_t group = 0;
  bool nibbles = false;
  /// Whether the groups have offsets (scales [..., 2]) or are symmetric
  /// (scales [..., 1]).
  bool offsets = true;
  /// K-quant superblock scales (i8 [..., rows, cols / 256, P * (2 + 256 /
  /// group)]): a group's scale is an f16 number per superblock times a
  /// signed byte per group.
  bool superblocks = false;
  std::string form;

  /// `w` (a float tensor, or an !llm.qtensor defined by llm.packed_weight),
  /// or failure for a quantized weight in no packed form.
  static mlir::FailureOr<WeightOperand> of(mlir::Value w);
  bool isPacked() const { return !tensor; }
  /// A scale or offset element read from `scales` (f32 or f16) as f32.
  static mlir::Value param(mlir::OpBuilder &b, mlir::Location loc, mlir::Value element);
  /// Elements of `scales` a linalg.generic reads per weight element for its
  /// scale and offset (packedInputs' order): a number per part, or per part
  /// the two bytes of the f16 and the group's byte.
  int64_t numScaleArgs() const { return (offsets ? 2 : 1) * (superblocks ? 3 : 1); }
  /// The f32 (scale, offset) (offset null when symmetric) from the
  /// elements numScaleArgs() names.
  std::pair<mlir::Value, mlir::Value> params(mlir::OpBuilder &b, mlir::Location loc,
                                             mlir::ValueRange args) const;
  /// The f32 (scale, offset) of element (`row`, `col`) of a 2-D packed
  /// weight, read with tensor.extract.
  std::pair<mlir::Value, mlir::Value> paramsAt(mlir::OpBuilder &b, mlir::Location loc,
                                               mlir::Value row, mlir::Value col) const;
  /// `scale * code + offset` (the offset, when null, is zero), in f32.
  static mlir::Value dequantized(mlir::OpBuilder &b, mlir::Location loc, mlir::Value code,
                                 mlir::Value scale, mlir::Value offset);
  /// The logical (dequantized) shape.
  llvm::SmallVector<int64_t> getShape() const;

  /// The slice at logical `offsets` / `sizes` (of the weight's rank);
  /// `dropped` dimensions (size 1) are dropped from the result, as a
  /// rank-reducing tensor.extract_slice does. A packed weight's column
  /// offset and size must be multiples of its group.
  WeightOperand slice(mlir::OpBuilder &b, mlir::Location loc,
                      llvm::ArrayRef<mlir::OpFoldResult> offsets,
                      llvm::ArrayRef<mlir::OpFoldResult> sizes,
                      llvm::ArrayRef<int64_t> dropped = {}) const;
};

/// WeightOperand::of, or an error on `user` naming the weight's type when
/// the weight is quantized in no packed form (not bound by
/// moir-bind-weights).
mlir::FailureOr<WeightOperand> weightOperand(mlir::Operation *user, mlir::Value w);

/// The f32 value of a packed code (`code`: i8 or f8E4M3FN; for 4-bit codes
/// the byte holding element `col`).
mlir::Value decodeCode(mlir::OpBuilder &b, mlir::Location loc, const WeightOperand &w,
                       mlir::Value code, mlir::Value col);

/// A packed weight dequantized to an f32 tensor (for consumers with no
/// kernel reading the packed form).
mlir::Value dequantizeWeight(mlir::OpBuilder &b, mlir::Location loc, const WeightOperand &w);

/// init[m, n] + sum_k a[m, k] * w[n, k] for a float or packed 2-D weight;
/// the packed form's contraction carries moir.packed for the kernels.
mlir::Value weightContraction(mlir::OpBuilder &b, mlir::Location loc, mlir::Value a,
                              const WeightOperand &w, mlir::Value init);

/// init + sum a * w, w a packed 2-D weight, as one linalg.generic over
/// `iterators.size()` loops indexing `a` by `aExprs`, w's element by (`row`,
/// `col`: col a loop) and the result by `outExprs`; marked moir.packed
/// (the CPU kernels match its 3-loop forms, weightContraction's and
/// weightRowCombination's).
mlir::Value packedProduct(mlir::OpBuilder &b, mlir::Location loc, mlir::Value a,
                          llvm::ArrayRef<mlir::AffineExpr> aExprs, const WeightOperand &w,
                          mlir::AffineExpr row, mlir::AffineExpr col,
                          llvm::ArrayRef<mlir::AffineExpr> outExprs,
                          llvm::ArrayRef<mlir::utils::IteratorType> iterators, mlir::Value init);

/// init[m, n] + sum_k a[m, k] * w[k, n] for a packed 2-D weight (rows k,
/// packed along n): a sum of the weight's rows scaled by the activations,
/// as absorbed MLA folds W_UK into the query. It carries moir.packed too;
/// its codes are indexed (k, n), the contraction's (n, k).
mlir::Value weightRowCombination(mlir::OpBuilder &b, mlir::Location loc, mlir::Value a,
                                 const WeightOperand &w, mlir::Value init);

/// tensor.empty of the given (mixed static/dynamic) sizes, filled with `value`.
mlir::Value filled(mlir::OpBuilder &b, mlir::Location loc,
                   llvm::ArrayRef<mlir::OpFoldResult> sizes, mlir::Type type,
                   double value);

/// f32 of a value of any float type, or of an integer (int8 cache storage).
mlir::Value toF32(mlir::OpBuilder &b, mlir::Location loc, mlir::Value v);

/// The first `len` rows of a KV cache as attention reads them: the f32
/// cache itself, or, for a cache read through llm.dequantize_cache, its
/// storage (i8 / f8E4M3FN) and its row scales ([rows, ...], the cache's
/// shape without the last dimension), for the products to fuse.
struct CacheRows {
  mlir::Value values, scales;
};
CacheRows readCache(mlir::OpBuilder &b, mlir::Location loc, mlir::Value cache,
                    mlir::Value len);

/// The f32 values of `rows` (storage times row scale; the values themselves
/// when not quantized).
mlir::Value dequantized(mlir::OpBuilder &b, mlir::Location loc, const CacheRows &rows);

/// t * scales[scaleExprs] element-wise (t itself without scales): a row
/// scale applied to a product that left it out.
mlir::Value scaleBy(mlir::OpBuilder &b, mlir::Location loc, mlir::Value t, mlir::Value scales,
                    llvm::ArrayRef<mlir::AffineExpr> scaleExprs);

/// The body of a contraction: yields acc + ext(a) * ext(b) for block
/// arguments (a, b, acc), as an FMA the backend may reassociate (so it can
/// vectorize the reduction).
void multiplyAccumulate(mlir::OpBuilder &b, mlir::Location loc, mlir::ValueRange args);

/// An element-wise activation of the f32 scalar `x`.
mlir::Value activation(mlir::OpBuilder &b, mlir::Location loc, llm::ActivationKind kind,
                       mlir::Value x);

/// init[m, n] + sum_k a[m, k] * w[n, k]: activations times a weight stored
/// output-major (projections, expert matmuls), the row-by-row contraction the
/// CPU kernels match.
mlir::Value rowContraction(mlir::OpBuilder &b, mlir::Location loc, mlir::Value a, mlir::Value w,
                           mlir::Value init);

mlir::Value f32Const(mlir::OpBuilder &b, mlir::Location loc, double value);
mlir::Value indexConst(mlir::OpBuilder &b, mlir::Location loc, int64_t value);

/// Number of cache rows attention must read: max(positions) + 1, clamped to
/// the capacity.
mlir::Value validLength(mlir::OpBuilder &b, mlir::Location loc,
                        mlir::Value positions, int64_t capacity);

/// [offsets, sizes) of `t` with unit strides, as `type` (rank-reducing
/// where `type` drops unit dimensions).
mlir::Value slice(mlir::OpBuilder &b, mlir::Location loc, mlir::RankedTensorType type,
                  mlir::Value t, llvm::ArrayRef<mlir::OpFoldResult> offsets,
                  llvm::ArrayRef<mlir::OpFoldResult> sizes);

/// An index or integer of any width as i64 (sign-extended).
mlir::Value toI64(mlir::OpBuilder &b, mlir::Location loc, mlir::Value v);

/// [0, len) of the leading dimension of `x`.
mlir::Value prefix(mlir::OpBuilder &b, mlir::Location loc, mlir::Value x,
                   mlir::Value len);

/// Whether query position `position` (an integer of any width) cannot see
/// cache row `key` (index): a future key, or one `window` or more behind.
mlir::Value keyHidden(mlir::OpBuilder &b, mlir::Location loc, mlir::Value key,
                      mlir::Value position, std::optional<int64_t> window);

/// Scales `scores` [T, H, L] by `scale`, masks keys past each query's
/// position (and outside the sliding window), and softmaxes over L.
mlir::Value maskedSoftmax(mlir::OpBuilder &b, mlir::Location loc,
                          mlir::Value scores, mlir::Value positions,
                          double scale, std::optional<int64_t> window);

/// Causal attention computed flash-style (online softmax over blocks of
/// keys; see flash-attention). A score is the sum over parts i of
/// queries[i] [T, H, d_i] (any float) dotted with keys[i], each part's keys
/// [len, KVH, d_i], or [len, d_i] shared by every head (MLA's latent and
/// RoPE caches); values [len, KVH, Dv] or [len, Dv]. Caches are f32, or
/// quantized storage with row scales ([len, KVH] or [len]). Query head h
/// reads KV head h / (H / KVH). Query t sees key j iff j <= positions[t]
/// (and positions[t] - j < window). Returns [T, H, Dv] f32.
struct FlashAttention {
  llvm::SmallVector<mlir::Value, 2> queries;
  llvm::SmallVector<CacheRows, 2> keys;
  CacheRows values;
  mlir::Value positions, len;
  double scale;
  std::optional<int64_t> window;
  /// The target's block sizes and work items (#moir.lowering_config).
  LoweringConfigAttr config;
};
mlir::Value flashAttention(mlir::OpBuilder &b, mlir::Location loc, const FlashAttention &a);

} // namespace moir::lowering

#endif
