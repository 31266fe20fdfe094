//===- check_fixture.cpp - a compiled fixture against transformers ---------===//
//
// moir-check-fixture FIXTURE_DIR MODEL.moir [--tolerance X] [--reference FILE]
//                    [--logits-only] [--last-logits-only] [--routing-tie X]
//
// Runs the artifact through the runtime on the fixture's prompt and compares
// with transformers' outputs in FILE (default reference.safetensors; the
// fixtures also hold reference_bf16_weights.safetensors): the prefill logits and
// each decode step's logits within TOLERANCE (default 1e-4) of the largest
// reference |logit|; a NaN or an infinity on either side fails
// (test/support/NumericCheck.h). Decode steps are fed transformers' greedy
// tokens, and each step's argmax must equal the next of them (so the greedy
// continuation is identical), unless --logits-only (reduced-precision builds);
// where the reference's own top two are closer than the tolerance, either of
// them is its greedy token within that tolerance, and the step says so.
//
// --routing-tie X (builds that round to bf16): FIXTURE_DIR/routing_gaps.safetensors
// (python/fixtures/routing_gaps.py) holds, per position of the same run, how
// close the reference's MoE routing choices were to a tie, relative to the
// scores' range; the positions closer than X are left out of the comparison
// (rounding can flip such a choice, and one flipped expert moves the logits by
// far more than the rounding), each named. A check that leaves out every
// position of a part fails.
// --last-logits-only: the session computes the last token's logits only
// (moir_session_set_all_logits(session, 0), as moir-run generates): the
// prefill check compares that row with the reference's last.
// Prints one line per check and exits non-zero on any failure.
//
//===----------------------------------------------------------------------===//

#include "../support/NumericCheck.h"
#include "moir/runtime.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

// Needs only the runtime (no MLIR, no LLVM), so a GPU machine without them
// builds it next to the runtime (scripts/gpu-check.sh).

namespace {

/// The named tensor's bytes from a safetensors file: an 8-byte header size,
/// a JSON header ("name": {"dtype", "shape", "data_offsets": [begin, end]}),
/// then the data. Its dtype must be `dtype` (T's safetensors name).
template <typename T>
std::vector<T> read(const std::string &file, const std::string &bytes, const char *name,
                    const std::string &dtype) {
  auto die = [&](const char *why) {
    std::fprintf(stderr, "%s: tensor '%s': %s\n", file.c_str(), name, why);
    std::exit(2);
  };
  if (bytes.size() < 8)
    die("file too short");
  uint64_t headerBytes = 0;
  std::memcpy(&headerBytes, bytes.data(), 8);
  if (headerBytes > bytes.size() - 8)
    die("truncated header");
  std::string header = bytes.substr(8, headerBytes);
  size_t at = header.find("\"" + std::string(name) + "\"");
  if (at == std::string::npos)
    die("not in the file");
  size_t close = header.find('}', at);
  size_t type = header.find("\"dtype\"", at);
  size_t quote = header.find('"', header.find(':', type));
  if (type >= close || quote >= close ||
      header.compare(quote, dtype.size() + 2, "\"" + dtype + "\"") != 0)
    die(("dtype is not " + dtype).c_str());
  size_t offsets = header.find("\"data_offsets\"", at);
  size_t open = header.find('[', offsets);
  if (offsets >= close || open >= close)
    die("no data_offsets");
  uint64_t begin = 0, end = 0;
  if (std::sscanf(header.c_str() + open, "[%llu,%llu]", (unsigned long long *)&begin,
                  (unsigned long long *)&end) != 2 &&
      std::sscanf(header.c_str() + open, "[ %llu , %llu ]", (unsigned long long *)&begin,
                  (unsigned long long *)&end) != 2)
    die("malformed data_offsets");
  uint64_t base = 8 + headerBytes;
  if (end < begin || end > bytes.size() - base || (end - begin) % sizeof(T) != 0)
    die("data outside the file");
  std::vector<T> out((end - begin) / sizeof(T));
  std::memcpy(out.data(), bytes.data() + base + begin, end - begin);
  return out;
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: moir-check-fixture FIXTURE_DIR MODEL.moir [--tolerance X] "
                         "[--reference FILE] [--logits-only] [--last-logits-only] "
                         "[--routing-tie X]\n");
    return 2;
  }
  double tolerance = 1e-4, routingTie = -1;
  bool checkTokens = true, lastOnly = false;
  std::string reference = "reference.safetensors";
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--tolerance" && i + 1 < argc)
      tolerance = std::atof(argv[++i]);
    else if (a == "--reference" && i + 1 < argc)
      reference = argv[++i];
    else if (a == "--logits-only")
      checkTokens = false;
    else if (a == "--last-logits-only")
      lastOnly = true;
    else if (a == "--routing-tie" && i + 1 < argc)
      routingTie = std::atof(argv[++i]);
    else {
      std::fprintf(stderr, "moir-check-fixture: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  std::string refPath = std::string(argv[1]) + "/" + reference;
  std::ifstream in(refPath, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "%s: cannot open\n", refPath.c_str());
    return 2;
  }
  std::string store((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<int64_t> prompt = read<int64_t>(refPath, store, "prompt_ids", "I64");
  std::vector<int64_t> expected = read<int64_t>(refPath, store, "generated_ids", "I64");
  std::vector<float> prefillRef = read<float>(refPath, store, "prefill_logits", "F32");
  std::vector<float> stepRef = read<float>(refPath, store, "step_logits", "F32");

  moir_model *model = nullptr;
  moir_session *session = nullptr;
  if (moir_model_open(argv[2], &model) != MOIR_OK ||
      moir_session_create(model, 0, &session) != MOIR_OK) {
    std::fprintf(stderr, "%s\n", moir_last_error());
    return 1;
  }
  int64_t vocab = moir_model_vocab_size(model);
  if (lastOnly)
    moir_session_set_all_logits(session, 0);
  std::vector<int32_t> tokens(prompt.begin(), prompt.end());
  if (moir_session_run(session, tokens.data(), tokens.size()) != MOIR_OK) {
    std::fprintf(stderr, "%s\n", moir_last_error());
    return 1;
  }
  int64_t rows = 0;
  const float *all = moir_session_all_logits(session, &rows);
  // The run's logits are of its last `rows` tokens.
  const int64_t promptRows = static_cast<int64_t>(tokens.size()), first = promptRows - rows;
  if (rows != (lastOnly ? 1 : promptRows)) {
    std::fprintf(stderr, "%s: %lld rows of prefill logits for %lld tokens\n", argv[2],
                 (long long)rows, (long long)promptRows);
    return 1;
  }
  // A reference of another shape would be read past its end.
  auto holds = [&](const char *name, size_t values, int64_t expectedRows) {
    if (values == size_t(expectedRows) * size_t(vocab))
      return true;
    std::fprintf(stderr, "%s: tensor '%s' holds %zu values; the artifact gives %lld x %lld\n",
                 refPath.c_str(), name, values, (long long)expectedRows, (long long)vocab);
    return false;
  };
  if (!holds("prefill_logits", prefillRef.size(), promptRows) ||
      !holds("step_logits", stepRef.size(), expected.size()))
    return 1;
  // Positions within `routingTie` of a routing tie, left out.
  std::vector<bool> skipPrefill(promptRows, false), skipStep(expected.size(), false);
  if (routingTie >= 0) {
    std::string gapPath = std::string(argv[1]) + "/routing_gaps.safetensors";
    std::ifstream gapIn(gapPath, std::ios::binary);
    if (!gapIn) {
      std::fprintf(stderr, "%s: cannot open (python/fixtures/routing_gaps.py writes it)\n",
                   gapPath.c_str());
      return 2;
    }
    std::string gapStore((std::istreambuf_iterator<char>(gapIn)), std::istreambuf_iterator<char>());
    if (read<int64_t>(gapPath, gapStore, "prompt_ids", "I64") != prompt ||
        read<int64_t>(gapPath, gapStore, "generated_ids", "I64") != expected) {
      std::fprintf(stderr, "%s: its tokens are not %s's: the gaps are of another run\n",
                   gapPath.c_str(), refPath.c_str());
      return 2;
    }
    std::vector<float> prefillGap = read<float>(gapPath, gapStore, "prefill_routing_gap", "F32");
    std::vector<float> stepGap = read<float>(gapPath, gapStore, "step_routing_gap", "F32");
    if (prefillGap.size() != size_t(promptRows) || stepGap.size() != expected.size()) {
      std::fprintf(stderr, "%s: %zu prefill and %zu step gaps for %lld prompt tokens and %zu steps\n",
                   gapPath.c_str(), prefillGap.size(), stepGap.size(), (long long)promptRows,
                   expected.size());
      return 2;
    }
    std::string named;
    for (int64_t r = 0; r < promptRows; ++r)
      if ((skipPrefill[r] = !(prefillGap[r] >= routingTie)))
        named += " prefill token " + std::to_string(r) + " (" + std::to_string(prefillGap[r]) + ")";
    for (size_t i = 0; i < expected.size(); ++i)
      if ((skipStep[i] = !(stepGap[i] >= routingTie)))
        named += " decode step " + std::to_string(i) + " (" + std::to_string(stepGap[i]) + ")";
    std::printf("routing ties (gap below %g of the scores' range), left out:%s\n", routingTie,
                named.empty() ? " none" : named.c_str());
  }
  using moir::check::Comparison;
  std::vector<float> keptTest, keptRef;
  std::vector<size_t> keptRows;
  for (int64_t r = 0; r < rows; ++r)
    if (!skipPrefill[first + r]) {
      keptRows.push_back(first + r);
      keptTest.insert(keptTest.end(), all + r * vocab, all + (r + 1) * vocab);
      keptRef.insert(keptRef.end(), prefillRef.data() + (first + r) * vocab,
                     prefillRef.data() + (first + r + 1) * vocab);
    }
  Comparison prefill = moir::check::compare(keptTest.data(), keptRef.data(), keptTest.size());
  // Places named as in the whole prefill, not among the rows kept.
  auto place = [&](size_t &index) {
    if (index / vocab < keptRows.size())
      index = keptRows[index / vocab] * vocab + index % vocab;
  };
  place(prefill.index);
  place(prefill.nonFiniteIndex);
  std::printf("prefill (%lld tokens%s%s): %s\n", (long long)promptRows,
              lastOnly ? ", the last token's logits only" : "",
              keptTest.size() == size_t(promptRows * vocab)
                  ? ""
                  : (", " + std::to_string(keptTest.size() / vocab) + " compared").c_str(),
              prefill.describe(tolerance, vocab).c_str());
  bool ok = prefill.within(tolerance);

  // Decode through the KV cache, fed transformers' greedy tokens; step i's
  // logits must pick token i.
  std::vector<int64_t> generated;
  Comparison steps;
  bool sameTokens = true;
  std::string ties, routed; // steps that differ: logit ties, routing ties
  const float *logits = moir_session_logits(session);
  for (size_t i = 0; i < expected.size(); ++i) {
    const float *ref = stepRef.data() + i * vocab;
    int64_t pick = std::max_element(logits, logits + vocab) - logits;
    generated.push_back(pick);
    if (!skipStep[i]) {
      steps.merge(moir::check::compare(logits, ref, vocab));
      if (pick != expected[i]) {
        // The reference's greedy token and this one within the tolerance of
        // each other (relative to the step's largest |logit|, as the logits'
        // check): a tie at that precision, which either may break.
        float scale = 0;
        for (int64_t v = 0; v < vocab; ++v)
          scale = std::max(scale, std::fabs(ref[v]));
        bool tie = pick >= 0 && pick < vocab &&
                   ref[expected[i]] - ref[pick] <= tolerance * std::max(scale, 1e-30f);
        sameTokens &= tie;
        if (tie)
          ties += " " + std::to_string(i);
      }
    } else if (pick != expected[i]) {
      routed += " " + std::to_string(i);
    }
    if (i + 1 < expected.size()) {
      int32_t next = static_cast<int32_t>(expected[i]);
      if (moir_session_run(session, &next, 1) != MOIR_OK) {
        std::fprintf(stderr, "%s\n", moir_last_error());
        return 1;
      }
      logits = moir_session_logits(session);
    }
  }
  std::printf("decode steps: worst %s\n", steps.describe(tolerance, vocab).c_str());
  std::printf("greedy tokens:");
  for (int64_t t : generated)
    std::printf(" %lld", (long long)t);
  if (generated == expected) {
    std::printf(" (identical to transformers)\n");
  } else if (sameTokens) {
    std::printf(" (as transformers but for%s%s%s%s; transformers gave",
                ties.empty() ? "" : " logit ties within the tolerance at step", ties.c_str(),
                routed.empty() ? "" : " routing ties left out at step", routed.c_str());
    for (int64_t t : expected)
      std::printf(" %lld", (long long)t);
    std::printf(")\n");
  } else {
    std::printf("%s transformers gave", checkTokens ? " FAIL:" : " (differ; not checked):");
    for (int64_t t : expected)
      std::printf(" %lld", (long long)t);
    std::printf("\n");
  }
  ok &= steps.within(tolerance) && (sameTokens || !checkTokens);
  moir_session_destroy(session);
  moir_model_close(model);
  return ok ? 0 : 1;
}
