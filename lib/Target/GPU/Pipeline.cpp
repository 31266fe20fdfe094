//===- Pipeline.cpp - the shared GPU lowering ------------------------------===//

#include "moir/Target/CPU/CPUTarget.h"
#include "moir/Target/GPU/GPUTarget.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Bufferization/Pipelines/Passes.h"
#include "mlir/Dialect/Bufferization/Transforms/Passes.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/Linalg/Passes.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Transforms/Passes.h"
#include "mlir/Pass/PassRegistry.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"

using namespace mlir;

namespace moir::gpu {

static llvm::StringMap<const GPUTargetInfo *> &registry() {
  static llvm::StringMap<const GPUTargetInfo *> targets;
  return targets;
}

void registerTarget(const GPUTargetInfo *info) { registry()[info->name()] = info; }

const GPUTargetInfo *lookupTarget(llvm::StringRef name) {
  return registry().lookup(name);
}

std::vector<llvm::StringRef> registeredTargets() {
  std::vector<llvm::StringRef> names;
  for (const auto &entry : registry())
    names.push_back(entry.getKey());
  llvm::sort(names);
  return names;
}

llvm::Error unknownChip(llvm::StringRef vendor, llvm::StringRef chip,
                        llvm::ArrayRef<llvm::StringRef> known) {
  return llvm::createStringError("unknown " + vendor + " chip '" + chip +
                                 "' (known: " + llvm::join(known, ", ") + ")");
}

void GPUTargetInfo::buildDeviceLowering(OpPassManager &pm, const GPUOptions &options) const {
  buildAttachTarget(pm, options);
  OpPassManager &kernels = pm.nest<mlir::gpu::GPUModuleOp>();
  kernels.addPass(memref::createExpandStridedMetadataPass());
  kernels.addPass(createLowerAffinePass());
  kernels.addPass(createSCFToControlFlowPass());
  kernels.addPass(createKernelConversion(options));
  kernels.addPass(createCanonicalizerPass());
  kernels.addPass(createCSEPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
}

void buildKernelPipeline(OpPassManager &pm, int64_t warpSize) {
  // Same entry ABI as the CPU artifact; memref.copy becomes linalg.copy and
  // so a kernel like any other.
  cpu::buildEntryBufferizationPipeline(pm);
  GPUWarpReductionsPassOptions warps;
  warps.warpSize = warpSize;
  pm.addPass(createGPUWarpReductionsPass(warps));
  pm.nest<func::FuncOp>().addPass(createConvertLinalgToParallelLoopsPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createGPUOffloadPass());
  GPUMapLoopsPassOptions map;
  map.warpSize = warpSize;
  pm.addPass(createGPUMapLoopsPass(map));
  pm.nest<func::FuncOp>().addPass(createConvertParallelLoopToGpuPass());
  pm.addPass(createGPUHostMemoryPass());
  pm.addPass(createGpuKernelOutliningPass());
  pm.addPass(createGPUMergeModulesPass());
  pm.nest<func::FuncOp>().addPass(createGpuAsyncRegionPass());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
}

void buildHostLoweringPipeline(OpPassManager &pm) {
  pm.addPass(createLowerAffinePass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  pm.addPass(createGpuToLLVMConversionPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createConvertMathToLibmPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createCPUExportEntryPass());
  pm.addPass(createCanonicalizerPass());
}

namespace {
struct KernelPipelineOptions : PassPipelineOptions<KernelPipelineOptions> {
  Option<int64_t> warpSize{*this, "warp-size", llvm::cl::desc("lanes per warp"),
                           llvm::cl::init(32)};
};
struct DevicePipelineOptions : PassPipelineOptions<DevicePipelineOptions> {
  Option<std::string> target{*this, "target", llvm::cl::desc("registered GPU target"),
                             llvm::cl::init("nvidia")};
  Option<std::string> chip{*this, "chip", llvm::cl::desc("chip (default: the target's first)"),
                           llvm::cl::init("")};
  Option<std::string> serialize{*this, "serialize",
                                llvm::cl::desc("none, assembly or binary"),
                                llvm::cl::init("none")};
};
} // namespace

void registerPipelines() {
  PassPipelineRegistration<KernelPipelineOptions>(
      "moir-gpu-kernels",
      "Linalg phase -> gpu.launch kernels in one gpu.module and async host code "
      "(bufferize, warp reductions, offload, map loops, outline)",
      [](OpPassManager &pm, const KernelPipelineOptions &options) {
        buildKernelPipeline(pm, options.warpSize);
      });
  PassPipelineRegistration<DevicePipelineOptions>(
      "moir-gpu-device-lowering",
      "Lowers gpu.module kernels for a registered GPU target and optionally "
      "serializes them (assembly text or the loadable binary)",
      [](OpPassManager &pm, const DevicePipelineOptions &options) {
        const GPUTargetInfo *target = lookupTarget(options.target);
        if (!target) {
          llvm::errs() << "moir-gpu-device-lowering: unknown target '" << options.target
                       << "'\n";
          return;
        }
        GPUOptions gpu;
        gpu.chip = options.chip.empty() ? target->chips().front().str() : std::string(options.chip);
        if (llvm::Error err = target->validate(gpu)) {
          llvm::errs() << "moir-gpu-device-lowering: " << llvm::toString(std::move(err)) << "\n";
          return;
        }
        target->buildDeviceLowering(pm, gpu);
        if (options.serialize != "none")
          target->buildSerialization(pm, gpu, options.serialize == "assembly");
      });
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
