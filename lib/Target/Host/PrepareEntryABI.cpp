//===- PrepareEntryABI.cpp - @forward's buffer signature -------------------===//

#include "MoIR/IR/MoIRDialect.h"
#include "moir/Target/Host/Host.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

namespace moir {
#define GEN_PASS_DEF_PREPAREENTRYABIPASS
#include "moir/Target/Host/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

struct PrepareEntryABIPass : moir::impl::PrepareEntryABIPassBase<PrepareEntryABIPass> {
  void runOnOperation() override {
    auto func = getOperation().lookupSymbol<func::FuncOp>("forward");
    if (!func) {
      getOperation().emitError("no @forward function");
      return signalPassFailure();
    }
    if (func.getNumResults() != 0) {
      func.emitError("@forward must return its results through arguments by now "
                     "(a result did not bufferize in place)");
      return signalPassFailure();
    }
    SmallVector<int64_t> ranks;
    for (Type type : func.getArgumentTypes()) {
      if (auto memref = dyn_cast<MemRefType>(type)) {
        if (!memref.getLayout().isIdentity()) {
          func.emitError("entry buffers must have the identity layout");
          return signalPassFailure();
        }
        ranks.push_back(memref.getRank());
      } else if (type.isIndex()) {
        ranks.push_back(-1);
      } else {
        func.emitError("entry argument of unsupported type ") << type;
        return signalPassFailure();
      }
    }
    OpBuilder b(&getContext());
    func->setAttr(moir::attrs::abiName(), b.getDenseI64ArrayAttr(ranks));
    // What each argument holds (moir.arg) was read for the manifest at the
    // linalg phase; the buffers' ranks are the ABI from here on.
    for (unsigned i = 0; i < func.getNumArguments(); ++i)
      func.removeArgAttr(i, moir::attrs::argName());
    getOperation().walk([&](memref::CopyOp copy) {
      b.setInsertionPoint(copy);
      linalg::CopyOp::create(b, copy.getLoc(), copy.getSource(), copy.getTarget());
      copy.erase();
    });
  }
};

} // namespace
