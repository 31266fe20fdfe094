/*===- moir/runtime.h - MoIR runtime C API ---------------------------------===
 *
 * The one header of MoIR's runtime. Plain C, no MLIR/LLVM dependency.
 * Functions return a moir_status; on failure moir_last_error() describes the
 * problem (naming the file and what is wrong) until the next call on the
 * same thread.
 *
 *===----------------------------------------------------------------------===*/

#ifndef MOIR_RUNTIME_H
#define MOIR_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOIR_RUNTIME_VERSION_MAJOR 0
#define MOIR_RUNTIME_VERSION_MINOR 1

typedef enum moir_status {
  MOIR_OK = 0,
  MOIR_ERROR_INVALID_ARGUMENT = 1,
  MOIR_ERROR_IO = 2,
  MOIR_ERROR_FORMAT = 3,
  MOIR_ERROR_OUT_OF_RANGE = 4,
  MOIR_ERROR_UNSUPPORTED = 5,
  /* The GPU (or its driver library) failed or is missing. */
  MOIR_ERROR_DEVICE = 6,
  /* Trusted keys are configured and the artifact is unsigned, signed by
   * another key, or changed since it was signed. */
  MOIR_ERROR_UNTRUSTED = 7,
} moir_status;

/* Human-readable description of the last failure on this thread ("" if none). */
const char *moir_last_error(void);

/* Name of a status code, e.g. "MOIR_ERROR_IO". */
const char *moir_status_name(moir_status status);

/* A read-only memory-mapped file: artifacts and weights are mapped, never
 * copied. */
typedef struct moir_mapped_file {
  const uint8_t *data;
  size_t size;
} moir_mapped_file;

moir_status moir_map_file(const char *path, moir_mapped_file *out);
void moir_unmap_file(moir_mapped_file *file);

/* ---- Compiled models ---------------------------------------------------- */

/* An artifact written by `moirc MODEL --target=... -o model.moir`: mapped,
 * checked (format, checksum of the code), its code loaded; the weights are
 * used where they lie in the mapped file. */
typedef struct moir_model moir_model;

moir_status moir_model_open(const char *path, moir_model **out);
/* Opens and checks the artifact like moir_model_open but loads no code and
 * needs no device (inspection on a machine without the target's GPU);
 * sessions on such a model are refused. */
moir_status moir_model_open_for_inspection(const char *path, moir_model **out);
/* Opens like moir_model_open once the artifact's signature (moirc --sign)
 * checks against the public keys in trusted_keys_path (one line
 * "moir-ed25519-public-key <64 hex digits>" per key, as moirc
 * --generate-signing-key writes them; blank lines and '#' comments).
 * Unsigned artifacts, artifacts signed by a key not in the file, and signed
 * artifacts changed since are refused with MOIR_ERROR_UNTRUSTED. Checking
 * reads every byte of the file once. A null trusted_keys_path is
 * moir_model_open. */
moir_status moir_model_open_trusted(const char *path, const char *trusted_keys_path,
                                    moir_model **out);
void moir_model_close(moir_model *model);

/* The manifest text (format version, target, model, entry arguments, tensor
 * table, checksums). */
const char *moir_model_manifest(const moir_model *model);
int64_t moir_model_vocab_size(const moir_model *model);
/* KV-cache rows the model was compiled for. */
int64_t moir_model_capacity(const moir_model *model);
/* Bytes of weights the model holds. */
uint64_t moir_model_weight_bytes(const moir_model *model);
/* Weight bytes one decode step reads (dense weights, the selected experts'
 * share of the expert weights, one embedding row) and the matmul FLOPs it
 * does, as the compiler counted them: the inputs of a decode roofline. */
uint64_t moir_model_decode_weight_bytes(const moir_model *model);
uint64_t moir_model_decode_flops(const moir_model *model);
/* Verifies the weights' checksum (reads every weight byte once). */
/* An expert-parallel artifact (moirc --expert-parallel=N) is one of N, each
 * run by its own process of an MPI job (mpirun -np N); moir_model_open
 * checks the job against it. *rank: this artifact's rank, *ranks: N (0 and 1
 * for an ordinary artifact). */
moir_status moir_model_parallel(const moir_model *model, int *rank, int *ranks);

/* Routing statistics (moir-run --record-routing): between start and stop,
 * the MoE layers of compiled models (moirc's default --moe-record-routing)
 * count how often each expert is chosen, per layer, over every session of
 * the process. Stop writes the counts as JSON to json_path (the input of
 * moirc --expert-placement) and clears them. */
moir_status moir_routing_record_start(void);
moir_status moir_routing_record_stop(const char *json_path);

moir_status moir_model_verify_weights(const moir_model *model);

/* A generation session: its own KV cache (capacity rows), position and
 * logits. Not thread-safe; use one session per thread. */
typedef struct moir_session moir_session;

/* capacity: 0 or at most moir_model_capacity(). */
moir_status moir_session_create(moir_model *model, int64_t capacity,
                                moir_session **out);
void moir_session_destroy(moir_session *session);

/* Runs n tokens at the current position (prefill, or a decode step when
 * n == 1) and advances the position. Running past the capacity fails with
 * MOIR_ERROR_OUT_OF_RANGE and changes nothing. */
moir_status moir_session_run(moir_session *session, const int32_t *tokens,
                             int64_t n);
/* Logits of the last token of the last run ([vocab]). */
const float *moir_session_logits(const moir_session *session);
/* Logits of every token of the last run ([n, vocab]); after
 * moir_session_set_all_logits(session, 0), the last token's only (n = 1). */
const float *moir_session_all_logits(const moir_session *session, int64_t *n);
/* Whether runs compute every token's logits (all != 0, the default) or only
 * the last token's, which is all generation needs: a prefill then skips the
 * final norm and the LM head for the other tokens (artifacts compiled before
 * this option compute them all anyway). */
void moir_session_set_all_logits(moir_session *session, int all);
int64_t moir_session_position(const moir_session *session);
/* Forgets the cache contents: the next run starts at position 0. */
void moir_session_reset(moir_session *session);

/* ---- Tokenizers ---------------------------------------------------------- */

/* A tokenizer read from a Hugging Face tokenizer.json: BPE models, byte-level
 * (GPT-2, Llama 3, Qwen, DeepSeek, OLMoE style) and SentencePiece style with
 * byte fallback (Llama 2, Mistral, Mixtral, Gemma), plus "moir.ScoreBPE", the
 * form moirc writes for a GGUF "llama" vocabulary (piece scores, no merges);
 * the normalizers, pre-tokenizers, decoders, added tokens and the
 * TemplateProcessing post-processor they use. Other models and steps are
 * refused naming the file and the key (MOIR_ERROR_UNSUPPORTED);
 * docs/tokenizers.md lists them. */
typedef struct moir_tokenizer moir_tokenizer;

moir_status moir_tokenizer_open(const char *tokenizer_json_path, moir_tokenizer **out);
/* The same from tokenizer.json's bytes in memory; `name` names it in errors. */
moir_status moir_tokenizer_open_memory(const char *name, const char *json, size_t bytes,
                                       moir_tokenizer **out);
/* The tokenizer the artifact carries (moirc packs MODEL/tokenizer.json);
 * MOIR_ERROR_UNSUPPORTED when it has none, MOIR_ERROR_FORMAT when its ids do
 * not fit the model's vocabulary. Close it with moir_tokenizer_close. */
moir_status moir_model_tokenizer(const moir_model *model, moir_tokenizer **out);
void moir_tokenizer_close(moir_tokenizer *tokenizer);
/* One past the largest token id. */
int64_t moir_tokenizer_vocab_size(const moir_tokenizer *tokenizer);
/* Token ids of `bytes` bytes of UTF-8 `text` (no BOS added) into ids[capacity];
 * *count is the number of ids, also when they do not fit
 * (MOIR_ERROR_OUT_OF_RANGE: call again with room for *count). */
moir_status moir_tokenize(const moir_tokenizer *tokenizer, const char *text, size_t bytes,
                          int32_t *ids, size_t capacity, size_t *count);
/* The same with the tokenizer's own special tokens around the text when
 * add_special is non-zero: those of its post-processor (a BOS for Llama,
 * Mistral, Gemma), as Hugging Face's encode(add_special_tokens=True) and
 * llama.cpp's add_special give. MOIR_ERROR_UNSUPPORTED when the tokenizer's
 * post-processor is one this runtime cannot apply. */
moir_status moir_tokenize_special(const moir_tokenizer *tokenizer, const char *text, size_t bytes,
                                  int add_special, int32_t *ids, size_t capacity, size_t *count);
/* The beginning-of-sequence and end-of-sequence token ids, or -1 when the
 * tokenizer (and the artifact's tokenizer_config.json) names none. */
int32_t moir_tokenizer_bos_id(const moir_tokenizer *tokenizer);
int32_t moir_tokenizer_eos_id(const moir_tokenizer *tokenizer);
/* The ids that end generation: EOS and the ones the checkpoint declares
 * (generation_config.json's eos_token_id, GGUF's end-of-turn token). Writes
 * up to `capacity` into ids; returns how many there are. */
size_t moir_tokenizer_stop_ids(const moir_tokenizer *tokenizer, int32_t *ids, size_t capacity);
/* A token's stored text (its vocabulary piece, or an added token's content),
 * valid while the tokenizer is open; NULL for an id outside the vocabulary. */
const char *moir_tokenizer_token(const moir_tokenizer *tokenizer, int32_t id, size_t *bytes);
/* Non-zero for a special added token (BOS, EOS, end-of-turn markers...). */
int moir_tokenizer_is_special(const moir_tokenizer *tokenizer, int32_t id);
/* The bytes of `n` token ids into text[capacity] (not NUL-terminated);
 * *bytes as *count above. With skip_special, special added tokens are left
 * out. */
moir_status moir_detokenize(const moir_tokenizer *tokenizer, const int32_t *ids, size_t n,
                            int skip_special, char *text, size_t capacity, size_t *bytes);

/* Streaming decoding, token by token: each push gives the bytes that end on
 * a character boundary (safe to print), holding back the bytes of a UTF-8
 * character whose rest is still to come; finish gives what is held back.
 * The ids continue a text (a prompt's continuation): a decoder's stripping
 * of the text's first space (SentencePiece's prefix space) does not apply.
 * The text pointers stay valid until the next call on the stream. */
typedef struct moir_text_stream moir_text_stream;
moir_status moir_text_stream_create(const moir_tokenizer *tokenizer, int skip_special,
                                    moir_text_stream **out);
moir_status moir_text_stream_push(moir_text_stream *stream, int32_t id, const char **text,
                                  size_t *bytes);
void moir_text_stream_finish(moir_text_stream *stream, const char **text, size_t *bytes);
void moir_text_stream_destroy(moir_text_stream *stream);

/* ---- Chat templates ------------------------------------------------------ */

/* A Hugging Face chat template (Jinja2), rendered byte for byte as
 * transformers' apply_chat_template renders it with Python's jinja2
 * (docs/chat.md: the supported subset). Messages are {role, content}
 * dicts; `tools` and `documents` are None; strftime_now reads the local
 * time. A template that fails (raise_exception, an error of the template)
 * or passes the bounds on output, loop iterations and recursion is an
 * error naming the template and the line: MOIR_ERROR_INVALID_ARGUMENT for
 * raise_exception (the template refuses the conversation),
 * MOIR_ERROR_FORMAT otherwise. */
typedef struct moir_chat_template moir_chat_template;
/* content may be NULL (None in the template). */
typedef struct { const char *role; const char *content; } moir_chat_message;
/* Parses a Jinja chat template; `name` names it in errors. */
moir_status moir_chat_template_open(const char *name, const char *source, size_t bytes, moir_chat_template **out);
/* The template the artifact carries (resource "chat_template.jinja"); MOIR_ERROR_UNSUPPORTED when it has none. */
moir_status moir_model_chat_template(const moir_model *model, moir_chat_template **out);
void moir_chat_template_close(moir_chat_template *t);
/* Renders messages[n]; bos/eos may be NULL (then undefined in the template). *bytes as moir_tokenize's *count: MOIR_ERROR_OUT_OF_RANGE with the needed size when it does not fit. */
moir_status moir_chat_template_render(const moir_chat_template *t, const moir_chat_message *messages, size_t n, int add_generation_prompt, const char *bos_token, const char *eos_token, char *out, size_t capacity, size_t *bytes);

/* ---- Sampling ----------------------------------------------------------- */

typedef struct moir_sampling {
  /* 0: greedy (argmax, the lowest id among equal maxima). Otherwise the
   * logits are divided by it; finite values only. */
  float temperature;
  /* Keep the k most likely tokens (0 or less: all). */
  int32_t top_k;
  /* Then keep the smallest set of those, most likely first, whose
   * probability (renormalized over the top k) reaches top_p; outside (0, 1):
   * all. Equal logits are ordered by token id for both cuts. */
  float top_p;
  /* Seed of the session-independent generator state below. */
  uint64_t seed;
} moir_sampling;

/* Picks a token from logits[vocab]: with probability softmax(logits /
 * temperature) restricted to the cuts above and renormalized. `state` is the
 * generator state; seed it with params->seed (moir_sampling_init) and pass it
 * to every call (a null state samples greedily). A -inf logit is a masked
 * token, never drawn; a NaN or +inf logit, all logits -inf, or a negative or
 * non-finite temperature is MOIR_ERROR_INVALID_ARGUMENT. */
void moir_sampling_init(const moir_sampling *params, uint64_t *state);
moir_status moir_sample(const float *logits, int64_t vocab,
                        const moir_sampling *params, uint64_t *state,
                        int32_t *token);

/* ---- Energy ------------------------------------------------------------- */

/* One component's work per token as the compiler counted it (the manifest's
 * `cost` lines; docs/energy.md): a decode token at context S (cache rows it
 * attends to) does decode_flops + S * decode_flops_per_row FLOPs and reads
 * decode_bytes + S * decode_bytes_per_row bytes (weights and KV cache); a
 * token of a prefill of moir_model_cost_prompt() tokens from an empty cache
 * does prefill_flops FLOPs and reads prefill_bytes bytes. Components:
 * "layer.<i>.attention", "layer.<i>.router", "layer.<i>.experts" (experts:
 * the routed experts it holds, 0 otherwise), "layer.<i>.projections",
 * "head.projections". `name` lives as long as the model. */
typedef struct moir_cost {
  const char *name;
  double decode_flops, decode_flops_per_row;
  double decode_bytes, decode_bytes_per_row;
  double prefill_flops, prefill_bytes;
  int64_t experts;
} moir_cost;

/* Components of the model's cost model. An artifact without cost lines (an
 * older compiler) has one, "model", from its `decode` line: the decode
 * weight bytes and FLOPs per token, the same for prefill tokens, nothing per
 * row; moir_model_cost_prompt() is then 0. */
int64_t moir_model_cost_count(const moir_model *model);
moir_status moir_model_cost(const moir_model *model, int64_t index, moir_cost *out);
/* The prompt length the prefill costs are counted for (0: no cost lines). */
int64_t moir_model_cost_prompt(const moir_model *model);

/* A hardware energy counter: RAPL through Linux powercap
 * (MOIR_POWERCAP_ROOT, default /sys/class/powercap; package zones and their
 * DRAM subzones) or the perf `power` PMU, NVIDIA's NVML or AMD SMI (both
 * loaded with dlopen when opened). */
typedef struct moir_energy_meter moir_energy_meter;

typedef struct moir_energy_info {
  /* "rapl", "perf", "nvml", "amdsmi"; "none" when no counter is available. */
  const char *source;
  /* What the counter covers: the zones, events or devices summed. */
  const char *detail;
  /* Why no counter is available ("" when one is). */
  const char *reason;
  int available;
  /* The counter's unit (joules per count). */
  double resolution_j;
  /* How often the hardware updates the counter, as documented for the
   * source (an assumption; measure it by polling where it matters). */
  double update_interval_s;
  /* The raw counter's range, after which it wraps (0: 64 bits, never in
   * practice). Reads undo wraps as long as they are less than one range
   * apart. */
  double wrap_j;
} moir_energy_info;

/* Opens a counter: source "rapl", "perf", "nvml", "amdsmi", "none", or
 * "auto"/NULL: the first available of nvml (for a model whose target is
 * nvidia), amdsmi (target amd), rapl then perf (target cpu, or no model).
 * A counter that is not available still opens: describe says why, reads
 * fail with MOIR_ERROR_UNSUPPORTED. An unknown source name is
 * MOIR_ERROR_INVALID_ARGUMENT. */
moir_status moir_energy_meter_open(const char *source, const moir_model *model,
                                   moir_energy_meter **out);
/* Joules counted since the meter opened (wraps undone); MOIR_ERROR_IO when
 * a counter cannot be read. */
moir_status moir_energy_meter_read(moir_energy_meter *meter, double *joules);
/* The strings live as long as the meter. */
void moir_energy_meter_describe(const moir_energy_meter *meter, moir_energy_info *out);
void moir_energy_meter_close(moir_energy_meter *meter);

#ifdef __cplusplus
}
#endif

#endif /* MOIR_RUNTIME_H */
