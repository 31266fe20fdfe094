//===- check_fixture.cpp - a compiled fixture against transformers ---------===//
//
// moir-check-fixture FIXTURE_DIR MODEL.moir [--tolerance X] [--reference FILE]
//                    [--logits-only]
//
// Runs the artifact through the runtime on the fixture's prompt and compares
// with transformers' outputs in FILE (default reference.safetensors; the
// fixtures also hold reference_bf16_weights.safetensors): the prefill logits and
// each decode step's logits within TOLERANCE (default 1e-4) of the largest
// reference |logit|. Decode steps are fed transformers' greedy tokens, and
// each step's argmax must equal the next of them (so the greedy continuation
// is identical), unless --logits-only (reduced-precision builds). Prints one
// line per check and exits non-zero on any failure.
//
//===----------------------------------------------------------------------===//

#include "moir/Frontend/WeightStore.h"
#include "moir/runtime.h"

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

using namespace moir::frontend;

namespace {

template <typename T> std::vector<T> read(const WeightStore &store, const char *name) {
  const TensorInfo *t = store.lookup(name);
  if (!t) {
    llvm::errs() << "reference has no tensor '" << name << "'\n";
    std::exit(2);
  }
  auto data = store.getData(*t);
  std::vector<T> out(data.size() / sizeof(T));
  std::memcpy(out.data(), data.data(), data.size());
  return out;
}

/// max |a - b| / max |b| over `n` values.
double relativeError(const float *a, const float *b, size_t n) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::fabs(double(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(double(b[i])));
  }
  return diff / std::max(scale, 1e-30);
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 3) {
    llvm::errs() << "usage: moir-check-fixture FIXTURE_DIR MODEL.moir [--tolerance X] "
                    "[--reference FILE] [--logits-only]\n";
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
      llvm::errs() << "moir-check-fixture: unknown argument '" << a << "'\n";
      return 2;
    }
  }
  llvm::SmallString<256> refPath(argv[1]);
  llvm::sys::path::append(refPath, reference);
  WeightStore store;
  if (llvm::Error err = readSafetensors(refPath, store)) {
    llvm::errs() << llvm::toString(std::move(err)) << "\n";
    return 2;
  }
  std::vector<int64_t> prompt = read<int64_t>(store, "prompt_ids");
  std::vector<int64_t> expected = read<int64_t>(store, "generated_ids");
  std::vector<float> prefillRef = read<float>(store, "prefill_logits");
  std::vector<float> stepRef = read<float>(store, "step_logits");

  moir_model *model = nullptr;
  moir_session *session = nullptr;
  if (moir_model_open(argv[2], &model) != MOIR_OK ||
      moir_session_create(model, 0, &session) != MOIR_OK) {
    llvm::errs() << moir_last_error() << "\n";
    return 1;
  }
  int64_t vocab = moir_model_vocab_size(model);
  std::vector<int32_t> tokens(prompt.begin(), prompt.end());
  if (moir_session_run(session, tokens.data(), tokens.size()) != MOIR_OK) {
    llvm::errs() << moir_last_error() << "\n";
    return 1;
  }
  int64_t rows = 0;
  const float *all = moir_session_all_logits(session, &rows);
  bool ok = true;
  double prefillErr = relativeError(all, prefillRef.data(), rows * vocab);
  llvm::outs() << llvm::format("prefill (%lld tokens): relative error %.3g (tolerance %.3g) %s\n",
                               (long long)rows, prefillErr, tolerance,
                               prefillErr <= tolerance ? "ok" : "FAIL");
  ok &= prefillErr <= tolerance;

  // Decode through the KV cache, fed transformers' greedy tokens; step i's
  // logits must pick token i.
  std::vector<int64_t> generated;
  double worstStep = 0;
  const float *logits = moir_session_logits(session);
  for (size_t i = 0; i < expected.size(); ++i) {
    worstStep = std::max(worstStep, relativeError(logits, stepRef.data() + i * vocab, vocab));
    generated.push_back(std::max_element(logits, logits + vocab) - logits);
    if (i + 1 < expected.size()) {
      int32_t next = static_cast<int32_t>(expected[i]);
      if (moir_session_run(session, &next, 1) != MOIR_OK) {
        llvm::errs() << moir_last_error() << "\n";
        return 1;
      }
      logits = moir_session_logits(session);
    }
  }
  bool sameTokens = generated == expected;
  llvm::outs() << llvm::format("decode steps: worst relative error %.3g %s\n", worstStep,
                               worstStep <= tolerance ? "ok" : "FAIL");
  llvm::outs() << "greedy tokens:";
  for (int64_t t : generated)
    llvm::outs() << " " << t;
  if (sameTokens) {
    llvm::outs() << " (identical to transformers)\n";
  } else {
    llvm::outs() << (checkTokens ? " FAIL:" : " (differ; not checked):") << " transformers gave";
    for (int64_t t : expected)
      llvm::outs() << " " << t;
    llvm::outs() << "\n";
  }
  ok &= worstStep <= tolerance && (sameTokens || !checkTokens);
  moir_session_destroy(session);
  moir_model_close(model);
  return ok ? 0 : 1;
}
