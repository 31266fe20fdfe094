//===- moir-run.cpp - run a compiled MoIR model -----------------------------===//
//
// moir-run MODEL.moir --tokens 1,2,3 [-n 32] [--temperature T] [--top-k K]
//          [--top-p P] [--seed S] [--json] [--bandwidth] [--prefill-chunk N]
//          [--energy-report FILE.json [--energy-source S] ...]
// moir-run MODEL.moir --chat [--system TEXT] [--chat-template FILE] [--stop X]...
// moir-run --inspect [--verify] MODEL.moir
// moir-run --help
//
// Needs only the runtime (no MLIR, no LLVM) and the bandwidth probe
// (tools/moir-bandwidth).
//
//===----------------------------------------------------------------------===//

#include "bandwidth.h"
#include "energy_report.h"
#include "utf8.h"
#include "moir/runtime.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

double now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

const char kUsage[] =
    "usage: moir-run MODEL.moir --tokens 1,2,3 [options]   prefill the prompt, then generate\n"
    "       moir-run MODEL.moir -p TEXT [options]          the same from text\n"
    "       moir-run MODEL.moir --chat [options]           chat on stdin/stdout\n"
    "       moir-run --inspect [--verify] MODEL.moir        print the artifact's manifest\n"
    "\n"
    "Generation:\n"
    "  --tokens IDS          the prompt, comma-separated token ids\n"
    "  -p, --prompt TEXT     the prompt as text, through the artifact's tokenizer; the\n"
    "                        generated text is streamed to stdout (rates to stderr)\n"
    "  -n N                  tokens to generate (default 32); with -p, generation ends\n"
    "                        earlier at the tokenizer's end-of-sequence or stop tokens\n"
    "  --ignore-eos          with -p, generate all N tokens\n"
    "  --prefill-chunk N     prefill the prompt N tokens at a time (default 0: all at once)\n"
    "Chat (docs/chat.md):\n"
    "  --chat                a conversation: each line of stdin is a user turn (EOF ends);\n"
    "                        the conversation goes through the chat template, the reply\n"
    "                        (at most -n tokens) is streamed to stdout; the KV cache is\n"
    "                        kept across turns\n"
    "  --system TEXT         a system message first\n"
    "  --chat-template FILE  the Jinja chat template to use instead of the artifact's\n"
    "  --stop X              end a reply at token id X (digits) or at the text X; may\n"
    "                        repeat (the vocabulary's end-of-turn tokens always stop)\n"
    "Sampling (default: greedy):\n"
    "  --temperature T       0: greedy; otherwise the logits are divided by T (default 0)\n"
    "  --top-k K             keep the K most likely tokens (default 0: all)\n"
    "  --top-p P             then the smallest set reaching probability P, 0 < P <= 1\n"
    "                        (default 1: all)\n"
    "  --seed S              the sampler's seed (default 0)\n"
    "Output:\n"
    "  --json                one JSON line: tokens, prefill and decode rates, decode counts\n"
    "  --bandwidth           measure the memory bandwidth before and after (STREAM triad,\n"
    "                        as moir-bandwidth) and compare decode with the bound it sets\n"
    "  --record-routing FILE  count each MoE layer's expert choices over the run (prompt\n"
    "                        and generated tokens) and write them as JSON: the input of\n"
    "                        moirc --expert-placement (docs/parallel.md)\n"
    "Energy (docs/energy.md):\n"
    "  --energy-report FILE  measure the energy of prefill and decode with the hardware's\n"
    "                        counters and write a JSON report: J/token per phase, its\n"
    "                        uncertainty, the split over layers and experts; without a\n"
    "                        counter, 'not measured' and a labelled estimate\n"
    "  --energy-source S     auto (default), rapl, perf, nvml, amdsmi or none\n"
    "  --energy-idle-seconds T  idle power measured for T s first and subtracted\n"
    "                        (default 1; 0: not subtracted)\n"
    "  --energy-min-seconds T   replay each phase until it ran T s (default: 1, or 50\n"
    "                        counter updates if longer)\n"
    "  --energy-coefficients A,B  J per byte and J per FLOP for the attribution\n"
    "                        (default: fitted to the measurements)\n"
    "Trust:\n"
    "  --trusted-keys FILE   refuse the model unless it is signed (moirc --sign) by one of\n"
    "                        the public keys in FILE (moirc --generate-signing-key's .pub\n"
    "                        lines); also read from MOIR_TRUSTED_KEYS\n"
    "Inspection (loads no code: works without the target's GPU):\n"
    "  --inspect             print the manifest and the size of the weights\n"
    "  --verify              with --inspect, also verify the weights' checksum\n"
    "  -h, --help            print this help\n";

/// A command-line error: one line naming what is wrong, exit code 2.
int usageError(const std::string &message) {
  std::fprintf(stderr, "moir-run: error: %s; see moir-run --help\n", message.c_str());
  return 2;
}

/// A whole number in [lo, hi], all of `text` (strtoll alone accepts "12x",
/// leading blanks, and saturates on overflow).
bool parseInteger(const char *text, long long lo, long long hi, long long *out) {
  if (!*text || std::isspace(static_cast<unsigned char>(*text)))
    return false;
  char *rest = nullptr;
  errno = 0;
  long long v = std::strtoll(text, &rest, 10);
  if (*rest || errno == ERANGE || v < lo || v > hi)
    return false;
  *out = v;
  return true;
}

/// A whole number in [0, 2^64 - 1] (strtoull alone wraps "-1" around).
bool parseUnsigned(const char *text, uint64_t *out) {
  if (!std::isdigit(static_cast<unsigned char>(*text)))
    return false;
  char *rest = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text, &rest, 10);
  if (*rest || errno == ERANGE)
    return false;
  *out = v;
  return true;
}

/// A finite number, all of `text`.
bool parseReal(const char *text, double *out) {
  if (!*text || std::isspace(static_cast<unsigned char>(*text)))
    return false;
  char *rest = nullptr;
  double v = std::strtod(text, &rest);
  if (*rest || !std::isfinite(v))
    return false;
  *out = v;
  return true;
}

bool parseTokens(const char *text, std::vector<int32_t> &out) {
  std::string s(text);
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find(',', start);
    std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    item.erase(0, item.find_first_not_of(' ') == std::string::npos ? item.size()
                                                                    : item.find_first_not_of(' '));
    long long v = 0;
    if (!parseInteger(item.c_str(), 0, std::numeric_limits<int32_t>::max(), &v))
      return false;
    out.push_back(static_cast<int32_t>(v));
    if (end == std::string::npos)
      break;
    start = end + 1;
  }
  return !out.empty();
}

struct Options {
  const char *path = nullptr;
  const char *trustedKeys = nullptr;
  const char *text = nullptr; // -p
  std::vector<int32_t> prompt;
  long steps = 32, chunk = 0;
  bool json = false, inspect = false, bandwidth = false, verify = false, help = false;
  bool ignoreEos = false;
  moir_sampling sampling{0.0f, 0, 1.0f, 0};
  const char *energyReport = nullptr;
  const char *recordRouting = nullptr;
  moir::energy::Options energy;
  // --chat
  bool chat = false;
  const char *system = nullptr, *chatTemplate = nullptr;
  std::vector<int32_t> stopIds;
  std::vector<std::string> stopTexts;
};

/// Reads the command line into `o`; returns 0, or the exit code of an error
/// it has reported.
int parseOptions(int argc, char **argv, Options &o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const char *v = nullptr;
    // The option's value, or null (reported) when the command line ends.
    auto value = [&]() -> const char * { return i + 1 < argc ? (v = argv[++i]) : nullptr; };
    auto invalid = [&](const char *expected) {
      return usageError("invalid value '" + std::string(v) + "' for " + a + ": expected " +
                        expected);
    };
    long long integer = 0;
    double real = 0;
    if (a == "-h" || a == "--help") { o.help = true; return 0; }
    else if (a == "--inspect") o.inspect = true;
    else if (a == "--verify") o.verify = true;
    else if (a == "--json") o.json = true;
    else if (a == "--bandwidth") o.bandwidth = true;
    else if (a == "--ignore-eos") o.ignoreEos = true;
    else if (a == "-p" || a == "--prompt") {
      if (!value())
        return usageError(a + " needs a value");
      o.text = v;
    }
    else if (a == "--chat") o.chat = true;
    else if (a == "--system" || a == "--chat-template" || a == "--stop") {
      if (!value())
        return usageError(a + " needs a value");
      long long id = 0;
      if (a == "--system")
        o.system = v;
      else if (a == "--chat-template")
        o.chatTemplate = v;
      else if (parseInteger(v, 0, std::numeric_limits<int32_t>::max(), &id))
        o.stopIds.push_back(static_cast<int32_t>(id));
      else if (*v)
        o.stopTexts.push_back(v);
      else
        return invalid("a token id or a non-empty text");
    }
    else if (a == "--trusted-keys") {
      if (!value())
        return usageError(a + " needs a value");
      o.trustedKeys = v;
    }
    else if (a == "--record-routing") {
      if (!value())
        return usageError(a + " needs a value");
      o.recordRouting = v;
    }
    else if (a == "--energy-report" || a == "--energy-source" || a == "--energy-idle-seconds" ||
             a == "--energy-min-seconds" || a == "--energy-coefficients") {
      if (!value())
        return usageError(a + " needs a value");
      std::string s = v;
      if (a == "--energy-report") {
        o.energyReport = v;
      } else if (a == "--energy-source") {
        if (s != "auto" && s != "rapl" && s != "perf" && s != "nvml" && s != "amdsmi" &&
            s != "none")
          return invalid("auto, rapl, perf, nvml, amdsmi or none");
        o.energy.source = s;
      } else if (a == "--energy-coefficients") {
        size_t comma = s.find(',');
        double b = 0;
        if (comma == std::string::npos || !parseReal(s.substr(0, comma).c_str(), &real) ||
            !parseReal(s.c_str() + comma + 1, &b) || real < 0 || b < 0)
          return invalid("J per byte and J per FLOP, two numbers >= 0: e.g. 1e-10,2e-11");
        o.energy.coefficientsGiven = true;
        o.energy.alpha = real;
        o.energy.beta = b;
      } else {
        if (!parseReal(v, &real) || real < 0 || real > 3600)
          return invalid("seconds, a number in [0, 3600]");
        (a == "--energy-idle-seconds" ? o.energy.idleSeconds : o.energy.minSeconds) = real;
      }
    }
    else if (a == "--tokens" || a == "-n" || a == "--prefill-chunk" || a == "--temperature" ||
             a == "--top-k" || a == "--top-p" || a == "--seed") {
      if (!value())
        return usageError(a + " needs a value");
      if (a == "--tokens") {
        if (!parseTokens(v, o.prompt))
          return invalid("comma-separated token ids (0 or more), e.g. 1,2,3");
      } else if (a == "-n" || a == "--prefill-chunk") {
        if (!parseInteger(v, 0, std::numeric_limits<long>::max(), &integer))
          return invalid("a whole number >= 0");
        (a == "-n" ? o.steps : o.chunk) = static_cast<long>(integer);
      } else if (a == "--temperature") {
        if (!parseReal(v, &real) || real < 0 || real > std::numeric_limits<float>::max())
          return invalid("a finite number >= 0");
        o.sampling.temperature = static_cast<float>(real);
      } else if (a == "--top-k") {
        if (!parseInteger(v, 0, std::numeric_limits<int32_t>::max(), &integer))
          return invalid("a whole number >= 0 (0: all tokens)");
        o.sampling.top_k = static_cast<int32_t>(integer);
      } else if (a == "--top-p") {
        if (!parseReal(v, &real) || !(real > 0 && real <= 1))
          return invalid("a number in (0, 1]");
        o.sampling.top_p = static_cast<float>(real);
      } else if (!parseUnsigned(v, &o.sampling.seed)) {
        return invalid("a whole number in [0, 2^64)");
      }
    } else if (!a.empty() && a[0] == '-') {
      return usageError("unknown option '" + a + "'");
    } else if (o.path) {
      return usageError("unexpected argument '" + a + "' (the model is '" + o.path + "')");
    } else {
      o.path = argv[i];
    }
  }
  if (!o.path)
    return usageError("no model given (MODEL.moir)");
  if (o.chat && (o.text || !o.prompt.empty()))
    return usageError("--chat reads the conversation from stdin: give no -p or --tokens");
  if (!o.chat && (o.system || o.chatTemplate || !o.stopIds.empty() || !o.stopTexts.empty()))
    return usageError("--system, --chat-template and --stop go with --chat");
  if (!o.inspect && !o.chat && o.prompt.empty() && !o.text)
    return usageError("no prompt given (--tokens 1,2,3 or -p TEXT)");
  if (o.text && !o.prompt.empty())
    return usageError("give the prompt as --tokens or as -p TEXT, not both");
  return 0;
}

/// The runtime's last error, exit code 1.
int runtimeError() {
  std::fprintf(stderr, "moir-run: error: %s\n", moir_last_error());
  return 1;
}

/// --inspect: the manifest, without loading code (it works for a GPU
/// artifact on a machine without that GPU).
int inspect(const Options &o) {
  moir_model *model = nullptr;
  if (moir_model_open_for_inspection(o.path, &model) != MOIR_OK)
    return runtimeError();
  std::fputs(moir_model_manifest(model), stdout);
  std::printf("weights: %.1f MB mapped\n", moir_model_weight_bytes(model) / 1e6);
  if (o.verify) {
    if (moir_model_verify_weights(model) != MOIR_OK) {
      runtimeError();
      moir_model_close(model);
      return 1;
    }
    std::printf("weights checksum: ok\n");
  }
  moir_model_close(model);
  return 0;
}

/// Ids as "1, 2, 3".
std::string joinIds(const std::vector<int32_t> &ids) {
  std::string s;
  for (int32_t id : ids)
    s += (s.empty() ? "" : ", ") + std::to_string(id);
  return s;
}

/// Generated tokens to text through the runtime's streaming decoder, which
/// never hands out half a UTF-8 character; printed as it comes when
/// streaming, and kept whole for --json.
class TextStream {
public:
  TextStream(moir_tokenizer *tokenizer, bool stream) : tokenizer(tokenizer), stream(stream) {}
  ~TextStream() {
    moir_text_stream_destroy(decoder);
    moir_tokenizer_close(tokenizer);
  }
  bool encode(const char *prompt, std::vector<int32_t> &ids) {
    size_t n = 0, len = std::strlen(prompt);
    ids.assign(len + 16, 0);
    // With the tokenizer's own special tokens (a BOS), as llama.cpp and
    // Hugging Face tokenize a prompt.
    if (moir_tokenize_special(tokenizer, prompt, len, /*add_special=*/1, ids.data(), ids.size(),
                              &n) != MOIR_OK)
      return false;
    ids.resize(n);
    stops.resize(moir_tokenizer_stop_ids(tokenizer, nullptr, 0));
    moir_tokenizer_stop_ids(tokenizer, stops.data(), stops.size());
    return moir_text_stream_create(tokenizer, /*skip_special=*/0, &decoder) == MOIR_OK;
  }
  /// An end-of-sequence or stop token of the tokenizer.
  bool isStop(int32_t id) const { return std::find(stops.begin(), stops.end(), id) != stops.end(); }
  bool add(int32_t id) {
    const char *piece = nullptr;
    size_t bytes = 0;
    if (moir_text_stream_push(decoder, id, &piece, &bytes) != MOIR_OK)
      return false;
    emit(piece, bytes);
    return true;
  }
  void finish() {
    const char *piece = nullptr;
    size_t bytes = 0;
    moir_text_stream_finish(decoder, &piece, &bytes);
    emit(piece, bytes);
    if (stream) {
      std::fputc('\n', stdout);
      std::fflush(stdout);
    }
  }
  const std::string &all() const { return text; }

private:
  void emit(const char *piece, size_t bytes) {
    text.append(piece, bytes);
    if (stream && bytes) {
      std::fwrite(piece, 1, bytes, stdout);
      std::fflush(stdout);
    }
  }
  moir_tokenizer *tokenizer;
  moir_text_stream *decoder = nullptr;
  bool stream;
  std::string text;
  std::vector<int32_t> stops;
};

/// Prefills the prompt, generates, and reports the rates.
/// The ranks of a parallel artifact (mpirun -np N moir-run DIR) all run
/// the same steps on the same tokens; rank 0 prints, the others stay quiet
/// (errors still reach stderr).
void quietUnlessRankZero(const moir_model *model) {
  int rank = 0, ranks = 1;
  if (moir_model_parallel(model, &rank, &ranks) == MOIR_OK && rank > 0 &&
      !std::freopen("/dev/null", "w", stdout))
    std::fprintf(stderr, "moir-run: rank %d: cannot silence stdout\n", rank);
}

int generate(const Options &o) {
  std::vector<int32_t> prompt = o.prompt;
  const long steps = o.steps, chunk = o.chunk;
  const bool json = o.json, bandwidth = o.bandwidth;
  moir_model *model = nullptr;
  if (moir_model_open_trusted(o.path, o.trustedKeys, &model) != MOIR_OK)
    return runtimeError();
  quietUnlessRankZero(model);
  moir_session *session = nullptr;
  // Released on every way out, errors included.
  struct Release {
    moir_model *&model;
    moir_session *&session;
    ~Release() {
      moir_session_destroy(session);
      moir_model_close(model);
    }
  } release{model, session};
  if (moir_session_create(model, 0, &session) != MOIR_OK)
    return runtimeError();
  // Generation reads the last token's logits only: a prefill skips the
  // final norm and the LM head for the others (as llama.cpp's batches do).
  moir_session_set_all_logits(session, 0);
  // -p: the prompt's text through the artifact's tokenizer; the generated
  // text is streamed as it comes.
  std::unique_ptr<TextStream> text;
  if (o.text) {
    moir_tokenizer *tokenizer = nullptr;
    if (moir_model_tokenizer(model, &tokenizer) != MOIR_OK)
      return runtimeError();
    text = std::make_unique<TextStream>(tokenizer, !o.json);
    if (!text->encode(o.text, prompt))
      return runtimeError();
    if (prompt.empty()) {
      std::fprintf(stderr, "moir-run: error: the prompt text has no tokens\n");
      return 1;
    }
  }
  uint64_t rng;
  moir_sampling_init(&o.sampling, &rng);
  int64_t vocab = moir_model_vocab_size(model);
  std::vector<int32_t> generated;
  // --record-routing: rank 0 records (every rank sees the same choices).
  int rank = 0, ranks = 1;
  moir_model_parallel(model, &rank, &ranks);
  const bool recordRouting = o.recordRouting && rank == 0;
  if (recordRouting && moir_routing_record_start() != MOIR_OK)
    return runtimeError();
  // --energy-report: the counter opened and idle power measured first.
  std::unique_ptr<moir::energy::Recorder> energy;
  if (o.energyReport) {
    // The session computes the last token's logits only (set above).
    moir::energy::Options energyOptions = o.energy;
    energyOptions.lastLogitsOnly = true;
    energy = std::make_unique<moir::energy::Recorder>(model, o.path, energyOptions);
  }
  // Bandwidth is bimodal on some machines: measure it before and after.
  double gbpsBefore = bandwidth ? moir::measureBandwidth() : 0.0;
  double t0 = now();
  // A long prompt may run in chunks (--prefill-chunk): each appends to the
  // cache, as a server prefilling a long context does.
  size_t step = chunk > 0 ? static_cast<size_t>(chunk) : prompt.size();
  if (energy)
    energy->beginPrefill();
  for (size_t at = 0; at < prompt.size(); at += step) {
    size_t n = std::min(step, prompt.size() - at);
    if (moir_session_run(session, prompt.data() + at, static_cast<int64_t>(n)) != MOIR_OK)
      return runtimeError();
  }
  double prefillTime = now() - t0;
  if (energy)
    energy->endPrefill(static_cast<int64_t>(prompt.size()), chunk);
  double t1 = now();
  if (energy)
    energy->beginDecode(static_cast<int64_t>(prompt.size()), steps > 1 ? steps - 1 : 0);
  long decodeRuns = 0;
  for (long i = 0; i < steps; ++i) {
    int32_t next;
    if (moir_sample(moir_session_logits(session), vocab, &o.sampling, &rng, &next) != MOIR_OK)
      return runtimeError();
    // -p: the end-of-sequence (or a stop token) ends the text; it is not
    // printed.
    // (An energy report measures a fixed number of steps: it runs them all.)
    if (text && !o.ignoreEos && !energy && text->isStop(next))
      break;
    generated.push_back(next);
    if (text && !text->add(next))
      return runtimeError();
    if (i + 1 == steps)
      break;
    if (moir_session_run(session, &next, 1) != MOIR_OK)
      return runtimeError();
    ++decodeRuns;
    if (energy)
      energy->decodeStep();
  }
  double decodeTime = now() - t1;
  if (energy)
    energy->endDecode();
  if (recordRouting && moir_routing_record_stop(o.recordRouting) != MOIR_OK)
    return runtimeError();
  double prefillRate = prompt.size() / prefillTime;
  double decodeRate = decodeRuns > 0 ? decodeRuns / decodeTime : 0.0;
  double gbpsAfter = bandwidth ? moir::measureBandwidth() : 0.0;
  // The higher of the two makes the bound strict.
  double gbps = std::max(gbpsBefore, gbpsAfter);
  // Decode must read the weights a step uses (the compiler counted them:
  // dense weights, the selected experts, one embedding row); KV-cache reads
  // are small at these lengths and left out, which makes the bound generous.
  uint64_t stepBytes = moir_model_decode_weight_bytes(model);
  double boundRate = gbps > 0 && stepBytes ? gbps * 1e9 / stepBytes : 0.0;
  if (text)
    text->finish();
  // With -p the text is the output; the rates go to stderr.
  FILE *rates = text && !json ? stderr : stdout;
  if (json) {
    std::printf("{\"tokens\": [");
    for (size_t i = 0; i < generated.size(); ++i)
      std::printf("%s%d", i ? ", " : "", generated[i]);
    std::printf("], \"prefill_tokens\": %zu, \"prefill_tokens_per_s\": %.3f, "
                "\"decode_tokens_per_s\": %.3f, \"matmul_flops_per_token\": %llu, "
                "\"decode_weight_bytes_per_token\": %llu, \"decode_weight_gb_per_s\": %.2f",
                prompt.size(), prefillRate, decodeRate,
                (unsigned long long)moir_model_decode_flops(model), (unsigned long long)stepBytes,
                stepBytes * decodeRate / 1e9);
    if (bandwidth)
      std::printf(", \"bandwidth_gb_per_s_before\": %.2f, \"bandwidth_gb_per_s_after\": %.2f",
                  gbpsBefore, gbpsAfter);
    if (bandwidth)
      std::printf(", \"bandwidth_gb_per_s\": %.2f, "
                  "\"decode_bound_tokens_per_s\": %.2f, "
                  "\"decode_fraction_of_bandwidth_bound\": %.4f",
                  gbps, boundRate,
                  boundRate > 0 ? decodeRate / boundRate : 0.0);
    if (text)
      std::printf(", \"prompt_tokens\": [%s], \"text\": %s", joinIds(prompt).c_str(),
                  moir::energy::jsonString(text->all()).c_str());
    std::printf("}\n");
  } else {
    if (!text) {
      std::printf("generated:");
      for (int32_t t : generated)
        std::printf(" %d", t);
      std::printf("\n");
    }
    std::fprintf(rates, "prefill: %zu tokens, %.2f tokens/s (%.1f GFLOP/s in weight matmuls)\n"
                 "decode: %ld tokens, %.2f tokens/s\n",
                 prompt.size(), prefillRate, prefillRate * moir_model_decode_flops(model) / 1e9,
                 steps, decodeRate);
    if (bandwidth)
      std::fprintf(rates, "bandwidth: %.1f GB/s before, %.1f GB/s after; a decode step reads %.1f MB "
                  "of weights, so at most %.1f tokens/s; reached %.1f%% of that bound\n",
                  gbpsBefore, gbpsAfter, stepBytes / 1e6, boundRate,
                  boundRate > 0 ? 100.0 * decodeRate / boundRate : 0.0);
  }
  if (energy) {
    // Replays of the phases (the same tokens) until each ran long enough
    // for the counter, then the report.
    std::vector<int32_t> fed(generated.begin(), generated.end() - (generated.empty() ? 0 : 1));
    std::string error;
    if (energy->replay(session, prompt, chunk, fed) != MOIR_OK)
      return runtimeError();
    if (!energy->write(o.energyReport, static_cast<int64_t>(generated.size()), &error)) {
      std::fprintf(stderr, "moir-run: error: %s\n", error.c_str());
      return 1;
    }
    for (const std::string &w : energy->warnings())
      std::fprintf(stderr, "moir-run: warning: %s\n", w.c_str());
    std::fprintf(stderr, "moir-run: %s; report: %s\n", energy->summary().c_str(),
                 o.energyReport);
  }
  return 0;
}

/// `s` with each ill-formed UTF-8 sequence (a model may end its reply inside
/// a character, or emit stray bytes) replaced by U+FFFD, as tokenizers'
/// decode does: the conversation the template renders is text.
std::string validUtf8(const std::string &s) { return moir::rt::replaceInvalidUtf8(s); }

/// The chat template: --chat-template FILE, or the artifact's.
moir_chat_template *openChatTemplate(const Options &o, moir_model *model) {
  moir_chat_template *t = nullptr;
  if (o.chatTemplate) {
    std::ifstream in(o.chatTemplate, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "moir-run: error: %s: cannot read the chat template\n", o.chatTemplate);
      return nullptr;
    }
    std::stringstream text;
    text << in.rdbuf();
    std::string source = text.str();
    if (moir_chat_template_open(o.chatTemplate, source.data(), source.size(), &t) != MOIR_OK) {
      runtimeError();
      return nullptr;
    }
    return t;
  }
  if (moir_model_chat_template(model, &t) != MOIR_OK) {
    std::fprintf(stderr, "moir-run: error: %s; give --chat-template FILE\n", moir_last_error());
    return nullptr;
  }
  return t;
}

/// The end-of-turn tokens of the usual chat formats that the tokenizer has
/// as special tokens (one id that decodes to nothing without specials).
std::vector<int32_t> endOfTurnTokens(moir_tokenizer *tokenizer) {
  static const char *const names[] = {
      "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<end_of_turn>", "</s>", "<|endoftext|>",
      "<|end_of_text|>", "<|end|>", "<|return|>", "<|call|>",
      // DeepSeek's <｜end▁of▁sentence｜>
      ("<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"),
      "<|user|>", "<|END_OF_TURN_TOKEN|>", "<turn|>"};
  std::vector<int32_t> ids;
  for (const char *name : names) {
    int32_t id[4];
    size_t n = 0, bytes = 0;
    char visible[8];
    if (moir_tokenize(tokenizer, name, std::strlen(name), id, 4, &n) == MOIR_OK && n == 1 &&
        moir_detokenize(tokenizer, id, 1, /*skip_special=*/1, visible, sizeof visible, &bytes) ==
            MOIR_OK &&
        bytes == 0)
      ids.push_back(id[0]);
  }
  return ids;
}

/// --chat: a conversation on stdin/stdout. Each turn renders the whole
/// conversation with the chat template and runs only the tokens the KV
/// cache does not hold yet (all of them again when an earlier part renders
/// differently from what was run).
int chat(const Options &o) {
  moir_model *model = nullptr;
  if (moir_model_open_trusted(o.path, o.trustedKeys, &model) != MOIR_OK)
    return runtimeError();
  int rank = 0, ranks = 1;
  if (moir_model_parallel(model, &rank, &ranks) == MOIR_OK && ranks > 1) {
    moir_model_close(model);
    std::fprintf(stderr, "moir-run: --chat with a %d-rank artifact is not supported yet (only "
                         "rank 0 reads stdin); use -p\n", ranks);
    return 2;
  }
  moir_session *session = nullptr;
  moir_tokenizer *tokenizer = nullptr;
  moir_chat_template *tmpl = nullptr;
  struct Release {
    moir_model *&model;
    moir_session *&session;
    moir_tokenizer *&tokenizer;
    moir_chat_template *&tmpl;
    ~Release() {
      moir_chat_template_close(tmpl);
      moir_tokenizer_close(tokenizer);
      moir_session_destroy(session);
      moir_model_close(model);
    }
  } release{model, session, tokenizer, tmpl};
  if (moir_session_create(model, 0, &session) != MOIR_OK ||
      moir_model_tokenizer(model, &tokenizer) != MOIR_OK)
    return runtimeError();
  moir_session_set_all_logits(session, 0);
  tmpl = openChatTemplate(o, model);
  if (!tmpl)
    return 1;
  std::vector<int32_t> stops = endOfTurnTokens(tokenizer);
  stops.insert(stops.end(), o.stopIds.begin(), o.stopIds.end());
  // The EOS and the stop ids the checkpoint declares.
  std::vector<int32_t> declared(moir_tokenizer_stop_ids(tokenizer, nullptr, 0));
  moir_tokenizer_stop_ids(tokenizer, declared.data(), declared.size());
  stops.insert(stops.end(), declared.begin(), declared.end());
  // The BOS and EOS texts the template may write (bos_token, eos_token).
  auto tokenText = [&](int32_t id) {
    size_t bytes = 0;
    const char *t = id >= 0 ? moir_tokenizer_token(tokenizer, id, &bytes) : nullptr;
    return t ? std::string(t, bytes) : std::string();
  };
  const std::string bosText = tokenText(moir_tokenizer_bos_id(tokenizer)),
                    eosText = tokenText(moir_tokenizer_eos_id(tokenizer));
  const char *bos = bosText.empty() ? nullptr : bosText.c_str();
  const char *eos = eosText.empty() ? nullptr : eosText.c_str();
  size_t holdBack = 0; // bytes a stop text may still be completing
  for (const std::string &s : o.stopTexts)
    holdBack = std::max(holdBack, s.size() - 1);
  const int64_t capacity = moir_model_capacity(model), vocab = moir_model_vocab_size(model);
  const int64_t tokenizerVocab = moir_tokenizer_vocab_size(tokenizer);
  uint64_t rng;
  moir_sampling_init(&o.sampling, &rng);

  std::vector<std::pair<std::string, std::string>> conversation;
  if (o.system)
    conversation.emplace_back("system", o.system);
  std::vector<int32_t> fed; // the tokens in the KV cache, in order
  const bool interactive = isatty(STDIN_FILENO);
  std::string line;
  for (int turn = 1;; ++turn) {
    if (interactive) {
      std::fputs("> ", stderr);
      std::fflush(stderr);
    }
    if (!std::getline(std::cin, line))
      break;
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    conversation.emplace_back("user", validUtf8(line));
    std::vector<moir_chat_message> messages;
    for (const auto &[role, content] : conversation)
      messages.push_back({role.c_str(), content.c_str()});
    size_t bytes = 0;
    std::string text;
    moir_status s = moir_chat_template_render(tmpl, messages.data(), messages.size(), 1, bos, eos,
                                              nullptr, 0, &bytes);
    if (s == MOIR_ERROR_OUT_OF_RANGE) {
      text.resize(bytes);
      s = moir_chat_template_render(tmpl, messages.data(), messages.size(), 1, bos, eos,
                                    text.data(), text.size(), &bytes);
    }
    if (s != MOIR_OK) {
      // The template refuses this conversation: the turn is dropped.
      std::fprintf(stderr, "moir-run: error: %s\n", moir_last_error());
      conversation.pop_back();
      continue;
    }
    std::vector<int32_t> ids(text.size() + 16);
    size_t n = 0;
    if (moir_tokenize(tokenizer, text.data(), text.size(), ids.data(), ids.size(), &n) != MOIR_OK)
      return runtimeError();
    ids.resize(n);
    if (static_cast<int64_t>(ids.size()) >= capacity) {
      std::fprintf(stderr,
                   "moir-run: the conversation (%zu tokens) fills the context (%lld tokens): "
                   "it ends here\n",
                   ids.size(), static_cast<long long>(capacity));
      return 0;
    }
    size_t same = 0;
    while (same < fed.size() && same < ids.size() && fed[same] == ids[same])
      ++same;
    if (same < fed.size()) {
      moir_session_reset(session);
      fed.clear();
      same = 0;
    }
    size_t step = o.chunk > 0 ? static_cast<size_t>(o.chunk) : ids.size();
    for (size_t at = same; at < ids.size(); at += step)
      if (moir_session_run(session, ids.data() + at,
                           static_cast<int64_t>(std::min(step, ids.size() - at))) != MOIR_OK)
        return runtimeError();
    fed = ids;

    moir_text_stream *decoder = nullptr;
    if (moir_text_stream_create(tokenizer, /*skip_special=*/1, &decoder) != MOIR_OK)
      return runtimeError();
    std::string reply;
    size_t printed = 0;
    long generated = 0;
    bool full = false, stopped = false;
    auto print = [&](size_t upTo) {
      if (upTo > printed) {
        std::fwrite(reply.data() + printed, 1, upTo - printed, stdout);
        std::fflush(stdout);
        printed = upTo;
      }
    };
    for (long i = 0; i < o.steps; ++i) {
      int32_t next;
      if (moir_sample(moir_session_logits(session), vocab, &o.sampling, &rng, &next) != MOIR_OK) {
        moir_text_stream_destroy(decoder);
        return runtimeError();
      }
      if (std::find(stops.begin(), stops.end(), next) != stops.end())
        break;
      ++generated;
      const char *piece = "";
      size_t pieceBytes = 0;
      // A model's vocabulary may have ids past the tokenizer's (padding
      // rows): they have no text.
      if (next < tokenizerVocab &&
          moir_text_stream_push(decoder, next, &piece, &pieceBytes) != MOIR_OK) {
        moir_text_stream_destroy(decoder);
        return runtimeError();
      }
      reply.append(piece, pieceBytes);
      size_t cut = std::string::npos;
      for (const std::string &stop : o.stopTexts)
        cut = std::min(cut, reply.find(stop));
      if (cut != std::string::npos) {
        reply.resize(cut);
        stopped = true;
        break;
      }
      print(reply.size() > holdBack ? reply.size() - holdBack : 0);
      if (i + 1 == o.steps)
        break;
      if (static_cast<int64_t>(fed.size()) + 1 > capacity) {
        full = true;
        break;
      }
      if (moir_session_run(session, &next, 1) != MOIR_OK) {
        moir_text_stream_destroy(decoder);
        return runtimeError();
      }
      fed.push_back(next);
    }
    const char *rest = nullptr;
    size_t restBytes = 0;
    moir_text_stream_finish(decoder, &rest, &restBytes);
    moir_text_stream_destroy(decoder);
    if (!stopped)
      reply.append(rest, restBytes);
    print(reply.size());
    std::fputc('\n', stdout);
    std::fflush(stdout);
    std::fprintf(stderr, "moir-run: turn %d: %zu prompt tokens (%zu new), %ld generated\n", turn,
                 ids.size(), ids.size() - same, generated);
    if (full)
      std::fprintf(stderr,
                   "moir-run: the context is full (%lld tokens): the reply stops here\n",
                   static_cast<long long>(capacity));
    conversation.emplace_back("assistant", validUtf8(reply));
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  Options o;
  if (int code = parseOptions(argc, argv, o))
    return code;
  if (o.help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  return o.inspect ? inspect(o) : o.chat ? chat(o) : generate(o);
}
