//===- AMDTarget.cpp - ROCDL lowering and HSACO serialization --------------===//
//
// The AMD side of the shared GPU backend: attach #rocdl.target (code object
// v5 by default, what ROCm 6 loads), lower gpu.module to ROCDL, serialize
// HSACO with the device libraries (ocml/ockl) and ld.lld.
//
//===----------------------------------------------------------------------===//

#include "moir/Target/AMD/AMDTarget.h"
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
  int64_t wave;
};

constexpr Chip kChips[] = {{"gfx942", 64}, {"gfx90a", 64}, {"gfx1100", 32}};

class AMDTarget final : public moir::gpu::GPUTargetInfo {
public:
  llvm::StringRef name() const override { return "amd"; }
  llvm::StringRef description() const override {
    return "AMD GPUs (gfx90a, gfx942, gfx1100): HSACO, run by HIP";
  }

  llvm::ArrayRef<llvm::StringRef> chips() const override {
    static const llvm::SmallVector<llvm::StringRef> names = moir::gpu::chipNames(kChips);
    return names;
  }

  static const Chip *find(llvm::StringRef name) { return moir::gpu::findChip(kChips, name); }

  int64_t warpSize(llvm::StringRef chip) const override {
    const Chip *c = find(chip);
    return c ? c->wave : 64;
  }

  static llvm::Expected<std::string> root(const moir::gpu::GPUOptions &options) {
    if (!options.toolkit.empty())
      return options.toolkit;
    return moir::amd::defaultROCmRoot();
  }

  llvm::Error validate(const moir::gpu::GPUOptions &options) const override {
    if (!find(options.chip))
      return moir::gpu::unknownChip("AMD", options.chip, chips());
    if (options.codeObject != 400 && options.codeObject != 500 && options.codeObject != 600)
      return llvm::createStringError("unknown AMD code object version " +
                                     std::to_string(options.codeObject / 100) +
                                     " (known: 4, 5, 6)");
    llvm::Expected<std::string> r = root(options);
    if (!r)
      return r.takeError();
    llvm::SmallString<256> ocml(*r), lld(*r);
    llvm::sys::path::append(ocml, "amdgcn", "bitcode", "ocml.bc");
    llvm::sys::path::append(lld, "llvm", "bin", "ld.lld");
    if (!llvm::sys::fs::exists(ocml) || !llvm::sys::fs::exists(lld))
      return llvm::createStringError("no ROCm root at '" + *r +
                                     "' (needs amdgcn/bitcode/ocml.bc and llvm/bin/ld.lld; "
                                     "install rocm-device-libs or set --gpu-toolkit/ROCM_PATH)");
    return llvm::Error::success();
  }

  void buildAttachTarget(OpPassManager &pm, const moir::gpu::GPUOptions &options) const override {
    GpuROCDLAttachTargetOptions attach;
    attach.chip = options.chip;
    attach.abiVersion = std::to_string(options.codeObject);
    attach.optLevel = options.optLevel;
    attach.wave64Flag = warpSize(options.chip) == 64;
    pm.addPass(createGpuROCDLAttachTarget(attach));
  }

  llvm::StringRef matrixUnit(llvm::StringRef chip) const override {
    // CDNA's MFMA; RDNA (gfx1100) has WMMA, which the lowering does not emit.
    return chip == "gfx90a" || chip == "gfx942" ? "mfma" : "";
  }

  void buildMatrixConversion(OpPassManager &kernels,
                             const moir::gpu::GPUOptions &options) const override {
    ConvertAMDGPUToROCDLPassOptions amdgpu;
    amdgpu.chipset = options.chip;
    kernels.addPass(createConvertAMDGPUToROCDLPass(amdgpu));
  }

  std::unique_ptr<Pass> createKernelConversion(const moir::gpu::GPUOptions &options) const override {
    ConvertGpuOpsToROCDLOpsOptions rocdl;
    rocdl.chipset = options.chip;
    rocdl.runtime = mlir::gpu::amd::Runtime::HIP;
    return createConvertGpuOpsToROCDLOps(rocdl);
  }

  std::string serializationToolkit(const moir::gpu::GPUOptions &options) const override {
    llvm::Expected<std::string> r = root(options);
    if (!r)
      llvm::consumeError(r.takeError()); // validate() reported it
    return r ? *r : std::string();
  }
  mlir::gpu::CompilationTarget binaryFormat() const override {
    return mlir::gpu::CompilationTarget::Binary;
  }

  std::string describe(const moir::gpu::GPUOptions &options) const override {
    return "amd " + options.chip;
  }
};

} // namespace

llvm::Expected<std::string> moir::amd::defaultROCmRoot() {
  if (const char *env = std::getenv("ROCM_PATH"); env && *env)
    return std::string(env);
  if (llvm::sys::fs::exists("/opt/rocm/amdgcn/bitcode/ocml.bc"))
    return std::string("/opt/rocm");
  // Debian packages the device libraries and LLVM apart; MLIR wants them
  // under one root, so link them together once.
  const char *bitcode = "/usr/lib/x86_64-linux-gnu/amdgcn/bitcode";
  const char *lld = "/usr/lib/llvm-22/bin/ld.lld";
  if (!llvm::sys::fs::exists(llvm::Twine(bitcode) + "/ocml.bc"))
    return llvm::createStringError(
        "no ROCm device libraries (install rocm-device-libs, or set ROCM_PATH)");
  llvm::SmallString<256> root;
  if (!llvm::sys::path::cache_directory(root))
    llvm::sys::path::system_temp_directory(/*ErasedOnReboot=*/true, root);
  llvm::sys::path::append(root, "moir", "rocm-root");
  llvm::SmallString<256> amdgcn(root), bin(root), linkBitcode(root), linkLld(root);
  llvm::sys::path::append(amdgcn, "amdgcn");
  llvm::sys::path::append(bin, "llvm", "bin");
  llvm::sys::path::append(linkBitcode, "amdgcn", "bitcode");
  llvm::sys::path::append(linkLld, "llvm", "bin", "ld.lld");
  if (std::error_code ec = llvm::sys::fs::create_directories(amdgcn))
    return llvm::createStringError("cannot create " + amdgcn + ": " + ec.message());
  if (std::error_code ec = llvm::sys::fs::create_directories(bin))
    return llvm::createStringError("cannot create " + bin + ": " + ec.message());
  if (!llvm::sys::fs::exists(linkBitcode))
    (void)llvm::sys::fs::create_link(bitcode, linkBitcode);
  if (!llvm::sys::fs::exists(linkLld))
    (void)llvm::sys::fs::create_link(lld, linkLld);
  return root.str().str();
}

void moir::amd::registerAMDTarget() {
  static AMDTarget target;
  moir::gpu::registerGPUBackend(&target);
}
