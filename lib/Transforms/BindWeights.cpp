//===- BindWeights.cpp - weight references to entry arguments --------------===//

#include "LLM/IR/LLMOps.h"
#include "MoIR/IR/MoIRDialect.h"
#include "moir/Transforms/Passes.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"

namespace moir {
#define GEN_PASS_DEF_BINDWEIGHTSPASS
#include "moir/Transforms/Passes.h.inc"
} // namespace moir

using namespace mlir;
using namespace moir;

namespace {

struct BindWeightsPass : moir::impl::BindWeightsPassBase<BindWeightsPass> {
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
      if (isa<llm::QTensorType>(result.getType())) {
        op->emitError("quantized weights cannot be bound yet (no quantized kernels)");
        failedBinding = true;
        return;
      }
      // The key is every name the op reads, in order.
      SmallVector<StringRef> refNames = ref.getWeightNames();
      std::string key = llvm::join(refNames, "\n");
      Value arg = bound.lookup(key);
      if (!arg) {
        unsigned index = func.getNumArguments();
        SmallVector<Attribute> group;
        for (StringRef name : refNames)
          group.push_back(b.getStringAttr(name));
        auto entry = EntryArgAttr::get(&getContext(), ArgKind::weight, b.getArrayAttr(group));
        if (failed(func.insertArgument(
                index, result.getType(),
                b.getDictionaryAttr(
                    {b.getNamedAttr(bufferization::BufferizationDialect::kWritableAttrName,
                                    b.getBoolAttr(false)),
                     b.getNamedAttr(attrs::argName(), entry)}),
                op->getLoc())))
          return;
        arg = func.getArgument(index);
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
