//===- Schedule.cpp - schedule texts applied to built kernels -------------===//
//
// A schedule is a text of Halide scheduling calls, one chain per line,
// written as in Halide's C++ (without `;`, Var declarations or namespaces):
//
//   # comment
//   out.split(n, nb, nr, 64).split(nr, no, ni, 8).parallel(nb)
//   partial.compute_at(out, no).vectorize(l)
//   partial.update(0).reorder(l, n, t, ko).vectorize(l).unroll(n)
//
// A chain starts at a Func of the kernel (or `<func>.update(<k>)`, a stage
// of it) and may call: split(v, outer, inner, factor[, tail]), tile(x, y,
// xo, yo, xi, yi, xf, yf[, tail]), fuse(inner, outer, fused), reorder(v...),
// vectorize(v[, factor[, tail]]), unroll(v[, factor[, tail]]),
// parallel(v[, task_size[, tail]]), serial(v), atomic() (an update stage:
// vectorizing a reduction variable then reduces inside vectors), compute_root(),
// compute_inline(), compute_at(func, v), store_root(), store_at(func, v),
// reorder_storage(v...), store_in(Auto|Heap|Stack|Register), and on a device gpu_tile(x[, y], blocks...,
// threads..., factors...[, tail]), gpu_blocks(v...), gpu_threads(v...),
// gpu_single_thread(), and, at the start of a line, `NEW = f.update(k).rfactor(r,
// v[, r, v]...)` (Halide's rfactor: the new Func NEW computes partial
// results of the update over the new variables v; the rest of the chain
// schedules NEW's pure stage, and later lines name it). tail is one of RoundUp, GuardWithIf,
// ShiftInwards, Predicate. Names new in a split, tile or fuse become loop
// variables of the kernel (reduction variables where they split one).
//
//===----------------------------------------------------------------------===//

#include "Kernels.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <initializer_list>
#include <sstream>
#include <stdexcept>

using namespace Halide;

namespace moir::halide {
namespace {

struct Call {
  std::string name;
  std::vector<std::string> args;
};

class LineParser {
public:
  explicit LineParser(const std::string &text) : text(text) {}

  /// `[<ident> =] <ident> ( . <ident> ( args ) )*`: the head and its calls;
  /// `assigned` gets the name before `=` (empty without one).
  std::string parse(std::vector<Call> &calls, std::string &assigned) {
    std::string head = identifier();
    if (head.empty())
      throw std::runtime_error("expected a function name");
    skipSpace();
    if (pos < text.size() && text[pos] == '=') {
      ++pos;
      assigned = head;
      head = identifier();
      if (head.empty())
        throw std::runtime_error("expected a function name after '" + assigned + " ='");
    }
    while (skipSpace(), pos < text.size()) {
      if (text[pos] != '.')
        throw std::runtime_error("expected '.' before column " + std::to_string(pos + 1));
      ++pos;
      Call call;
      call.name = identifier();
      if (call.name.empty())
        throw std::runtime_error("expected a call after '.' at column " + std::to_string(pos + 1));
      skipSpace();
      if (pos >= text.size() || text[pos] != '(')
        throw std::runtime_error("expected '(' after '" + call.name + "'");
      ++pos;
      skipSpace();
      if (pos < text.size() && text[pos] == ')') {
        ++pos;
      } else {
        for (;;) {
          skipSpace();
          size_t start = pos;
          while (pos < text.size() && text[pos] != ',' && text[pos] != ')')
            ++pos;
          if (pos >= text.size())
            throw std::runtime_error("unclosed '(' in '" + call.name + "'");
          std::string arg = text.substr(start, pos - start);
          while (!arg.empty() && std::isspace(static_cast<unsigned char>(arg.back())))
            arg.pop_back();
          if (arg.empty())
            throw std::runtime_error("empty argument in '" + call.name + "'");
          call.args.push_back(arg);
          if (text[pos++] == ')')
            break;
        }
      }
      calls.push_back(std::move(call));
    }
    return head;
  }

private:
  void skipSpace() {
    while (pos < text.size() && std::isspace(static_cast<unsigned char>(text[pos])))
      ++pos;
  }
  std::string identifier() {
    skipSpace();
    size_t start = pos;
    while (pos < text.size() &&
           (std::isalnum(static_cast<unsigned char>(text[pos])) || text[pos] == '_'))
      ++pos;
    return text.substr(start, pos - start);
  }

  const std::string &text;
  size_t pos = 0;
};

/// A positive integer up to `most`: larger factors, vector widths and
/// unrolls only make code Halide cannot build in reasonable time or memory.
int integer(const std::string &s, const std::string &what, int most = 1 << 16) {
  size_t used = 0;
  long value = 0;
  try {
    value = std::stol(s, &used);
  } catch (...) {
    used = 0;
  }
  if (used != s.size() || value <= 0 || value > most)
    throw std::runtime_error(what + " must be an integer from 1 to " + std::to_string(most) +
                             ", not '" + s + "'");
  return static_cast<int>(value);
}

/// The value `s` names among `names`; else an error naming what is known.
template <typename T>
T named(const std::string &s, const std::string &what,
        std::initializer_list<std::pair<const char *, T>> names) {
  std::string known;
  for (const auto &[name, value] : names) {
    if (s == name)
      return value;
    known += (known.empty() ? "" : ", ") + std::string(name);
  }
  throw std::runtime_error("unknown " + what + " '" + s + "' (" + known + ")");
}

TailStrategy tail(const std::string &s) {
  return named<TailStrategy>(s, "tail strategy",
                             {{"RoundUp", TailStrategy::RoundUp},
                              {"GuardWithIf", TailStrategy::GuardWithIf},
                              {"ShiftInwards", TailStrategy::ShiftInwards},
                              {"Predicate", TailStrategy::Predicate},
                              {"Auto", TailStrategy::Auto}});
}

MemoryType memoryType(const std::string &s) {
  return named<MemoryType>(s, "memory type",
                           {{"Auto", MemoryType::Auto},
                            {"Heap", MemoryType::Heap},
                            {"Stack", MemoryType::Stack},
                            {"Register", MemoryType::Register}});
}

PrefetchBoundStrategy prefetchStrategy(const std::string &s) {
  return named<PrefetchBoundStrategy>(s, "prefetch strategy",
                                      {{"GuardWithIf", PrefetchBoundStrategy::GuardWithIf},
                                       {"Clamp", PrefetchBoundStrategy::Clamp},
                                       {"NonFaulting", PrefetchBoundStrategy::NonFaulting}});
}

class Applier {
public:
  explicit Applier(BuiltKernel &kernel) : kernel(kernel) {}

  void line(const std::string &text) {
    std::vector<Call> calls;
    std::string assigned;
    std::string head = LineParser(text).parse(calls, assigned);
    Func f = func(head);
    size_t first = 0;
    Stage stage = f;
    bool pure = true;
    if (!assigned.empty()) {
      // `new = f.update(k).rfactor(r, v[, r, v]...)...`: the rest of the
      // chain schedules the new Func.
      if (calls.size() < 2 || calls[0].name != "update" || calls[1].name != "rfactor")
        throw std::runtime_error("'" + assigned + " = ...' names the Func that " + head +
                                 ".update(k).rfactor(...) makes; nothing else can be assigned");
      if (kernel.funcs.count(assigned))
        throw std::runtime_error("'" + assigned + "' is already a function of this kernel");
      Stage update = updateStage(f, head, calls[0]);
      const auto &a = calls[1].args;
      if (a.empty() || a.size() % 2)
        throw std::runtime_error("'rfactor' takes pairs of a reduction variable and a new "
                                 "variable");
      std::vector<std::pair<RVar, Var>> pairs;
      for (size_t i = 0; i < a.size(); i += 2) {
        VarOrRVar r = var(a[i]);
        if (!r.is_rvar)
          throw std::runtime_error("'rfactor' factors reduction variables; '" + a[i] +
                                   "' is not one");
        if (kernel.vars.count(a[i + 1]) || kernel.rvars.count(a[i + 1]))
          throw std::runtime_error("'rfactor' needs a new variable name; '" + a[i + 1] +
                                   "' is already one");
        pairs.emplace_back(r.rvar, fresh(a[i + 1], false).var);
      }
      Func intermediate = update.rfactor(pairs);
      kernel.funcs.emplace(assigned, intermediate);
      Stage pureStage = intermediate;
      for (size_t c = 2; c < calls.size(); ++c)
        apply(intermediate, pureStage, true, calls[c]);
      return;
    }
    if (!calls.empty() && calls[0].name == "update") {
      stage = updateStage(f, head, calls[0]);
      pure = false;
      first = 1;
    }
    for (size_t c = first; c < calls.size(); ++c)
      apply(f, stage, pure, calls[c]);
  }

private:
  /// `f.update([k])`.
  Stage updateStage(Func &f, const std::string &head, const Call &update) {
    int index = 0;
    if (update.args.size() > 1)
      throw std::runtime_error("update takes at most one stage number");
    if (update.args.size() == 1 && update.args[0] != "0")
      index = integer(update.args[0], "update's stage number");
    if (index >= f.num_update_definitions())
      throw std::runtime_error("'" + head + "' has " + std::to_string(f.num_update_definitions()) +
                               " update stage(s); update(" + std::to_string(index) +
                               ") does not exist");
    return f.update(index);
  }

  Func func(const std::string &name) {
    auto it = kernel.funcs.find(name);
    if (it == kernel.funcs.end()) {
      std::string known;
      for (const auto &[n, unused] : kernel.funcs)
        known += (known.empty() ? "" : ", ") + n;
      throw std::runtime_error("unknown function '" + name + "' (this kernel has: " + known + ")");
    }
    return it->second;
  }

  bool isRVar(const std::string &name) const { return kernel.rvars.count(name) != 0; }

  VarOrRVar var(const std::string &name) {
    if (auto it = kernel.rvars.find(name); it != kernel.rvars.end())
      return it->second;
    if (auto it = kernel.vars.find(name); it != kernel.vars.end())
      return it->second;
    throw std::runtime_error("unknown loop variable '" + name + "'");
  }

  /// A name a split/tile/fuse introduces, of the kind of `like`.
  VarOrRVar fresh(const std::string &name, bool reduction) {
    if (reduction) {
      auto [it, unused] = kernel.rvars.emplace(name, RVar(name));
      return it->second;
    }
    auto [it, unused] = kernel.vars.emplace(name, Var(name));
    return it->second;
  }

  void arity(const Call &c, size_t lo, size_t hi) {
    if (c.args.size() < lo || c.args.size() > hi)
      throw std::runtime_error("'" + c.name + "' takes " + std::to_string(lo) +
                               (lo == hi ? "" : " to " + std::to_string(hi)) + " arguments");
  }

  void apply(Func &f, Stage &stage, bool pure, const Call &c) {
    const auto &a = c.args;
    if (c.name == "split") {
      arity(c, 4, 5);
      bool red = isRVar(a[0]);
      VarOrRVar old = var(a[0]);
      VarOrRVar outer = fresh(a[1], red), inner = fresh(a[2], red);
      stage.split(old, outer, inner, integer(a[3], "split's factor"),
                  a.size() == 5 ? tail(a[4]) : TailStrategy::Auto);
    } else if (c.name == "tile") {
      arity(c, 8, 9);
      bool rx = isRVar(a[0]), ry = isRVar(a[1]);
      VarOrRVar x = var(a[0]), y = var(a[1]);
      VarOrRVar xo = fresh(a[2], rx), yo = fresh(a[3], ry), xi = fresh(a[4], rx),
                yi = fresh(a[5], ry);
      stage.tile(x, y, xo, yo, xi, yi, integer(a[6], "tile's x factor"),
                 integer(a[7], "tile's y factor"), a.size() == 9 ? tail(a[8]) : TailStrategy::Auto);
    } else if (c.name == "fuse") {
      arity(c, 3, 3);
      bool red = isRVar(a[0]) || isRVar(a[1]);
      VarOrRVar inner = var(a[0]), outer = var(a[1]);
      stage.fuse(inner, outer, fresh(a[2], red));
    } else if (c.name == "reorder") {
      if (a.size() < 2)
        throw std::runtime_error("'reorder' takes two or more loop variables");
      std::vector<VarOrRVar> order;
      for (const std::string &name : a)
        order.push_back(var(name));
      stage.reorder(order);
    } else if (c.name == "vectorize" || c.name == "unroll" || c.name == "parallel") {
      arity(c, 1, 3);
      VarOrRVar v = var(a[0]);
      TailStrategy t = a.size() == 3 ? tail(a[2]) : TailStrategy::Auto;
      if (c.name == "vectorize")
        a.size() >= 2 ? stage.vectorize(v, integer(a[1], "vectorize's width", 256), t)
                      : stage.vectorize(v);
      else if (c.name == "unroll")
        a.size() >= 2 ? stage.unroll(v, integer(a[1], "unroll's factor", 256), t)
                      : stage.unroll(v);
      else
        a.size() >= 2 ? stage.parallel(v, integer(a[1], "parallel's task size", 1 << 30), t)
                      : stage.parallel(v);
    } else if (c.name == "atomic") {
      arity(c, 0, 0);
      if (pure)
        throw std::runtime_error("'atomic' applies to an update stage, not to a function");
      stage.atomic();
    } else if (c.name == "gpu_tile") {
      // gpu_tile(x, xo, xi, xf[, tail]) or gpu_tile(x, y, xo, yo, xi, yi, xf, yf[, tail])
      if (a.size() == 4 || a.size() == 5) {
        bool red = isRVar(a[0]);
        VarOrRVar x = var(a[0]);
        VarOrRVar bx = fresh(a[1], red), tx = fresh(a[2], red);
        stage.gpu_tile(x, bx, tx, integer(a[3], "gpu_tile's x factor", 1024),
                       a.size() == 5 ? tail(a[4]) : TailStrategy::Auto);
      } else if (a.size() == 8 || a.size() == 9) {
        bool rx = isRVar(a[0]), ry = isRVar(a[1]);
        VarOrRVar x = var(a[0]), y = var(a[1]);
        VarOrRVar bx = fresh(a[2], rx), by = fresh(a[3], ry), tx = fresh(a[4], rx),
                  ty = fresh(a[5], ry);
        stage.gpu_tile(x, y, bx, by, tx, ty, integer(a[6], "gpu_tile's x factor", 1024),
                       integer(a[7], "gpu_tile's y factor", 1024),
                       a.size() == 9 ? tail(a[8]) : TailStrategy::Auto);
      } else {
        throw std::runtime_error("'gpu_tile' takes 4 or 5 arguments (one dimension) or 8 or 9 "
                                 "(two)");
      }
    } else if (c.name == "gpu_blocks" || c.name == "gpu_threads") {
      if (a.empty() || a.size() > 3)
        throw std::runtime_error("'" + c.name + "' takes 1 to 3 loop variables");
      std::vector<VarOrRVar> v;
      for (const std::string &name : a)
        v.push_back(var(name));
      if (c.name == "gpu_blocks")
        v.size() == 1   ? stage.gpu_blocks(v[0])
        : v.size() == 2 ? stage.gpu_blocks(v[0], v[1])
                        : stage.gpu_blocks(v[0], v[1], v[2]);
      else
        v.size() == 1   ? stage.gpu_threads(v[0])
        : v.size() == 2 ? stage.gpu_threads(v[0], v[1])
                        : stage.gpu_threads(v[0], v[1], v[2]);
    } else if (c.name == "gpu_single_thread") {
      arity(c, 0, 0);
      stage.gpu_single_thread();
    } else if (c.name == "serial") {
      arity(c, 1, 1);
      stage.serial(var(a[0]));
    } else if (c.name == "compute_root" || c.name == "compute_inline" || c.name == "store_root") {
      arity(c, 0, 0);
      if (!pure)
        throw std::runtime_error("'" + c.name + "' applies to a function, not to an update stage");
      if (c.name == "compute_root")
        f.compute_root();
      else if (c.name == "compute_inline")
        f.compute_inline();
      else
        f.store_root();
    } else if (c.name == "reorder_storage") {
      if (!pure)
        throw std::runtime_error("'reorder_storage' applies to a function, not to an update stage");
      if (a.size() < 2)
        throw std::runtime_error("'reorder_storage' takes two or more variables");
      std::vector<Var> order;
      for (const std::string &name : a) {
        VarOrRVar v = var(name);
        if (v.is_rvar)
          throw std::runtime_error("'reorder_storage' takes the function's own variables, not '" +
                                   name + "'");
        order.push_back(v.var);
      }
      f.reorder_storage(order);
    } else if (c.name == "store_in") {
      arity(c, 1, 1);
      if (!pure)
        throw std::runtime_error("'store_in' applies to a function, not to an update stage");
      f.store_in(memoryType(a[0]));
    } else if (c.name == "compute_at" || c.name == "store_at") {
      arity(c, 2, 2);
      if (!pure)
        throw std::runtime_error("'" + c.name + "' applies to a function, not to an update stage");
      Func at = func(a[0]);
      VarOrRVar v = var(a[1]);
      if (c.name == "compute_at")
        v.is_rvar ? f.compute_at(at, v.rvar) : f.compute_at(at, v.var);
      else
        v.is_rvar ? f.store_at(at, v.rvar) : f.store_at(at, v.var);
    } else if (c.name == "prefetch") {
      // prefetch(what, at, from[, offset[, strategy]]): at loop `at`, the
      // part of input or function `what` that iteration `from` + offset
      // reads.
      arity(c, 3, 5);
      VarOrRVar at = var(a[1]), from = var(a[2]);
      Expr offset = a.size() >= 4 ? Expr(integer(a[3], "prefetch's offset")) : Expr(1);
      PrefetchBoundStrategy strategy =
          a.size() == 5 ? prefetchStrategy(a[4]) : PrefetchBoundStrategy::GuardWithIf;
      auto input = std::find_if(kernel.inputs.begin(), kernel.inputs.end(),
                                [&](const ImageParam &p) { return p.name() == a[0]; });
      if (input != kernel.inputs.end()) {
        stage.prefetch(*input, at, from, offset, strategy);
      } else if (kernel.funcs.count(a[0])) {
        stage.prefetch(func(a[0]), at, from, offset, strategy);
      } else {
        std::string known;
        for (const ImageParam &p : kernel.inputs)
          known += (known.empty() ? "" : ", ") + p.name();
        throw std::runtime_error("'prefetch' names neither an input (" + known +
                                 ") nor a function of this kernel: '" + a[0] + "'");
      }
    } else if (c.name == "rfactor") {
      throw std::runtime_error("'rfactor' makes a new Func: write 'NAME = FUNC.update(k).rfactor(r, v)' "
                               "at the start of a line");
    } else {
      throw std::runtime_error("unknown scheduling call '" + c.name + "'");
    }
  }

  BuiltKernel &kernel;
};

} // namespace

namespace {
std::string fatalWarning;

class Reporter : public CompileTimeErrorReporter {
public:
  void warning(const char *msg) override {
    std::string text = msg;
    if (text.find("float16 type operation is emulated") != std::string::npos)
      return;
    // Halide 21 no longer folds storage on its own where a vectorized
    // consumer reads it; it says so for each such Func of an autoscheduled
    // kernel. The schedule is right as it stands (folding only saves
    // memory), and a schedule text can ask for no folding anyway.
    if (text.find("Not folding Func") != std::string::npos)
      return;
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
      text.pop_back();
    if (text.find("guaranteed to fail an assertion") != std::string::npos) {
      if (fatalWarning.empty())
        fatalWarning = text;
      return;
    }
    std::fprintf(stderr, "moirc: Halide warning: %s\n", text.c_str());
  }
  void error(const char *msg) override { throw std::runtime_error(msg); }
};
} // namespace

void installReporter() {
  static Reporter reporter;
  set_custom_compile_time_error_reporter(&reporter);
}

void checkCompiled() {
  std::string warning;
  std::swap(warning, fatalWarning);
  if (!warning.empty()) {
    for (char &c : warning)
      if (c == '\n')
        c = ' ';
    throw std::runtime_error("the schedule cannot run on these buffers (Halide: " + warning +
                             "); a split or tile factor larger than a static extent does this");
  }
}

void applySchedule(BuiltKernel &kernel, const std::string &text, const std::string &origin) {
  Applier applier(kernel);
  std::istringstream in(text);
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    size_t hash = line.find('#');
    if (hash != std::string::npos)
      line.resize(hash);
    if (line.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    try {
      applier.line(line);
    } catch (const Halide::Error &e) {
      throw std::runtime_error(origin + ":" + std::to_string(number) + ": " + e.what());
    } catch (const std::exception &e) {
      throw std::runtime_error(origin + ":" + std::to_string(number) + ": " + e.what());
    }
  }
}

} // namespace moir::halide
