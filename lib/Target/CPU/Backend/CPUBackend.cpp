//===- CPUBackend.cpp - the CPU as a target backend ------------------------===//

#include "moir/Pipelines/CPUPipelines.h"
#include "moir/Pipelines/Pipelines.h"
#include "moir/Target/Artifact.h"
#include "moir/Target/CPU/CPUTarget.h"
#include "moir/Target/Halide/HalideTarget.h"
#include "moir/Target/TargetBackend.h"

using namespace mlir;
using llvm::Error;
using llvm::Expected;
using llvm::StringRef;

namespace moir::cpu {
namespace {

host::HostOptions hostOptions(const CompileOptions &options) {
  host::HostOptions host;
  host.triple = options.cpu.triple;
  host.cpu = options.cpu.cpu;
  host.optLevel = options.cpu.optLevel;
  return host;
}

Expected<KernelOptions> kernelOptions(const CompileOptions &options) {
  StringRef decode = options.cpu.int8Decode;
  if (decode != "auto" && decode != "nibbles" && decode != "all" && decode != "none")
    return llvm::createStringError("--cpu-int8-decode must be auto, nibbles, all or none, not '" +
                                   decode + "'");
  if (options.cpu.int8DecodeBits != 8 && options.cpu.int8DecodeBits != 16)
    return llvm::createStringError("--cpu-int8-decode-bits must be 8 or 16, not " +
                                   std::to_string(options.cpu.int8DecodeBits));
  int64_t distance = options.cpu.prefetchDistance;
  if (distance != 0 && (distance < 1024 || distance > 65536))
    return llvm::createStringError("--cpu-prefetch-distance must be 0 (by CPU) or 1024 to 65536 "
                                   "bytes, not " +
                                   std::to_string(distance));
  Expected<KernelOptions> kernels =
      kernelOptionsFor(hostOptions(options), options.cpu.contractionKernels,
                       options.cpu.bf16Dot, options.cpu.int8Dot, options.cpu.amx);
  // auto: MLIR's kernels' measured best: every integer code on CPUs with
  // AMX-INT8 and on AMD Zen 4 (whose 512-bit floating-point operations
  // take two passes: the f32 decode of 8-bit codes is bound by them), 4-bit
  // codes only elsewhere (the Halide kernels' is every integer code:
  // buildLoweringConfig).
  if (kernels) {
    bool zen4 = host::resolveCPU(hostOptions(options)) == "znver4";
    kernels->int8Decode = decode != "auto"                        ? decode.str()
                          : kernels->amxInt8Cores || (zen4 && kernels->int8Dot) ? "all"
                                                                                : "nibbles";
    kernels->int8DecodeBits = options.cpu.int8DecodeBits;
    // 0: measured best per CPU. On a 2-core Zen 4 VM, 8 KB ahead against 4
    // KB: Q8_0 decode +10-11%, Q4_K_M +4%; 12 and 16 KB slower than 8
    // (bench/RESULTS.md, stop 58). Elsewhere 4 KB, as measured on the Intel
    // VMs, where 8 KB was slower.
    kernels->prefetchBytes = distance ? distance : zen4 ? 8192 : 4096;
  }
  return kernels;
}

/// The CPU, and `halide`: the CPU's host code with every op of every layer
/// a Halide kernel on --halide-target (host, OpenCL or Vulkan), the activations
/// kept on the device between them (moir-halide-keep-activations). Its
/// artifacts are CPU host code ("cpu <triple> <cpu>"): Halide's device
/// runtime is linked into them.
class CPUBackend final : public TargetBackend {
public:
  explicit CPUBackend(bool wholeLayers) : wholeLayers(wholeLayers) {}
  StringRef name() const override { return wholeLayers ? "halide" : "cpu"; }
  StringRef description() const override {
    if (wholeLayers)
      return "whole layers on Halide (--halide-target=host|opencl|vulkan): every layer op a Halide "
             "kernel, activations kept on the device; CPU host code";
    return "CPUs (x86-64, AArch64): a shared object run by the runtime's thread pool";
  }

  llvm::ArrayRef<CompilePhase> phases() const override {
    static const CompilePhase kPhases[] = {CompilePhase::Input, CompilePhase::Graph,
                                           CompilePhase::Linalg, CompilePhase::LLVM};
    return kPhases;
  }

  Error configure(CompileOptions &options) const override {
    // An unknown triple or CPU fails here, before any work.
    Expected<KernelOptions> kernels = kernelOptions(options);
    if (!kernels)
      return kernels.takeError();
    if (wholeLayers) {
      options.cpu.kernels = "halide";
    }
    if (options.cpu.kernels == "halide" && !halide::isAvailable())
      return llvm::createStringError(
          Twine(wholeLayers ? "--target=halide" : "--kernels=halide") +
          ": this moirc was built without Halide (scripts/setup.sh installs "
          "Halide 21 from PyPI into .venv-halide; then rebuild)");
    return Error::success();
  }

  Error buildLoweringConfig(OpPassManager &pm, const CompileOptions &options) const override {
    Expected<KernelOptions> kernels = kernelOptions(options);
    if (!kernels)
      return kernels.takeError();
    CPUConfigureLoweringPassOptions config;
    config.threads = options.cpu.threads;
    config.vectorWidth = kernels->vectorWidth;
    pm.addPass(createCPUConfigureLoweringPass(config));
    if (options.cpu.kernels == "halide") {
      HalideSelectKernelsPassOptions select;
      select.ops = options.cpu.halideOps;
      select.device = options.cpu.halideTarget;
      // The int8 path where MLIR's kernels would take it: --cpu-int8-dot on
      // a CPU with integer dot products.
      select.int8Dot = kernels->int8Dot;
      // auto: for the Halide kernels every integer code, whose f32 decode
      // measured slower than their int8 one (bench/RESULTS.md).
      select.int8Decode =
          options.cpu.int8Decode == "auto" ? std::string("all") : kernels->int8Decode;
      select.int8DecodeBits = kernels->int8DecodeBits;
      select.wholeLayers = wholeLayers;
      pm.addPass(createHalideSelectKernelsPass(select));
    }
    return Error::success();
  }

  Error buildPhase(OpPassManager &pm, CompilePhase phase,
                   const CompileOptions &options) const override {
    if (phase != CompilePhase::LLVM)
      return llvm::createStringError("not a phase of the CPU backend's own");
    Expected<KernelOptions> kernels = kernelOptions(options);
    if (!kernels)
      return kernels.takeError();
    if (options.cpu.kernels == "halide") {
      HalideCompileKernelsPassOptions compile;
      compile.triple = options.cpu.triple;
      compile.cpu = options.cpu.cpu;
      compile.schedulesIn = options.cpu.halideSchedulesIn;
      compile.schedulesOut = options.cpu.halideSchedulesOut;
      compile.autoscheduler = options.cpu.halideAutoscheduler;
      compile.parallelism = options.cpu.threads;
      pm.addPass(createHalideCompileKernelsPass(compile));
      // Whole layers on a device: the activations stay there.
      if (wholeLayers && options.cpu.halideTarget != "host")
        pm.addPass(createHalideKeepActivationsPass());
    }
    buildCPULoweringToLLVMPipeline(pm, *kernels);
    // The table that keeps device kernels' weights on the device, where a
    // call reads one (--halide-target=opencl|vulkan), and the one of the
    // activations kept there.
    if (options.cpu.kernels == "halide") {
      pm.addPass(createHalideResidentWeightsPass());
      pm.addPass(createHalideActivationTablePass());
    }
    return Error::success();
  }

  Expected<std::string> serialize(ModuleOp module, const CompileOptions &options,
                                  ArtifactInfo &artifact) const override {
    host::HostOptions host = hostOptions(options);
    artifact.target = "cpu " + host::resolveTriple(host) + " " + host::resolveCPU(host);
    return host::emitSharedObject(module, host);
  }

private:
  bool wholeLayers;
};

} // namespace

void registerCPUBackend() {
  static CPUBackend backend(/*wholeLayers=*/false), halideLayers(/*wholeLayers=*/true);
  registerTargetBackend(&backend);
  registerTargetBackend(&halideLayers);
}

} // namespace moir::cpu
