// The energy report's pieces (docs/energy.md): the RAPL powercap reader
// driven by fake powercap trees (zones summed and left out, wraparound,
// missing and unreadable counters), the other sources failing cleanly where
// they are absent, the manifest's cost lines, the compiler's work model, the least-squares fit and the
// attribution with its 5% closure, and the JSON writer's escaping.
//
// Every numeric check fails on NaN and infinities.
#include "energy_report.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

using namespace moir::energy;

namespace {

int failures = 0;

bool expect(bool ok, const std::string &what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
  return ok;
}

/// |got - want| <= tolerance * max(|want|, tiny), false for non-finite.
void expectNear(double got, double want, double tolerance, const std::string &what) {
  bool ok = std::isfinite(got) && std::isfinite(want) &&
            std::fabs(got - want) <= tolerance * std::max(std::fabs(want), 1e-300);
  if (!ok) {
    char buffer[128];
    std::snprintf(buffer, sizeof buffer, " (got %.17g, want %.17g)", got, want);
    expect(false, what + buffer);
  }
}

bool contains(const std::string &text, const std::string &part) {
  return text.find(part) != std::string::npos;
}

// ---- A fake powercap tree ----

struct TempDir {
  std::string path;
  TempDir() {
    char name[] = "/tmp/moir-energy-test-XXXXXX";
    if (!mkdtemp(name)) {
      std::perror("mkdtemp");
      std::exit(1);
    }
    path = name;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

void writeFile(const std::string &path, const std::string &text) {
  std::ofstream out(path, std::ios::trunc);
  out << text << "\n";
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::exit(1);
  }
}

void zone(const std::string &dir, const std::string &name, uint64_t energy, uint64_t range) {
  mkdir(dir.c_str(), 0755);
  writeFile(dir + "/name", name);
  writeFile(dir + "/energy_uj", std::to_string(energy));
  writeFile(dir + "/max_energy_range_uj", std::to_string(range));
}

struct Meter {
  moir_energy_meter *m = nullptr;
  moir_status status;
  moir_energy_info info{};
  Meter(const char *source, const std::string &root) {
    setenv("MOIR_POWERCAP_ROOT", root.c_str(), 1);
    status = moir_energy_meter_open(source, nullptr, &m);
    if (m)
      moir_energy_meter_describe(m, &info);
  }
  ~Meter() { moir_energy_meter_close(m); }
  double read(moir_status *s = nullptr) {
    double j = NAN;
    moir_status r = moir_energy_meter_read(m, &j);
    if (s)
      *s = r;
    return r == MOIR_OK ? j : NAN;
  }
};

void testRapl() {
  TempDir t;
  const std::string r = t.path;
  const uint64_t big = 262143328850;
  // As /sys/class/powercap lists them: packages and subzones side by side.
  zone(r + "/intel-rapl:0", "package-0", 1000000, big);
  zone(r + "/intel-rapl:0:0", "core", 7000000, big);  // inside package-0
  zone(r + "/intel-rapl:0:1", "dram", 500, 65712999613); // its own domain
  // package-1 wraps at 1 J; its subzones only inside its directory (as in
  // /sys/devices).
  zone(r + "/intel-rapl:1", "package-1", 999000, 1000000);
  zone(r + "/intel-rapl:1/intel-rapl:1:0", "core", 10, big);
  zone(r + "/intel-rapl:1/intel-rapl:1:1", "dram", 20, big);
  zone(r + "/intel-rapl:2", "psys", 3000000, big);      // the platform: holds the packages
  zone(r + "/intel-rapl-mmio:0", "package-0", 4, big);  // the same package over MMIO
  mkdir((r + "/intel-rapl").c_str(), 0755);             // the control type

  {
    Meter m("rapl", r);
    expect(m.status == MOIR_OK && m.m, "rapl opens on the fake tree");
    expect(m.info.available == 1, std::string("rapl available: ") + m.info.reason);
    expect(std::strcmp(m.info.source, "rapl") == 0, "source name rapl");
    std::string d = m.info.detail;
    expect(contains(d, "package-0 (intel-rapl:0)") && contains(d, "package-1 (intel-rapl:1)") &&
               contains(d, "dram (intel-rapl:0:1)") && contains(d, "dram (intel-rapl:1:1)"),
           "summed zones named: " + d);
    std::string summed = d.substr(0, d.find(';'));
    expect(!contains(summed, "core") && !contains(summed, "psys") && !contains(summed, "mmio"),
           "core subzones, psys and MMIO zones not summed: " + d);
    expect(contains(d, "core (intel-rapl:0:0)") && contains(d, "psys (intel-rapl:2)"),
           "the zones left out are named: " + d);
    expectNear(m.info.wrap_j, 1.0, 1e-12, "wrap range: the smallest zone's");
    expect(m.info.resolution_j > 0 && m.info.resolution_j < 1e-3 &&
               m.info.update_interval_s > 0,
           "resolution and update interval");
    expectNear(m.read() + 1.0, 1.0, 1e-15, "first read: 0 J since opening");

    // Advance: package-0 by 2 J, dram-0 by 0.3 J, package-1 across its
    // wrap by 5 mJ (999000 -> 1000000 -> 4000), dram-1 by 700 uJ; the
    // zones left out by a lot.
    writeFile(r + "/intel-rapl:0/energy_uj", "3000000");
    writeFile(r + "/intel-rapl:0:0/energy_uj", "9000000");
    writeFile(r + "/intel-rapl:0:1/energy_uj", "300500");
    writeFile(r + "/intel-rapl:1/energy_uj", "4000");
    writeFile(r + "/intel-rapl:1/intel-rapl:1:0/energy_uj", "5000000");
    writeFile(r + "/intel-rapl:1/intel-rapl:1:1/energy_uj", "720");
    writeFile(r + "/intel-rapl:2/energy_uj", "90000000");
    writeFile(r + "/intel-rapl-mmio:0/energy_uj", "90000000");
    const double want = (2000000 + 300000 + 5000 + 700) * 1e-6;
    expectNear(m.read(), want, 1e-12, "delta: packages and DRAM, the wrap undone");
    expectNear(m.read(), want, 1e-12, "no change, same total");
    // A second wrap of package-1 (4000 -> 1000000 -> 2000: 998000 uJ).
    writeFile(r + "/intel-rapl:1/energy_uj", "2000");
    expectNear(m.read(), want + 0.998, 1e-12, "second wrap");
    // A value beyond the range is an error, and changes nothing.
    writeFile(r + "/intel-rapl:1/energy_uj", "1000001");
    moir_status s;
    m.read(&s);
    expect(s == MOIR_ERROR_IO, "energy_uj beyond max_energy_range_uj: MOIR_ERROR_IO");
    expect(contains(moir_last_error(), "exceeds"), "the error says why");
    writeFile(r + "/intel-rapl:1/energy_uj", "2000");
    expectNear(m.read(), want + 0.998, 1e-12, "unchanged after the failed read");
  }
  {
    // auto without a model: the CPU's counters, rapl first.
    Meter m(nullptr, r);
    expect(m.status == MOIR_OK && m.info.available && std::strcmp(m.info.source, "rapl") == 0,
           "auto picks rapl on a CPU");
  }
  // A package zone without energy_uj: no counter, and the report says why.
  std::remove((r + "/intel-rapl:1/energy_uj").c_str());
  {
    Meter m("rapl", r);
    expect(m.status == MOIR_OK && !m.info.available, "a missing energy_uj: not available");
    expect(contains(m.info.reason, "intel-rapl:1/energy_uj"),
           std::string("the reason names the file: ") + m.info.reason);
    expect(std::strcmp(m.info.source, "none") == 0, "an unavailable meter's source is none");
    moir_status s;
    m.read(&s);
    expect(s == MOIR_ERROR_UNSUPPORTED, "reading an unavailable meter: MOIR_ERROR_UNSUPPORTED");
  }
  writeFile(r + "/intel-rapl:1/energy_uj", "2000");
  // Unreadable (root reads anything, so only checked for other users).
  if (geteuid() != 0) {
    chmod((r + "/intel-rapl:0/energy_uj").c_str(), 0);
    Meter m("rapl", r);
    expect(!m.info.available && contains(m.info.reason, "Permission denied") &&
               contains(m.info.reason, "root"),
           std::string("unreadable energy_uj: ") + m.info.reason);
    chmod((r + "/intel-rapl:0/energy_uj").c_str(), 0644);
  }
  {
    // Only psys and subzones: no package to sum.
    TempDir u;
    zone(u.path + "/intel-rapl:0", "psys", 1, big);
    zone(u.path + "/intel-rapl:0:0", "dram", 1, big);
    Meter m("rapl", u.path);
    expect(!m.info.available && contains(m.info.reason, "no intel-rapl package zones"),
           std::string("no package zone: ") + m.info.reason);
  }
  {
    TempDir u;
    Meter m("rapl", u.path);
    expect(m.status == MOIR_OK && !m.info.available &&
               contains(m.info.reason, "no intel-rapl package zones"),
           std::string("an empty powercap directory: ") + m.info.reason);
    Meter a(nullptr, u.path);
    expect(a.status == MOIR_OK && !a.info.available && contains(a.info.reason, "rapl:") &&
               contains(a.info.reason, "perf:"),
           std::string("auto names every source it tried: ") + a.info.reason);
    Meter missing("rapl", u.path + "/absent");
    expect(!missing.info.available && contains(missing.info.reason, "absent"),
           "a missing powercap root");
  }
}

void testOtherSources() {
  moir_energy_meter *m = nullptr;
  expect(moir_energy_meter_open("frobnicate", nullptr, &m) == MOIR_ERROR_INVALID_ARGUMENT &&
             !m,
         "an unknown source name is refused");
  expect(moir_energy_meter_open("rapl", nullptr, nullptr) == MOIR_ERROR_INVALID_ARGUMENT,
         "a null out pointer is refused");
  // NVML, AMD SMI and perf open everywhere; where their library or PMU is
  // absent (this test's usual machine) they say why, and reads fail cleanly.
  for (const char *name : {"nvml", "amdsmi", "perf", "none"}) {
    Meter meter(name, "/nonexistent");
    expect(meter.status == MOIR_OK && meter.m, std::string(name) + " opens");
    if (!meter.m)
      continue;
    moir_status s;
    double j = meter.read(&s);
    if (meter.info.available) {
      expect(s == MOIR_OK && std::isfinite(j) && j >= 0,
             std::string(name) + " available: reads a finite count");
      expect(meter.info.resolution_j > 0, std::string(name) + ": a resolution");
    } else {
      expect(s == MOIR_ERROR_UNSUPPORTED, std::string(name) + " unavailable: read refused");
      expect(std::strlen(meter.info.reason) > 0 && std::strcmp(meter.info.source, "none") == 0,
             std::string(name) + " unavailable: a reason");
    }
  }
}

// ---- The work model ----

void testWorkModel() {
  WorkModel m;
  m.prompt = 512;
  m.weightBytes = 1e9;
  Component attention;
  attention.name = "layer.0.attention";
  attention.decodeFlopsPerRow = 4096; // 2 * heads * (dk + dv)
  attention.decodeBytesPerRow = 1024; // a cache row
  attention.prefillFlops = 4096 * 256.5;
  attention.prefillBytes = 1024 * 256.5;
  Component projections;
  projections.name = "layer.0.projections";
  projections.decodeFlops = 2e6;
  projections.decodeBytes = 2e6; // the weights, bf16
  projections.prefillFlops = 2e6;
  projections.prefillBytes = 2e6 / 512; // read once per 512-token call
  Component experts;
  experts.name = "layer.0.experts";
  experts.experts = 8;
  experts.decodeFlops = 1e6;
  experts.decodeBytes = 1e6;                // 2 of 8 experts
  experts.prefillFlops = 1e6;
  experts.prefillBytes = 4e6 / 512;         // all 8 once per call
  m.components = {attention, projections, experts};

  // The compiler's own prompt: exactly its counts.
  Work a = m.prefill(0, 0, 512), p = m.prefill(1, 0, 512), e = m.prefill(2, 0, 512);
  expectNear(a.flops, 512 * attention.prefillFlops, 1e-12, "attention prefill FLOPs at 512");
  expectNear(a.bytes, 512 * attention.prefillBytes, 1e-12, "attention prefill bytes at 512");
  expectNear(p.bytes, 2e6, 1e-12, "projections: weights read once per call");
  expectNear(e.bytes, 4e6, 1e-12, "experts: all read once in a long call");
  // A 3-token call at positions 10..12: attention over 11 + 12 + 13 rows,
  // the weights once, the experts at most 3 tokens' worth.
  Work a3 = m.prefill(0, 10, 3), p3 = m.prefill(1, 10, 3), e3 = m.prefill(2, 10, 3);
  expectNear(a3.flops, 4096.0 * 36, 1e-12, "attention FLOPs follow the positions");
  expectNear(a3.bytes, 1024.0 * 36, 1e-12, "attention bytes follow the positions");
  expectNear(p3.bytes, 2e6, 1e-12, "a short call still reads the weights once");
  expectNear(p3.flops, 6e6, 1e-12, "projection FLOPs per token");
  expectNear(e3.bytes, 3e6, 1e-12, "a short call reads only the experts its tokens pick");
  // Decode at position 9: 10 rows.
  Work d = m.decode(0, 9);
  expectNear(d.flops, 40960, 1e-12, "decode attention FLOPs");
  expectNear(d.bytes, 10240, 1e-12, "decode attention bytes");
  // Without cost lines: the decode line per token, the weights at most once.
  WorkModel old;
  old.weightBytes = 5e6;
  Component whole;
  whole.name = "model";
  whole.decodeFlops = whole.prefillFlops = 1e6;
  whole.decodeBytes = whole.prefillBytes = 2e6;
  old.components = {whole};
  expectNear(old.prefill(0, 0, 2).bytes, 4e6, 1e-12, "fallback: 2 tokens' bytes");
  expectNear(old.prefill(0, 0, 8).bytes, 5e6, 1e-12, "fallback: capped by the weights");
  expectNear(old.prefill(0, 0, 8).flops, 8e6, 1e-12, "fallback: FLOPs per token");
  // A session that asks for the last token's logits only: the head works
  // for one token per prefill call, the layers for all of them.
  Component head;
  head.name = "head.projections";
  head.decodeFlops = head.prefillFlops = 3e6;
  head.decodeBytes = 3e6;
  head.prefillBytes = 3e6 / 512;
  m.components = {projections, head};
  expectNear(m.prefill(1, 0, 512).flops, 512 * 3e6, 1e-12, "head: every token's logits");
  m.headLastRow = true;
  expectNear(m.prefill(1, 0, 512).flops, 3e6, 1e-12, "head: the last token's logits only");
  expectNear(m.prefill(1, 0, 512).bytes, 3e6, 1e-12, "head: its weights read once");
  expectNear(m.prefill(0, 0, 512).flops, 512 * 2e6, 1e-12, "the layers: every token");
}

// ---- Cost lines in the manifest ----

uint64_t fnv1a64(const unsigned char *data, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= data[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

/// A small artifact with `extra` manifest lines (opened for inspection: its
/// code is never loaded).
void writeArtifact(const std::string &path, const std::string &extra) {
  static const unsigned char code[16] = "not an ELF file";
  char sums[96];
  std::snprintf(sums, sizeof sums, "checksum code %016llx weights %016llx\n",
                (unsigned long long)fnv1a64(code, sizeof code),
                (unsigned long long)fnv1a64(nullptr, 0));
  std::string manifest = "moir-artifact 1\ntarget cpu x86_64-pc-linux-gnu generic\n"
                         "model Test vocab 4 layers 1 capacity 8\n"
                         "entry moir_forward\narg 0 tokens i32 1 -1\narg 1 positions i64 1 -1\n"
                         "arg 2 offset index 0\narg 3 logits f32 2 -1 4\n"
                         "decode weight_bytes 1000 flops 2000\n" +
                         extra + sums;
  uint64_t header[8] = {0};
  std::memcpy(header, "MOIRART\0", 8);
  uint32_t versionAndSize[2] = {1, 64};
  std::memcpy(&header[1], versionAndSize, sizeof versionAndSize);
  uint64_t codeOffset = 64 + manifest.size();
  header[2] = 64;
  header[3] = manifest.size();
  header[4] = codeOffset;
  header[5] = sizeof code;
  header[6] = (codeOffset + sizeof code + 63) / 64 * 64;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char *>(header), sizeof header);
  out << manifest;
  out.write(reinterpret_cast<const char *>(code), sizeof code);
  for (uint64_t at = codeOffset + sizeof code; at < header[6]; ++at)
    out.put(0);
}

void testCostLines() {
  TempDir t;
  const std::string path = t.path + "/cost.moir";
  // With cost lines.
  writeArtifact(path, "cost_model prefill_prompt 512\n"
                      "cost layer.0.attention decode_flops 0 400 decode_bytes 0 160 "
                      "prefill_flops 104787.5 prefill_bytes 41040\n"
                      "cost layer.0.experts decode_flops 204000 0 decode_bytes 408000 0 "
                      "prefill_flops 204000 prefill_bytes 1593.75 experts 4\n"
                      "cost head.projections decode_flops 6.02e4 0 decode_bytes 120400 0 "
                      "prefill_flops 60200 prefill_bytes 235.15625\n");
  moir_model *m = nullptr;
  if (!expect(moir_model_open_for_inspection(path.c_str(), &m) == MOIR_OK,
              std::string("an artifact with cost lines opens: ") + moir_last_error()))
    return;
  expect(moir_model_cost_count(m) == 3 && moir_model_cost_prompt(m) == 512, "3 components, 512");
  moir_cost c;
  expect(moir_model_cost(m, 1, &c) == MOIR_OK && std::strcmp(c.name, "layer.0.experts") == 0 &&
             c.decode_flops == 204000 && c.decode_bytes == 408000 && c.prefill_bytes == 1593.75 &&
             c.experts == 4,
         "the experts line");
  expect(moir_model_cost(m, 0, &c) == MOIR_OK && c.decode_flops_per_row == 400 &&
             c.decode_bytes_per_row == 160 && c.prefill_flops == 104787.5 && c.experts == 0,
         "the attention line");
  expect(moir_model_cost(m, 2, &c) == MOIR_OK && c.decode_flops == 60200, "1e4 notation");
  expect(moir_model_cost(m, 3, &c) == MOIR_ERROR_OUT_OF_RANGE &&
             moir_model_cost(m, -1, &c) == MOIR_ERROR_OUT_OF_RANGE,
         "components out of range");
  WorkModel w = WorkModel::fromModel(m);
  expect(w.components.size() == 3 && w.components[1].layer == 0 &&
             w.components[1].kind == "experts" && w.components[2].layer == -1 &&
             w.components[2].kind == "projections",
         "the work model's layers and kinds");
  moir_model_close(m);
  // Without: one component from the decode line.
  writeArtifact(path, "");
  expect(moir_model_open_for_inspection(path.c_str(), &m) == MOIR_OK, "an older artifact opens");
  expect(moir_model_cost_count(m) == 1 && moir_model_cost_prompt(m) == 0, "one component, 0");
  expect(moir_model_cost(m, 0, &c) == MOIR_OK && std::strcmp(c.name, "model") == 0 &&
             c.decode_flops == 2000 && c.decode_bytes == 1000 && c.prefill_flops == 2000 &&
             c.prefill_bytes == 1000 && c.decode_flops_per_row == 0,
         "the fallback component from the decode line");
  moir_model_close(m);
  // Malformed cost lines are refused, naming the line.
  const char *bad[] = {
      "cost_model prefill_prompt 0\n",
      "cost_model prompt 512\n",
      "cost_model prefill_prompt 512\ncost x decode_flops 1 2 decode_bytes 3 4 prefill_flops 5\n",
      "cost_model prefill_prompt 512\ncost x decode_flops 1 2 decode_bytes 3 4 prefill_flops 5 "
      "prefill_bytes -6\n",
      "cost_model prefill_prompt 512\ncost x decode_flops nan 2 decode_bytes 3 4 prefill_flops 5 "
      "prefill_bytes 6\n",
      "cost_model prefill_prompt 512\ncost x decode_flops 1 2 decode_bytes 3 4 prefill_flops 5 "
      "prefill_bytes 6 experts 0\n",
      "cost_model prefill_prompt 512\ncost x decode_flops 1 2 decode_bytes 3 4 prefill_flops 5 "
      "prefill_bytes 6 experts 2 extra\n",
      "cost x decode_flops 1 2 decode_bytes 3 4 prefill_flops 5 prefill_bytes 6\n",
  };
  for (const char *lines : bad) {
    writeArtifact(path, lines);
    m = nullptr;
    moir_status s = moir_model_open_for_inspection(path.c_str(), &m);
    expect(s == MOIR_ERROR_FORMAT && !m && contains(moir_last_error(), "cost"),
           std::string("refused: ") + lines + " -> " + moir_last_error());
    moir_model_close(m);
  }
}

// ---- Fitting and attribution ----

/// Deterministic noise in [-1, 1].
double noise(uint64_t &state) {
  state = state * 6364136223846793005ull + 1442695040888963407ull;
  return static_cast<double>(state >> 11) / static_cast<double>(1ull << 53) * 2 - 1;
}

void testFit() {
  const double alpha = 1.2e-10, beta = 3.5e-11; // J/byte, J/FLOP
  const double alpha0 = 160e-12, beta0 = 20e-12;
  // One prefill interval (FLOP-heavy) and four decode blocks (byte-heavy,
  // growing with the context), as moir-run measures them.
  std::vector<std::vector<Work>> phases = {
      {{8e9, 5e7}, {2e9, 3e7}, {1e9, 1e6}},           // prefill, 3 components
      {{2e8, 2.0e8}, {5e7, 1.0e8}, {2e7, 1e7}},       // decode block 0
      {{2e8, 2.1e8}, {5e7, 1.0e8}, {2e7, 1e7}},       // ...
      {{2e8, 2.2e8}, {5e7, 1.0e8}, {2e7, 1e7}},
      {{2e8, 2.3e8}, {5e7, 1.0e8}, {2e7, 1e7}},
  };
  auto totalOf = [](const std::vector<Work> &w) {
    Work t;
    for (const Work &x : w)
      t.add(x);
    return t;
  };
  std::vector<double> e, b, f;
  for (const auto &p : phases) {
    Work t = totalOf(p);
    b.push_back(t.bytes);
    f.push_back(t.flops);
    e.push_back(alpha * t.bytes + beta * t.flops);
  }
  // Exact data: the coefficients come back.
  Coefficients k = fitCoefficients(e, b, f, alpha0, beta0);
  expectNear(k.alpha, alpha, 1e-9, "exact data: alpha recovered");
  expectNear(k.beta, beta, 1e-9, "exact data: beta recovered");
  expect(contains(k.method, "least squares on 5 intervals"), "method: " + k.method);
  // The split of each phase adds up to what it measured.
  for (size_t i = 0; i < phases.size(); ++i) {
    Split s = attribute(phases[i], k, e[i], 1e-6 * e[i], 0.05);
    double sum = 0;
    for (double j : s.joules)
      sum += j;
    expectNear(sum, s.attributed, 1e-12, "components add up to the attributed total");
    expectNear(s.attributed, e[i], 1e-9, "exact data: attributed = measured");
    expect(s.meaningful && s.ok && s.closure <= 1e-9, "exact data: closure ~ 0");
    expectNear(s.joules[0], alpha * phases[i][0].bytes + beta * phases[i][0].flops, 1e-12,
               "a component's joules: alpha * bytes + beta * FLOPs");
  }
  // 2% noise on every interval: the phases still close within 5%, and the
  // closure is computed per phase (the decode blocks summed).
  uint64_t state = 42;
  std::vector<double> noisy = e;
  for (double &x : noisy)
    x *= 1 + 0.02 * noise(state);
  Coefficients kn = fitCoefficients(noisy, b, f, alpha0, beta0);
  expect(kn.alpha > 0 && kn.beta > 0 && std::isfinite(kn.alpha) && std::isfinite(kn.beta),
         "noisy data: positive, finite coefficients");
  Split pre = attribute(phases[0], kn, noisy[0], 0.001 * noisy[0], 0.05);
  std::vector<Work> decodeWork(3);
  double decodeMeasured = 0;
  for (size_t i = 1; i < phases.size(); ++i) {
    for (size_t c = 0; c < 3; ++c)
      decodeWork[c].add(phases[i][c]);
    decodeMeasured += noisy[i];
  }
  Split dec = attribute(decodeWork, kn, decodeMeasured, 0.001 * decodeMeasured, 0.05);
  expect(pre.ok && pre.closure <= 0.05, "noisy data: prefill closes within 5%");
  expect(dec.ok && dec.closure <= 0.05, "noisy data: decode closes within 5%");
  // Coefficients 20% off: the closure check catches it.
  Coefficients off = k;
  off.alpha *= 1.2;
  off.beta *= 1.2;
  Split bad = attribute(phases[0], off, e[0], 0.001 * e[0], 0.05);
  expect(bad.meaningful && !bad.ok && bad.closure > 0.15, "20% off: closure fails");
  // A measurement within its uncertainty of 0: no closure to speak of.
  Split zero = attribute(phases[0], k, 0.5, 1.0, 0.05);
  expect(!zero.meaningful && !zero.ok && std::isnan(zero.closure),
         "measured within its uncertainty of 0: not meaningful");
  // Not measured at all (NaN): no closure, no crash.
  Split none = attribute(phases[0], k, NAN, NAN, 0.05);
  expect(!none.meaningful && !none.ok && std::isfinite(none.attributed),
         "nothing measured: the estimate's split only");

  // The unconstrained optimum wants a negative J/FLOP: clamped to 0.
  // (More FLOPs at the same bytes cost less energy here.)
  std::vector<double> eNeg = {0.1, 0.05, 0.3}, bNeg = {1e9, 1e9, 2e9}, fNeg = {1e10, 2e10, 1e10};
  Coefficients kNeg = fitCoefficients(eNeg, bNeg, fNeg, alpha0, beta0);
  expect(kNeg.alpha >= 0 && kNeg.beta == 0 && contains(kNeg.method, "J/FLOP clamped to 0"),
         "negative J/FLOP clamped: " + kNeg.method);
  // Bytes and FLOPs proportional: only the scale of the prior is fitted.
  std::vector<double> eDeg = {3, 6, 9}, bDeg = {1e9, 2e9, 3e9}, fDeg = {2e9, 4e9, 6e9};
  Coefficients kDeg = fitCoefficients(eDeg, bDeg, fDeg, alpha0, beta0);
  expectNear(kDeg.alpha / kDeg.beta, alpha0 / beta0, 1e-9, "degenerate: the prior's ratio");
  expectNear(kDeg.alpha * 1e9 + kDeg.beta * 2e9, 3, 1e-9, "degenerate: the scale fits");
  expect(contains(kDeg.method, "proportional"), "degenerate: said so: " + kDeg.method);
  // A NaN interval is skipped, not propagated.
  std::vector<double> eNaN = e, bNaN = b, fNaN = f;
  eNaN.push_back(NAN);
  bNaN.push_back(1e9);
  fNaN.push_back(1e9);
  Coefficients kNaN = fitCoefficients(eNaN, bNaN, fNaN, alpha0, beta0);
  expectNear(kNaN.alpha, alpha, 1e-9, "NaN interval skipped: alpha");
  expectNear(kNaN.beta, beta, 1e-9, "NaN interval skipped: beta");
  // Weighted: a wild interval of tiny weight (a short, noisy window) barely
  // moves the fit; unweighted, it would.
  std::vector<double> eW = e, bW = b, fW = f, w(e.size(), 1.0);
  eW.push_back(100 * (alpha * 1e9 + beta * 1e9));
  bW.push_back(1e9);
  fW.push_back(1e9);
  w.push_back(1e-12);
  Coefficients kW = fitCoefficients(eW, bW, fW, alpha0, beta0, w);
  expectNear(kW.alpha, alpha, 1e-6, "weighted: alpha despite the outlier");
  expectNear(kW.beta, beta, 1e-6, "weighted: beta despite the outlier");
  expect(contains(kW.method, "weighted"), "weighted: said so: " + kW.method);
  Coefficients kU = fitCoefficients(eW, bW, fW, alpha0, beta0);
  expect(!(std::fabs(kU.alpha - alpha) <= 1e-3 * alpha), "unweighted: the outlier moves it");
  Coefficients empty = fitCoefficients({}, {}, {}, alpha0, beta0);
  expect(empty.alpha == 0 && empty.beta == 0, "no intervals: zero coefficients");
  // Defaults: finite, positive, and said to be assumptions.
  for (const char *target : {"cpu x86_64-pc-linux-gnu znver4", "nvidia sm_90", "amd gfx942"}) {
    Coefficients d = defaultCoefficients(target);
    expect(d.alpha > 0 && d.beta > 0 && std::isfinite(d.alpha) && std::isfinite(d.beta) &&
               contains(d.method, "assumptions"),
           std::string("default coefficients for ") + target);
  }
}

// ---- JSON ----

void testJson() {
  expect(jsonString("plain") == "\"plain\"", "plain string");
  expect(jsonString("a\"b\\c") == "\"a\\\"b\\\\c\"", "quote and backslash escaped");
  expect(jsonString("l1\nl2\tx\r\b\f") == "\"l1\\nl2\\tx\\r\\b\\f\"", "short escapes");
  expect(jsonString(std::string("nul\0x\x01\x1f\x7f", 8)) == "\"nul\\u0000x\\u0001\\u001f\\u007f\"",
         "control characters as \\u escapes: " + jsonString(std::string("nul\0x\x01\x1f\x7f", 8)));
  expect(jsonString("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
             "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
         "valid UTF-8 kept");
  expect(jsonString("bad\xff\xc3") == "\"bad\xef\xbf\xbd\xef\xbf\xbd\"",
         "invalid UTF-8 replaced by U+FFFD");
  expect(jsonString("\xc0\xaf") == "\"\xef\xbf\xbd\xef\xbf\xbd\"", "overlong form replaced");
  expect(jsonString("</script>") == "\"</script>\"", "slash left alone");
  expect(jsonNumber(NAN) == "null" && jsonNumber(INFINITY) == "null" &&
             jsonNumber(-INFINITY) == "null",
         "non-finite numbers are null");
  expect(jsonNumber(0.5) == "0.5" && jsonNumber(-2) == "-2" && jsonNumber(1.5e-10) == "1.5e-10",
         "finite numbers: " + jsonNumber(1.5e-10));
  for (double v : {0.1, 1.0 / 3, 262143328850.0, 6.103515625e-05, -1e300})
    expect(std::strtod(jsonNumber(v).c_str(), nullptr) == v, "round trip: " + jsonNumber(v));
  expect(jsonNumber(0.1) == "0.1", "short where exact: " + jsonNumber(0.1));
  JsonWriter j;
  j.beginObject();
  j.field("a", 1);
  j.key("b");
  j.beginArray();
  j.value(true);
  j.null();
  j.value("x\"y");
  j.value(NAN);
  j.endArray();
  j.key("c");
  j.beginObject();
  j.endObject();
  j.field("d", 2.5);
  j.endObject();
  const std::string want = "{\n  \"a\": 1,\n  \"b\": [\n    true,\n    null,\n    \"x\\\"y\",\n"
                           "    null\n  ],\n  \"c\": {},\n  \"d\": 2.5\n}\n";
  expect(j.text() == want, "writer output:\n" + j.text());
}

} // namespace

int main() {
  testJson();
  testWorkModel();
  testCostLines();
  testFit();
  testRapl();
  testOtherSources();
  if (failures) {
    std::fprintf(stderr, "%d energy check(s) failed\n", failures);
    return 1;
  }
  std::printf("energy: all checks passed\n");
  return 0;
}
