//===- check_fixture.cpp - a compiled fixture against transformers ---------===//
//
// moir-check-fixture FIXTURE_DIR MODEL.moir [--tolerance X] [--reference FILE]
//                    [--logits-only]
//
// Runs the artifact through the runtime on the fixture's prompt and compares
// with transformers' outputs in FILE (default reference.safetensors; the
// fixtures also hold reference_bf16_weights.safetensors): the prefill logits and
// each decode step's logits within TOLERANCE (default 1e-4) of the largest
// reference |logit|; a NaN or an infinity on either side fails
// (test/support/NumericCheck.h). Decode steps are fed transformers' greedy
// tokens, and each step's argmax must equal the next of them (so the greedy
// continuation is identical), unless --logits-only (reduced-precision builds).
// Prints one line per check and exits non-zero on any failure.
//
//===----------------------------------------------------------------------===//

#include "../support/NumericCheck.h"
#include "moir/runtime.h"

#include <algorithm>
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
                         "[--reference FILE] [--logits-only]\n");
    return 2;
  }
  double tolerance = 1e-4;
  bool checkTokens = true;
  std::string reference = "reference.safetensors";
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--tolerance" && i + 1 < argc)
      tolerance = std::atof(argv[++i]);
    else if (a == "--reference" && i + 1 < argc)
      reference = argv[++i];
    else if (a == "--logits-only")
      checkTokens = false;
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
  std::vector<int32_t> tokens(prompt.begin(), prompt.end());
  if (moir_session_run(session, tokens.data(), tokens.size()) != MOIR_OK) {
    std::fprintf(stderr, "%s\n", moir_last_error());
    return 1;
  }
  int64_t rows = 0;
  const float *all = moir_session_all_logits(session, &rows);
  // A reference of another shape would be read past its end.
  auto holds = [&](const char *name, size_t values, int64_t expectedRows) {
    if (values == size_t(expectedRows) * size_t(vocab))
      return true;
    std::fprintf(stderr, "%s: tensor '%s' holds %zu values; the artifact gives %lld x %lld\n",
                 refPath.c_str(), name, values, (long long)expectedRows, (long long)vocab);
    return false;
  };
  if (!holds("prefill_logits", prefillRef.size(), rows) ||
      !holds("step_logits", stepRef.size(), expected.size()))
    return 1;
  using moir::check::Comparison;
  Comparison prefill = moir::check::compare(all, prefillRef.data(), rows * vocab);
  std::printf("prefill (%lld tokens): %s\n", (long long)rows,
              prefill.describe(tolerance, vocab).c_str());
  bool ok = prefill.within(tolerance);

  // Decode through the KV cache, fed transformers' greedy tokens; step i's
  // logits must pick token i.
  std::vector<int64_t> generated;
  Comparison steps;
  const float *logits = moir_session_logits(session);
  for (size_t i = 0; i < expected.size(); ++i) {
    steps.merge(moir::check::compare(logits, stepRef.data() + i * vocab, vocab));
    generated.push_back(std::max_element(logits, logits + vocab) - logits);
    if (i + 1 < expected.size()) {
      int32_t next = static_cast<int32_t>(expected[i]);
      if (moir_session_run(session, &next, 1) != MOIR_OK) {
        std::fprintf(stderr, "%s\n", moir_last_error());
        return 1;
      }
      logits = moir_session_logits(session);
    }
  }
  bool sameTokens = generated == expected;
  std::printf("decode steps: worst %s\n", steps.describe(tolerance, vocab).c_str());
  std::printf("greedy tokens:");
  for (int64_t t : generated)
    std::printf(" %lld", (long long)t);
  if (sameTokens) {
    std::printf(" (identical to transformers)\n");
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
