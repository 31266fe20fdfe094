//===- ExportEntry.cpp - the exported entry moir_forward -------------------===//

#include "MoIR/IR/MoIRDialect.h"
#include "moir/Target/Host/Host.h"

namespace moir {
#define GEN_PASS_DEF_EXPORTENTRYPASS
#include "moir/Target/Host/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

struct ExportEntryPass : moir::impl::ExportEntryPassBase<ExportEntryPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto forward = module.lookupSymbol<LLVM::LLVMFuncOp>("forward");
    auto abi = forward ? forward->getAttrOfType<DenseI64ArrayAttr>(moir::attrs::abiName()) : nullptr;
    if (!abi) {
      module.emitError("no lowered @forward with a moir.abi attribute");
      return signalPassFailure();
    }
    MLIRContext *ctx = &getContext();
    OpBuilder b(ctx);
    b.setInsertionPointToEnd(module.getBody());
    Location loc = forward.getLoc();
    auto ptr = LLVM::LLVMPointerType::get(ctx);
    auto i64 = IntegerType::get(ctx, 64);
    auto entry = LLVM::LLVMFuncOp::create(
        b, loc, "moir_forward", LLVM::LLVMFunctionType::get(LLVM::LLVMVoidType::get(ctx), {ptr}));
    Block *body = entry.addEntryBlock(b);
    b.setInsertionPointToStart(body);
    Value argv = body->getArgument(0);
    SmallVector<Value> args;
    auto field = [&](Value base, int64_t index, Type type) -> Value {
      Value p = LLVM::GEPOp::create(b, loc, ptr, type, base, ArrayRef<LLVM::GEPArg>{index});
      return LLVM::LoadOp::create(b, loc, type, p);
    };
    for (auto [i, rank] : llvm::enumerate(abi.asArrayRef())) {
      Value p = field(argv, i, ptr);
      if (rank < 0) {
        args.push_back(LLVM::LoadOp::create(b, loc, i64, p));
        continue;
      }
      // {ptr allocated, ptr aligned, i64 offset, i64 sizes[rank], i64 strides[rank]}
      // laid out as consecutive 8-byte words.
      Value allocated = LLVM::LoadOp::create(b, loc, ptr, p);
      args.push_back(allocated);
      args.push_back(field(p, 1, ptr));
      for (int64_t w = 0; w < 1 + 2 * rank; ++w)
        args.push_back(field(p, 2 + w, i64));
    }
    if (args.size() != forward.getNumArguments()) {
      forward.emitError() << moir::attrs::abiName() << " does not match the lowered signature";
      return signalPassFailure();
    }
    LLVM::CallOp::create(b, loc, forward, args);
    LLVM::ReturnOp::create(b, loc, ValueRange{});
    // Functions outlined per layer (moir-outline-layers marks them
    // moir.layer) stay out of line: LLVM optimizes them one at a time.
    module.walk([](LLVM::LLVMFuncOp f) {
      if (f->hasAttr(moir::attrs::layerName()))
        f.setNoInline(true);
    });
  }
};

} // namespace
