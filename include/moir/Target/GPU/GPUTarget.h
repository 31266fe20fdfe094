//===- GPUTarget.h - MoIR's shared GPU backend ------------------*- C++ -*-===//
//
// One lowering for every GPU: bufferized loops -> gpu.launch kernels and host
// code that calls the runtime's launcher (the passes here; the phases'
// pipelines in moir/Pipelines). What differs per vendor (how the target is
// attached, how gpu.module lowers, the binary's format, the warp size) sits
// behind GPUTargetInfo; lib/Target/NVIDIA and lib/Target/AMD each register
// one, which becomes a target backend (registerGPUBackend).
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_TARGET_GPU_GPUTARGET_H
#define MOIR_TARGET_GPU_GPUTARGET_H

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace moir {

#define GEN_PASS_DECL
#include "moir/Target/GPU/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moir/Target/GPU/Passes.h.inc"

namespace gpu {

/// What the user picked on the command line.
struct GPUOptions {
  /// Chip name: sm_80, sm_90, sm_90a, gfx942, ...
  std::string chip;
  /// Toolkit root (CUDA toolkit, ROCm root); empty: the target's default.
  std::string toolkit;
  unsigned optLevel = 3;
  /// AMD code object version x100 (400, 500, 600); 500 loads on ROCm 6.
  unsigned codeObject = 500;
  /// Matrix products with many rows on the chip's matrix units
  /// (moir-gpu-tensor-cores); off: every product is warp-per-output.
  bool tensorCores = false;
  /// Rows from which a product uses them.
  int64_t tensorCoreRows = 16;
};

/// The vendor-specific part of the GPU backend.
class GPUTargetInfo {
public:
  virtual ~GPUTargetInfo() = default;
  /// "nvidia", "amd": the --target name and the artifact's target prefix.
  virtual llvm::StringRef name() const = 0;
  /// What the backend produces, for --help.
  virtual llvm::StringRef description() const = 0;
  /// Chips this backend knows; the first is the default.
  virtual llvm::ArrayRef<llvm::StringRef> chips() const = 0;
  virtual int64_t warpSize(llvm::StringRef chip) const = 0;
  /// Checks the options (known chip, toolkit present) before any work.
  virtual llvm::Error validate(const GPUOptions &options) const = 0;
  /// Attaches the target attribute (#nvvm.target, #rocdl.target) to every
  /// gpu.module.
  virtual void buildAttachTarget(mlir::OpPassManager &pm, const GPUOptions &options) const = 0;
  /// The conversion of a gpu.module's kernels to the vendor's LLVM dialect
  /// (NVVM, ROCDL).
  virtual std::unique_ptr<mlir::Pass> createKernelConversion(const GPUOptions &options) const = 0;
  /// The chip's matrix instruction for moir-gpu-tensor-cores ("mma-sync",
  /// "mfma"), or empty where there is none the lowering implements.
  virtual llvm::StringRef matrixUnit(llvm::StringRef chip) const { return {}; }
  /// Whether --gpu-tensor-cores=auto uses matrixUnit(chip): only where its
  /// kernels have been run and checked on such a GPU (scripts/gpu-check.sh).
  virtual bool matrixUnitByDefault(llvm::StringRef chip) const { return false; }
  /// Adds the conversion of the matrix unit's ops (nvgpu, amdgpu) to the
  /// vendor's LLVM dialect; runs on each gpu.module before the kernel
  /// conversion.
  virtual void buildMatrixConversion(mlir::OpPassManager &kernels,
                                     const GPUOptions &options) const {}
  /// The toolkit serialization uses (CUDA, ROCm) and the loadable binary's
  /// format (fatbin, HSACO).
  virtual std::string serializationToolkit(const GPUOptions &options) const = 0;
  virtual mlir::gpu::CompilationTarget binaryFormat() const = 0;
  /// Serializes every gpu.module into a gpu.binary: the loadable binary or,
  /// with `assembly`, the text the vendor's assembler reads (PTX, AMDGCN).
  void buildSerialization(mlir::OpPassManager &pm, const GPUOptions &options,
                          bool assembly = false) const;
  /// Whether serialize() hands the assembly text over (MLIR's NVVM
  /// serializer does; its ROCDL one, making HSACO, does not).
  virtual bool reportsAssembly() const { return false; }
  /// The same, now, on `module`; `assembly` receives each module's text for
  /// the vendor's assembler (PTX) as the binary is made from it, for checks
  /// (the code is generated once), where reportsAssembly().
  mlir::LogicalResult serialize(mlir::ModuleOp module, const GPUOptions &options,
                                llvm::function_ref<void(llvm::StringRef)> assembly) const;
  /// What the runtime needs to pick its driver, e.g. "nvidia sm_90".
  virtual std::string describe(const GPUOptions &options) const = 0;
};

/// A backend's table of known chips (an array of structs with a `name`).
template <typename Chip, size_t N>
const Chip *findChip(const Chip (&table)[N], llvm::StringRef name) {
  for (const Chip &chip : table)
    if (chip.name == name)
      return &chip;
  return nullptr;
}
template <typename Chip, size_t N>
llvm::SmallVector<llvm::StringRef> chipNames(const Chip (&table)[N]) {
  llvm::SmallVector<llvm::StringRef> names;
  for (const Chip &chip : table)
    names.push_back(chip.name);
  return names;
}
/// "unknown <vendor> chip '<chip>' (known: ...)".
llvm::Error unknownChip(llvm::StringRef vendor, llvm::StringRef chip,
                        llvm::ArrayRef<llvm::StringRef> known);

/// The registered vendors' descriptions, by name ("nvidia", "amd"); null
/// if unknown (moir-gpu-device-lowering looks them up).
const GPUTargetInfo *lookupTarget(llvm::StringRef name);

/// Registers `info` as a vendor and as the target backend of its name
/// (lib/Target/GPU/GPUBackend.cpp).
void registerGPUBackend(const GPUTargetInfo *info);
/// The vendor table alone (registerGPUBackend calls it).
void registerTargetInfo(const GPUTargetInfo *info);

/// The serialized device code of every gpu.binary in `module`, as
/// (name, bytes) pairs.
std::vector<std::pair<std::string, std::string>> deviceBinaries(mlir::ModuleOp module);
/// Names of the kernels the module launches (for the manifest).
std::vector<std::string> kernelNames(mlir::ModuleOp module);

} // namespace gpu
} // namespace moir

#endif // MOIR_TARGET_GPU_GPUTARGET_H
