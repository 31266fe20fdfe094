//===- Autoschedule.cpp - Halide's autoschedulers, as schedule texts ------===//
//
// moirc --halide-autoscheduler=NAME schedules each kernel with one of the
// autoschedulers Halide's wheel ships as plugins (libautoschedule_*.so next
// to libHalide.so). The autoscheduler searches a schedule for the kernel's
// shapes (its dynamic dimensions given estimates) and prints it as C++
// scheduling calls; that source is turned into MoIR's schedule text (the
// same calls, one chain per line, Schedule.cpp), and the kernel is compiled
// from the text. So --halide-schedules-out writes what was compiled, and a
// researcher edits an autoscheduler's schedule as they edit the defaults.
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"

#include <dlfcn.h>

#include <cctype>
#include <filesystem>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

using namespace Halide;

namespace moir::halide {
namespace {

/// The plugin of autoscheduler `name`, from the folder of libHalide.so.
void loadPlugin(const std::string &name) {
  static std::mutex mutex;
  static std::set<std::string> loaded;
  std::lock_guard<std::mutex> lock(mutex);
  if (loaded.count(name))
    return;
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void *>(&Halide::load_plugin), &info) || !info.dli_fname)
    throw std::runtime_error("cannot find the folder of libHalide.so to load the " + name +
                             " autoscheduler from");
  std::string lower;
  for (char c : name)
    lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::filesystem::path plugin = std::filesystem::path(info.dli_fname).parent_path() /
                                 ("libautoschedule_" + lower + ".so");
  if (!std::filesystem::exists(plugin))
    throw std::runtime_error("the " + name + " autoscheduler is not installed (no " +
                             plugin.string() + ")");
  Halide::load_plugin(plugin.string());
  loaded.insert(name);
}

std::string trim(const std::string &s) {
  size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos)
    return "";
  size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

void replaceAll(std::string &s, const std::string &from, const std::string &to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
}

/// The statements of the C++ source: comments and preprocessor lines gone,
/// split at the `;` outside parentheses, each without what precedes its
/// last `{` or `}` outside parentheses (a function head, a block). A line
/// that starts with a name in the first column, outside parentheses, starts
/// a statement too: Li2018 prints its rfactor's update chain without a `;`.
std::vector<std::string> statements(const std::string &source) {
  std::string code;
  std::istringstream in(source);
  for (std::string line; std::getline(in, line);) {
    if (size_t c = line.find("//"); c != std::string::npos)
      line.resize(c);
    if (trim(line).rfind("#", 0) == 0)
      continue;
    code += line + "\n";
  }
  std::vector<std::string> result;
  std::string current;
  int depth = 0;
  for (size_t i = 0; i < code.size(); ++i) {
    char c = code[i];
    bool lineStart = i == 0 || code[i - 1] == '\n';
    if (depth == 0 && lineStart && (std::isalpha(static_cast<unsigned char>(c)) || c == '_') &&
        !trim(current).empty()) {
      result.push_back(trim(current));
      current.clear();
    }
    if (c == '(')
      ++depth;
    else if (c == ')')
      --depth;
    if (depth == 0 && (c == '{' || c == '}')) {
      current.clear();
      continue;
    }
    if (depth == 0 && c == ';') {
      if (!trim(current).empty())
        result.push_back(trim(current));
      current.clear();
      continue;
    }
    current += c;
  }
  if (!trim(current).empty())
    result.push_back(trim(current));
  return result;
}

/// `word` without the "$N" Halide appends to make a name unique in the
/// process (an rfactor's "down_sum$1_intm" -> "down_sum_intm"), so that a
/// schedule's new names do not depend on what the process built before.
std::string withoutUniqueSuffixes(const std::string &word) {
  std::string out;
  for (size_t i = 0; i < word.size(); ++i) {
    size_t j = i + 1;
    while (word[i] == '$' && j < word.size() && std::isdigit(static_cast<unsigned char>(word[j])))
      ++j;
    if (j > i + 1) {
      i = j - 1;
      continue;
    }
    out += word[i];
  }
  return out;
}

/// `statement` with each identifier that is a kernel name as Halide prints
/// it replaced by the schedule's name for it (`names`), except call names
/// (after a `.`).
std::string rename(const std::string &statement,
                   const std::map<std::string, std::string> &names) {
  std::string out;
  size_t i = 0;
  while (i < statement.size()) {
    unsigned char c = statement[i];
    if (std::isalpha(c) || c == '_') {
      // Halide's names may hold '$' (an RDom's "rc$x"): some autoschedulers
      // print them so.
      size_t j = i;
      while (j < statement.size() && (std::isalnum(static_cast<unsigned char>(statement[j])) ||
                                      statement[j] == '_' || statement[j] == '$'))
        ++j;
      std::string word = statement.substr(i, j - i);
      size_t before = out.find_last_not_of(' ');
      bool call = before != std::string::npos && out[before] == '.';
      auto it = names.find(word);
      out += !call && it != names.end() ? it->second : identifierOf(withoutUniqueSuffixes(word));
      i = j;
    } else {
      out += static_cast<char>(c);
      ++i;
    }
  }
  return out;
}

/// `line` with every tail a call sets or leaves to Auto made GuardWithIf:
/// split and tile, and vectorize, unroll and parallel with a factor. The
/// autoschedulers plan for the estimates and round loops up or shift them
/// inwards, which reads and writes outside a buffer whose extent (the
/// tokens of a decode step: 1) is smaller than the factor; a guarded tail
/// is right at every extent.
std::string guardTails(const std::string &line) {
  std::string out;
  size_t i = 0;
  while (i < line.size()) {
    size_t dot = line.find('.', i);
    if (dot == std::string::npos) {
      out += line.substr(i);
      break;
    }
    size_t open = line.find('(', dot);
    if (open == std::string::npos) {
      out += line.substr(i);
      break;
    }
    std::string name = trim(line.substr(dot + 1, open - dot - 1));
    size_t close = line.find(')', open);
    if (close == std::string::npos) {
      out += line.substr(i);
      break;
    }
    out += line.substr(i, open + 1 - i);
    std::vector<std::string> args;
    std::stringstream list(line.substr(open + 1, close - open - 1));
    for (std::string a; std::getline(list, a, ',');)
      args.push_back(trim(a));
    size_t plain = name == "split" ? 4 : name == "tile" ? 8 : 0;
    if (name == "vectorize" || name == "unroll" || name == "parallel")
      plain = args.size() >= 2 ? 2 : 0;
    if (plain && (args.size() == plain || args.size() == plain + 1)) {
      args.resize(plain);
      args.push_back("GuardWithIf");
    }
    for (size_t a = 0; a < args.size(); ++a)
      out += (a ? ", " : "") + args[a];
    out += ")";
    i = close + 1;
  }
  return out;
}

} // namespace

std::string autoschedule(const KernelSpec &spec, const BuiltKernel &unscheduled,
                         const Target &target, const std::string &name, int parallelism) {
  // Adams2019 is not offered: its producers computed inside guarded tiles
  // read past the inputs at a decode step's one token (RoPE's positions, on
  // the Mixtral fixture).
  if (name != "Mullapudi2016" && name != "Li2018")
    throw std::runtime_error("unknown autoscheduler '" + name + "'");
  loadPlugin(name);
  // The autoscheduler schedules (and inlines into) a build of its own; the
  // source's pipeline.get_func(N) counts the Funcs as built, which
  // `unscheduled`, the kernel the text will be applied to, answers.
  BuiltKernel k = buildKernel(spec);
  Pipeline unscheduledPipeline(unscheduled.output);
  // Estimates for what the shapes leave open: the tokens of a call, 1 in
  // decode and 512 in prefill (llama-bench's pp512).
  int tokens = isDecode(spec) ? 1 : 512;
  for (size_t i = 0; i < k.inputs.size() && i < spec.inputs.size() + spec.scales.size(); ++i) {
    // The buffers' shapes: a packed weight's codes (u4: two per byte), then
    // the packed weights' scales.
    std::vector<int64_t> shape =
        bufferShape(i < spec.inputs.size() ? spec.inputs[i] : spec.scales[i - spec.inputs.size()]);
    int rank = static_cast<int>(shape.size());
    for (int d = 0; d < rank; ++d) {
      int64_t extent = shape[rank - 1 - d];
      k.inputs[i].dim(d).set_estimate(0, extent >= 0 ? static_cast<int>(extent) : tokens);
    }
  }
  const std::vector<int64_t> &shape = spec.outputs.front().shape;
  Region region;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d)
    region.push_back(Range(0, shape[d] >= 0 ? static_cast<int>(shape[d]) : tokens));
  k.output.set_estimates(region);

  Pipeline pipeline(k.output);
  AutoSchedulerResults results = pipeline.apply_autoscheduler(
      target, AutoschedulerParams(name, {{"parallelism", std::to_string(parallelism)}}));

  // Halide's names, as the source prints them, to the schedule's names.
  std::map<std::string, std::string> names;
  auto add = [&](const std::string &halideName, const std::string &key) {
    names.emplace(halideName, key);
    names.emplace(identifierOf(halideName), key);
  };
  for (const auto &[key, f] : k.funcs)
    add(f.name(), key);
  for (const auto &[key, v] : k.vars)
    add(v.name(), key);
  for (const auto &[key, v] : k.rvars)
    add(v.name(), key);

  // The source's own names: `Func X = pipeline.get_func(N);` and
  // `Var X = F.args()[I];` (Mullapudi2016 makes X unique, "down_sum_1").
  std::vector<std::string> source = statements(results.schedule_source);
  auto keyOf = [&](const std::string &halideName) -> std::string {
    for (const auto &[key, f] : unscheduled.funcs)
      if (f.name() == halideName)
        return key;
    return "";
  };
  std::map<std::string, Func> aliases;
  for (const std::string &s : source) {
    std::smatch m;
    static const std::regex getFunc(R"(^Func\s+(\w+)\s*=\s*pipeline\.get_func\((\d+)\)$)");
    static const std::regex args(R"(^Var\s+(\w+)\s*=\s*(\w+)\.args\(\)\[(\d+)\]$)");
    if (std::regex_match(s, m, getFunc)) {
      Func f = unscheduledPipeline.get_func(std::stoul(m[2]));
      if (std::string key = keyOf(f.name()); !key.empty()) {
        names[m[1]] = key;
        aliases[m[1]] = f;
      }
    } else if (std::regex_match(s, m, args)) {
      auto f = aliases.find(m[2]);
      size_t index = std::stoul(m[3]);
      if (f != aliases.end() && index < f->second.args().size())
        if (auto it = names.find(f->second.args()[index].name()); it != names.end())
          names[m[1]] = it->second;
    }
  }

  std::ostringstream text;
  text << "# scheduled by Halide's " << name << " autoscheduler (parallelism " << parallelism
       << "; estimates: " << tokens << " token(s) where the tokens are dynamic; every tail\n"
       << "# guarded, GuardWithIf, as a decode step's extents are smaller than its factors)\n";
  std::vector<std::string> placements;
  for (std::string s : source) {
    // Declarations: Funcs from the pipeline, Vars named or taken from a
    // stage; the text names them directly.
    for (const char *declaration : {"using ", "Var ", "RVar ", "Func ", "return"})
      if (s.rfind(declaration, 0) == 0)
        s.clear();
    if (s.empty())
      continue;
    for (const char *prefix : {"::Halide::", "Halide::", "TailStrategy::", "MemoryType::"})
      replaceAll(s, prefix, "");
    std::string line;
    for (char c : s) {
      if (c == '{' || c == '}')
        continue;
      if (std::isspace(static_cast<unsigned char>(c))) {
        if (!line.empty() && line.back() != ' ')
          line += ' ';
        continue;
      }
      line += c;
    }
    replaceAll(line, " .", ".");
    replaceAll(line, "( ", "(");
    replaceAll(line, " )", ")");
    line = guardTails(rename(trim(line), names));
    // compute_at and store_at name loops that a later line may create
    // (Mullapudi2016 prints `lane_sum.compute_at(out, n_o)` before out's
    // split makes n_o): they go last, each on a line of its own.
    // An rfactor's line schedules the Func it assigns.
    std::string head = line.substr(0, line.find('.'));
    if (size_t eq = head.find('='); eq != std::string::npos)
      head = trim(head.substr(0, eq));
    for (const char *call : {".compute_at(", ".store_at("}) {
      for (size_t at = line.find(call); at != std::string::npos; at = line.find(call)) {
        size_t close = line.find(')', at);
        if (close == std::string::npos)
          break;
        placements.push_back(head + line.substr(at, close + 1 - at));
        line.erase(at, close + 1 - at);
      }
    }
    if (line != head)
      text << line << "\n";
  }
  for (const std::string &placement : placements)
    text << placement << "\n";
  return text.str();
}

} // namespace moir::halide
