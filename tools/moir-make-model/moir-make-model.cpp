//===- moir-make-model.cpp - deterministic random checkpoints ---------------===//
//
// moir-make-model OUT_DIR [--shape mixtral-demo|mixtral-bench|deepseek-v2-lite-bench|
//                                  mixtral-tiny|mistral-tiny|deepseek-tiny|
//                                  mixtral-quant-tiny|mistral-quant-tiny|
//                                  mistral-tp-tiny|mistral-bench]
//                         [--dtype bf16|f16|f32] [--seed N] [--sliding-window N] [--layers N]
//
// Writes a Hugging Face checkpoint (config.json + model.safetensors) of the
// given shape with deterministic random weights: the main job's default model
// and the benchmarks' models. Weights ~ N(0, 0.02)-ish uniform, norms 1.
// --sliding-window N (Mixtral and Mistral shapes) writes "sliding_window": N;
// --layers N overrides the shape's layer count.
//
//===----------------------------------------------------------------------===//

// Plain C++ (no LLVM): GPU and deployment machines build it next to the
// runtime, so a benchmark's weights are made where they run instead of being
// shipped (see bench/gpu_generate.sh).

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Shape {
  std::string name, arch;
  int64_t hidden, layers, heads, kvHeads, ffn, experts, topK, vocab;
  // DeepSeek-V2-Lite: MLA and shared experts, dense first layer.
  int64_t kvLora = 0, nope = 0, rope = 0, vDim = 0, moeFFN = 0, shared = 0, firstDense = 0;
};

const Shape kShapes[] = {
    {"mixtral-demo", "MixtralForCausalLM", 1024, 4, 16, 4, 2816, 8, 2, 32000},
    {"mixtral-bench", "MixtralForCausalLM", 1024, 8, 16, 4, 2816, 8, 2, 32000},
    {"deepseek-v2-lite-bench", "DeepseekV2ForCausalLM", 1024, 27, 16, 16, 2816, 64, 6, 32000,
     512, 128, 64, 128, 256, 2, 1},
    // A few MB, for conformance checks of a backend on fresh random weights
    // (--seed): odd sizes, so kernels meet their edge cases (reductions of
    // 100 and 170 leave remainders after 16- and 32-wide vectors; 170 and
    // 301 outputs leave columns after 4-wide register tiles).
    {"mixtral-tiny", "MixtralForCausalLM", 100, 2, 5, 1, 170, 4, 2, 301},
    // Dense (no experts): numerical checks free of routing decisions, which
    // a last-bit difference upstream can flip.
    {"mistral-tiny", "MistralForCausalLM", 100, 2, 5, 1, 170, 0, 0, 301},
    {"deepseek-tiny", "DeepseekV2ForCausalLM", 100, 3, 4, 4, 170, 8, 3, 301, 50, 16, 8, 16, 50, 1,
     1},
    // The same for quantized weights (--weight-type): every reduction a
    // multiple of the formats' 32-wide groups (96, 160), output counts
    // still odd. The Mixtral one routes every token to all 4 experts: its
    // checks are free of routing decisions (which a rounding difference
    // can flip), and every expert sees the prompt's rows.
    {"mixtral-quant-tiny", "MixtralForCausalLM", 96, 2, 3, 1, 160, 4, 4, 301},
    {"mistral-quant-tiny", "MistralForCausalLM", 96, 2, 3, 1, 160, 0, 0, 301},
    // K-quants (rows of 256): every expert matrix and most projections have
    // 256 or 512 columns. The DeepSeek ones have two shared experts, which
    // the fused experts read in blocks of the routed FFN width: 256 (whole
    // superblocks) or 384 (not: their down projection gets per-group scales;
    // the routed down projections, 384 wide, fall back to Q8_0).
    {"mixtral-kquant-tiny", "MixtralForCausalLM", 256, 2, 4, 2, 512, 4, 4, 301},
    {"deepseek-kquant-tiny", "DeepseekV2ForCausalLM", 256, 2, 4, 4, 512, 4, 2, 301, 256, 32,
     16, 32, 256, 2, 1},
    {"deepseek-kquant-odd-tiny", "DeepseekV2ForCausalLM", 256, 2, 4, 4, 512, 4, 2, 301, 256, 32,
     16, 32, 384, 2, 1},
    // Tensor parallelism over up to 4 ranks: 8 query heads on 4 KV heads
    // (head dim 16), an FFN of 200 and 301 vocabulary rows, both left with
    // columns after the splits' 8-wide units.
    {"mistral-tp-tiny", "MistralForCausalLM", 128, 2, 8, 4, 200, 0, 0, 301},
    // Dense, Mistral-7B-like proportions at the benchmark models' size.
    {"mistral-bench", "MistralForCausalLM", 1024, 8, 16, 4, 2816, 0, 0, 32000},
};

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
  bool isNorm;
};

uint64_t state;
uint32_t next() {
  state ^= state << 13;
  state ^= state >> 7;
  state ^= state << 17;
  return static_cast<uint32_t>(state >> 16);
}

/// `v` rounded to the nearest f16 (ties to even), subnormals included.
uint16_t toHalf(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  uint16_t sign = static_cast<uint16_t>((b >> 16) & 0x8000);
  int32_t biased = static_cast<int32_t>((b >> 23) & 0xff);
  uint32_t m = b & 0x7fffff;
  if (biased == 0xff)
    return sign | 0x7c00 | (m ? 0x200 : 0);
  int32_t e = biased - 127 + 15;
  if (e >= 31)
    return sign | 0x7c00;
  // The f16 code before rounding and the bits below it: normal, or a
  // subnormal in units of 2^-24 (the implicit bit shifted in).
  int shift = e > 0 ? 13 : 14 - e;
  if (shift > 25)
    return sign;
  uint32_t mantissa = e > 0 ? m : (m | 0x800000);
  uint32_t q = (e > 0 ? static_cast<uint32_t>(e) << 10 : 0) | (mantissa >> shift);
  uint32_t rest = mantissa & ((1u << shift) - 1), half = 1u << (shift - 1);
  if (rest > half || (rest == half && (q & 1)))
    ++q; // may carry into the exponent: the next code up, as it should
  return static_cast<uint16_t>(sign | q);
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: moir-make-model OUT_DIR [--shape NAME] [--dtype bf16|f16|f32] [--seed N] "
                         "[--sliding-window N] [--layers N]\n");
    return 2;
  }
  std::string out = argv[1], shapeName = "mixtral-demo", dtype = "bf16";
  state = 0x9e3779b97f4a7c15ull;
  long long window = 0, layers = 0;
  for (int i = 2; i < argc; i += 2) {
    std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "moir-make-model: %s needs a value\n", a.c_str());
      return 2;
    }
    if (a == "--shape") shapeName = argv[i + 1];
    else if (a == "--dtype") dtype = argv[i + 1];
    else if (a == "--seed") state ^= std::strtoull(argv[i + 1], nullptr, 10) * 0x2545f4914f6cdd1dull;
    else if (a == "--sliding-window") window = std::atoll(argv[i + 1]);
    else if (a == "--layers") {
      layers = std::atoll(argv[i + 1]);
      if (layers < 1 || layers > 1000) {
        std::fprintf(stderr, "moir-make-model: --layers needs 1 to 1000, got %s\n", argv[i + 1]);
        return 2;
      }
    }
    else {
      std::fprintf(stderr, "moir-make-model: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  Shape shape;
  const Shape *s = nullptr;
  for (const Shape &c : kShapes)
    if (c.name == shapeName)
      s = &c;
  if (!s || (dtype != "bf16" && dtype != "f16" && dtype != "f32")) {
    std::fprintf(stderr, "moir-make-model: unknown --shape or --dtype\n");
    return 2;
  }
  if (layers) {
    shape = *s;
    shape.layers = layers;
    s = &shape;
  }
  bool mla = s->kvLora > 0;
  if (window < 0 || (window > 0 && mla)) {
    std::fprintf(stderr, "moir-make-model: --sliding-window needs a positive size and a Mixtral or Mistral shape\n");
    return 2;
  }
  int64_t hd = s->hidden / s->heads;
  std::vector<Tensor> tensors;
  auto add = [&](std::string name, std::vector<int64_t> shape, bool norm = false) {
    tensors.push_back({std::move(name), std::move(shape), norm});
  };
  add("model.embed_tokens.weight", {s->vocab, s->hidden});
  for (int64_t l = 0; l < s->layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {s->hidden}, true);
    add(p + "post_attention_layernorm.weight", {s->hidden}, true);
    if (mla) {
      add(p + "self_attn.q_proj.weight", {s->heads * (s->nope + s->rope), s->hidden});
      add(p + "self_attn.kv_a_proj_with_mqa.weight", {s->kvLora + s->rope, s->hidden});
      add(p + "self_attn.kv_a_layernorm.weight", {s->kvLora}, true);
      add(p + "self_attn.kv_b_proj.weight", {s->heads * (s->nope + s->vDim), s->kvLora});
      add(p + "self_attn.o_proj.weight", {s->hidden, s->heads * s->vDim});
    } else {
      add(p + "self_attn.q_proj.weight", {s->heads * hd, s->hidden});
      add(p + "self_attn.k_proj.weight", {s->kvHeads * hd, s->hidden});
      add(p + "self_attn.v_proj.weight", {s->kvHeads * hd, s->hidden});
      add(p + "self_attn.o_proj.weight", {s->hidden, s->heads * hd});
    }
    if ((mla && l < s->firstDense) || s->experts == 0) {
      add(p + "mlp.gate_proj.weight", {s->ffn, s->hidden});
      add(p + "mlp.up_proj.weight", {s->ffn, s->hidden});
      add(p + "mlp.down_proj.weight", {s->hidden, s->ffn});
      continue;
    }
    std::string moe = p + (mla ? "mlp." : "block_sparse_moe.");
    int64_t ffn = mla ? s->moeFFN : s->ffn;
    add(moe + "gate.weight", {s->experts, s->hidden});
    for (int64_t e = 0; e < s->experts; ++e) {
      std::string x = moe + "experts." + std::to_string(e) + ".";
      add(x + (mla ? "gate_proj" : "w1") + ".weight", {ffn, s->hidden});
      add(x + (mla ? "up_proj" : "w3") + ".weight", {ffn, s->hidden});
      add(x + (mla ? "down_proj" : "w2") + ".weight", {s->hidden, ffn});
    }
    if (mla) {
      int64_t sh = s->shared * s->moeFFN;
      add(moe + "shared_experts.gate_proj.weight", {sh, s->hidden});
      add(moe + "shared_experts.up_proj.weight", {sh, s->hidden});
      add(moe + "shared_experts.down_proj.weight", {s->hidden, sh});
    }
  }
  add("model.norm.weight", {s->hidden}, true);
  add("lm_head.weight", {s->vocab, s->hidden});

  int width = dtype == "f32" ? 4 : 2;
  const char *dtypeName = dtype == "f32" ? "F32" : dtype == "f16" ? "F16" : "BF16";
  std::string header = "{";
  uint64_t offset = 0;
  for (const Tensor &t : tensors) {
    uint64_t n = 1;
    std::string dims;
    for (int64_t d : t.shape) {
      n *= d;
      dims += (dims.empty() ? "" : ",") + std::to_string(d);
    }
    header += (header.size() > 1 ? "," : "") + std::string("\"") + t.name + "\":{\"dtype\":\"" +
              dtypeName + "\",\"shape\":[" + dims + "],\"data_offsets\":[" +
              std::to_string(offset) + "," + std::to_string(offset + n * width) + "]}";
    offset += n * width;
  }
  header += "}";
  while (header.size() % 8)
    header += ' ';

  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  if (ec) {
    std::fprintf(stderr, "moir-make-model: %s: %s\n", out.c_str(), ec.message().c_str());
    return 1;
  }
  std::ofstream st(out + "/model.safetensors", std::ios::binary);
  if (!st) {
    std::fprintf(stderr, "moir-make-model: cannot write %s/model.safetensors\n", out.c_str());
    return 1;
  }
  uint64_t headerBytes = header.size();
  st.write(reinterpret_cast<const char *>(&headerBytes), 8);
  st << header;
  std::vector<char> buffer;
  for (const Tensor &t : tensors) {
    uint64_t n = 1;
    for (int64_t d : t.shape)
      n *= d;
    // Scale ~ 1/sqrt(fan-in) keeps activations O(1) through the layers.
    float scale = t.isNorm ? 0.0f : 1.7f / std::sqrt(static_cast<float>(t.shape.back()));
    buffer.resize(n * width);
    for (uint64_t i = 0; i < n; ++i) {
      float u = (next() & 0xffff) / 32768.0f - 1.0f;
      float v = t.isNorm ? 1.0f + 0.1f * u : scale * u;
      if (width == 4) {
        std::memcpy(&buffer[i * 4], &v, 4);
      } else if (dtype == "f16") {
        uint16_t h = toHalf(v);
        std::memcpy(&buffer[i * 2], &h, 2);
      } else {
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        uint16_t h = static_cast<uint16_t>((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
        std::memcpy(&buffer[i * 2], &h, 2);
      }
    }
    st.write(buffer.data(), buffer.size());
  }
  if (!st.flush()) {
    std::fprintf(stderr, "moir-make-model: writing %s/model.safetensors failed\n", out.c_str());
    return 1;
  }
  std::ofstream cfg(out + "/config.json");
  if (mla)
    cfg << "{\"architectures\": [\"" << s->arch << "\"], \"model_type\": \"deepseek_v2\", "
        << "\"hidden_size\": " << s->hidden << ", \"intermediate_size\": " << s->ffn
        << ", \"moe_intermediate_size\": " << s->moeFFN << ", \"num_hidden_layers\": " << s->layers
        << ", \"num_attention_heads\": " << s->heads << ", \"num_key_value_heads\": " << s->heads
        << ", \"n_routed_experts\": " << s->experts << ", \"num_experts_per_tok\": " << s->topK
        << ", \"n_shared_experts\": " << s->shared << ", \"first_k_dense_replace\": " << s->firstDense
        << ", \"kv_lora_rank\": " << s->kvLora << ", \"q_lora_rank\": null, \"qk_nope_head_dim\": "
        << s->nope << ", \"qk_rope_head_dim\": " << s->rope << ", \"v_head_dim\": " << s->vDim
        << ", \"topk_method\": \"greedy\", \"norm_topk_prob\": false, \"routed_scaling_factor\": 1.0"
        << ", \"vocab_size\": " << s->vocab << ", \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000.0, "
        << "\"hidden_act\": \"silu\", \"tie_word_embeddings\": false}\n";
  else
    cfg << "{\"architectures\": [\"" << s->arch << "\"], \"model_type\": \""
        << (s->experts ? "mixtral" : "mistral") << "\", "
        << "\"hidden_size\": " << s->hidden << ", \"intermediate_size\": " << s->ffn
        << ", \"num_hidden_layers\": " << s->layers << ", \"num_attention_heads\": " << s->heads
        << ", \"num_key_value_heads\": " << s->kvHeads
        << (s->experts ? ", \"num_local_experts\": " + std::to_string(s->experts) +
                             ", \"num_experts_per_tok\": " + std::to_string(s->topK)
                       : std::string())
        << ", \"vocab_size\": " << s->vocab
        << ", \"rms_norm_eps\": 1e-5, \"rope_theta\": 1000000.0, \"hidden_act\": \"silu\", "
        << (window ? "\"sliding_window\": " + std::to_string(window) + ", " : std::string())
        << "\"tie_word_embeddings\": false}\n";
  if (!cfg.flush()) {
    std::fprintf(stderr, "moir-make-model: writing %s/config.json failed\n", out.c_str());
    return 1;
  }
  std::printf("moir-make-model: %s (%s, %.2f GB of weights) in %s\n", s->name.c_str(),
              dtype.c_str(), offset / 1e9, out.c_str());
  return 0;
}
