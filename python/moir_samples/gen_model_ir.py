#!/usr/bin/env python3
"""Writes a whole decoder model in MoIR's input contract (llm/moe/mla ops,
weights referenced by their Hugging Face tensor names) for one model family.

Until the importer exists this is how MoIR's main job gets a model-shaped
module: `gen_model_ir.py --family mixtral | moir-opt --moir-graph-pipeline`.
The IR has the structure the importer will emit; the shapes are small by
default and can be set from the command line.
"""

import argparse
import sys


class Emitter:
    """Builds MLIR text with fresh SSA names."""

    def __init__(self):
        self.lines = []
        self.count = 0

    def fresh(self, hint="v"):
        self.count += 1
        return f"%{hint}{self.count}"

    def op(self, text, hint="v", results=1):
        names = [self.fresh(hint) for _ in range(results)]
        self.lines.append(f"    {', '.join(names)} = {text}")
        return names[0] if results == 1 else names

    def weight(self, name, shape, dtype="f32"):
        return self.op(f'llm.weight "{name}" : {tensor(shape, dtype)}', "w")

    def stacked(self, names, shape, dtype="f32"):
        listed = ", ".join(f'"{n}"' for n in names)
        return self.op(f"llm.stacked_weight [{listed}] : {tensor(shape, dtype)}", "w")


def tensor(shape, dtype="f32"):
    dims = "x".join("?" if d is None else str(d) for d in shape)
    return f"tensor<{dims}x{dtype}>" if shape else f"tensor<{dtype}>"


T = None  # the dynamic token dimension


def flt(x):
    """An MLIR float literal (MLIR rejects '1e-05')."""
    return f"{float(x):e}"


def linear(e, x, x_shape, w, w_shape, bias=None):
    out = list(x_shape[:-1]) + [w_shape[0]]
    operands = f"{x}, {w}" + (f", {bias}" if bias else "")
    types = f"{tensor(x_shape)}, {tensor(w_shape)}" + (f", {tensor([w_shape[0]])}" if bias else "")
    return e.op(f"llm.linear {operands} : ({types}) -> {tensor(out)}"), out


def rms_norm(e, x, shape, w, eps):
    return e.op(f"llm.rms_norm {x}, {w} epsilon = {flt(eps)} : {tensor(shape)}, {tensor([shape[-1]])}")


def split_heads(e, x, tokens, heads, dim):
    return e.op(f"tensor.expand_shape {x} [[0], [1, 2]] output_shape [{tokens}, {heads}, {dim}] "
                f": {tensor([T, heads * dim])} into {tensor([T, heads, dim])}")


def merge_heads(e, x, heads, dim):
    return e.op(f"tensor.collapse_shape {x} [[0], [1, 2]] : {tensor([T, heads, dim])} into {tensor([T, heads * dim])}")


def add(e, a, b, shape):
    return e.op(f"arith.addf {a}, {b} : {tensor(shape)}")


def rope_attr(c, dim):
    parts = [f"theta = {flt(c['rope_theta'])}", f"dim = {dim}"]
    if c.get("rope_scaling"):
        parts.append(c["rope_scaling"])
    if c.get("rope_interleaved"):
        parts.append("interleaved = true")
    return "<" + ", ".join(parts) + ">"


def gqa_attention(e, c, l, n, tokens, pos, off, caches):
    """Llama-family attention: q/k/v projections (optional bias and QK-norm),
    RoPE, cache updates, grouped-query attention, o_proj."""
    hd, H, KV = c["head_dim"], c["heads"], c["kv_heads"]
    hidden = c["hidden"]
    p = f"model.layers.{l}.self_attn"
    bias = c.get("attention_bias", False)
    proj = {}
    for name, heads in (("q", H), ("k", KV), ("v", KV)):
        w = e.weight(f"{p}.{name}_proj.weight", [heads * hd, hidden])
        b = e.weight(f"{p}.{name}_proj.bias", [heads * hd]) if bias else None
        y, _ = linear(e, n, [T, hidden], w, [heads * hd, hidden], b)
        proj[name] = split_heads(e, y, tokens, heads, hd)
    q, k, v = proj["q"], proj["k"], proj["v"]
    if c.get("qk_norm"):
        qn = e.weight(f"{p}.q_norm.weight", [hd])
        kn = e.weight(f"{p}.k_norm.weight", [hd])
        q = rms_norm(e, q, [T, H, hd], qn, c["eps"])
        k = rms_norm(e, k, [T, KV, hd], kn, c["eps"])
    rope = rope_attr(c, hd)
    q = e.op(f"llm.rope {q}, {pos} with {rope} : {tensor([T, H, hd])}, {tensor([T], 'i64')}")
    k = e.op(f"llm.rope {k}, {pos} with {rope} : {tensor([T, KV, hd])}, {tensor([T], 'i64')}")
    cache_t = tensor([c["capacity"], KV, hd])
    kc, vc = caches
    kc = e.op(f"llm.kv_cache_update {k} into {kc}[{off}] : {tensor([T, KV, hd])} into {cache_t}")
    vc = e.op(f"llm.kv_cache_update {v} into {vc}[{off}] : {tensor([T, KV, hd])} into {cache_t}")
    window = f" window = {c['sliding_window']}" if c.get("sliding_window") else ""
    a = e.op(f"llm.attention {q}, {kc}, {vc}, {pos} scale = {flt(hd ** -0.5)}{window} : "
             f"({tensor([T, H, hd])}, {cache_t}, {cache_t}, {tensor([T], 'i64')}) -> {tensor([T, H, hd])}")
    a = merge_heads(e, a, H, hd)
    wo = e.weight(f"{p}.o_proj.weight", [hidden, H * hd])
    o, _ = linear(e, a, [T, H * hd], wo, [hidden, H * hd])
    return o, [kc, vc]


def mla_attention(e, c, l, n, pos, off, caches):
    """DeepSeek Multi-head Latent Attention as one composite op."""
    m = c["mla"]
    H, hidden = c["heads"], c["hidden"]
    qhd = m["nope"] + m["rope"]
    p = f"model.layers.{l}.self_attn"
    operand_types = []
    if m["q_lora"]:
        qa = e.weight(f"{p}.q_a_proj.weight", [m["q_lora"], hidden])
        qn = e.weight(f"{p}.q_a_layernorm.weight", [m["q_lora"]])
        qb = e.weight(f"{p}.q_b_proj.weight", [H * qhd, m["q_lora"]])
        qpart = f"q_lora({qa}, {qn}, {qb})"
        operand_types += [tensor([m["q_lora"], hidden]), tensor([m["q_lora"]]), tensor([H * qhd, m["q_lora"]])]
    else:
        wq = e.weight(f"{p}.q_proj.weight", [H * qhd, hidden])
        qpart = f"q({wq})"
        operand_types.append(tensor([H * qhd, hidden]))
    kva = e.weight(f"{p}.kv_a_proj_with_mqa.weight", [m["kv_lora"] + m["rope"], hidden])
    kvn = e.weight(f"{p}.kv_a_layernorm.weight", [m["kv_lora"]])
    kvb = e.weight(f"{p}.kv_b_proj.weight", [H * (m["nope"] + m["v"]), m["kv_lora"]])
    wo = e.weight(f"{p}.o_proj.weight", [hidden, H * m["v"]])
    operand_types += [tensor([m["kv_lora"] + m["rope"], hidden]), tensor([m["kv_lora"]]),
                      tensor([H * (m["nope"] + m["v"]), m["kv_lora"]]), tensor([hidden, H * m["v"]])]
    lat_t = tensor([c["capacity"], m["kv_lora"]])
    pe_t = tensor([c["capacity"], m["rope"]])
    config = (f"#mla.config<num_heads = {H}" + (f", q_lora_rank = {m['q_lora']}" if m["q_lora"] else "") +
              f", kv_lora_rank = {m['kv_lora']}, qk_nope_head_dim = {m['nope']}, "
              f"qk_rope_head_dim = {m['rope']}, v_head_dim = {m['v']}>")
    lc, rc = caches
    types = ", ".join([tensor([T, hidden]), tensor([T], "i64"), lat_t, pe_t, "index"] + operand_types)
    o, lc, rc = e.op(
        f"mla.attention {n}, {pos}, {lc}, {rc}[{off}] {qpart} kv({kva}, {kvn}, {kvb}) out({wo}) "
        f"{config} #llm.rope{rope_attr(c, m['rope'])} scale = {flt(qhd ** -0.5)} epsilon = {flt(c['eps'])} "
        f": ({types}) -> ({tensor([T, hidden])}, {lat_t}, {pe_t})", "a", results=3)
    return o, [lc, rc]


def dense_mlp(e, c, l, n, ffn):
    hidden = c["hidden"]
    p = f"model.layers.{l}.mlp"
    if c.get("xielu"):
        up = e.weight(f"{p}.up_proj.weight", [ffn, hidden])
        u, _ = linear(e, n, [T, hidden], up, [ffn, hidden])
        ap = e.weight(f"{p}.act_fn.alpha_p", [1])
        an = e.weight(f"{p}.act_fn.alpha_n", [1])
        h = e.op(f"llm.xielu {u}, {ap}, {an} beta = 0.5 eps = -1.0e-06 : {tensor([T, ffn])}, {tensor([1])}")
    else:
        g = e.weight(f"{p}.gate_proj.weight", [ffn, hidden])
        up = e.weight(f"{p}.up_proj.weight", [ffn, hidden])
        gv, _ = linear(e, n, [T, hidden], g, [ffn, hidden])
        uv, _ = linear(e, n, [T, hidden], up, [ffn, hidden])
        h = e.op(f"llm.glu silu {gv}, {uv} : {tensor([T, ffn])}")
    d = e.weight(f"{p}.down_proj.weight", [hidden, ffn])
    y, _ = linear(e, h, [T, ffn], d, [hidden, ffn])
    return y


def moe_layer(e, c, l, n):
    mo = c["moe"]
    E, I, hidden = mo["experts"], mo["ffn"], c["hidden"]
    p = f"model.layers.{l}.{mo['prefix']}"
    router = e.weight(f"{p}.{mo['router']}", [E, hidden])
    names = lambda w: [f"{p}.experts.{i}.{w}" for i in range(E)]
    g = e.stacked(names(mo["w_gate"]), [E, I, hidden])
    u = e.stacked(names(mo["w_up"]), [E, I, hidden])
    d = e.stacked(names(mo["w_down"]), [E, hidden, I])
    operands = f"{n} router {router}"
    types = [tensor([T, hidden]), tensor([E, hidden])]
    if "noaux_tc" in mo["routing"]:
        b = e.weight(f"{p}.gate.e_score_correction_bias", [E])
        operands += f" bias {b}"
        types.append(tensor([E]))
    operands += f" experts({g}, {u}, {d})"
    types += [tensor([E, I, hidden]), tensor([E, I, hidden]), tensor([E, hidden, I])]
    if mo.get("shared_ffn"):
        S = mo["shared_ffn"]
        sp = f"{p}.{mo['shared_name']}"
        sg = e.weight(f"{sp}.gate_proj.weight", [S, hidden])
        su = e.weight(f"{sp}.up_proj.weight", [S, hidden])
        sd = e.weight(f"{sp}.down_proj.weight", [hidden, S])
        operands += f" shared({sg}, {su}, {sd})"
        types += [tensor([S, hidden]), tensor([S, hidden]), tensor([hidden, S])]
        if mo.get("shared_gate"):
            sgate = e.weight(f"{p}.shared_expert_gate.weight", [1, hidden])
            operands += f" shared_gate {sgate}"
            types.append(tensor([1, hidden]))
    return e.op(f"moe.layer {operands} routing {mo['routing']} activation silu : "
                f"({', '.join(types)}) -> {tensor([T, hidden])}", "m")


def model(c):
    e = Emitter()
    hidden = c["hidden"]
    mla = "mla" in c
    if mla:
        cache_types = [tensor([c["capacity"], c["mla"]["kv_lora"]]), tensor([c["capacity"], c["mla"]["rope"]])]
    else:
        cache_types = [tensor([c["capacity"], c["kv_heads"], c["head_dim"]])] * 2
    args = ["%ids: tensor<?xi32>", "%pos: tensor<?xi64>", "%off: index"]
    caches = []
    for l in range(c["layers"]):
        for which, t in zip(("k", "v") if not mla else ("latent", "rope"), cache_types):
            args.append(f"%{which}_cache_{l}: {t}")
            caches.append(f"%{which}_cache_{l}")
    results = [tensor([T, c["vocab"]])] + [t for _ in range(c["layers"]) for t in cache_types]

    c0 = e.op("arith.constant 0 : index", "c")
    tokens = e.op(f"tensor.dim %ids, {c0} : tensor<?xi32>", "t")
    embed = e.weight("model.embed_tokens.weight", [c["vocab"], hidden])
    h = e.op(f"llm.embedding %ids, {embed} : (tensor<?xi32>, {tensor([c['vocab'], hidden])}) -> {tensor([T, hidden])}", "h")
    new_caches = []
    for l in range(c["layers"]):
        p = f"model.layers.{l}"
        ln1 = e.weight(f"{p}.input_layernorm.weight", [hidden])
        n = rms_norm(e, h, [T, hidden], ln1, c["eps"])
        layer_caches = caches[2 * l:2 * l + 2]
        if mla:
            o, upd = mla_attention(e, c, l, n, "%pos", "%off", layer_caches)
        else:
            o, upd = gqa_attention(e, c, l, n, tokens, "%pos", "%off", layer_caches)
        new_caches += upd
        h = add(e, h, o, [T, hidden])
        ln2 = e.weight(f"{p}.post_attention_layernorm.weight", [hidden])
        n = rms_norm(e, h, [T, hidden], ln2, c["eps"])
        if "moe" in c and l >= c["moe"].get("first_dense", 0):
            y = moe_layer(e, c, l, n)
        else:
            y = dense_mlp(e, c, l, n, c["ffn"])
        h = add(e, h, y, [T, hidden])
    norm = e.weight("model.norm.weight", [hidden])
    n = rms_norm(e, h, [T, hidden], norm, c["eps"])
    head_name = "model.embed_tokens.weight" if c.get("tie_word_embeddings") else "lm_head.weight"
    head = e.weight(head_name, [c["vocab"], hidden])
    logits, _ = linear(e, n, [T, hidden], head, [c["vocab"], hidden])

    out = [f"module attributes {{moir.family = \"{c['family']}\"}} {{",
           f"  func.func @forward({', '.join(args)}) -> ({', '.join(results)}) {{"]
    out += e.lines
    out.append(f"    return {', '.join([logits] + new_caches)} : {', '.join(results)}")
    out += ["  }", "}"]
    return "\n".join(out) + "\n"


def family_config(family, layers, hidden, experts):
    base = dict(family=family, layers=layers, hidden=hidden, vocab=1000, eps=1e-5,
                capacity=256, rope_theta=10000.0)
    heads = max(2, hidden // 32)
    if family == "mixtral":
        return dict(base, heads=heads, kv_heads=max(1, heads // 4), head_dim=hidden // heads,
                    rope_theta=1e6, moe=dict(
                        experts=experts, ffn=hidden * 11 // 4, prefix="block_sparse_moe",
                        router="gate.weight", w_gate="w1.weight", w_up="w3.weight", w_down="w2.weight",
                        routing="<top_k = 2, scoring = softmax, norm_topk_prob = true>"))
    if family == "qwen2-moe":
        return dict(base, heads=heads, kv_heads=max(1, heads // 2), head_dim=hidden // heads,
                    attention_bias=True, eps=1e-6, moe=dict(
                        experts=experts, ffn=hidden // 2, prefix="mlp", router="gate.weight",
                        w_gate="gate_proj.weight", w_up="up_proj.weight", w_down="down_proj.weight",
                        shared_ffn=hidden * 3 // 2, shared_name="shared_expert", shared_gate=True,
                        routing="<top_k = 4, scoring = softmax>"))
    if family == "deepseek-v3":
        groups = 4 if experts % 4 == 0 else 1
        method = (f"method = noaux_tc, n_group = {groups}, topk_group = {max(1, groups // 2)}"
                  if groups > 1 else "method = noaux_tc")
        return dict(base, heads=heads, eps=1e-6, ffn=hidden * 3, rope_interleaved=True,
                    rope_scaling="scaling = yarn, factor = 40.0, original_max_position = 4096, "
                                 "mscale = 1.0, mscale_all_dim = 1.0",
                    mla=dict(q_lora=hidden // 2 + 8, kv_lora=hidden // 2, nope=32, rope=16, v=32),
                    moe=dict(experts=experts, ffn=hidden // 2, prefix="mlp", router="gate.weight",
                             w_gate="gate_proj.weight", w_up="up_proj.weight", w_down="down_proj.weight",
                             shared_ffn=hidden, shared_name="shared_experts", first_dense=1,
                             routing=f"<top_k = 3, scoring = sigmoid, {method}, "
                                     "norm_topk_prob = true, scaling = 2.5>"))
    if family == "apertus":
        return dict(base, heads=heads, kv_heads=max(1, heads // 4), head_dim=hidden // heads,
                    qk_norm=True, xielu=True, ffn=hidden * 4, tie_word_embeddings=True,
                    rope_scaling="scaling = llama3, factor = 8.0, low_freq_factor = 1.0, "
                                 "high_freq_factor = 4.0, original_max_position = 8192")
    raise SystemExit(f"gen_model_ir.py: unknown family '{family}' "
                     "(known: mixtral, qwen2-moe, deepseek-v3, apertus)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="mixtral")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("-o", "--output", default="-")
    args = parser.parse_args()
    if args.layers < 1 or args.hidden < 32 or args.hidden % 32 or args.experts < 4:
        raise SystemExit("gen_model_ir.py: need --layers >= 1, --hidden a multiple of 32, --experts >= 4")
    text = model(family_config(args.family, args.layers, args.hidden, args.experts))
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
