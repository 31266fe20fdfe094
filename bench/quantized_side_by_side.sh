#!/usr/bin/env bash
# MoIR, llama.cpp and ik_llama.cpp side by side on the same quantized GGUF
# files (not a test): a 512-token prefill and 128 decode steps on THREADS
# threads (default 2). For each file, REPEAT rounds (default 3); a round runs
#   - MoIR: moirc compiles the GGUF itself (--target=cpu --cpu=native
#     --cache-capacity=1024); one moir-run prefills the 512-token prompt,
#     another decodes 128 steps after a one-token prompt (as llama-bench's
#     tg128 decodes from an empty context) and measures the bandwidth before
#     and after (--bandwidth);
#   - llama.cpp: llama-bench -p 512 -n 128 -t THREADS -r 1;
#   - ik_llama.cpp: the same with -rtr 1 (weights repacked at load);
# and the order of the three reverses every other round, so none always meets
# a machine another just left. moir-bandwidth runs before and after each peer
# run, so every line carries the bandwidth around its own decode. Prints one
# JSON line per run and the medians per file and engine.
#
#   LLAMA_BENCH=/path/to/llama.cpp/llama-bench \
#   [IK_LLAMA_BENCH=/path/to/ik_llama.cpp/llama-bench] \
#     bench/quantized_side_by_side.sh model.Q8_0.gguf [model.Q4_K_M.gguf ...]
#
# The GGUF files: llama.cpp's convert_hf_to_gguf.py and llama-quantize, or, for
# moir-make-model's bench checkpoints (no tokenizer), bench/make_llama_gguf.py
# and llama-quantize.
# The peers are not built here: give their llama-bench binaries (CPU builds,
# GGML_NATIVE=ON, Release). LLAMA_BENCH_ARGS and IK_LLAMA_BENCH_ARGS add
# arguments to the peer's runs (e.g. "-fa 1", "-fmoe 1"). MoIR's artifacts go
# to ARTIFACTS (default build/models), compiled again when the GGUF or moirc is
# newer; SKIP_BUILD=1 skips scripts/build.sh.
#
# Placement: on this 2-core VM a byte-identical copy of a file decodes up to
# 2x apart from the original (where the page cache puts its pages; measured
# 37 against 64 tok/s, bench/RESULTS.md). So each file runs from COPIES copies
# (default 2: the files themselves and one copy of the GGUF and the artifact
# each, made beside them and removed after), round r on copy (r-1) % COPIES
# for every engine, and the medians take all of them.
#
# Both decodes start from an (almost) empty context. (Until 2026-12-05 MoIR's
# decoded after the 512-token prefill: on the DeepSeek-shaped model, whose f32
# latent cache rows are 576 wide, that read 26% slower than from a one-token
# prompt.) Both prefills compute the logits of the prompt's last token only
# (llama-bench's batch asks for no others; moir-run sets
# moir_session_set_all_logits(session, 0)).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
: "${LLAMA_BENCH:?set LLAMA_BENCH to the llama.cpp llama-bench}"
[ $# -gt 0 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
# ik_llama.cpp is optional: without IK_LLAMA_BENCH, MoIR and llama.cpp only.
engines="moir llama.cpp${IK_LLAMA_BENCH:+ ik_llama.cpp}"
for bin in "$LLAMA_BENCH" ${IK_LLAMA_BENCH:+"$IK_LLAMA_BENCH"}; do
  [ -x "$bin" ] || { echo "$bin: not an executable" >&2; exit 2; }
done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  bash "$root/scripts/build.sh" > "$build/build.log" 2>&1 || { cat "$build/build.log" >&2; exit 1; }
fi
threads="${THREADS:-2}"
copies="${COPIES:-2}"
[ "$copies" -ge 1 ] 2>/dev/null || { echo "COPIES must be 1 or more, not $copies" >&2; exit 2; }
artifacts="${ARTIFACTS:-$build/models}"
mkdir -p "$artifacts"
# The prompt of bench/cpu_generate.sh: 512 ids below 31001.
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(512)))")
runs=$(mktemp)
log=$(mktemp)
ggufs=() moirs=()
trap 'rm -f "$runs" "$log" "${ggufs[@]:1}" "${moirs[@]:1}"' EXIT

bandwidth() { "$build/bin/moir-bandwidth" | awk '{print $1}'; }

# llama-bench's JSON (an array: the pp512 and tg128 tests) as one line in
# moir-run's terms.
peer_line='
import json, sys
model, engine, rnd, copy, before, after = sys.argv[1:7]
tests = json.load(sys.stdin)
pp = [t for t in tests if t["n_prompt"] > 0 and t["n_gen"] == 0]
tg = [t for t in tests if t["n_gen"] > 0 and t["n_prompt"] == 0]
print(json.dumps({"model": model, "engine": engine, "round": int(rnd), "copy": int(copy),
                  "prefill_tokens": pp[0]["n_prompt"], "prefill_tokens_per_s": round(pp[0]["avg_ts"], 3),
                  "decode_tokens": tg[0]["n_gen"], "decode_tokens_per_s": round(tg[0]["avg_ts"], 3),
                  "bandwidth_gb_per_s_before": float(before), "bandwidth_gb_per_s_after": float(after),
                  "threads": tests[0]["n_threads"], "build_commit": tests[0].get("build_commit"),
                  "type_k": tests[0].get("type_k"), "model_type": tests[0].get("model_type")}))
'

# run_engine ENGINE MODEL GGUF ARTIFACT ROUND COPY: one run, one JSON line
# (an "error" line, with the log on stderr, when it fails).
run_engine() {
  local engine="$1" model="$2" gguf="$3" artifact="$4" round="$5" copy="$6" out before after
  case "$engine" in
    moir)
      local pp
      if pp=$(MOIR_NUM_THREADS="$threads" "$build/bin/moir-run" "$artifact" --tokens "$prompt" \
                -n 1 --json 2> "$log") &&
         out=$(MOIR_NUM_THREADS="$threads" "$build/bin/moir-run" "$artifact" --tokens 1 \
                 -n 128 --bandwidth --json 2>> "$log"); then
        # The decode run's line with the prefill run's prefill.
        out=$(python3 -c '
import json, sys
pp, tg = json.loads(sys.argv[1]), json.loads(sys.argv[2])
tg.pop("tokens", None)
tg["prefill_tokens"], tg["prefill_tokens_per_s"] = pp["prefill_tokens"], pp["prefill_tokens_per_s"]
print(json.dumps(tg))' "$pp" "$out")
        echo "{\"model\": \"$model\", \"engine\": \"moir\", \"round\": $round, \"copy\": $copy, \"threads\": $threads, ${out#\{}"
        return
      fi ;;
    llama.cpp|ik_llama.cpp)
      local bin="$LLAMA_BENCH" extra="${LLAMA_BENCH_ARGS:-}"
      [ "$engine" = ik_llama.cpp ] && bin="$IK_LLAMA_BENCH" extra="-rtr 1 ${IK_LLAMA_BENCH_ARGS:-}"
      before=$(bandwidth)
      # shellcheck disable=SC2086
      if out=$("$bin" -m "$gguf" -p 512 -n 128 -t "$threads" -r 1 $extra -o json 2> "$log"); then
        after=$(bandwidth)
        echo "$out" | python3 -c "$peer_line" "$model" "$engine" "$round" "$copy" "$before" "$after"
        return
      fi ;;
  esac
  tail -n 20 "$log" >&2
  echo "{\"model\": \"$model\", \"engine\": \"$engine\", \"round\": $round, \"error\": \"exit status, log above\"}"
}

for gguf in "$@"; do
  model=$(basename "$gguf" .gguf)
  artifact="$artifacts/$model.moir"
  if [ ! -f "$artifact" ] || [ "$gguf" -nt "$artifact" ] || [ "$build/bin/moirc" -nt "$artifact" ]; then
    SECONDS=0
    "$build/bin/moirc" "$gguf" --target=cpu --cpu=native --cache-capacity=1024 -o "$artifact"
    echo "{\"model\": \"$model\", \"gguf\": \"$gguf\", \"gguf_bytes\": $(stat -c %s "$gguf"), \"moirc_s\": $SECONDS}"
  fi
  ggufs=("$gguf") moirs=("$artifact")
  for c in $(seq 2 "$copies"); do
    ggufs+=("$artifacts/$model.copy$c.gguf") moirs+=("$artifacts/$model.copy$c.moir")
    cp "$gguf" "${ggufs[-1]}" && cp "$artifact" "${moirs[-1]}"
  done
  for round in $(seq "${REPEAT:-3}"); do
    order="$engines"
    [ $((round % 2)) -eq 0 ] && order="$(echo "$engines" | tr ' ' '\n' | tac | tr '\n' ' ')"
    c=$(((round - 1) % copies))
    for engine in $order; do
      run_engine "$engine" "$model" "${ggufs[$c]}" "${moirs[$c]}" "$round" "$((c + 1))" | tee -a "$runs"
    done
  done
  rm -f "${ggufs[@]:1}" "${moirs[@]:1}"
done

python3 - "$runs" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda xs: statistics.median(xs) if xs else None
for model in dict.fromkeys(r["model"] for r in runs):
    for engine in ("moir", "llama.cpp", "ik_llama.cpp"):
        mine = [r for r in runs if r["model"] == model and r["engine"] == engine]
        ok = [r for r in mine if "error" not in r]
        print(json.dumps({"model": model, "engine": engine, "runs": len(ok), "failed": len(mine) - len(ok),
                          "prefill_tokens_per_s_median": med([r["prefill_tokens_per_s"] for r in ok]),
                          "decode_tokens_per_s_median": med([r["decode_tokens_per_s"] for r in ok]),
                          "decode_tokens_per_s": [r["decode_tokens_per_s"] for r in ok],
                          "bandwidth_gb_per_s_median": med([max(r["bandwidth_gb_per_s_before"],
                                                                r["bandwidth_gb_per_s_after"]) for r in ok])}))
PY
