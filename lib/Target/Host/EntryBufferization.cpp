//===- EntryBufferization.cpp - linalg on tensors to the entry's buffers --===//

#include "moir/Target/Host/Host.h"

#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Pass/Pass.h"

using namespace mlir;

namespace {

/// Upstream's buffer-results-to-out-params, except for the functions it
/// cannot convert: one called in the module with a dynamically shaped
/// result keeps returning that buffer (the deallocation pipeline passes its
/// ownership to the caller). A layer whose last op is a Halide kernel
/// (moirc --target=halide) returns a new buffer of the token count's rows;
/// the other layers write their result into their argument, a result
/// dropped as equivalent first. @forward's results become out-parameters
/// as before.
struct ResultsToOutParams
    : PassWrapper<ResultsToOutParams, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(ResultsToOutParams)
  StringRef getArgument() const final { return "moir-entry-results-to-out-params"; }
  void getDependentDialects(DialectRegistry &registry) const override {
    registry.insert<memref::MemRefDialect>();
  }
  void runOnOperation() override {
    ModuleOp module = getOperation();
    llvm::DenseSet<StringRef> called;
    module.walk([&](func::CallOp call) { called.insert(call.getCallee()); });
    bufferization::BufferResultsToOutParamsOpts options;
    options.filterFn = [&](func::FuncOp *func) {
      bool dynamic = llvm::any_of(func->getResultTypes(), [](Type t) {
        auto memref = dyn_cast<MemRefType>(t);
        return memref && !memref.hasStaticShape();
      });
      return !(dynamic && called.contains(func->getSymName()));
    };
    if (failed(bufferization::promoteBufferResultsToOutParams(module, options)))
      signalPassFailure();
  }
};

} // namespace

namespace moir::host {

void buildEntryBufferizationPipeline(OpPassManager &pm) {
  bufferization::OneShotBufferizePassOptions bufferize;
  bufferize.bufferizeFunctionBoundaries = true;
  bufferize.functionBoundaryTypeConversion =
      bufferization::LayoutMapOption::IdentityLayoutMap;
  pm.addPass(bufferization::createOneShotBufferizePass(bufferize));
  // The caches come back as the very buffers passed in: drop them; the
  // logits become an out-parameter the caller owns.
  pm.addPass(bufferization::createDropEquivalentBufferResultsPass());
  pm.addPass(std::make_unique<ResultsToOutParams>());
  bufferization::BufferDeallocationPipelineOptions dealloc;
  bufferization::buildBufferDeallocationPipeline(pm, dealloc);
  pm.addPass(createPrepareEntryABIPass());
}

} // namespace moir::host
