// Measured energy per token, its attribution to the model's components, and
// the report moir-run --energy-report writes (docs/energy.md).
//
// Built on the runtime's C API alone (moir_energy_meter, moir_model_cost,
// sessions): a small static library for moir-run and the tests, not part of
// the runtime's shared library.
#ifndef MOIR_ENERGY_REPORT_H
#define MOIR_ENERGY_REPORT_H

#include "moir/runtime.h"

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace moir::energy {

// ---- JSON ----

/// `text` as a JSON string literal: quotes, backslashes and control
/// characters escaped, invalid UTF-8 replaced by U+FFFD.
std::string jsonString(const std::string &text);
/// A JSON number ("null" for NaN and infinities: JSON has neither).
std::string jsonNumber(double value);

/// An indented JSON document, written in order.
class JsonWriter {
public:
  void beginObject();
  void endObject();
  void beginArray();
  void endArray();
  /// The next member's name (inside an object).
  void key(const std::string &name);
  void value(const std::string &text);
  void value(const char *text);
  void value(double number);
  void value(int64_t number);
  void value(int number) { value(static_cast<int64_t>(number)); }
  void value(bool flag);
  void null();
  template <typename T> void field(const std::string &name, const T &v) {
    key(name);
    value(v);
  }
  const std::string &text() const { return out; }

private:
  void separate();
  /// A bracket that opens or closes an object or array, indented.
  void open(char bracket);
  void close(char bracket);
  std::string out;
  std::vector<int> counts; // members written, per open container
  bool afterKey = false;
};

// ---- The compiler's work model ----

struct Work {
  double flops = 0, bytes = 0;
  void add(const Work &o) {
    flops += o.flops;
    bytes += o.bytes;
  }
};

/// One component of moir_model_cost, with its place: layer (-1: outside the
/// layers) and kind (attention, router, experts, projections, ...).
struct Component {
  std::string name, kind;
  int64_t layer = -1, experts = 0;
  double decodeFlops = 0, decodeFlopsPerRow = 0, decodeBytes = 0, decodeBytesPerRow = 0;
  double prefillFlops = 0, prefillBytes = 0;
};

/// The work a run does per component, from the manifest's cost lines.
struct WorkModel {
  std::vector<Component> components;
  /// The prompt the prefill costs were counted for; 0: no cost lines (one
  /// component from the decode line).
  int64_t prompt = 0;
  /// All the weight bytes: what a prefill reads at most (no cost lines).
  double weightBytes = 0;
  /// Prefill calls compute the head (final norm, LM head) for their last
  /// token only: the session asks for no other logits and the artifact has
  /// the logits_from argument.
  bool headLastRow = false;

  static WorkModel fromModel(const moir_model *model);
  /// Component c's work for one prefill call of n tokens at positions
  /// [start, start + n).
  Work prefill(size_t c, int64_t start, int64_t n) const;
  /// Component c's work for a decode token at `position` (it attends to
  /// position + 1 cache rows).
  Work decode(size_t c, int64_t position) const;
};

// ---- Fitting and attribution ----

/// Energy = alpha * bytes + beta * FLOPs.
struct Coefficients {
  double alpha = 0, beta = 0; // J/byte, J/FLOP
  std::string method;         // how they were obtained, for the report
};

/// Non-negative (weighted) least squares of energy[i] ~ alpha * bytes[i] +
/// beta * flops[i] over the intervals. The columns are scaled by the prior (alpha0,
/// beta0) first; when bytes and FLOPs are proportional across the intervals
/// (they cannot be told apart) the prior's ratio is kept and only its scale
/// is fitted. Non-finite intervals are skipped.
/// `weights` (optional): each interval's, 1 / its variance.
Coefficients fitCoefficients(const std::vector<double> &energy, const std::vector<double> &bytes,
                             const std::vector<double> &flops, double alpha0, double beta0,
                             const std::vector<double> &weights = {});

/// One phase's split over the components: joules[c] = alpha * bytes_c +
/// beta * flops_c; closure = |sum - measured| / measured.
struct Split {
  std::vector<double> joules;
  double measured = 0, attributed = 0, closure = 0;
  /// Whether the measured energy is distinguishable from 0 (more than its
  /// uncertainty), so that the closure means something, and whether it is
  /// within the tolerance.
  bool meaningful = false, ok = false;
};
Split attribute(const std::vector<Work> &work, const Coefficients &k, double measured,
                double uncertainty, double tolerance);

/// Default coefficients for estimates where nothing is measured (rough
/// published figures; docs/energy.md): by the artifact's target.
Coefficients defaultCoefficients(const std::string &target);

// ---- Measuring a run ----

struct Options {
  std::string source = "auto";
  double idleSeconds = 1.0;
  /// Each measured phase is repeated (replayed) until it has run this long;
  /// < 0: max(1 s, 50 counter updates).
  double minSeconds = -1;
  bool coefficientsGiven = false;
  double alpha = 0, beta = 0;
  int decodeBlocks = 4;
  /// The session computes the last token's logits only
  /// (moir_session_set_all_logits(session, 0), as moir-run's).
  bool lastLogitsOnly = false;
};

/// Reads the counter around the phases of a run, replays them, and writes
/// the report. Without a counter it still records times and work, and the
/// report carries an estimate.
class Recorder {
public:
  /// Opens the counter and, when there is one, measures idle power.
  Recorder(moir_model *model, const std::string &modelPath, const Options &options);
  ~Recorder();
  Recorder(const Recorder &) = delete;
  Recorder &operator=(const Recorder &) = delete;

  bool measuring() const { return measured; }

  /// Around the prefill of a prompt of `tokens` tokens in calls of `chunk`.
  void beginPrefill();
  void endPrefill(int64_t tokens, int64_t chunk);
  /// Around `runs` decode steps from `position`; decodeStep after each.
  void beginDecode(int64_t position, int64_t runs);
  void decodeStep();
  void endDecode();
  /// Replays the phases (same tokens, so the same work) until each has run
  /// for the minimum time; `fed` holds the tokens the decode steps ran.
  moir_status replay(moir_session *session, const std::vector<int32_t> &prompt, int64_t chunk,
                     const std::vector<int32_t> &fed);

  /// Writes the JSON report; false with *error.
  bool write(const std::string &path, int64_t generated, std::string *error);
  /// One line for the terminal.
  std::string summary() const;
  /// Problems worth a warning (closure beyond 5%, large uncertainty).
  std::vector<std::string> warnings() const;

  struct Sample {
    double joules = 0, wall = 0, cpu = 0;
  };
  /// A stretch of one phase's work between two counter readings.
  struct Interval {
    /// The phase's energy (raw: idle not subtracted) and time in it.
    double joules = 0, seconds = 0, cpu = 0;
    /// The counter's window: its delta and duration. Decode replays keep
    /// the prefills between them inside one long window and subtract their
    /// energy (the prefill's measured power times their time), whose
    /// variance is `extraVariance`.
    double windowJoules = 0, windowSeconds = 0, extraVariance = 0;
    int64_t tokens = 0;
    int block = 0; // the decode block of the run; -1: the replays
    std::vector<Work> work; // per component
  };
  struct Phase {
    std::vector<Interval> intervals;
    int64_t firstTokens = 0;       // tokens of the run itself (not replays)
    double firstSeconds = 0;       // its time
    double firstCpu = 0;           // and CPU time (all threads)
    std::vector<Work> firstWork;   // its work per component
    int passes = 0;                // run + replays
  };

private:
  struct Results;
  Results analyze() const;
  Sample mark();
  void stop(const std::string &why);
  std::vector<Work> prefillWork(int64_t tokens, int64_t chunk) const;
  std::vector<Work> decodeWork(int64_t from, int64_t to) const;
  void closeDecodeBlock();
  /// The variance of an interval's energy from the counter's resolution
  /// and update interval (and what it subtracts).
  double readingVariance(const Interval &i) const;

  moir_model *model;
  std::string path;
  Options options;
  WorkModel work;
  moir_energy_meter *meter = nullptr;
  moir_energy_info info{};
  bool measured = false;
  std::string notMeasured; // why not (when !measured)
  // Idle power and the counter's observed behaviour.
  double idlePower = 0, idleSigma = 0, idleSeconds = 0;
  double observedInterval = 0, observedStep = 0, updateInterval = 0;
  double minSeconds = 0;
  Phase prefill, decode;
  // The decode phase in progress.
  Sample blockStart;
  int64_t decodePosition = 0, decodeRuns = 0, decodeDone = 0, blockFirst = 0;
  int blocks = 0, block = 0;
  bool replaying = false;
  Sample prefillStart;
  // A counter that wraps is read every second by this thread between the
  // phases' own readings, so a long window cannot hide a wrap.
  std::thread keeper;
  std::mutex keeperMutex;
  std::condition_variable keeperWake;
  bool keeperStop = false;
};

} // namespace moir::energy

#endif
