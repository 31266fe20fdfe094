//===- TargetBackend.cpp - the target backend registry ---------------------===//

#include "moir/Target/TargetBackend.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringMap.h"

using namespace llvm;

namespace moir {

namespace {
StringMap<const TargetBackend *> &registry() {
  static StringMap<const TargetBackend *> backends;
  return backends;
}

/// Every target MoIR has, with the CMake option that builds it.
struct KnownTarget {
  StringLiteral name, cmakeOption;
};
constexpr KnownTarget kKnownTargets[] = {
    {"cpu", ""}, {"nvidia", "MOIR_ENABLE_NVIDIA"}, {"amd", "MOIR_ENABLE_AMD"}};
} // namespace

Error TargetBackend::afterPhase(mlir::ModuleOp, CompilePhase, const CompileOptions &,
                                ArtifactInfo &) const {
  return Error::success();
}

void registerTargetBackend(const TargetBackend *backend) { registry()[backend->name()] = backend; }

std::vector<const TargetBackend *> registeredTargetBackends() {
  std::vector<const TargetBackend *> backends;
  for (const auto &entry : registry())
    backends.push_back(entry.getValue());
  llvm::sort(backends, [](const TargetBackend *a, const TargetBackend *b) {
    return a->name() < b->name();
  });
  return backends;
}

Expected<const TargetBackend *> lookupTargetBackend(StringRef name) {
  if (const TargetBackend *backend = registry().lookup(name))
    return backend;
  for (const KnownTarget &known : kKnownTargets)
    if (known.name == name)
      return createStringError("target '" + name + "' is not built into this MoIR (configure " +
                               "with -D" + known.cmakeOption + "=ON)");
  SmallVector<std::string> names;
  for (const TargetBackend *backend : registeredTargetBackends())
    names.push_back(backend->name().str());
  return createStringError("unknown target '" + name + "' (known: " + join(names, ", ") + ")");
}

bool hasPhase(const TargetBackend &backend, CompilePhase phase) {
  return llvm::is_contained(backend.phases(), phase);
}

} // namespace moir
