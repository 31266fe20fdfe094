//===- BindWeights.cpp - weight references to entry arguments --------------===//

#include "LLM/IR/LLMOps.h"
#include "MoE/IR/MoEOps.h"
#include "MoIR/IR/MoIRDialect.h"
#include "moir/Transforms/Passes.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"

#include <numeric>

namespace moir {
#define GEN_PASS_DEF_BINDWEIGHTSPASS
#include "moir/Transforms/Passes.h.inc"
} // namespace moir

using namespace mlir;
using namespace moir;

namespace {

/// The weight-store tensors a quantized weight is packed from: one per
/// stacked matrix (their scales and zero points are found by the packer).
SmallVector<StringRef> primaryNames(Operation *op) {
  if (auto stacked = dyn_cast<llm::StackedWeightOp>(op))
    return llvm::map_to_vector(stacked.getNames(), [](Attribute a) {
      return cast<StringAttr>(a).getValue();
    });
  return {cast<llm::WeightOp>(op).getName()};
}

/// The widest column block that every consumer of `weight` slices it at
/// a multiple of (0: no consumer slices its columns). The fused experts
/// read a shared expert's down projection ([hidden, S * ffn]) in blocks of
/// the routed experts' ffn columns.
int64_t columnSliceWidth(Value weight) {
  int64_t width = 0;
  for (OpOperand &use : weight.getUses()) {
    auto fused = dyn_cast<moe::FusedExpertsOp>(use.getOwner());
    if (!fused || fused.getSharedDownProj() != weight)
      continue;
    int64_t ffn = llm::getWeightShape(fused.getDown().getType()).back();
    width = width ? std::gcd(width, ffn) : ffn;
  }
  return width;
}

/// Binds quantized weight `op` as its packed data and scales arguments and
/// returns the llm.packed_weight that stands for it (null after an error).
template <typename AddArg>
Value bindPacked(Operation *op, llm::QTensorType type, bool superblocks, AddArg addArg) {
  std::optional<llm::QTensorType::PackedLayout> layout = type.getPackedLayout();
  SmallVector<StringRef> names = primaryNames(op);
  if (!layout) {
    op->emitError() << "weight '" << names.front() << "' is quantized as " << type
                    << ", which no packed form of the kernels holds";
    return Value();
  }
  // Superblock scales are sliced by superblock: a consumer that reads
  // column blocks not made of whole superblocks (DeepSeek-V2-Lite's shared
  // experts, 1408 columns each) gets the per-group f32 form.
  // So does a weight a Halide kernel (moir.halide_call) reads: it decodes
  // the per-group form (the MLIR kernels read both).
  bool readByHalide = llvm::any_of(op->getResult(0).getUsers(),
                                   [](Operation *user) { return isa<HalideCallOp>(user); });
  int64_t width = columnSliceWidth(op->getResult(0));
  if (!superblocks || width % 256 != 0 || readByHalide)
    layout->superblocks = false;
  // Groups wider than the consumer's column blocks (one scale per row of
  // DeepSeek-V2-Lite's two shared experts' down projection, per-channel
  // FP8 or INT8) are split at the blocks: the packer repeats each scale
  // over its row's groups. (u4's group is always 32.)
  if (width > 0 && layout->storage != "u4" && width % layout->group != 0)
    layout->group = std::gcd(layout->group, width);
  // At the top of the entry, not between layer ops (moir-outline-layers
  // outlines each layer's contiguous ops).
  auto func = op->getParentOfType<func::FuncOp>();
  OpBuilder b = OpBuilder::atBlockBegin(&func.getBody().front());
  MLIRContext *ctx = op->getContext();
  ArrayRef<int64_t> shape = type.getShape();
  int64_t cols = shape.back();
  SmallVector<int64_t> dataShape(shape), scaleShape(shape);
  Type dataElement = b.getI8Type();
  if (layout->storage == "u4")
    dataShape.back() = cols / 2;
  else if (layout->storage == "f8e4m3")
    dataElement = Float8E4M3FNType::get(ctx);
  scaleShape.back() = cols / layout->group;
  scaleShape.push_back(layout->offsets ? 2 : 1);
  if (layout->superblocks) {
    scaleShape[scaleShape.size() - 2] = cols / 256;
    scaleShape.back() *= 2 + 256 / layout->group;
  }
  // The form's text is include/moir/Frontend/Quantization.h's
  // (stringifyPackedFormat): storage:group[:quantize][:f16][:sym][:k].
  std::string form = (layout->storage + ":" + Twine(layout->group)).str();
  if (!layout->quantize.empty())
    form += (":" + layout->quantize).str();
  if (layout->halfScales)
    form += ":f16";
  if (!layout->offsets)
    form += ":sym";
  if (layout->superblocks)
    form += ":k";
  Type scaleElement = layout->superblocks ? Type(b.getI8Type())
                      : layout->halfScales ? Type(b.getF16Type())
                                           : Type(b.getF32Type());
  Value data = addArg(RankedTensorType::get(dataShape, dataElement), names,
                      b.getStringAttr(form + "/data"));
  Value scales = addArg(RankedTensorType::get(scaleShape, scaleElement), names,
                        b.getStringAttr(form + "/scales"));
  if (!data || !scales)
    return Value();
  return llm::PackedWeightOp::create(b, op->getLoc(), type, data, scales,
                                     b.getI64IntegerAttr(layout->group));
}

struct BindWeightsPass : moir::impl::BindWeightsPassBase<BindWeightsPass> {
  using Base::Base;

  void runOnOperation() override {
    auto func = getOperation().lookupSymbol<func::FuncOp>("forward");
    if (!func) {
      getOperation().emitError("no @forward function to bind weights of");
      return signalPassFailure();
    }
    OpBuilder b(&getContext());
    llvm::StringMap<Value> bound;
    SmallVector<Operation *> dead;
    bool failedBinding = false;
    func.walk([&](llm::WeightRefOpInterface ref) {
      Operation *op = ref.getOperation();
      Value result = op->getResult(0);
      // The key is every name the op reads, in order.
      SmallVector<StringRef> refNames = ref.getWeightNames();
      std::string key = llvm::join(refNames, "\n");
      Value arg = bound.lookup(key);
      if (!arg) {
        auto addArg = [&](Type type, ArrayRef<StringRef> names, StringAttr packing) -> Value {
          unsigned index = func.getNumArguments();
          SmallVector<Attribute> group;
          for (StringRef name : names)
            group.push_back(b.getStringAttr(name));
          auto entry = EntryArgAttr::get(&getContext(), ArgKind::weight, b.getArrayAttr(group),
                                         packing);
          if (failed(func.insertArgument(
                  index, type,
                  b.getDictionaryAttr(
                      {b.getNamedAttr(bufferization::BufferizationDialect::kWritableAttrName,
                                      b.getBoolAttr(false)),
                       b.getNamedAttr(attrs::argName(), entry)}),
                  op->getLoc())))
            return Value();
          return func.getArgument(index);
        };
        if (auto q = dyn_cast<llm::QTensorType>(result.getType())) {
          arg = bindPacked(op, q, superblocks, addArg);
          if (!arg) {
            failedBinding = true;
            return;
          }
        } else {
          arg = addArg(result.getType(), refNames, StringAttr());
          if (!arg)
            return;
        }
        bound[key] = arg;
      }
      result.replaceAllUsesWith(arg);
      dead.push_back(op);
    });
    if (failedBinding)
      return signalPassFailure();
    for (Operation *op : dead)
      op->erase();
    // Private from here on: the buffer-result passes only rewrite private
    // functions, and a backend exports its own entry wrapper.
    func.setPrivate();
  }
};

} // namespace
