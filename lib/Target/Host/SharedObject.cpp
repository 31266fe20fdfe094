//===- SharedObject.cpp - LLVM dialect to a shared object for the host ----===//

#include "moir/Target/Host/Host.h"
#include "MoIR/IR/MoIRDialect.h"

#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Host.h"
#include "llvm/TargetParser/SubtargetFeature.h"

using namespace llvm;

namespace moir::host {

std::string resolveTriple(const HostOptions &options) {
  return options.triple.empty() ? sys::getDefaultTargetTriple() : options.triple;
}

std::string resolveCPU(const HostOptions &options) {
  if (options.cpu.empty() || options.cpu == "native")
    return resolveTriple(options) == sys::getDefaultTargetTriple()
               ? sys::getHostCPUName().str()
               : "generic";
  return options.cpu;
}

static Error error(const Twine &message) {
  return createStringError(inconvertibleErrorCode(), "host code generation: " + message);
}

/// The host's features for --cpu=native on the host triple; otherwise the
/// named CPU's own.
static std::string resolveFeatures(const HostOptions &options) {
  if ((!options.cpu.empty() && options.cpu != "native") ||
      resolveTriple(options) != sys::getDefaultTargetTriple())
    return "";
  SubtargetFeatures f;
  for (const auto &[name, enabled] : sys::getHostCPUFeatures())
    f.AddFeature(name, enabled);
  return f.getString();
}

/// The LLVM target for the options' triple (all targets initialized).
static Expected<const Target *> lookupLLVMTarget(const HostOptions &options) {
  InitializeAllTargetInfos();
  InitializeAllTargets();
  InitializeAllTargetMCs();
  InitializeAllAsmPrinters();
  std::string tripleName = resolveTriple(options);
  std::string lookupError;
  const Target *target = TargetRegistry::lookupTarget(Triple(tripleName), lookupError);
  if (!target)
    return error("no LLVM target for '" + tripleName + "': " + lookupError);
  return target;
}

Expected<std::unique_ptr<MCSubtargetInfo>> subtargetInfo(const HostOptions &options) {
  Expected<const Target *> target = lookupLLVMTarget(options);
  if (!target)
    return target.takeError();
  Triple triple(resolveTriple(options));
  std::unique_ptr<MCSubtargetInfo> info((*target)->createMCSubtargetInfo(
      triple, resolveCPU(options), resolveFeatures(options)));
  if (!info)
    return error("no subtarget information for " + triple.str() + " / " + resolveCPU(options));
  return std::move(info);
}

Expected<std::string> emitSharedObject(mlir::ModuleOp module, const HostOptions &options) {
  Expected<const Target *> found = lookupLLVMTarget(options);
  if (!found)
    return found.takeError();
  const Target *target = *found;
  std::string tripleName = resolveTriple(options);
  std::string cpu = resolveCPU(options);
  Triple triple(tripleName);
  std::string features = resolveFeatures(options);
  llvm::TargetOptions targetOptions;
  // Constructors (a GPU artifact loads its kernels in one) go to .init_array,
  // which the dynamic loader runs; .ctors needs crtbegin.o.
  targetOptions.UseInitArray = true;
  std::unique_ptr<TargetMachine> machine(target->createTargetMachine(
      triple, cpu, features, targetOptions, Reloc::PIC_, std::nullopt,
      options.optLevel >= 3 ? CodeGenOptLevel::Aggressive : CodeGenOptLevel::Default));
  if (!machine)
    return error("cannot create a target machine for " + tripleName + " / " + cpu);

  // Objects another code generator compiled (Halide kernels): linked in,
  // then removed with their temporary folder.
  SmallVector<std::string> linkObjects;
  if (auto files = module->getAttrOfType<mlir::ArrayAttr>(moir::attrs::linkObjectsName())) {
    for (mlir::Attribute f : files)
      linkObjects.push_back(cast<mlir::StringAttr>(f).str());
    module->removeAttr(moir::attrs::linkObjectsName());
  }
  auto removeLinkObjects = llvm::make_scope_exit([&] {
    for (const std::string &f : linkObjects) {
      sys::fs::remove(f);
      sys::fs::remove(sys::path::parent_path(f)); // only once empty
    }
  });

  LLVMContext context;
  std::unique_ptr<Module> llvmModule = mlir::translateModuleToLLVMIR(module, context);
  if (!llvmModule)
    return error("translation to LLVM IR failed");
  llvmModule->setTargetTriple(triple);
  llvmModule->setDataLayout(machine->createDataLayout());
  // Only the entry is exported, the hooks that linked objects call
  // (halide_*: the Halide kernels' parallel loops on the runtime's pool),
  // and the one the runtime calls before it frees a session's cache
  // (moir_hl_forget: device copies of KV caches, ResidentWeights.cpp).
  for (Function &f : *llvmModule)
    if (!f.isDeclaration() && f.getName() != "moir_forward" && f.getName() != "moir_hl_forget" &&
        !f.getName().starts_with("halide_"))
      f.setLinkage(GlobalValue::InternalLinkage);

  auto optimize = mlir::makeOptimizingTransformer(options.optLevel, 0, machine.get());
  if (Error err = optimize(llvmModule.get()))
    return std::move(err);

  SmallString<128> objectPath, soPath;
  int fd;
  if (std::error_code ec = sys::fs::createTemporaryFile("moir", "o", fd, objectPath))
    return error("cannot create a temporary object file: " + ec.message());
  {
    raw_fd_ostream os(fd, /*shouldClose=*/true);
    legacy::PassManager pm;
    if (machine->addPassesToEmitFile(pm, os, nullptr, CodeGenFileType::ObjectFile))
      return error("the target cannot emit object files");
    pm.run(*llvmModule);
  }
  if (std::error_code ec = sys::fs::createTemporaryFile("moir", "so", soPath))
    return error("cannot create a temporary shared object: " + ec.message());
  ErrorOr<std::string> lld = sys::findProgramByName("ld.lld-22");
  if (!lld)
    lld = sys::findProgramByName("ld.lld", {"/usr/lib/llvm-22/bin"});
  if (!lld)
    return error("ld.lld not found (install lld-22)");
  // The host object last: .fini_array runs back to front, so its
  // destructors (the Halide device weights' release, ResidentWeights.cpp)
  // run before those of the objects linked with it (Halide's runtime, whose
  // own destructor releases the device they were allocated on).
  SmallVector<StringRef> args = {*lld, "-shared", "--no-undefined-version", "-o", soPath};
  for (const std::string &f : linkObjects)
    args.push_back(f);
  args.push_back(objectPath);
  std::string message;
  int rc = sys::ExecuteAndWait(*lld, args, std::nullopt, {}, 0, 0, &message);
  sys::fs::remove(objectPath);
  if (rc != 0) {
    sys::fs::remove(soPath);
    return error("linking the shared object failed: " + message);
  }
  ErrorOr<std::unique_ptr<MemoryBuffer>> so = MemoryBuffer::getFile(soPath);
  sys::fs::remove(soPath);
  if (!so)
    return error("cannot read the linked shared object");
  return (*so)->getBuffer().str();
}

} // namespace moir::host
