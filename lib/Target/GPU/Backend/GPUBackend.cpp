//===- GPUBackend.cpp - a GPU vendor as a target backend -------------------===//
//
// Every GPU vendor compiles the same way: the unfused graph (the fused MoE
// and flash-attention forms are built for a CPU thread pool), gpu.launch
// kernels, the vendor's device lowering and binary, then host code for the
// x86-64 machine that holds the GPU. Only GPUTargetInfo differs.
//
//===----------------------------------------------------------------------===//

#include "moir/Pipelines/GPUPipelines.h"
#include "moir/Pipelines/Pipelines.h"
#include "moir/Target/Artifact.h"
#include "moir/Target/GPU/GPUTarget.h"
#include "moir/Target/Host/Host.h"
#include "moir/Target/TargetBackend.h"

#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using llvm::Error;
using llvm::Expected;
using llvm::StringRef;

namespace moir::gpu {
namespace {

class GPUBackend final : public TargetBackend {
public:
  explicit GPUBackend(const GPUTargetInfo *info) : info(info) {}

  StringRef name() const override { return info->name(); }
  StringRef description() const override { return info->description(); }

  llvm::ArrayRef<CompilePhase> phases() const override {
    static const CompilePhase kPhases[] = {
        CompilePhase::Input,  CompilePhase::Graph,  CompilePhase::Linalg, CompilePhase::Kernels,
        CompilePhase::Device, CompilePhase::Binary, CompilePhase::LLVM};
    return kPhases;
  }

  Error configure(CompileOptions &options) const override {
    if (options.gpu.chip.empty())
      options.gpu.chip = info->chips().front().str();
    if (Error err = info->validate(gpuOptions(options)))
      return err;
    std::string &tensorCores = options.gpu.tensorCores;
    if (tensorCores != "auto" && tensorCores != "on" && tensorCores != "off")
      return llvm::createStringError("--gpu-tensor-cores must be auto, on or off, not '" +
                                     tensorCores + "'");
    bool hasUnit = !info->matrixUnit(options.gpu.chip).empty();
    if (tensorCores == "on" && !hasUnit)
      return llvm::createStringError("--gpu-tensor-cores=on: no matrix instruction is "
                                     "implemented for " +
                                     options.gpu.chip +
                                     " (NVIDIA sm_80 and newer: mma.sync; AMD gfx90a, gfx942: "
                                     "MFMA; RDNA's WMMA is not)");
    if (tensorCores == "auto")
      tensorCores = hasUnit && info->matrixUnitByDefault(options.gpu.chip) ? "on" : "off";
    if (options.gpu.tensorCoreRows < 1)
      return llvm::createStringError("--gpu-tensor-core-rows must be at least 1, not " +
                                     std::to_string(options.gpu.tensorCoreRows));
    if (options.graph.quantizeKVCache != "none")
      return llvm::createStringError("--quantize-kv-cache is implemented for CPU targets only "
                                     "(the GPU attention kernels read f32 caches)");
    // The fused MoE and flash-attention lowerings build work items for a
    // CPU thread pool; GPU kernels map the unfused steps.
    options.graph.fuseExperts = false;
    options.graph.fuseRouter = false;
    options.graph.recordRouting = false;
    options.graph.flashAttention = false;
    return Error::success();
  }

  Error buildLoweringConfig(OpPassManager &pm, const CompileOptions &) const override {
    pm.addPass(createGPUConfigureLoweringPass());
    return Error::success();
  }

  Error buildPhase(OpPassManager &pm, CompilePhase phase,
                   const CompileOptions &options) const override {
    GPUOptions gpu = gpuOptions(options);
    switch (phase) {
    case CompilePhase::Kernels:
      buildGPUKernelPipeline(pm, info->warpSize(gpu.chip),
                             gpu.tensorCores ? info->matrixUnit(gpu.chip) : StringRef(),
                             gpu.tensorCoreRows);
      return Error::success();
    case CompilePhase::Device:
      buildGPUDevicePipeline(pm, *info, gpu);
      return Error::success();
    case CompilePhase::Binary:
      info->buildSerialization(pm, gpu);
      return Error::success();
    case CompilePhase::LLVM:
      buildGPUHostLoweringPipeline(pm);
      return Error::success();
    default:
      return llvm::createStringError("not a phase of the GPU backends' own");
    }
  }

  Error afterPhase(ModuleOp module, CompilePhase phase, const CompileOptions &options,
                   ArtifactInfo &artifact) const override {
    if (phase == CompilePhase::Kernels)
      artifact.kernels = kernelNames(module);
    if (phase == CompilePhase::Device && !options.deviceAssemblyPath.empty() &&
        !info->reportsAssembly()) {
      // The assembly text of the same kernels, generated a second time.
      OwningOpRef<ModuleOp> copy = module.clone();
      PassManager toAssembly(module.getContext());
      info->buildSerialization(toAssembly, gpuOptions(options), /*assembly=*/true);
      if (failed(toAssembly.run(*copy)))
        return llvm::createStringError("emitting the kernels' assembly failed");
      return dump(*copy, options.deviceAssemblyPath);
    }
    if (phase == CompilePhase::Device && !options.deviceAssemblyPath.empty()) {
      // Serialized here rather than in the binary phase (whose pass then
      // finds no gpu.module), keeping the assembly text the binary is made
      // from.
      std::string text;
      if (failed(info->serialize(module, gpuOptions(options),
                                 [&](StringRef isa) { text += isa.str(); })))
        return llvm::createStringError("serializing the kernels failed");
      if (text.empty())
        return llvm::createStringError("the serializer handed over no assembly text");
      std::error_code ec;
      llvm::raw_fd_ostream os(options.deviceAssemblyPath, ec);
      if (ec)
        return llvm::createStringError(options.deviceAssemblyPath + ": " + ec.message());
      os << text;
      return Error::success();
    }
    if (phase == CompilePhase::Binary && !options.deviceCodePath.empty())
      return dump(module, options.deviceCodePath);
    return Error::success();
  }

  Expected<std::string> serialize(ModuleOp module, const CompileOptions &options,
                                  ArtifactInfo &artifact) const override {
    artifact.target = info->describe(gpuOptions(options));
    // The host code runs on whatever x86-64 machine holds the GPU.
    host::HostOptions hostOptions;
    hostOptions.cpu = "x86-64-v2";
    hostOptions.triple = "x86_64-unknown-linux-gnu";
    return host::emitSharedObject(module, hostOptions);
  }

private:
  static GPUOptions gpuOptions(const CompileOptions &options) {
    GPUOptions gpu;
    gpu.chip = options.gpu.chip;
    gpu.toolkit = options.gpu.toolkit;
    gpu.optLevel = options.gpu.optLevel;
    gpu.codeObject = options.gpu.codeObject * 100;
    gpu.tensorCores = options.gpu.tensorCores == "on";
    gpu.tensorCoreRows = options.gpu.tensorCoreRows;
    return gpu;
  }

  static Error dump(ModuleOp module, StringRef path) {
    std::error_code ec;
    llvm::raw_fd_ostream os(path, ec);
    if (ec)
      return llvm::createStringError(path + ": " + ec.message());
    for (const auto &[name, bytes] : deviceBinaries(module))
      os << bytes;
    return Error::success();
  }

  const GPUTargetInfo *info;
};

} // namespace

void registerGPUBackend(const GPUTargetInfo *info) {
  registerTargetInfo(info);
  static std::vector<std::unique_ptr<GPUBackend>> backends;
  backends.push_back(std::make_unique<GPUBackend>(info));
  registerTargetBackend(backends.back().get());
}

} // namespace moir::gpu
