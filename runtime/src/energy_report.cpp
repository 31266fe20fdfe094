// Measured energy per token, attribution, and the report (energy_report.h,
// docs/energy.md).
#include "energy_report.h"
#include "utf8.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>
#include <tuple>

#include <sys/resource.h>
#include <unistd.h>

namespace moir::energy {

// ---- JSON ----

std::string jsonString(const std::string &text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size();) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    switch (c) {
    case '"': out += "\\\""; ++i; continue;
    case '\\': out += "\\\\"; ++i; continue;
    case '\b': out += "\\b"; ++i; continue;
    case '\f': out += "\\f"; ++i; continue;
    case '\n': out += "\\n"; ++i; continue;
    case '\r': out += "\\r"; ++i; continue;
    case '\t': out += "\\t"; ++i; continue;
    default: break;
    }
    if (c < 0x20 || c == 0x7f) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
      out += buffer;
      ++i;
      continue;
    }
    size_t bad = 1, n = moir::rt::utf8Sequence(text, i, &bad);
    if (n == 0) {
      // U+FFFD for each maximal run that is not UTF-8 (as Python's "replace").
      out += "\xef\xbf\xbd";
      i += bad;
      continue;
    }
    out.append(text, i, n);
    i += n;
  }
  return out + "\"";
}

std::string jsonNumber(double value) {
  if (!std::isfinite(value))
    return "null";
  // The shortest of 15 or 17 significant digits that reads back as the
  // same double (%g forms are JSON numbers: "1e+06" is fine).
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.15g", value);
  if (std::strtod(buffer, nullptr) != value)
    std::snprintf(buffer, sizeof buffer, "%.17g", value);
  return buffer;
}

void JsonWriter::separate() {
  if (afterKey) {
    afterKey = false;
    return;
  }
  if (!counts.empty()) {
    out += counts.back()++ ? ",\n" : "\n";
    out.append(2 * counts.size(), ' ');
  }
}

void JsonWriter::open(char bracket) {
  separate();
  out += bracket;
  counts.push_back(0);
}

void JsonWriter::close(char bracket) {
  bool empty = counts.back() == 0;
  counts.pop_back();
  if (!empty) {
    out += "\n";
    out.append(2 * counts.size(), ' ');
  }
  out += bracket;
}

void JsonWriter::beginObject() { open('{'); }

void JsonWriter::endObject() {
  close('}');
  if (counts.empty())
    out += "\n";
}

void JsonWriter::beginArray() { open('['); }

void JsonWriter::endArray() { close(']'); }

void JsonWriter::key(const std::string &name) {
  separate();
  out += jsonString(name) + ": ";
  afterKey = true;
}

void JsonWriter::value(const std::string &text) {
  separate();
  out += jsonString(text);
}
void JsonWriter::value(const char *text) { text ? value(std::string(text)) : null(); }
void JsonWriter::value(double number) {
  separate();
  out += jsonNumber(number);
}
void JsonWriter::value(int64_t number) {
  separate();
  out += std::to_string(number);
}
void JsonWriter::value(bool flag) {
  separate();
  out += flag ? "true" : "false";
}
void JsonWriter::null() {
  separate();
  out += "null";
}

// ---- The compiler's work model ----

WorkModel WorkModel::fromModel(const moir_model *model) {
  WorkModel m;
  m.prompt = moir_model_cost_prompt(model);
  m.weightBytes = static_cast<double>(moir_model_weight_bytes(model));
  for (int64_t i = 0, n = moir_model_cost_count(model); i < n; ++i) {
    moir_cost c;
    if (moir_model_cost(model, i, &c) != MOIR_OK)
      continue;
    Component k;
    k.name = c.name;
    k.experts = c.experts;
    k.decodeFlops = c.decode_flops;
    k.decodeFlopsPerRow = c.decode_flops_per_row;
    k.decodeBytes = c.decode_bytes;
    k.decodeBytesPerRow = c.decode_bytes_per_row;
    k.prefillFlops = c.prefill_flops;
    k.prefillBytes = c.prefill_bytes;
    // "layer.<i>.<kind>", "head.<kind>", "model".
    k.kind = k.name.substr(k.name.rfind('.') + 1);
    if (k.name.compare(0, 6, "layer.") == 0)
      k.layer = std::atoll(k.name.c_str() + 6);
    m.components.push_back(k);
  }
  return m;
}

Work WorkModel::prefill(size_t c, int64_t start, int64_t n) const {
  const Component &k = components[c];
  // A head computed for the call's last token only: one token's work (the
  // head has no per-cache-row part).
  if (headLastRow && k.name.compare(0, 5, "head.") == 0)
    n = std::min<int64_t>(n, 1);
  const double tokens = static_cast<double>(n);
  if (prompt <= 0) {
    // No cost lines: the decode line's work per token, the weights read at
    // most once per call.
    return {tokens * k.prefillFlops, std::min(weightBytes, tokens * k.prefillBytes)};
  }
  // The compiler counted a prompt of P tokens from an empty cache, whose
  // tokens see (P + 1) / 2 cache rows on average. The per-row parts (the
  // decode slopes) follow this call's positions instead; the weights read
  // once per call (the rest of the prefill bytes, P tokens' worth) are
  // capped by what n tokens read at most (n decode tokens' worth: fewer
  // experts for short calls).
  const double meanRows = (static_cast<double>(prompt) + 1) / 2;
  const double rows = tokens * static_cast<double>(start) + tokens * (tokens + 1) / 2;
  double flops = tokens * std::max(0.0, k.prefillFlops - k.decodeFlopsPerRow * meanRows) +
                 k.decodeFlopsPerRow * rows;
  double perCall = std::max(0.0, k.prefillBytes - k.decodeBytesPerRow * meanRows) *
                   static_cast<double>(prompt);
  double bytes = std::min(perCall, tokens * k.decodeBytes) + k.decodeBytesPerRow * rows;
  return {flops, bytes};
}

Work WorkModel::decode(size_t c, int64_t position) const {
  const Component &k = components[c];
  const double rows = static_cast<double>(position) + 1;
  return {k.decodeFlops + k.decodeFlopsPerRow * rows, k.decodeBytes + k.decodeBytesPerRow * rows};
}

// ---- Fitting and attribution ----

Coefficients fitCoefficients(const std::vector<double> &energy, const std::vector<double> &bytes,
                             const std::vector<double> &flops, double alpha0, double beta0,
                             const std::vector<double> &weights) {
  // In units of the prior: E ~ a * (alpha0 * B) + b * (beta0 * F).
  double sbb = 0, sff = 0, sbf = 0, sbe = 0, sfe = 0, see = 0;
  int used = 0;
  for (size_t i = 0; i < energy.size() && i < bytes.size() && i < flops.size(); ++i) {
    double e = energy[i], b = alpha0 * bytes[i], f = beta0 * flops[i];
    double w = i < weights.size() ? weights[i] : 1.0;
    if (!std::isfinite(e) || !std::isfinite(b) || !std::isfinite(f) || !std::isfinite(w) ||
        w <= 0)
      continue;
    sbb += w * b * b;
    sff += w * f * f;
    sbf += w * b * f;
    sbe += w * b * e;
    sfe += w * f * e;
    see += w * e * e;
    ++used;
  }
  Coefficients k;
  auto residual = [&](double a, double b) {
    return see - 2 * a * sbe - 2 * b * sfe + a * a * sbb + 2 * a * b * sbf + b * b * sff;
  };
  const std::string n = std::to_string(used) + " interval" + (used == 1 ? "" : "s");
  if (used == 0 || sbb + sff <= 0) {
    k.method = "no usable intervals: coefficients 0";
    return k;
  }
  // Bytes and FLOPs proportional across the intervals (cos^2 of the angle
  // between the columns ~ 1), or only one interval: keep the prior's ratio.
  double det = sbb * sff - sbf * sbf;
  if (used < 2 || sbb == 0 || sff == 0 || det <= 1e-9 * sbb * sff) {
    double s = std::max(0.0, (sbe + sfe) / (sbb + 2 * sbf + sff));
    k.alpha = s * alpha0;
    k.beta = s * beta0;
    k.method = "scale of the default coefficients fitted on " + n +
               " (their bytes and FLOPs are proportional: the ratio of the two cannot be "
               "measured here and is the default's)";
    return k;
  }
  double a = (sbe * sff - sfe * sbf) / det, b = (sfe * sbb - sbe * sbf) / det;
  if (a >= 0 && b >= 0) {
    k.alpha = a * alpha0;
    k.beta = b * beta0;
    k.method = std::string(weights.empty() ? "" : "weighted ") + "least squares on " + n;
    return k;
  }
  // The unconstrained optimum has a negative coefficient: the best with one
  // of them 0.
  double aOnly = std::max(0.0, sbe / sbb), bOnly = std::max(0.0, sfe / sff);
  if (residual(aOnly, 0) <= residual(0, bOnly)) {
    k.alpha = aOnly * alpha0;
    k.method = "non-negative least squares on " + n + " (J/FLOP clamped to 0)";
  } else {
    k.beta = bOnly * beta0;
    k.method = "non-negative least squares on " + n + " (J/byte clamped to 0)";
  }
  return k;
}

Split attribute(const std::vector<Work> &work, const Coefficients &k, double measured,
                double uncertainty, double tolerance) {
  Split s;
  s.measured = measured;
  for (const Work &w : work) {
    s.joules.push_back(k.alpha * w.bytes + k.beta * w.flops);
    s.attributed += s.joules.back();
  }
  s.meaningful = std::isfinite(measured) && std::isfinite(uncertainty) && measured > 0 &&
                 measured > uncertainty;
  s.closure = s.meaningful ? std::fabs(s.attributed - measured) / measured : NAN;
  s.ok = s.meaningful && std::isfinite(s.closure) && s.closure <= tolerance;
  return s;
}

Coefficients defaultCoefficients(const std::string &target) {
  Coefficients k;
  std::string kind = target.substr(0, target.find(' '));
  if (kind == "nvidia" || kind == "amd") {
    k.alpha = 31e-12; // HBM: ~3.9 pJ/bit
    k.beta = 0.7e-12; // ~1e15 dense bf16 FLOP/s at ~700 W board power
    k.method = "default GPU assumptions: 31 pJ per byte read (HBM2, about 3.9 pJ/bit: O'Connor "
               "et al., MICRO 2017), 0.7 pJ per FLOP (an H100-class GPU: about 1e15 dense bf16 "
               "FLOP/s at 700 W)";
  } else {
    k.alpha = 160e-12; // DRAM: ~640 pJ per 32-bit read at 45 nm
    k.beta = 20e-12;   // fp32 multiply-add ~4.6 pJ at 45 nm, times core overheads
    k.method = "default CPU assumptions: 160 pJ per byte read (DRAM, 640 pJ per 32-bit read at "
               "45 nm: Horowitz, ISSCC 2014), 20 pJ per FLOP (an fp32 multiply-add is about "
               "4.6 pJ at 45 nm, same source; a core spends several times that on instruction "
               "delivery, registers and caches)";
  }
  return k;
}

// ---- Measuring a run ----

namespace {

double wallNow() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

double cpuNow() {
  rusage u;
  if (getrusage(RUSAGE_SELF, &u) != 0)
    return NAN;
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

void sleepFor(double seconds) {
  if (seconds > 0)
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

double percentile(std::vector<double> v, double q) {
  if (v.empty())
    return NAN;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

} // namespace

Recorder::Recorder(moir_model *model, const std::string &modelPath, const Options &o)
    : model(model), path(modelPath), options(o), work(WorkModel::fromModel(model)) {
  if (const char *manifest = moir_model_manifest(model))
    work.headLastRow = o.lastLogitsOnly && std::strstr(manifest, " logits_from ") != nullptr;
  if (moir_energy_meter_open(options.source.c_str(), model, &meter) != MOIR_OK) {
    notMeasured = moir_last_error();
    meter = nullptr;
    return;
  }
  moir_energy_meter_describe(meter, &info);
  if (!info.available) {
    notMeasured = info.reason;
    return;
  }
  measured = true;
  if (info.wrap_j > 0)
    keeper = std::thread([this] {
      std::unique_lock<std::mutex> lock(keeperMutex);
      while (!keeperWake.wait_for(lock, std::chrono::seconds(1), [this] { return keeperStop; })) {
        double ignored;
        (void)moir_energy_meter_read(meter, &ignored);
      }
    });
  // How often the counter changes, and by how much at least: polled every
  // 0.1 ms for a few of its documented update intervals (0.2 s to 1 s).
  double probe = std::min(1.0, std::max(0.2, 3 * info.update_interval_s));
  std::vector<double> gaps, steps;
  double t0 = wallNow(), last = 0, lastChange = -1;
  if (moir_energy_meter_read(meter, &last) != MOIR_OK) {
    stop(moir_last_error());
    return;
  }
  for (double t = t0; t - t0 < probe; t = wallNow()) {
    double j = 0;
    if (moir_energy_meter_read(meter, &j) != MOIR_OK) {
      stop(moir_last_error());
      return;
    }
    if (j != last) {
      if (lastChange >= 0)
        gaps.push_back(t - lastChange);
      steps.push_back(j - last);
      lastChange = t;
      last = j;
    }
    sleepFor(1e-4);
  }
  // The longest gap seen between changes: a reading can be that stale.
  if (gaps.size() >= 5)
    observedInterval = percentile(gaps, 1.0);
  if (!steps.empty())
    observedStep = *std::min_element(steps.begin(), steps.end());
  updateInterval = observedInterval > 0 ? observedInterval : info.update_interval_s;
  minSeconds = options.minSeconds >= 0 ? options.minSeconds : std::max(1.0, 50 * updateInterval);
  // Idle power: five windows, for its mean and spread.
  if (options.idleSeconds > 0) {
    const int windows = 5;
    std::vector<double> powers;
    Sample a = mark();
    Sample first = a;
    for (int i = 0; i < windows && measured; ++i) {
      sleepFor(options.idleSeconds / windows);
      Sample b = mark();
      if (b.wall > a.wall)
        powers.push_back((b.joules - a.joules) / (b.wall - a.wall));
      if (i + 1 == windows && measured) {
        idleSeconds = b.wall - first.wall;
        idlePower = idleSeconds > 0 ? (b.joules - first.joules) / idleSeconds : 0;
      }
      a = b;
    }
    if (!measured)
      return;
    double mean = 0, var = 0;
    for (double p : powers)
      mean += p / static_cast<double>(powers.size());
    for (double p : powers)
      var += (p - mean) * (p - mean) / static_cast<double>(powers.size() - 1);
    // The spread of the windows' mean, and the counter's own error over the
    // whole window (two readings, each within a unit and an update).
    double counter = std::sqrt(2.0 / 3) *
                     (info.resolution_j + std::max(0.0, idlePower) * updateInterval) /
                     std::max(idleSeconds, 1e-9);
    idleSigma = std::sqrt(var / static_cast<double>(powers.size()) + counter * counter);
  }
}

Recorder::~Recorder() {
  if (keeper.joinable()) {
    {
      std::lock_guard<std::mutex> lock(keeperMutex);
      keeperStop = true;
    }
    keeperWake.notify_all();
    keeper.join();
  }
  moir_energy_meter_close(meter);
}

void Recorder::stop(const std::string &why) {
  measured = false;
  notMeasured = "the counter failed during the run: " + why;
}

Recorder::Sample Recorder::mark() {
  Sample s;
  if (measured && moir_energy_meter_read(meter, &s.joules) != MOIR_OK)
    stop(moir_last_error());
  s.wall = wallNow();
  s.cpu = cpuNow();
  return s;
}

std::vector<Work> Recorder::prefillWork(int64_t tokens, int64_t chunk) const {
  std::vector<Work> w(work.components.size());
  int64_t step = chunk > 0 ? chunk : tokens;
  for (int64_t at = 0; at < tokens; at += step)
    for (size_t c = 0; c < w.size(); ++c)
      w[c].add(work.prefill(c, at, std::min(step, tokens - at)));
  return w;
}

std::vector<Work> Recorder::decodeWork(int64_t from, int64_t to) const {
  std::vector<Work> w(work.components.size());
  for (int64_t p = from; p < to; ++p)
    for (size_t c = 0; c < w.size(); ++c)
      w[c].add(work.decode(c, p));
  return w;
}

void Recorder::beginPrefill() { prefillStart = mark(); }

void Recorder::endPrefill(int64_t tokens, int64_t chunk) {
  Sample end = mark();
  Interval i;
  i.joules = i.windowJoules = end.joules - prefillStart.joules;
  i.seconds = i.windowSeconds = end.wall - prefillStart.wall;
  i.cpu = end.cpu - prefillStart.cpu;
  i.tokens = tokens;
  i.work = prefillWork(tokens, chunk);
  if (!replaying) {
    prefill.firstTokens = tokens;
    prefill.firstSeconds = i.seconds;
    prefill.firstCpu = i.cpu;
    prefill.firstWork = i.work;
  }
  prefill.intervals.push_back(i);
  ++prefill.passes;
}

void Recorder::beginDecode(int64_t position, int64_t runs) {
  decodePosition = position;
  decodeRuns = runs;
  decodeDone = blockFirst = 0;
  blocks = static_cast<int>(std::min<int64_t>(std::max(1, options.decodeBlocks), runs));
  block = 0;
  if (!replaying) {
    decode.firstTokens = runs;
    decode.firstWork = decodeWork(position, position + runs);
  }
  blockStart = mark();
}

void Recorder::closeDecodeBlock() {
  Sample end = mark();
  Interval i;
  i.joules = i.windowJoules = end.joules - blockStart.joules;
  i.seconds = i.windowSeconds = end.wall - blockStart.wall;
  i.cpu = end.cpu - blockStart.cpu;
  i.tokens = decodeDone - blockFirst;
  i.block = block++;
  i.work = decodeWork(decodePosition + blockFirst, decodePosition + decodeDone);
  if (!replaying) {
    decode.firstSeconds += i.seconds;
    decode.firstCpu += i.cpu;
  }
  decode.intervals.push_back(i);
  blockFirst = decodeDone;
  blockStart = end;
}

void Recorder::decodeStep() {
  ++decodeDone;
  // Block b ends after runs * (b + 1) / blocks steps.
  if (block < blocks && decodeDone == decodeRuns * (block + 1) / blocks)
    closeDecodeBlock();
}

void Recorder::endDecode() {
  if (decodeDone > blockFirst)
    closeDecodeBlock();
  if (decodeRuns > 0)
    ++decode.passes;
}

moir_status Recorder::replay(moir_session *session, const std::vector<int32_t> &prompt,
                             int64_t chunk, const std::vector<int32_t> &fed) {
  if (!measured)
    return MOIR_OK;
  replaying = true;
  const int64_t tokens = static_cast<int64_t>(prompt.size());
  const int64_t step = chunk > 0 ? chunk : tokens;
  auto runPrompt = [&]() -> moir_status {
    moir_session_reset(session);
    for (int64_t at = 0; at < tokens; at += step)
      if (moir_status s = moir_session_run(session, prompt.data() + at, std::min(step, tokens - at)))
        return s;
    return MOIR_OK;
  };
  auto fail = [&](moir_status s) {
    replaying = false;
    return s;
  };
  // Prefill: one window over n passes (resetting the cache costs nothing),
  // until the phase has run minSeconds.
  const double t = prefill.firstSeconds;
  if (tokens > 0 && t < minSeconds) {
    int64_t n = 0;
    Sample begin = mark();
    for (double start = wallNow(); wallNow() - start < minSeconds - t; ++n)
      if (moir_status s = runPrompt(); s != MOIR_OK)
        return fail(s);
    Sample end = mark();
    Interval i;
    i.joules = i.windowJoules = end.joules - begin.joules;
    i.seconds = i.windowSeconds = end.wall - begin.wall;
    i.cpu = end.cpu - begin.cpu;
    i.tokens = n * tokens;
    i.block = -1;
    i.work = prefillWork(tokens, chunk);
    for (Work &w : i.work)
      w = {w.flops * static_cast<double>(n), w.bytes * static_cast<double>(n)};
    prefill.intervals.push_back(i);
    prefill.passes += static_cast<int>(n);
  }
  // Decode: each replay prefills first (the decode steps need the prompt's
  // cache). Short windows would each be off by up to a counter update, so
  // one window holds all the replays, and the prefills' energy in it (the
  // prefill phase's measured power times their time, clocked exactly) is
  // subtracted.
  const int64_t runs = std::min<int64_t>(decode.firstTokens, static_cast<int64_t>(fed.size()));
  const double first = decode.firstSeconds;
  if (measured && runs > 0 && first < minSeconds && !prefill.intervals.empty()) {
    double prefillJoules = 0, prefillSeconds = 0;
    for (const Interval &i : prefill.intervals) {
      prefillJoules += i.joules;
      prefillSeconds += i.seconds;
    }
    const double prefillPower = prefillSeconds > 0 ? prefillJoules / prefillSeconds : 0;
    // Its standard uncertainty, from the prefill windows' counter error.
    double var = 0;
    for (const Interval &i : prefill.intervals)
      var += readingVariance(i);
    const double prefillPowerSigma = prefillSeconds > 0 ? std::sqrt(var) / prefillSeconds : 0;
    // Until the decode steps have run minSeconds, or (should the prefills
    // dominate) the replays four times that.
    const double budget = wallNow() + 4 * minSeconds;
    double decodeSeconds = 0;
    int64_t done = 0;
    Sample begin = mark();
    for (; first + decodeSeconds < minSeconds && wallNow() < budget; ++done) {
      if (moir_status s = runPrompt(); s != MOIR_OK)
        return fail(s);
      double t0 = wallNow();
      for (int64_t i = 0; i < runs; ++i)
        if (moir_status s = moir_session_run(session, &fed[static_cast<size_t>(i)], 1))
          return fail(s);
      decodeSeconds += wallNow() - t0;
    }
    Sample end = mark();
    Interval i;
    i.windowJoules = end.joules - begin.joules;
    i.windowSeconds = end.wall - begin.wall;
    const double other = std::max(0.0, i.windowSeconds - decodeSeconds);
    i.joules = i.windowJoules - prefillPower * other;
    i.extraVariance = std::pow(prefillPowerSigma * other, 2);
    i.seconds = decodeSeconds;
    i.cpu = NAN; // the window's CPU time includes the prefills
    i.tokens = done * runs;
    i.block = -1;
    i.work = decodeWork(tokens, tokens + runs);
    for (Work &w : i.work)
      w = {w.flops * static_cast<double>(done), w.bytes * static_cast<double>(done)};
    if (done > 0 && measured) {
      decode.intervals.push_back(i);
      decode.passes += static_cast<int>(done);
    }
  }
  replaying = false;
  return MOIR_OK;
}

double Recorder::readingVariance(const Interval &i) const {
  // A counter that updates every t_u (by P * t_u) and counts in units of
  // `res`, read at a random phase: the two readings of a window of length w
  // are off by the same amount when w is a multiple of t_u, by up to
  // a = res + P * t_u otherwise; the difference has variance a^2 x (1 - x),
  // x the fraction of an update w spans beyond whole ones: at most a^2 / 4,
  // and at most a^2 w / t_u for windows shorter than an update.
  // P: the window's own power, or the run's where higher (a short window
  // that saw no update says nothing about the power).
  const double res = measured ? info.resolution_j : 0;
  double joules = 0, seconds = 0;
  for (const Phase *p : {&prefill, &decode})
    for (const Interval &k : p->intervals) {
      joules += k.windowJoules;
      seconds += k.windowSeconds;
    }
  double power = std::max({0.0, idlePower, seconds > 0 ? joules / seconds : 0.0,
                           i.windowSeconds > 0 ? i.windowJoules / i.windowSeconds : 0.0});
  double a = res + power * updateInterval;
  double x = updateInterval > 0 ? std::min(0.25, i.windowSeconds / updateInterval) : 0.25;
  return a * a * x + i.extraVariance;
}

// ---- The report ----

namespace {

struct PhaseResult {
  bool present = false;
  int64_t tokens = 0;
  double seconds = 0, cpu = 0, joules = 0, idle = 0, net = 0, uncertainty = 0;
  std::vector<Work> work; // all intervals
  int intervals = 0;
};

PhaseResult summarize(const Recorder::Phase &p, double idlePower, double idleSigma,
                      const std::function<double(const Recorder::Interval &)> &variance,
                      size_t components) {
  PhaseResult r;
  r.work.assign(components, Work{});
  double counterVar = 0;
  for (const Recorder::Interval &i : p.intervals) {
    r.present = true;
    r.tokens += i.tokens;
    r.seconds += i.seconds;
    r.joules += i.joules;
    for (size_t c = 0; c < components && c < i.work.size(); ++c)
      r.work[c].add(i.work[c]);
    counterVar += variance(i);
  }
  r.intervals = static_cast<int>(p.intervals.size());
  r.cpu = p.firstCpu;
  r.idle = idlePower * r.seconds;
  r.net = r.joules - r.idle;
  double idleTerm = idleSigma * r.seconds;
  // Expanded, k = 2 (about 95%).
  r.uncertainty = 2 * std::sqrt(counterVar + idleTerm * idleTerm);
  return r;
}

Work total(const std::vector<Work> &w) {
  Work t;
  for (const Work &x : w)
    t.add(x);
  return t;
}

std::string readCpuModel() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    for (const char *key : {"model name", "Hardware", "cpu model", "uarch"})
      if (line.compare(0, std::strlen(key), key) == 0 && line.find(':') != std::string::npos) {
        std::string v = line.substr(line.find(':') + 1);
        v.erase(0, v.find_first_not_of(' '));
        return v;
      }
  return "unknown";
}

std::string utcNow() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

/// The manifest's model line and its weights and caches by dtype.
struct ManifestFacts {
  std::string family;
  std::map<std::string, std::pair<int64_t, double>> weights; // dtype -> tensors, bytes
  std::map<std::string, int64_t> caches;                     // dtype -> tensors
  double weightElements = 0;
};

ManifestFacts readManifest(const std::string &manifest) {
  ManifestFacts f;
  std::istringstream in(manifest);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string key;
    words >> key;
    if (key == "model") {
      words >> f.family;
    } else if (key == "arg") {
      std::string index, kind, dtype;
      size_t rank = 0;
      if (!(words >> index >> kind >> dtype >> rank))
        continue;
      double elements = 1;
      for (size_t i = 0; i < rank; ++i) {
        double d = 0;
        words >> d;
        elements *= d;
      }
      if (kind == "weight") {
        double offset = 0, bytes = 0;
        words >> offset >> bytes;
        auto &entry = f.weights[dtype];
        entry.first += 1;
        entry.second += bytes;
        f.weightElements += elements;
      } else if (kind == "cache") {
        f.caches[dtype] += 1;
      }
    }
  }
  return f;
}

int threadsUsed() {
  if (const char *env = std::getenv("MOIR_NUM_THREADS"); env && std::atoi(env) > 0)
    return std::atoi(env);
  unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

} // namespace

struct Recorder::Results {
  std::string target;
  bool gpu = false;
  PhaseResult pre, dec;
  Work preFirst, decFirst;
  Coefficients k;
  Split preSplit, decSplit;
  double tolerance = 0.05;
};

Recorder::Results Recorder::analyze() const {
  Results r;
  const size_t nc = work.components.size();
  {
    std::istringstream in(moir_model_manifest(model));
    for (std::string line; std::getline(in, line);)
      if (line.compare(0, 7, "target ") == 0) {
        r.target = line.substr(7);
        break;
      }
  }
  r.gpu = r.target.compare(0, 7, "nvidia ") == 0 || r.target.compare(0, 4, "amd ") == 0;
  auto variance = [this](const Interval &i) { return readingVariance(i); };
  r.pre = summarize(prefill, idlePower, idleSigma, variance, nc);
  r.dec = summarize(decode, idlePower, idleSigma, variance, nc);
  r.preFirst = total(prefill.firstWork);
  r.decFirst = total(decode.firstWork);
  // Coefficients: given, fitted on this run's intervals, or (nothing
  // measured) the defaults.
  Coefficients prior = defaultCoefficients(r.target);
  Coefficients &k = r.k;
  if (options.coefficientsGiven) {
    k.alpha = options.alpha;
    k.beta = options.beta;
    k.method = "given (--energy-coefficients)";
  } else if (measured) {
    // Data points: the prefill windows together, each decode block of the
    // run, the decode replays together; each weighted by 1 / its variance
    // (the counter's, and the idle power's over its time).
    struct Point {
      double joules = 0, seconds = 0, variance = 0;
      std::vector<Work> work;
    };
    std::map<std::pair<int, int>, Point> points;
    auto add = [&](int phase, const Interval &i) {
      Point &p = points[{phase, phase ? i.block : 0}];
      p.work.resize(nc);
      p.joules += i.joules - idlePower * i.seconds;
      p.seconds += i.seconds;
      p.variance += readingVariance(i);
      for (size_t c = 0; c < nc && c < i.work.size(); ++c)
        p.work[c].add(i.work[c]);
    };
    for (const Interval &i : prefill.intervals)
      add(0, i);
    for (const Interval &i : decode.intervals)
      add(1, i);
    std::vector<double> e, b, f, w;
    for (auto &entry : points) {
      const Point &p = entry.second;
      Work t = total(p.work);
      double var = p.variance + std::pow(idleSigma * p.seconds, 2);
      e.push_back(p.joules);
      b.push_back(t.bytes);
      f.push_back(t.flops);
      // A floor keeps a window with no counter error (a source of 0 W)
      // from taking all the weight.
      w.push_back(1 / std::max(var, 1e-12 + 1e-12 * p.joules * p.joules));
    }
    k = fitCoefficients(e, b, f, prior.alpha, prior.beta, w);
    k.method = "fitted to this run's measurements: " + k.method;
  } else {
    k = prior;
  }
  r.preSplit = attribute(r.pre.work, k, measured ? r.pre.net : NAN,
                         measured ? r.pre.uncertainty : NAN, r.tolerance);
  r.decSplit = attribute(r.dec.work, k, measured ? r.dec.net : NAN,
                         measured ? r.dec.uncertainty : NAN, r.tolerance);
  return r;
}

bool Recorder::write(const std::string &outPath, int64_t generated, std::string *error) {
  // A counter that never moved (frozen, or not updated for this device)
  // measured nothing: say so rather than report 0 J.
  if (measured) {
    double moved = 0;
    for (const Phase *p : {&prefill, &decode})
      for (const Interval &i : p->intervals)
        moved += std::fabs(i.joules) + std::fabs(i.windowJoules);
    if (moved == 0)
      stop("the " + std::string(info.source) +
           " counter did not advance during the run (frozen, or not updated for this device)");
  }
  const Results r = analyze();
  const size_t nc = work.components.size();
  const std::string &artifactTarget = r.target;
  const bool gpu = r.gpu;
  const PhaseResult &pre = r.pre, &dec = r.dec;
  const Work &preFirst = r.preFirst, &decFirst = r.decFirst;
  const Coefficients &k = r.k;
  const Split &preSplit = r.preSplit, &decSplit = r.decSplit;
  const double tolerance = r.tolerance;

  JsonWriter j;
  j.beginObject();
  j.field("schema", "moir-energy-report/1");
  j.field("generated_by", "moir-run --energy-report");
  j.field("date_utc", utcNow());
  j.key("framework");
  j.beginObject();
  j.field("eu_ai_act", "Annex XI, Section 1, point 2(e): known or estimated energy consumption "
                       "of the model (where unknown, it may be based on the computational "
                       "resources used)");
  j.field("groups", "compute, electricity, hardware (as in the Commission's consultation on "
                    "the GPAI energy information)");
  j.field("scope", "inference only: one run of this artifact (a prefill and a decode) on this "
                   "machine; not training energy, and not a statement of compliance");
  j.endObject();

  // Hardware.
  j.key("hardware");
  j.beginObject();
  j.field("cpu_model", readCpuModel());
  j.field("logical_cpus", static_cast<int64_t>(sysconf(_SC_NPROCESSORS_ONLN)));
  j.field("memory_bytes", static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) *
                              static_cast<int64_t>(sysconf(_SC_PAGE_SIZE)));
  j.field("threads_used", threadsUsed());
  j.key("accelerator");
  if (gpu) {
    j.beginObject();
    j.field("target", artifactTarget);
    if (measured && (std::strcmp(info.source, "nvml") == 0 ||
                     std::strcmp(info.source, "amdsmi") == 0))
      j.field("devices", info.detail);
    j.endObject();
  } else {
    j.null();
  }
  j.endObject();

  // Model.
  ManifestFacts facts = readManifest(moir_model_manifest(model));
  j.key("model");
  j.beginObject();
  j.field("path", path);
  j.field("family", facts.family);
  j.field("target", artifactTarget);
  j.field("vocab", moir_model_vocab_size(model));
  j.field("capacity", moir_model_capacity(model));
  j.field("weight_bytes", static_cast<int64_t>(moir_model_weight_bytes(model)));
  j.field("weight_elements_as_stored", facts.weightElements);
  j.key("precision");
  j.beginObject();
  j.key("weights");
  j.beginArray();
  for (auto &[dtype, entry] : facts.weights) {
    j.beginObject();
    j.field("dtype", dtype);
    j.field("tensors", entry.first);
    j.field("bytes", entry.second);
    j.endObject();
  }
  j.endArray();
  j.key("kv_cache");
  j.beginArray();
  for (auto &[dtype, n] : facts.caches)
    j.value(dtype);
  j.endArray();
  j.endObject();
  j.endObject();

  // Compute and bytes, per token of the run itself (not its replays).
  auto perToken = [](double x, int64_t n) { return n > 0 ? x / static_cast<double>(n) : NAN; };
  const std::string workSource =
      work.prompt > 0
          ? "the compiler's cost model (manifest cost lines; prefill counted for " +
                std::to_string(work.prompt) + " tokens, rescaled to this run's positions)"
          : "the manifest's decode line (no cost lines: one component; prefill tokens "
            "counted as decode tokens, weights read at most once per call)";
  j.key("compute");
  j.beginObject();
  j.field("source", workSource);
  j.field("flop", "1 multiply or 1 add, in the contractions (projections, expert FFNs, "
                  "attention)");
  j.field("prefill_tokens", prefill.firstTokens);
  j.field("decode_tokens", decode.firstTokens);
  j.field("flops_per_prefill_token", perToken(preFirst.flops, prefill.firstTokens));
  j.field("flops_per_decode_token", perToken(decFirst.flops, decode.firstTokens));
  j.field("prefill_flops", preFirst.flops);
  j.field("decode_flops", decFirst.flops);
  j.field("total_flops", preFirst.flops + decFirst.flops);
  j.endObject();
  j.key("bytes");
  j.beginObject();
  j.field("source", workSource);
  j.field("counted", "weights and KV cache read by the contractions");
  j.field("bytes_per_prefill_token", perToken(preFirst.bytes, prefill.firstTokens));
  j.field("bytes_per_decode_token", perToken(decFirst.bytes, decode.firstTokens));
  j.field("prefill_bytes", preFirst.bytes);
  j.field("decode_bytes", decFirst.bytes);
  j.field("total_bytes", preFirst.bytes + decFirst.bytes);
  j.endObject();

  // Electricity.
  auto phase = [&](const char *name, const PhaseResult &r, int passes) {
    j.key(name);
    if (!r.present || r.tokens == 0) {
      j.null();
      return;
    }
    j.beginObject();
    j.field("tokens", r.tokens);
    j.field("passes", passes);
    j.field("intervals", r.intervals);
    j.field("seconds", r.seconds);
    j.field("cpu_seconds_of_the_run", r.cpu);
    j.field("counter_j", r.joules);
    j.field("idle_j", r.idle);
    j.field("net_j", r.net);
    j.field("uncertainty_j", r.uncertainty);
    j.field("j_per_token", perToken(r.net, r.tokens));
    j.field("uncertainty_j_per_token", perToken(r.uncertainty, r.tokens));
    j.field("relative_uncertainty", r.net > 0 ? r.uncertainty / r.net : NAN);
    j.endObject();
  };
  j.key("electricity");
  j.beginObject();
  if (measured) {
    j.field("status", "measured");
    j.field("method",
            "the hardware energy counter read before and after each phase (prefill; decode in " +
                std::to_string(std::max(1, options.decodeBlocks)) +
                " blocks of steps), each phase replayed with the same tokens until it ran at "
                "least " + jsonNumber(minSeconds) + " s; idle power measured for " +
                jsonNumber(idleSeconds) + " s before the run and subtracted (" +
                (options.idleSeconds > 0 ? "on" : "off: --energy-idle-seconds 0") + ")");
    j.field("counter_source", info.source);
    j.field("counter_detail", info.detail);
    j.field("counter_resolution_j", info.resolution_j);
    j.field("counter_update_interval_s", updateInterval);
    j.field("counter_update_interval_observed_s", observedInterval > 0 ? observedInterval : NAN);
    j.field("counter_update_interval_documented_s", info.update_interval_s);
    j.field("counter_smallest_step_observed_j", observedStep > 0 ? observedStep : NAN);
    j.field("counter_wrap_j", info.wrap_j > 0 ? info.wrap_j : NAN);
    const std::string source = info.source;
    j.field("covers", source == "nvml" || source == "amdsmi"
                          ? "the GPU board (" + source + "): not the host CPU, memory, power "
                            "supply or cooling"
                          : "the CPU packages and their DRAM (RAPL, read through " +
                                std::string(source == "perf" ? "the perf power PMU"
                                                             : "Linux powercap") +
                                "): not GPUs, disks, network, power supply losses or cooling");
    j.field("idle_subtracted", options.idleSeconds > 0);
    j.field("idle_seconds", idleSeconds);
    j.field("idle_power_w", idlePower);
    j.field("idle_power_std_error_w", idleSigma);
    j.field("prefill_j_per_token", perToken(pre.net, pre.tokens));
    j.field("decode_j_per_token", perToken(dec.net, dec.tokens));
    j.key("uncertainty_j_per_token");
    j.beginObject();
    j.field("prefill", perToken(pre.uncertainty, pre.tokens));
    j.field("decode", perToken(dec.uncertainty, dec.tokens));
    j.field("coverage", "expanded, k = 2 (about 95%): each counter reading within one unit and "
                        "one update interval's energy (uniform), and the idle power's standard "
                        "error times the phase's time");
    j.endObject();
    phase("prefill", pre, prefill.passes);
    phase("decode", dec, decode.passes);
  } else {
    j.field("status", "not measured");
    j.field("reason", notMeasured);
    j.key("counter_source");
    j.null();
    j.field("note", "no hardware energy counter could be read, so nothing here is a "
                    "measurement; see \"estimate\"");
  }
  j.endObject();

  if (!measured) {
    j.key("estimate");
    j.beginObject();
    j.field("label", "estimate");
    j.field("note", "NOT MEASURED: the compiler's bytes and FLOPs per token times assumed "
                    "energy per byte and per FLOP; dynamic energy of the work only (no idle or "
                    "static power); good to an order of magnitude at best");
    j.field("prefill_j_per_token", perToken(k.alpha * preFirst.bytes + k.beta * preFirst.flops,
                                            prefill.firstTokens));
    j.field("decode_j_per_token", perToken(k.alpha * decFirst.bytes + k.beta * decFirst.flops,
                                           decode.firstTokens));
    j.key("coefficients");
    j.beginObject();
    j.field("alpha_j_per_byte", k.alpha);
    j.field("beta_j_per_flop", k.beta);
    j.field("source", k.method);
    j.endObject();
    j.endObject();
  }

  // Attribution.
  j.key("attribution");
  j.beginObject();
  j.field("basis", measured ? "measured" : "estimate");
  j.field("model", "joules of a component = alpha * its bytes + beta * its FLOPs, summed over "
                   "the phase's tokens (the compiler's counts per component)");
  j.key("coefficients");
  j.beginObject();
  j.field("alpha_j_per_byte", k.alpha);
  j.field("beta_j_per_flop", k.beta);
  j.field("source", k.method);
  j.endObject();
  j.field("experts", "a layer's routed experts share its experts component evenly: the "
                     "compiler's model has no per-expert routing counts");
  auto phaseSplit = [&](const char *name, const PhaseResult &r, const Split &s) {
    j.key(name);
    if (!r.present || r.tokens == 0) {
      j.null();
      return;
    }
    j.beginObject();
    j.field("tokens", r.tokens);
    j.field("measured_j", measured ? s.measured : NAN);
    j.field("attributed_j", s.attributed);
    j.key("components");
    j.beginArray();
    for (size_t c = 0; c < nc; ++c) {
      const Component &comp = work.components[c];
      j.beginObject();
      j.field("name", comp.name);
      j.field("bytes", r.work[c].bytes);
      j.field("flops", r.work[c].flops);
      j.field("j", s.joules[c]);
      j.field("j_per_token", perToken(s.joules[c], r.tokens));
      j.field("share", s.attributed > 0 ? s.joules[c] / s.attributed : NAN);
      if (comp.experts > 0) {
        j.field("experts", comp.experts);
        j.field("j_per_expert", s.joules[c] / static_cast<double>(comp.experts));
      }
      j.endObject();
    }
    j.endArray();
    // Per layer.
    std::map<int64_t, double> layers;
    for (size_t c = 0; c < nc; ++c)
      layers[work.components[c].layer] += s.joules[c];
    j.key("layers");
    j.beginArray();
    for (auto &[layer, joules] : layers) {
      j.beginObject();
      if (layer < 0)
        j.field("layer", work.prompt > 0 ? "head" : "model");
      else
        j.field("layer", layer);
      j.field("j", joules);
      j.field("j_per_token", perToken(joules, r.tokens));
      j.endObject();
    }
    j.endArray();
    j.key("closure");
    j.beginObject();
    j.field("relative_error", s.closure);
    j.field("tolerance", tolerance);
    if (measured) {
      j.field("meaningful", s.meaningful);
      j.field("ok", s.ok);
      if (!s.meaningful)
        j.field("note", "the measured energy is within its uncertainty of zero: no closure to "
                        "check");
    } else {
      j.key("ok");
      j.null();
      j.field("note", "nothing measured: the split is of the estimate itself");
    }
    j.endObject();
    j.endObject();
  };
  j.key("phases");
  j.beginObject();
  phaseSplit("prefill", pre, preSplit);
  phaseSplit("decode", dec, decSplit);
  j.endObject();
  // Every phase with a meaningful measurement must close within 5%.
  j.field("closure_basis",
          options.coefficientsGiven
              ? "the given coefficients against the measured phases"
              : measured ? "in-sample: the coefficients were fitted on these same phases, so "
                           "closure shows that a non-negative fit explains them, not that the "
                           "model predicts new runs"
                         : "none: nothing was measured");
  j.key("closure_ok");
  if (measured) {
    bool any = false, all = true;
    for (const auto *x : {&preSplit, &decSplit})
      if (x->meaningful) {
        any = true;
        all = all && x->ok;
      }
    j.value(any && all);
  } else {
    j.null();
  }
  j.endObject();

  // The run.
  j.key("run");
  j.beginObject();
  j.field("prompt_tokens", prefill.firstTokens);
  j.field("generated_tokens", generated);
  j.field("decode_steps", decode.firstTokens);
  j.field("prefill_seconds", prefill.firstSeconds);
  j.field("decode_seconds", decode.firstSeconds);
  j.field("replays_for_measurement", measured);
  j.field("min_phase_seconds", measured ? minSeconds : NAN);
  j.endObject();
  j.endObject();

  std::ofstream out(outPath, std::ios::binary | std::ios::trunc);
  if (!out) {
    *error = outPath + ": cannot write: " + std::strerror(errno);
    return false;
  }
  out << j.text();
  out.close();
  if (!out) {
    *error = outPath + ": write failed";
    return false;
  }
  return true;
}

std::string Recorder::summary() const {
  auto perToken = [](double x, int64_t n) { return n > 0 ? x / static_cast<double>(n) : NAN; };
  const Results r = analyze();
  char buffer[512];
  if (!measured) {
    auto estimate = [&](const char *name, const Work &w, int64_t tokens) {
      if (tokens == 0)
        return std::string(name) + ": none";
      std::snprintf(buffer, sizeof buffer, "%s %.3g J/token", name,
                    perToken(r.k.alpha * w.bytes + r.k.beta * w.flops, tokens));
      return std::string(buffer);
    };
    std::string text = "; estimate (not measured): " +
                       estimate("prefill", r.preFirst, prefill.firstTokens) + ", " +
                       estimate("decode", r.decFirst, decode.firstTokens);
    std::snprintf(buffer, sizeof buffer, "%s", text.c_str());
    return "energy not measured (" + notMeasured + ")" + buffer;
  }
  auto phase = [&](const char *name, const PhaseResult &p) {
    if (!p.present || p.tokens == 0)
      return std::string(name) + ": none";
    char text[96];
    std::snprintf(text, sizeof text, "%s %.4g +- %.2g J/token", name, perToken(p.net, p.tokens),
                  perToken(p.uncertainty, p.tokens));
    return std::string(text);
  };
  std::snprintf(buffer, sizeof buffer, "energy measured (%s, %s): %s, %s", info.source,
                options.idleSeconds > 0
                    ? ("idle " + jsonNumber(std::round(idlePower * 1000) / 1000) +
                       " W subtracted").c_str()
                    : "idle not subtracted",
                phase("prefill", r.pre).c_str(), phase("decode", r.dec).c_str());
  return buffer;
}

std::vector<std::string> Recorder::warnings() const {
  auto g = [](double v) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.3g", v);
    return std::string(buffer);
  };
  std::vector<std::string> w;
  if (!measured)
    return w;
  const Results r = analyze();
  for (auto [name, p, s] : {std::tuple<const char *, const PhaseResult *, const Split *>{
                                "prefill", &r.pre, &r.preSplit},
                            {"decode", &r.dec, &r.decSplit}}) {
    if (!p->present || p->tokens == 0)
      continue;
    if (!(p->net > 0 && p->uncertainty <= 0.1 * p->net))
      w.push_back(std::string(name) + " energy uncertain: " + g(p->net) + " +- " +
                  g(p->uncertainty) +
                  " J (more than 10%; a longer run, --energy-min-seconds or a quieter machine "
                  "helps)");
    if (s->meaningful && !s->ok)
      w.push_back(std::string(name) + ": the attribution adds up to " + g(s->attributed) +
                  " J of the " + g(s->measured) + " J measured (off by " + g(100 * s->closure) +
                  "%, more than 5%): the bytes-and-FLOPs model does not explain this "
                  "measurement (closure_ok: false)");
  }
  return w;
}

} // namespace moir::energy
