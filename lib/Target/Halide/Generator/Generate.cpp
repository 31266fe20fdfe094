//===- Generate.cpp - kernel specs to object files, ahead of time ---------===//

#include "Kernels.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

using namespace Halide;
namespace fs = std::filesystem;

namespace moir::halide {
namespace {

bool has(const GeneratorOptions &options, const std::string &feature) {
  for (const std::string &f : options.features)
    if (f == feature)
      return true;
  return false;
}

/// LLVM's features that Halide's avx512_zen4 level implies beyond
/// avx512_cannonlake (its -mcpu znver4), AVX512-BF16 among them.
constexpr const char *kZen4Features[] = {"avx512vnni",      "avx512bf16", "avx512vbmi2",
                                         "avx512bitalg",    "gfni",       "vaes",
                                         "avx512vpopcntdq", "vpclmulqdq"};

std::string header(const KernelSpec &spec, const Target &target) {
  std::ostringstream s;
  auto shape = [](const TensorSpec &t) {
    std::string text = "[";
    for (size_t i = 0; i < t.shape.size(); ++i)
      text += (i ? "x" : "") + (t.shape[i] < 0 ? std::string("?") : std::to_string(t.shape[i]));
    return text + "]";
  };
  auto variant = spec.strings.find("variant");
  s << "# MoIR Halide schedule of kernel " << spec.symbol << " (" << spec.kind
    << (variant != spec.strings.end() ? ", " + variant->second : std::string()) << ")\n"
    << "# buffers:";
  for (const TensorSpec &t : spec.inputs)
    s << " " << shape(t);
  s << " ->";
  for (const TensorSpec &t : spec.outputs)
    s << " " << shape(t);
  s << " (outermost first; Halide's dimension 0 is the last)\n"
    << "# target " << target.to_string() << "\n"
    << "# Edit and compile with moirc --halide-schedules-in=DIR; the syntax is in\n"
    << "# docs/halide.md. Inputs, Funcs and loop variables of this kernel:";
  return s.str();
}

std::string listNames(const BuiltKernel &k) {
  std::ostringstream s;
  s << "\n#   inputs:";
  for (const Halide::ImageParam &p : k.inputs)
    s << " " << p.name();
  s << "\n#   funcs:";
  for (const auto &[name, unused] : k.funcs)
    s << " " << name;
  s << "\n#   vars:";
  for (const auto &[name, unused] : k.vars)
    s << " " << name;
  s << "\n#   reduction vars:";
  for (const auto &[name, unused] : k.rvars)
    s << " " << name;
  s << "\n";
  return s.str();
}

std::string readFile(const fs::path &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error("cannot read " + path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// A schedule text's calls: each line without its comment and surrounding
/// blanks, blank lines dropped.
std::string scheduleCalls(const std::string &text) {
  std::istringstream in(text);
  std::string calls;
  for (std::string line; std::getline(in, line);) {
    if (size_t hash = line.find('#'); hash != std::string::npos)
      line.resize(hash);
    size_t a = line.find_first_not_of(" \t\r"), b = line.find_last_not_of(" \t\r");
    if (a != std::string::npos)
      calls += line.substr(a, b - a + 1) + "\n";
  }
  return calls;
}

Target parseTarget(const GeneratorOptions &options) {
  if (!options.target.empty()) {
    if (!Target::validate_target_string(options.target))
      throw std::runtime_error("'" + options.target + "' is not a Halide target");
    return Target(options.target);
  }
  std::string error;
  std::string name = halideTarget(options, error);
  if (name.empty())
    throw std::runtime_error(error);
  return Target(name);
}

/// `target` with the device a kernel runs on (spec.strings["device"]):
/// OpenCL, or Vulkan 1.3 with the integer and float widths MoIR's kernels
/// use (int64 positions, bf16/f16 weights).
Target withDevice(Target target, const KernelSpec &spec) {
  auto device = spec.strings.find("device");
  if (device == spec.strings.end() || device->second == "host")
    return target;
  if (device->second == "opencl")
    return target.with_feature(Target::OpenCL);
  if (device->second == "vulkan")
    return target.with_feature(Target::Vulkan)
        .with_feature(Target::VulkanInt8)
        .with_feature(Target::VulkanInt16)
        .with_feature(Target::VulkanInt64)
        .with_feature(Target::VulkanFloat16)
        .with_feature(Target::VulkanFloat64)
        .with_feature(Target::VulkanV13);
  throw std::runtime_error("unknown Halide device '" + device->second +
                           "' (host, opencl, vulkan)");
}

/// On Vulkan no Func may be computed or stored at the root: the pipeline
/// would allocate it on the device itself, and Halide 21's Vulkan allocator
/// misbinds and overruns allocations whose size is not a multiple of 64
/// bytes on lavapipe (docs/halide.md). The default schedules compute such
/// Funcs inside out's GPU threads; an edited schedule that stores one at the
/// root is refused, naming it. Funcs whose buffer is such a multiple for
/// every token count (vulkanRootFuncs) may be stored there.
void checkDeviceStorage(BuiltKernel &kernel, const KernelSpec &spec, const std::string &origin) {
  auto device = spec.strings.find("device");
  if (device == spec.strings.end() || device->second != "vulkan")
    return;
  std::set<std::string> allowed = vulkanRootFuncs(spec);
  for (auto &[name, func] : kernel.funcs) {
    if (name == "out" || !func.defined() || allowed.count(name))
      continue;
    // A schedule's loop levels can be inspected only once locked (as
    // lowering does): a copy of each is.
    const Halide::Internal::FuncSchedule &schedule = func.function().schedule();
    auto root = [](const Halide::LoopLevel &level) {
      Halide::LoopLevel copy;
      copy.set(level);
      return copy.lock().is_root();
    };
    if (root(schedule.compute_level()) || root(schedule.store_level()))
      throw std::runtime_error(
          origin + ": on Vulkan, Func '" + name +
          "' cannot be computed or stored at the root (compute_root/store_root): Halide 21's "
          "Vulkan allocator mishandles the device buffers a pipeline allocates for it on "
          "lavapipe; compute it inside out's GPU threads (compute_at(out, ...)) or inline "
          "(docs/halide.md)");
  }
}

/// The most bytes of scalar arguments one Vulkan launch of `module` passes
/// (the non-buffer entries of each `halide_vulkan_run`'s argument sizes),
/// and that launch's kernel name.
class VulkanScalarBytes : public Halide::Internal::IRVisitor {
public:
  int64_t most = 0;
  std::string kernel;

private:
  using IRVisitor::visit;
  static std::optional<int64_t> constant(const Expr &e) {
    if (std::optional<int64_t> v = Halide::Internal::as_const_int(e))
      return v;
    if (std::optional<uint64_t> v = Halide::Internal::as_const_uint(e))
      return static_cast<int64_t>(*v);
    if (const auto *c = e.as<Halide::Internal::Cast>())
      return constant(c->value);
    return std::nullopt;
  }
  void visit(const Halide::Internal::Call *op) override {
    IRVisitor::visit(op);
    // halide_vulkan_run(state, entry, blocks x3, threads x3, shared bytes,
    // sizes[], args[], is_buffer[]), each list a make_struct.
    if (op->name != "halide_vulkan_run")
      return;
    if (op->args.size() != 12)
      throw std::runtime_error("Halide's Vulkan launch has " + std::to_string(op->args.size()) +
                               " arguments, not the 12 MoIR reads its scalar sizes from");
    const auto *sizes = op->args[9].as<Halide::Internal::Call>();
    const auto *isBuffer = op->args[11].as<Halide::Internal::Call>();
    if (!sizes || !isBuffer || !sizes->is_intrinsic(Halide::Internal::Call::make_struct) ||
        !isBuffer->is_intrinsic(Halide::Internal::Call::make_struct) ||
        sizes->args.size() != isBuffer->args.size())
      throw std::runtime_error("Halide's Vulkan launch has an argument list MoIR cannot read");
    int64_t bytes = 0;
    for (size_t i = 0; i < sizes->args.size(); ++i) {
      std::optional<int64_t> size = constant(sizes->args[i]), buffer = constant(isBuffer->args[i]);
      if (!size || !buffer)
        throw std::runtime_error("Halide's Vulkan launch has an argument size MoIR cannot read");
      if (!*buffer)
        bytes += *size;
    }
    if (bytes > most) {
      most = bytes;
      const auto *name = op->args[1].as<Halide::Internal::StringImm>();
      kernel = name ? name->value : std::string("?");
    }
  }
};

} // namespace

int64_t vulkanScalarArgumentBytes(const Halide::Module &module, std::string *kernel) {
  VulkanScalarBytes visitor;
  for (const Halide::Internal::LoweredFunc &f : module.functions())
    if (f.body.defined())
      f.body.accept(&visitor);
  if (kernel)
    *kernel = visitor.kernel;
  return visitor.most;
}

namespace {

/// The target of a kernel with int8 dot products and no bf16 buffer on a
/// CPU with every feature of Halide's Zen 4 level but AVX512-BF16 (Ice
/// Lake; Cascade Lake, without VBMI, is not at the Cannon Lake level):
/// Halide's Zen 4 level, its only x86 level with VNNI (vpdpbusd), which
/// also implies AVX512-BF16. Such a kernel has no bf16 to convert, and
/// moir-halide-compile-kernels compiles its bitcode for the CPU without
/// AVX512-BF16 (and refuses one that uses bf16 after all). Without it
/// Halide multiplies with vpmaddwd and sums lane pairs by shuffles: the
/// Mixtral-shaped Q8_0 decode ran at 0.66x MLIR's on such a CPU. Every
/// other kernel keeps `target`.
Target int8Target(const Target &target, const KernelSpec &spec, const GeneratorOptions &options) {
  if (target.arch != Target::X86 || !target.has_feature(Target::AVX512_Cannonlake) ||
      target.has_feature(Target::AVX512_Zen4) || has(options, "avx512bf16"))
    return target;
  for (const char *f : kZen4Features)
    if (std::string(f) != "avx512bf16" && !has(options, f))
      return target;
  bool int8 = false, bf16 = false;
  for (const auto *list : {&spec.inputs, &spec.scales, &spec.outputs})
    for (const TensorSpec &t : *list) {
      int8 |= t.int8;
      bf16 |= t.type == ElementType::BF16;
    }
  if (!int8 || bf16 || !options.hostBitcode || !onHost(spec))
    return target;
  return target.with_feature(Target::AVX512_Zen4);
}

/// Builds, schedules and compiles one kernel into `dir`, its object
/// appended to `objects`. Returns an error message, or "" on success.
std::string compileKernel(KernelSpec spec, const Target &target, int lanes,
                          const GeneratorOptions &options, const fs::path &dir,
                          std::vector<std::string> &objects) {
  try {
    spec.numbers["lanes"] = lanes;
    // Sums across a vector's lanes as shuffle trees (Halide's vector
    // reductions) on x86 and ARM; Hexagon's code generator has none for f32.
    spec.numbers["vector_sums"] = target.arch == Target::X86 || target.arch == Target::ARM;
    const std::string defaultSchedule = defaultScheduleFor(spec, lanes);
    std::string schedule = defaultSchedule, origin = "default schedule";
    Target kernelTarget = withDevice(target, spec);
    bool edited = false;
    if (!options.schedulesIn.empty()) {
      fs::path file = fs::path(options.schedulesIn) / (spec.symbol + ".schedule");
      if (fs::exists(file)) {
        schedule = readFile(file);
        origin = file.string();
        edited = true;
      }
    }
    // A schedule not MoIR's default may split the tokens past a call's
    // (Kernels.cpp, inBounds): the positions are read clamped. A file that
    // holds the default's calls (an unedited --halide-schedules-out)
    // compiles to the default's code.
    if (edited ? scheduleCalls(schedule) != scheduleCalls(defaultSchedule)
               : !options.autoscheduler.empty())
      spec.numbers["clamp_positions"] = 1;
    BuiltKernel kernel = buildKernel(spec);
    if (!edited && !options.autoscheduler.empty()) {
      schedule = autoschedule(spec, kernel, kernelTarget, options.autoscheduler,
                              options.parallelism);
      origin = options.autoscheduler + " schedule";
    }
    if (!options.schedulesOut.empty()) {
      fs::path file = fs::path(options.schedulesOut) / (spec.symbol + ".schedule");
      std::ofstream out(file, std::ios::binary);
      out << header(spec, kernelTarget) << listNames(kernel) << "\n" << schedule;
      if (!out)
        return "Halide: cannot write " + file.string();
    }
    applySchedule(kernel, schedule, origin);
    checkDeviceStorage(kernel, spec, origin);
    std::vector<Argument> args(kernel.inputs.begin(), kernel.inputs.end());
    bool bitcode = options.hostBitcode && onHost(spec);
    fs::path object = dir / (spec.symbol + (bitcode ? ".bc" : ".o"));
    Module module = kernel.output.compile_to_module(args, spec.symbol,
                                                    kernelTarget.with_feature(Target::NoRuntime));
    if (kernelTarget.has_feature(Target::Vulkan)) {
      std::string launch;
      if (int64_t bytes = vulkanScalarArgumentBytes(module, &launch); bytes > kVulkanScalarBytes)
        throw std::runtime_error(
            origin + ": on Vulkan, its launch " + launch + " passes " + std::to_string(bytes) +
            " bytes of scalar arguments, more than the " + std::to_string(kVulkanScalarBytes) +
            " that Halide 21's Vulkan runtime binds right (on lavapipe the kernel reads garbage "
            "past them; docs/halide.md); keep this op off the device (--halide-ops) or edit the "
            "schedule so that fewer values reach the kernel");
    }
    module.compile({{bitcode ? OutputFileType::bitcode : OutputFileType::object, object.string()}});
    checkCompiled();
    objects.push_back(object.string());
  } catch (const Halide::Error &e) { // not a std::exception
    return "Halide: kernel " + spec.symbol + " (" + spec.kind + "): " + e.what();
  } catch (const std::exception &e) {
    return "Halide: kernel " + spec.symbol + " (" + spec.kind + "): " + e.what();
  }
  return "";
}

} // namespace

std::string halideTarget(const GeneratorOptions &options, std::string &error) {
  const std::string &triple = options.triple;
  std::string os;
  if (triple.find("linux") != std::string::npos)
    os = "linux";
  else if (triple.find("darwin") != std::string::npos || triple.find("macos") != std::string::npos)
    os = "osx";
  else if (triple.find("windows") != std::string::npos)
    os = "windows";
  if (os.empty()) {
    error = "Halide: no operating system of '" + triple + "' it can compile for";
    return "";
  }
  std::string name;
  if (triple.rfind("x86_64", 0) == 0) {
    name = "x86-64-" + os;
    // Halide's x86 features from LLVM's: each only when LLVM enables it.
    if (has(options, "sse4.1"))
      name += "-sse41";
    if (has(options, "avx"))
      name += "-avx";
    if (has(options, "avx2"))
      name += "-avx2";
    if (has(options, "fma"))
      name += "-fma";
    if (has(options, "f16c"))
      name += "-f16c";
    if (has(options, "avx512f") && has(options, "avx512cd")) {
      name += "-avx512";
      auto all = [&](std::initializer_list<const char *> features) {
        return std::all_of(features.begin(), features.end(),
                           [&](const char *f) { return has(options, f); });
      };
      if (all({"avx512bw", "avx512dq", "avx512vl"})) {
        name += "-avx512_skylake";
        // Halide's later levels each stand for a CPU (its -mcpu): only where
        // LLVM enables every feature that CPU implies. Zen 4's brings the
        // VNNI dot products (vpdpbusd) and AVX512-BF16.
        bool cannonlake = all({"avx512ifma", "avx512vbmi"});
        if (cannonlake)
          name += "-avx512_cannonlake";
        bool zen4 = cannonlake && std::all_of(std::begin(kZen4Features), std::end(kZen4Features),
                                              [&](const char *f) { return has(options, f); });
        if (zen4)
          name += "-avx512_zen4";
        if (zen4 && all({"avx512fp16", "amx-tile", "amx-int8", "amx-bf16"}))
          name += "-avx512_sapphirerapids";
      }
    }
  } else if (triple.rfind("aarch64", 0) == 0 || triple.rfind("arm64", 0) == 0) {
    name = "arm-64-" + os;
    if (has(options, "dotprod"))
      name += "-arm_dot_prod";
    if (has(options, "fullfp16"))
      name += "-arm_fp16";
  } else {
    error = "Halide: no Halide architecture for '" + triple + "' (x86_64 and aarch64 are known)";
    return "";
  }
  return name;
}

std::string generateKernels(const std::vector<KernelSpec> &specs, const GeneratorOptions &options,
                            std::vector<std::string> &objects) {
  installReporter();
  fs::path dir;
  // On any failure nothing is left behind: no objects, no temporary folder.
  auto fail = [&](const std::string &error) {
    if (!dir.empty())
      fs::remove_all(dir);
    objects.clear();
    return error;
  };
  try {
    Target target = parseTarget(options);
    int lanes = vectorLanes(target);
    if (!options.schedulesOut.empty()) {
      std::error_code ec;
      fs::create_directories(options.schedulesOut, ec);
      if (ec)
        return fail("Halide: cannot create " + options.schedulesOut + ": " + ec.message());
    }
    // The temporary folder under $TMPDIR (else /tmp).
    const char *tmp = std::getenv("TMPDIR");
    std::string pattern = (tmp && *tmp ? std::string(tmp) : std::string("/tmp")) +
                          "/moir-halide-XXXXXX";
    if (!mkdtemp(pattern.data()))
      return fail("Halide: cannot create a temporary folder in " +
                  fs::path(pattern).parent_path().string());
    dir = pattern;
    std::set<std::string> seen;
    Target runtimeTarget = target;
    for (const KernelSpec &spec : specs) {
      if (!seen.insert(spec.symbol).second)
        continue;
      if (std::string error =
              compileKernel(spec, int8Target(target, spec, options), lanes, options, dir, objects);
          !error.empty())
        return fail(error);
      runtimeTarget = withDevice(runtimeTarget, spec);
    }
    if (seen.empty()) {
      // Nothing to link: the artifact's linker removes only the folders of
      // the objects it is given, so an empty one is removed here.
      fs::remove_all(dir);
      return "";
    }
    fs::path runtime = dir / "halide_runtime.o";
    compile_standalone_runtime(runtime.string(), runtimeTarget);
    objects.push_back(runtime.string());
  } catch (const Halide::Error &e) { // not a std::exception
    return fail(std::string("Halide: ") + e.what());
  } catch (const std::exception &e) {
    return fail(std::string("Halide: ") + e.what());
  }
  return "";
}

} // namespace moir::halide
