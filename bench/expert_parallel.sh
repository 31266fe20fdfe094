#!/usr/bin/env bash
# Expert and tensor parallelism on this machine (a benchmark, not a test):
# the Mixtral-shaped (hidden 1024, 8 layers, 8 experts top-2, FFN 2816) and
# DeepSeek-V2-Lite-shaped (27 layers, 64 experts top-6, 2 shared) bf16 models
# compiled for 1, 2 and 4 ranks (moirc --expert-parallel), and the dense
# mistral-bench shape (16 heads on 4 KV heads, FFN 2816, vocabulary 32000)
# with moirc --tensor-parallel (any mistral-* shape), then run
# interleaved, REPEAT rounds (default 3): prefill of a 512-token prompt and 64
# decode steps, each rank's peak resident memory (GNU time) and the
# compile's time and peak memory. The cores are shared out: each of N ranks
# gets MOIR_NUM_THREADS = max(1, cores / N), so 4 ranks on a 2-core machine
# are oversubscribed. One JSON line per run, then the medians per rank count.
#
#   bench/expert_parallel.sh [shape ...]
#   (default: mixtral-bench deepseek-v2-lite-bench mistral-bench)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
models="$build/models"
mkdir -p "$models"
shapes=("$@")
[ ${#shapes[@]} -eq 0 ] && shapes=(mixtral-bench deepseek-v2-lite-bench mistral-bench)
ranks_list=(${RANKS:-1 2 4})
cores=$(nproc)
prompt=$(python3 -c "print(','.join(str(i * 7919 % 31000 + 1) for i in range(512)))")
# No shared-memory topology, no hwloc OpenCL/OpenGL plugins: scripts/netns-mpi.sh says why.
mpirun=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
        OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_rtc_hwloc_vmhole=none
        HWLOC_PLUGINS_BLACKLIST=hwloc_opencl,hwloc_gl mpirun)
runs_file=$(mktemp)
trap 'rm -f "$runs_file"' EXIT
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $cores cores, $("${mpirun[@]}" --version | head -1)" >&2
for shape in "${shapes[@]}"; do
  dir="$models/$shape-bf16"
  [ -f "$dir/model.safetensors" ] || "$build/bin/moir-make-model" "$dir" --shape "$shape" --dtype bf16 >&2
  for n in "${ranks_list[@]}"; do
    out="$dir.ep$n"
    [ "$n" = 1 ] && out="$dir.ep1.moir"
    flags=()
    split=expert
    case "$shape" in mistral-*) split=tensor ;; esac
    [ "$n" = 1 ] || flags=(--$split-parallel="$n")
    rm -rf "$out"
    stats=$( { /usr/bin/time -f "%e %M" "$build/bin/moirc" "$dir" --target=cpu --cpu=native \
               --cache-capacity=1024 "${flags[@]}" -o "$out" >/dev/null; } 2>&1 | tail -1)
    bytes=$(du -sb "$out" | cut -f1)
    echo "{\"model\": \"$shape\", \"split\": \"$split\", \"ranks\": $n, \"compile_s\": ${stats% *}, \"compile_peak_rss_kb\": ${stats#* }, \"artifact_bytes\": $bytes}"
  done
  for _ in $(seq "${REPEAT:-3}"); do
    for n in "${ranks_list[@]}"; do
      threads=$(( cores / n ))
      [ "$threads" -ge 1 ] || threads=1
      rss=$(mktemp)
      if [ "$n" = 1 ]; then
        result=$(MOIR_NUM_THREADS=$threads /usr/bin/time -o "$rss" -f "%M" \
                 "$build/bin/moir-run" "$dir.ep1.moir" --tokens "$prompt" -n 64 --json)
      else
        # Each rank's peak RSS, one file per rank (GNU time -o with the
        # rank from Open MPI's environment).
        result=$("${mpirun[@]}" -np "$n" -x MOIR_NUM_THREADS=$threads bash -c \
                 "/usr/bin/time -o $rss.\$OMPI_COMM_WORLD_RANK -f %M \"\$@\"" _ \
                 "$build/bin/moir-run" "$dir.ep$n" --tokens "$prompt" -n 64 --json)
        cat "$rss".* > "$rss"
        rm -f "$rss".*
      fi
      per_rank=$(paste -sd, "$rss")
      rm -f "$rss"
      line="{\"model\": \"$shape\", \"ranks\": $n, \"threads_per_rank\": $threads, \"peak_rss_kb_per_rank\": [$per_rank], $(echo "$result" | sed 's/"tokens": \[[^]]*\], //; s/^{//')"
      echo "$line" | tee -a "$runs_file"
    done
  done
done
python3 - "$runs_file" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for key in sorted({(r["model"], r["ranks"]) for r in runs}):
    mine = [r for r in runs if (r["model"], r["ranks"]) == key]
    print(json.dumps({"model": key[0], "ranks": key[1], "runs": len(mine),
                      "prefill_tokens_per_s_median": statistics.median(r["prefill_tokens_per_s"] for r in mine),
                      "decode_tokens_per_s_median": statistics.median(r["decode_tokens_per_s"] for r in mine),
                      "peak_rss_mb_per_rank_max": round(max(max(r["peak_rss_kb_per_rank"]) for r in mine) / 1024, 1)}))
PY
