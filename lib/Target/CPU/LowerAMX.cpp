//===- LowerAMX.cpp - AMX tiles to LLVM intrinsics, loops still loops ------===//

#include "moir/Target/CPU/CPUTarget.h"

#include "mlir/Conversion/LLVMCommon/ConversionTarget.h"
#include "mlir/Conversion/LLVMCommon/TypeConverter.h"
#include "mlir/Dialect/AMX/AMXDialect.h"
#include "mlir/Dialect/AMX/Transforms.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/SCF/Transforms/Patterns.h"
#include "mlir/Transforms/DialectConversion.h"

namespace moir {
#define GEN_PASS_DEF_CPULOWERAMXPASS
#include "moir/Target/CPU/Passes.h.inc"
} // namespace moir

using namespace mlir;

namespace {

struct CPULowerAMXPass : moir::impl::CPULowerAMXPassBase<CPULowerAMXPass> {
  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    LLVMTypeConverter converter(ctx);
    RewritePatternSet patterns(ctx);
    populateAMXLegalizeForLLVMExportPatterns(converter, patterns);
    ConversionTarget target(*ctx);
    target.addLegalDialect<LLVM::LLVMDialect>();
    target.addIllegalDialect<amx::AMXDialect>();
    // Loops are legal once they carry no tiles; their other types stay (an
    // LLVM type converter would also turn every index loop into an i64 one).
    TypeConverter tileTypes;
    tileTypes.addConversion([](Type type) { return type; });
    tileTypes.addConversion(
        [](amx::TileType type) -> Type { return LLVM::LLVMX86AMXType::get(type.getContext()); });
    scf::populateSCFStructuralTypeConversionsAndLegality(tileTypes, patterns, target);
    target.markUnknownOpDynamicallyLegal([](Operation *) { return true; });
    if (failed(applyPartialConversion(getOperation(), target, std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
