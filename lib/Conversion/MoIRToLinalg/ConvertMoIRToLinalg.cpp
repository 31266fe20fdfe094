//===- ConvertMoIRToLinalg.cpp - the moir-lower-to-linalg pass ------------===//

#include "Builders.h"
#include "Patterns.h"

#include "LLM/IR/LLMOps.h"
#include "MoIR/IR/MoIRDialect.h"
#include "MLA/IR/MLAOps.h"
#include "MoE/IR/MoEOps.h"
#include "moir/Conversion/Passes.h"

#include "mlir/Transforms/WalkPatternRewriteDriver.h"

namespace moir {
#define GEN_PASS_DEF_CONVERTMOIRTOLINALGPASS
#include "moir/Conversion/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

/// A moir.halide_call reads a packed quantized weight as its codes, in the
/// weight's place, and its scales, after the other operands; `packed` in
/// its params names them ("<operand>=<form>", MoIROps.td). The Halide
/// kernels decode i8, u4 and FP8 E4M3 codes with per-group scales.
LogicalResult expandPackedOperands(moir::HalideCallOp call) {
  if (llvm::none_of(call.getInputs().getTypes(),
                    [](Type t) { return isa<moir::llm::QTensorType>(t); }))
    return success();
  SmallVector<Value> inputs, scales;
  SmallVector<std::string> packed;
  // A resident weight's codes keep its index; its scales are resident too.
  ArrayRef<int64_t> resident = call.getResident().value_or(ArrayRef<int64_t>());
  SmallVector<int64_t> residentScales;
  for (auto [i, v] : llvm::enumerate(call.getInputs())) {
    if (!isa<moir::llm::QTensorType>(v.getType())) {
      inputs.push_back(v);
      continue;
    }
    FailureOr<moir::lowering::WeightOperand> w = moir::lowering::weightOperand(call, v);
    if (failed(w))
      return failure();
    StringRef form = w->form;
    if (w->superblocks ||
        !(form.starts_with("i8:") || form == "u4:32" || form.starts_with("f8e4m3:")))
      return call.emitOpError() << "Halide kernel '" << call.getKernel()
                                << "': no decoder for the packed form " << w->form << " of "
                                << v.getType();
    inputs.push_back(w->data);
    if (llvm::is_contained(resident, static_cast<int64_t>(i)))
      residentScales.push_back(static_cast<int64_t>(scales.size()));
    scales.push_back(w->scales);
    packed.push_back((Twine(i) + "=" + w->form).str());
  }
  SmallVector<int64_t> residentAfter(resident);
  for (int64_t s : residentScales)
    residentAfter.push_back(static_cast<int64_t>(inputs.size()) + s);
  inputs.append(scales);
  OpBuilder b(call);
  NamedAttrList params(call.getParams());
  params.set("packed", b.getStringAttr(llvm::join(packed, ",")));
  auto expanded = moir::HalideCallOp::create(b, call.getLoc(), call.getResultTypes(), inputs,
                                             call.getCalleeAttr(), call.getKernelAttr(),
                                             params.getDictionary(b.getContext()),
                                             call.getResident() ? b.getDenseI64ArrayAttr(residentAfter)
                                                                : DenseI64ArrayAttr());
  expanded->setDiscardableAttrs(call->getDiscardableAttrDictionary());
  call->replaceAllUsesWith(expanded);
  call->erase();
  return success();
}

struct ConvertMoIRToLinalgPass
    : moir::impl::ConvertMoIRToLinalgPassBase<ConvertMoIRToLinalgPass> {
  void runOnOperation() override {
    // Everything target-dependent (block sizes, work items, the thread pool)
    // comes from the configuration a target's pass wrote.
    moir::LoweringConfigAttr config = moir::attrs::getLoweringConfig(getOperation());
    if (!config) {
      getOperation()->emitError()
          << "moir-lower-to-linalg: no " << moir::attrs::loweringConfigName()
          << " on the module (run a target's configuration pass first: "
             "moir-cpu-configure-lowering or moir-gpu-configure-lowering)";
      return signalPassFailure();
    }
    SmallVector<moir::HalideCallOp> calls;
    getOperation()->walk([&](moir::HalideCallOp call) { calls.push_back(call); });
    for (moir::HalideCallOp call : calls)
      if (failed(expandPackedOperands(call)))
        return signalPassFailure();
    RewritePatternSet patterns(&getContext());
    moir::lowering::populateLLMToLinalgPatterns(patterns);
    moir::lowering::populateMoEToLinalgPatterns(patterns);
    moir::lowering::populateMLAToLinalgPatterns(patterns);
    walkAndApplyPatterns(getOperation(), std::move(patterns));
    // Dequantized caches the attention lowerings read fused (storage and
    // scales directly) are left without users.
    getOperation()->walk([](moir::llm::DequantizeCacheOp op) {
      if (op->use_empty())
        op->erase();
    });
    // So are W8A8 rows whose linears' kernels quantize them (row_quant).
    getOperation()->walk([](moir::llm::DynamicQuantOp op) {
      if (op->use_empty())
        op->erase();
    });
    // So are packed weights: their consumers read the data and scales.
    getOperation()->walk([](moir::llm::PackedWeightOp op) {
      if (op->use_empty())
        op->erase();
    });
    // Whatever is left has no lowering (weights and composites are handled by
    // earlier passes): name it.
    WalkResult result = getOperation()->walk([](Operation *op) {
      StringRef dialect = op->getName().getDialectNamespace();
      if ((dialect == "llm" && !isa<moir::llm::WeightOp, moir::llm::StackedWeightOp,
                                         moir::llm::AllReduceOp, moir::llm::AllGatherOp>(op)) ||
          (dialect == "moe" && !isa<moir::moe::RecordRoutingOp>(op)) || dialect == "mla") {
        op->emitError() << "'" << op->getName()
                        << "' has no lowering for these operand types yet";
        return WalkResult::interrupt();
      }
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      return signalPassFailure();
    // A target without a thread pool (GPUs map every loop themselves) gets
    // no markers for one.
    if (!config.getParallel())
      getOperation()->walk([](Operation *op) { op->removeAttr(moir::attrs::parallelName()); });
  }
};

} // namespace
