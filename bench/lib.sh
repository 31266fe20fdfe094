# Helpers the benchmark scripts share (sourced, not run).

# run_alternately KEY CONTEXT STEPS PROMPT PREFIX FORM...: REPEAT rounds
# (default 3), each running every form's artifact PREFIX.FORM.moir once on the
# prompt (prefilled in chunks of 512), so all forms see the same machine.
# Prints one JSON line per run, tagged "KEY": "FORM" and "model": $MODEL
# (default deepseek-v2-lite-bench), and appends it to $RUNS. PREFILL_CHUNK
# (default 512) sets the chunk size.
run_alternately() {
  local key="$1" context="$2" steps="$3" prompt="$4" prefix="$5"
  shift 5
  for _ in $(seq "${REPEAT:-3}"); do
    for form in "$@"; do
      result=$("$build/bin/moir-run" "$prefix.$form.moir" --tokens "$prompt" -n "$steps" --prefill-chunk "${PREFILL_CHUNK:-512}" --json | sed 's/"tokens": \[[^]]*\], //')
      echo "{\"model\": \"${MODEL:-deepseek-v2-lite-bench}\", \"$key\": \"$form\", \"context\": $context, ${result#\{}" | tee -a "$RUNS"
    done
  done
}

# print_medians KEY CONTEXT FORM...: per form, the median decode and prefill
# tokens/s of the runs in $RUNS.
print_medians() {
  python3 - "$RUNS" "$@" <<'PY'
import json, sys, statistics
path, key, context, forms = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
runs = [json.loads(l) for l in open(path) if l.strip()]
for form in forms:
    mine = [r for r in runs if r.get(key) == form]
    print(json.dumps({key: form, "context": context, "runs": len(mine),
                      "decode_tokens_per_s_median": statistics.median(r["decode_tokens_per_s"] for r in mine),
                      "decode_tokens_per_s": [r["decode_tokens_per_s"] for r in mine],
                      "prefill_tokens_per_s_median": statistics.median(r["prefill_tokens_per_s"] for r in mine)}))
PY
}
