//===- Options.cpp - compile phases and options ----------------------------===//

#include "moir/Pipelines/Options.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/Twine.h"

#include <limits>

using namespace llvm;

namespace moir {

namespace {
struct PhaseName {
  CompilePhase phase;
  StringLiteral name;
};
constexpr PhaseName kPhases[] = {
    {CompilePhase::Input, "input"},     {CompilePhase::Graph, "graph"},
    {CompilePhase::Linalg, "linalg"},   {CompilePhase::Kernels, "kernels"},
    {CompilePhase::Device, "device"},   {CompilePhase::Binary, "binary"},
    {CompilePhase::LLVM, "llvm"},
};

constexpr OptionSpelling kSpellings[] = {
#define MOIR_OPTION(SECTION, TYPE, FIELD, FLAG, DEFAULT, TARGETS, HELP) {FLAG, TARGETS},
#include "moir/Pipelines/Options.def"
};
} // namespace

ArrayRef<CompilePhase> allCompilePhases() {
  static const SmallVector<CompilePhase> phases =
      llvm::to_vector(llvm::map_range(kPhases, [](const PhaseName &p) { return p.phase; }));
  return phases;
}

StringRef stringifyCompilePhase(CompilePhase phase) {
  for (const PhaseName &p : kPhases)
    if (p.phase == phase)
      return p.name;
  llvm_unreachable("unknown compile phase");
}

std::optional<CompilePhase> parseCompilePhase(StringRef name) {
  for (const PhaseName &p : kPhases)
    if (p.name == name)
      return p.phase;
  return std::nullopt;
}

ArrayRef<OptionSpelling> optionSpellings() { return kSpellings; }

bool optionAppliesTo(StringRef targets, StringRef target) {
  if (targets.empty())
    return true;
  // --target=halide is the CPU's host code with whole layers on Halide: it
  // takes the CPU's options.
  if (target == "halide")
    target = "cpu";
  SmallVector<StringRef> list;
  targets.split(list, ',');
  return llvm::is_contained(list, target);
}

std::optional<uint64_t> parseByteSize(StringRef text) {
  uint64_t scale = 1;
  if (text.consume_back("K") || text.consume_back("k"))
    scale = 1ull << 10;
  else if (text.consume_back("M") || text.consume_back("m"))
    scale = 1ull << 20;
  else if (text.consume_back("G") || text.consume_back("g"))
    scale = 1ull << 30;
  uint64_t value = 0;
  if (text.empty() || text.getAsInteger(10, value) || value == 0 ||
      value > std::numeric_limits<uint64_t>::max() / scale)
    return std::nullopt;
  return value * scale;
}

Error validateOptions(const CompileOptions &options) {
  // The import section is checked by the importer (importModel) and the
  // GPU chip, toolkit and code object by the vendor's validate(); these are
  // the options only the graph phase and the lowering configuration read.
  auto bad = [](const Twine &message) { return createStringError(message); };
  StringRef kv = options.graph.quantizeKVCache;
  if (kv != "none" && kv != "int8" && kv != "fp8")
    return bad("unknown --quantize-kv-cache '" + kv + "' (known: none, int8, fp8)");
  if (options.cpu.threads < 1 || options.cpu.threads > 4096)
    return bad("--cpu-threads must be between 1 and 4096, got " + Twine(options.cpu.threads));
  int64_t experts = options.graph.expertParallel, tensor = options.graph.tensorParallel;
  if (experts < 1 || experts > 4096)
    return bad("--expert-parallel must be between 1 and 4096, got " + Twine(experts));
  if (tensor < 1 || tensor > 4096)
    return bad("--tensor-parallel must be between 1 and 4096, got " + Twine(tensor));
  if (experts > 1 && tensor > 1 && experts != tensor)
    return bad("--expert-parallel=" + Twine(experts) + " and --tensor-parallel=" + Twine(tensor) +
               " split over the same ranks: give both the same count");
  int64_t ranks = options.graph.parallelRanks(), rank = options.graph.parallelRank;
  if (rank < -1 || rank >= ranks)
    return bad("--parallel-rank must be -1 (every rank) or below the rank count (" +
               Twine(ranks) + "), got " + Twine(rank));
  StringRef budget = options.graph.expertResidentBudget;
  if (!budget.empty() && !parseByteSize(budget))
    return bad("--expert-resident-budget takes a size in bytes with an optional K, M or G "
               "suffix (powers of 1024), e.g. 800M; got '" + budget + "'");
  if (!budget.empty() && options.graph.expertPlacement.empty())
    return bad("--expert-resident-budget keeps the most chosen experts resident: it needs "
               "routing profiles (--expert-placement=FILE from moir-run --record-routing)");
  if (!options.graph.expertPlacement.empty() && experts == 1 && budget.empty())
    return bad("--expert-placement places experts over ranks: it needs --expert-parallel=N, "
               "N > 1 (or --expert-resident-budget)");
  // Each rank packs only its experts: one rank's dump would hold part of the
  // model, and the ranks would write it in turn.
  if (ranks > 1 && !options.dequantizedWeightsPath.empty())
    return bad("--dump-dequantized-weights describes the whole model: take it from the 1-rank "
               "compile (the ranks' artifacts run the same values), not with --expert-parallel "
               "or --tensor-parallel");
  // --target=halide: the Halide kernels, whole layers of them.
  StringRef kernels = options.target == "halide" ? StringRef("halide") : options.cpu.kernels;
  if (kernels != "mlir" && kernels != "halide")
    return bad("unknown --kernels '" + kernels + "' (known: mlir, halide)");
  if (kernels != "halide" && (!options.cpu.halideSchedulesIn.empty() ||
                              !options.cpu.halideSchedulesOut.empty()))
    return bad("--halide-schedules-in/--halide-schedules-out are the Halide kernels' "
               "schedules: they need --kernels=halide");
  StringRef autoscheduler = options.cpu.halideAutoscheduler;
  if (!autoscheduler.empty() && kernels != "halide")
    return bad("--halide-autoscheduler schedules the Halide kernels: it needs --kernels=halide");
  if (autoscheduler == "Adams2019")
    return bad("--halide-autoscheduler=Adams2019 is not offered: its producers computed inside "
               "guarded tiles read past the inputs when a call has fewer tokens than a tile (a "
               "decode step) (docs/halide.md); use Mullapudi2016 or Li2018");
  if (autoscheduler == "Anderson2021")
    return bad("--halide-autoscheduler=Anderson2021 is not offered: it schedules GPUs only "
               "(docs/halide.md); use Mullapudi2016 or Li2018");
  if (!autoscheduler.empty() && autoscheduler != "Mullapudi2016" && autoscheduler != "Li2018")
    return bad("unknown --halide-autoscheduler '" + autoscheduler +
               "' (known: Mullapudi2016, Li2018)");
  if (!autoscheduler.empty() && options.cpu.halideTarget != "host")
    return bad("--halide-autoscheduler plans CPU schedules: with --halide-target=" +
               options.cpu.halideTarget + " the kernels keep their device schedules");
  StringRef device = options.cpu.halideTarget;
  if (device != "host" && device != "opencl" && device != "vulkan")
    return bad("unknown --halide-target '" + device + "' (known: host, opencl, vulkan)");
  if (kernels != "halide" && device != "host")
    return bad("--halide-target=" + device + " says where the Halide kernels run: it needs "
               "--kernels=halide");
  for (StringRef op : llvm::split(StringRef(options.cpu.halideOps), ',')) {
    static const char *kOps[] = {"rms_norm", "linear",    "glu", "activation",
                                 "rope",     "glu_linear", "router", "experts",
                                 "attention", "mla",       "add",    "embed",
                                 "xielu"};
    if (!op.trim().empty() && !llvm::is_contained(kOps, op.trim()))
      return bad("unknown op '" + op.trim() +
                 "' in --halide-ops (known: rms_norm, linear, glu, activation, rope, "
                 "glu_linear, router, experts, attention, mla, add, embed, xielu)");
  }
  if (experts > 1 && !options.graph.fuseExperts)
    return bad("--expert-parallel splits the fused experts: it needs --moe-fuse-experts");
  return Error::success();
}

} // namespace moir
