#!/usr/bin/env python3
"""Peak memory of importing a ~10 GB checkpoint.

Writes a Mixtral-shaped bf16 checkpoint (hidden 4096, 4 layers, 8 experts of
11008, vocab 32000: 9.5 GB of weights) with its blocks allocated on disk
(posix_fallocate; --sparse leaves a hole instead), then runs `moirc CKPT --compile-to=input` under /usr/bin/time and prints the
peak RSS. The importer maps the file and reads only its header, so the peak
should track metadata, not weights.

    python3 bench/import_memory.py [--moirc build/bin/moirc] [--dir /tmp/moir-10g]
"""
import argparse
import json
import os
import struct
import subprocess
import sys

H, L, HEADS, KV, FFN, E, VOCAB = 4096, 4, 32, 8, 11008, 8, 32000


def shapes():
    d = H // HEADS
    s = {"model.embed_tokens.weight": [VOCAB, H], "model.norm.weight": [H],
         "lm_head.weight": [VOCAB, H]}
    for l in range(L):
        p = f"model.layers.{l}."
        s[p + "input_layernorm.weight"] = [H]
        s[p + "post_attention_layernorm.weight"] = [H]
        s[p + "self_attn.q_proj.weight"] = [H, H]
        s[p + "self_attn.k_proj.weight"] = [KV * d, H]
        s[p + "self_attn.v_proj.weight"] = [KV * d, H]
        s[p + "self_attn.o_proj.weight"] = [H, H]
        s[p + "block_sparse_moe.gate.weight"] = [E, H]
        for e in range(E):
            q = p + f"block_sparse_moe.experts.{e}."
            s[q + "w1.weight"] = [FFN, H]
            s[q + "w3.weight"] = [FFN, H]
            s[q + "w2.weight"] = [H, FFN]
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moirc", default=os.path.join(os.path.dirname(__file__), "..", "build", "bin", "moirc"))
    ap.add_argument("--dir", default="/tmp/moir-10g")
    ap.add_argument("--sparse", action="store_true", help="do not allocate the data blocks")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    header, offset = {}, 0
    for name, shape in shapes().items():
        n = 2
        for x in shape:
            n *= x
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path = os.path.join(args.dir, "model.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + offset)
        if not args.sparse:
            os.posix_fallocate(f.fileno(), 0, 8 + len(text) + offset)
    config = {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral",
              "hidden_size": H, "intermediate_size": FFN, "num_hidden_layers": L,
              "num_attention_heads": HEADS, "num_key_value_heads": KV,
              "num_local_experts": E, "num_experts_per_tok": 2, "vocab_size": VOCAB,
              "rms_norm_eps": 1e-5, "rope_theta": 1e6, "hidden_act": "silu"}
    with open(os.path.join(args.dir, "config.json"), "w") as f:
        json.dump(config, f)
    r = subprocess.run(["/usr/bin/time", "-f", "%M %e", args.moirc, args.dir,
                        "--compile-to=input", "-o", "/dev/null"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr)
    rss_kb, secs = r.stderr.strip().splitlines()[-1].split()
    print(f"checkpoint: {offset / 1e9:.2f} GB of weights in {path} "
          f"({os.stat(path).st_blocks * 512 / 1e9:.2f} GB allocated on disk)")
    print(f"moirc --compile-to=input: peak RSS {int(rss_kb) / 1024:.1f} MB, {float(secs):.2f} s")


if __name__ == "__main__":
    main()
