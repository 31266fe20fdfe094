//===- Kernels.h - one Halide pipeline per kernel spec ----------*- C++ -*-===//
//
// Internal to the generator (links libHalide). A built kernel names every
// Func and loop variable a schedule may use, so a schedule text can be
// applied to it by name (Schedule.cpp).
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_LIB_TARGET_HALIDE_GENERATOR_KERNELS_H
#define MOIR_LIB_TARGET_HALIDE_GENERATOR_KERNELS_H

#include "moir/Target/Halide/Generator.h"

#include "Halide.h"

#include <map>
#include <set>
#include <string>
#include <vector>

namespace moir::halide {

struct BuiltKernel {
  std::vector<Halide::ImageParam> inputs;
  Halide::Func output;
  /// Every Func a schedule may name, the output among them as "out".
  std::map<std::string, Halide::Func> funcs;
  /// Loop variables by name: pure Vars and the RVars of reductions.
  std::map<std::string, Halide::Var> vars;
  std::map<std::string, Halide::RVar> rvars;
};

/// The Funcs of a Vulkan kernel that may be stored at the root: those
/// whose device buffer is a multiple of 64 bytes whatever the token count,
/// which Halide 21's Vulkan allocator binds right on lavapipe
/// (docs/halide.md): the experts' hidden rows when FFN x top-k is a
/// multiple of 16 floats (and the shared expert's when its FFN is).
std::set<std::string> vulkanRootFuncs(const KernelSpec &spec);

/// Builds the algorithm of `spec` (no schedule). Throws std::runtime_error
/// for a spec it does not know.
BuiltKernel buildKernel(const KernelSpec &spec);

/// Halide's name made a C++ identifier, as the autoschedulers print it
/// ("ko$x" -> "ko_x").
std::string identifierOf(const std::string &name);

/// Adds to `kernel`'s names every Func of its pipeline (the inputs' own,
/// `<input>_im`, among them) and every loop variable of their stages that
/// the builder did not name, under Halide's name made an identifier
/// ("ko$x" -> "ko_x") without the "$N" that makes an inline reduction's
/// name unique in the process: what an autoscheduler's schedule may use.
/// buildKernel calls it.
void exposeAll(BuiltKernel &kernel);

/// The schedule text (Schedule.cpp's syntax) Halide's autoscheduler `name`
/// (Mullapudi2016 or Li2018, those offered) finds for `spec` on `target`, with
/// `parallelism` cores, to be applied to `unscheduled` (a build of `spec`
/// with no schedule yet); dynamic dimensions (tokens) are estimated as 1
/// (decode kernels) or 512. Throws std::runtime_error, or Halide::Error
/// from the autoscheduler.
std::string autoschedule(const KernelSpec &spec, const BuiltKernel &unscheduled,
                         const Halide::Target &target, const std::string &name,
                         int parallelism);

/// The shape of `t`'s buffer: its own, but a packed weight with u4 codes
/// holds two a byte (the last dimension halved).
std::vector<int64_t> bufferShape(const TensorSpec &t);

/// Whether `spec` is the decode kernel of an op with a decode and a prefill
/// kernel (spec.strings["variant"]).
bool isDecode(const KernelSpec &spec);

/// Whether `spec` runs on the host CPU, not on a Halide device target
/// (spec.strings["device"]).
bool onHost(const KernelSpec &spec);

/// A float input's element in f32, exactly: on a device 16-bit floats are
/// read as their bits (Kernels.cpp, input), bf16 as uint16 (shifted into
/// an f32's bits), f16 on OpenCL as int16 (decoded field by field,
/// subnormals, infinities and NaNs included); anything else converted.
Halide::Expr widen(Halide::Expr e);
/// f32 lanes of the target's vectors (the default schedules' vector width).
int vectorLanes(const Halide::Target &target);

/// The default schedule of `spec` for vectors of `lanes` f32.
std::string defaultScheduleFor(const KernelSpec &spec, int lanes);

/// Applies a schedule text to `kernel`; `origin` names it in errors
/// ("<file>:<line>: ..."). Throws std::runtime_error.
void applySchedule(BuiltKernel &kernel, const std::string &text, const std::string &origin);

/// Routes Halide's compile-time diagnostics: errors become exceptions;
/// warnings are printed, except bf16 emulation (the widening MoIR asks
/// for); a warning that the pipeline "is guaranteed to fail an assertion at
/// run time" (a schedule that cannot fit the buffers, such as a split wider
/// than a static extent) is kept for checkCompiled.
void installReporter();
/// Throws std::runtime_error if the last compile was warned to fail at run
/// time, and forgets the warning.
void checkCompiled();

/// The scalar arguments' bytes past which Halide 21's Vulkan runtime binds a
/// launch's uniform buffer wrong on lavapipe (docs/halide.md): a kernel
/// passing more is refused.
constexpr int64_t kVulkanScalarBytes = 64;
/// The most bytes of scalar arguments one Vulkan kernel launch of `module`
/// passes (0 without one); `kernel`, if given, gets that launch's name.
int64_t vulkanScalarArgumentBytes(const Halide::Module &module, std::string *kernel = nullptr);

} // namespace moir::halide

#endif // MOIR_LIB_TARGET_HALIDE_GENERATOR_KERNELS_H
