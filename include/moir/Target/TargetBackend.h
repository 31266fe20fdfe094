//===- TargetBackend.h - one interface for every target --------*- C++ -*-===//
//
// A target backend turns the linalg phase into an artifact's code: it checks
// and completes the options, writes the lowering configuration the
// target-neutral lowering reads, names and builds its own phases after
// linalg, and serializes the last one. Backends register by name ("cpu",
// "nvidia", "amd"); the compile driver and moir-opt find them here. A build
// can leave the vendor backends out (MOIR_ENABLE_NVIDIA / MOIR_ENABLE_AMD).
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_TARGET_TARGETBACKEND_H
#define MOIR_TARGET_TARGETBACKEND_H

#include "moir/Pipelines/Options.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/Error.h"

#include <string>
#include <vector>

namespace moir {

struct ArtifactInfo;

class TargetBackend {
public:
  virtual ~TargetBackend() = default;

  /// The --target name and the first word of the artifact's target.
  virtual llvm::StringRef name() const = 0;
  /// What the target is, for --help.
  virtual llvm::StringRef description() const = 0;
  /// The phases a compile for this target goes through, in order (input,
  /// graph and linalg, then the target's own).
  virtual llvm::ArrayRef<CompilePhase> phases() const = 0;
  /// Checks the options for this target and completes them (a default chip,
  /// the toolkit; graph choices the target does not lower are turned off).
  virtual llvm::Error configure(CompileOptions &options) const = 0;
  /// Adds the pass writing the target's #moir.lowering_config, the first
  /// step of the linalg phase.
  virtual llvm::Error buildLoweringConfig(mlir::OpPassManager &pm,
                                          const CompileOptions &options) const = 0;
  /// Adds the passes that produce `phase`, one of the target's own phases
  /// after linalg, from the phase before it.
  virtual llvm::Error buildPhase(mlir::OpPassManager &pm, CompilePhase phase,
                                 const CompileOptions &options) const = 0;
  /// Looks at the module after `phase` (kernel names for the manifest,
  /// device code for checks). Default: nothing.
  virtual llvm::Error afterPhase(mlir::ModuleOp module, CompilePhase phase,
                                 const CompileOptions &options, ArtifactInfo &info) const;
  /// The last phase's module as the artifact's code (a shared object);
  /// sets info.target.
  virtual llvm::Expected<std::string> serialize(mlir::ModuleOp module,
                                                const CompileOptions &options,
                                                ArtifactInfo &info) const = 0;
};

/// Adds a backend to the registry (it must outlive every lookup).
void registerTargetBackend(const TargetBackend *backend);
/// The backend registered as `name`, or an error that says whether the
/// target is unknown or known but left out of this build.
llvm::Expected<const TargetBackend *> lookupTargetBackend(llvm::StringRef name);
/// Registered backends, sorted by name.
std::vector<const TargetBackend *> registeredTargetBackends();

/// Whether `phase` is one of `backend`'s phases.
bool hasPhase(const TargetBackend &backend, CompilePhase phase);

} // namespace moir

#endif // MOIR_TARGET_TARGETBACKEND_H
