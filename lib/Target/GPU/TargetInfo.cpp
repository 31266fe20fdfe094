//===- TargetInfo.cpp - the GPU vendors and what their binaries hold -------===//

#include "moir/Target/GPU/GPUTarget.h"

#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"

using namespace mlir;

namespace moir::gpu {

static llvm::StringMap<const GPUTargetInfo *> &vendors() {
  static llvm::StringMap<const GPUTargetInfo *> table;
  return table;
}

void registerTargetInfo(const GPUTargetInfo *info) { vendors()[info->name()] = info; }

const GPUTargetInfo *lookupTarget(llvm::StringRef name) { return vendors().lookup(name); }

llvm::Error unknownChip(llvm::StringRef vendor, llvm::StringRef chip,
                        llvm::ArrayRef<llvm::StringRef> known) {
  return llvm::createStringError("unknown " + vendor + " chip '" + chip +
                                 "' (known: " + llvm::join(known, ", ") + ")");
}

void GPUTargetInfo::buildSerialization(OpPassManager &pm, const GPUOptions &options,
                                       bool assembly) const {
  GpuModuleToBinaryPassOptions binary;
  binary.toolkitPath = serializationToolkit(options);
  binary.compilationTarget = assembly ? "isa"
                             : binaryFormat() == mlir::gpu::CompilationTarget::Fatbin ? "fatbin"
                                                                                     : "bin";
  pm.addPass(createGpuModuleToBinaryPass(binary));
}

LogicalResult GPUTargetInfo::serialize(ModuleOp module, const GPUOptions &options,
                                       llvm::function_ref<void(llvm::StringRef)> assembly) const {
  std::unique_ptr<SymbolTable> table;
  auto symbols = [&]() -> SymbolTable * {
    if (!table)
      table = std::make_unique<SymbolTable>(module);
    return table.get();
  };
  std::string toolkit = serializationToolkit(options);
  mlir::gpu::TargetOptions targetOptions(toolkit, {}, {}, {}, binaryFormat(), symbols, {}, {},
                                         {}, assembly);
  return mlir::gpu::transformGpuModulesToBinaries(module, nullptr, targetOptions);
}

std::vector<std::pair<std::string, std::string>> deviceBinaries(ModuleOp module) {
  std::vector<std::pair<std::string, std::string>> binaries;
  module.walk([&](mlir::gpu::BinaryOp binary) {
    for (Attribute object : binary.getObjects())
      if (auto obj = dyn_cast<mlir::gpu::ObjectAttr>(object))
        binaries.emplace_back(binary.getName().str(), obj.getObject().getValue().str());
  });
  return binaries;
}

std::vector<std::string> kernelNames(ModuleOp module) {
  std::vector<std::string> names;
  module.walk([&](mlir::gpu::LaunchFuncOp launch) {
    names.push_back((launch.getKernelModuleName().getValue() + "." +
                     launch.getKernelName().getValue())
                        .str());
  });
  return names;
}

} // namespace moir::gpu
