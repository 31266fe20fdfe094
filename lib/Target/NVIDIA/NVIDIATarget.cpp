//===- NVIDIATarget.cpp - NVVM lowering and cubin/PTX serialization --------===//
//
// The NVIDIA side of the shared GPU backend: attach #nvvm.target, lower
// gpu.module to NVVM, and serialize a fatbin (cubin for the chip plus its PTX
// for newer chips) with the CUDA toolkit's ptxas and fatbinary.
//
//===----------------------------------------------------------------------===//

#include "moir/Target/NVIDIA/NVIDIATarget.h"
#include "moir/Target/GPU/GPUTarget.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

using namespace mlir;

namespace {

struct Chip {
  llvm::StringLiteral name;
  /// The PTX ISA version ptxas needs for it.
  llvm::StringLiteral features;
};

constexpr Chip kChips[] = {
    {"sm_80", "+ptx80"},  {"sm_86", "+ptx80"},   {"sm_89", "+ptx80"},
    {"sm_90", "+ptx80"},  {"sm_90a", "+ptx80"},  {"sm_100", "+ptx86"},
    {"sm_100a", "+ptx86"}, {"sm_120", "+ptx87"},
};

class NVIDIATarget final : public moir::gpu::GPUTargetInfo {
public:
  llvm::StringRef name() const override { return "nvidia"; }
  llvm::StringRef description() const override {
    return "NVIDIA GPUs (sm_80 and newer): a fatbin of cubin and PTX, run by the CUDA driver";
  }

  llvm::ArrayRef<llvm::StringRef> chips() const override {
    static const llvm::SmallVector<llvm::StringRef> names = moir::gpu::chipNames(kChips);
    return names;
  }

  int64_t warpSize(llvm::StringRef) const override { return 32; }

  static const Chip *find(llvm::StringRef name) { return moir::gpu::findChip(kChips, name); }

  static std::string toolkit(const moir::gpu::GPUOptions &options) {
    return options.toolkit.empty() ? moir::nvidia::defaultToolkitPath() : options.toolkit;
  }

  llvm::Error validate(const moir::gpu::GPUOptions &options) const override {
    if (!find(options.chip))
      return moir::gpu::unknownChip("NVIDIA", options.chip, chips());
    // Without the toolkit, libdevice is silently left out and ptxas fails
    // on unresolved __nv_* calls: refuse early with the path we looked at.
    std::string root = toolkit(options);
    llvm::SmallString<256> ptxas(root), libdevice(root);
    llvm::sys::path::append(ptxas, "bin", "ptxas");
    llvm::sys::path::append(libdevice, "nvvm", "libdevice", "libdevice.10.bc");
    if (!llvm::sys::fs::exists(ptxas) || !llvm::sys::fs::exists(libdevice))
      return llvm::createStringError(
          "no CUDA toolkit at '" + root +
          "' (needs bin/ptxas and nvvm/libdevice/libdevice.10.bc; set --gpu-toolkit "
          "or CUDA_HOME)");
    return llvm::Error::success();
  }

  void buildAttachTarget(OpPassManager &pm, const moir::gpu::GPUOptions &options) const override {
    GpuNVVMAttachTargetOptions attach;
    attach.chip = options.chip;
    if (const Chip *chip = find(options.chip))
      attach.features = chip->features.str();
    attach.optLevel = options.optLevel;
    pm.addPass(createGpuNVVMAttachTarget(attach));
  }

  // mma.sync m16n8k16 with bf16 operands exists on every chip here (sm_80+).
  llvm::StringRef matrixUnit(llvm::StringRef) const override { return "mma-sync"; }
  /// Checked on an NVIDIA H200 (sm_90): every fixture family and quantized
  /// fixture against transformers, compute-sanitizer's race and memory
  /// checks (bench/RESULTS.md).
  bool matrixUnitByDefault(llvm::StringRef) const override { return true; }

  void buildMatrixConversion(OpPassManager &kernels,
                             const moir::gpu::GPUOptions &) const override {
    kernels.addPass(moir::createNVIDIABF16MmaPass());
    kernels.addPass(createConvertNVGPUToNVVMPass());
  }

  std::unique_ptr<Pass> createKernelConversion(const moir::gpu::GPUOptions &) const override {
    return createConvertGpuOpsToNVVMOps();
  }

  std::string serializationToolkit(const moir::gpu::GPUOptions &options) const override {
    return toolkit(options);
  }
  // A fatbin holds the chip's cubin and the PTX, which newer chips' drivers
  // compile when they load it.
  mlir::gpu::CompilationTarget binaryFormat() const override {
    return mlir::gpu::CompilationTarget::Fatbin;
  }
  bool reportsAssembly() const override { return true; }

  std::string describe(const moir::gpu::GPUOptions &options) const override {
    return "nvidia " + options.chip;
  }
};

} // namespace

std::string moir::nvidia::defaultToolkitPath() {
  for (const char *var : {"CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"})
    if (const char *value = std::getenv(var); value && *value)
      return value;
  return "/usr/local/cuda";
}

namespace moir {
#define GEN_PASS_REGISTRATION
#include "moir/Target/NVIDIA/Passes.h.inc"
} // namespace moir

void moir::nvidia::registerNVIDIATarget() {
  registerMoIRNVIDIAPasses();
  static NVIDIATarget target;
  moir::gpu::registerGPUBackend(&target);
}
