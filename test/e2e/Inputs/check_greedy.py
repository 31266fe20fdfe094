#!/usr/bin/env python3
"""Greedy continuations of a compiled model against a reference's on the
same weights (test/fixtures/gemma3/llama_cpp_greedy.json, llama.cpp's;
transformers_greedy.json, transformers' on the GGUF's dequantized weights:
per prompt, the prompt ids, the generated ids and, per step, the reference's
top two logits).

    check_greedy.py MOIR_RUN ARTIFACT REFERENCE_JSON --near-tie LOGITS --min-long N
                    [--arbiter EXACT_JSON]

For each prompt, moir-run generates as many tokens greedily from the same
prompt ids. A prompt passes when every token is the reference's, or when the
first different token is the reference's runner-up at a step where the
reference's top two logits lie within LOGITS of each other (implementations
that round differently may order a near-tie either way; after that the texts
differ and are not compared). With --arbiter (an exact computation's runs
on the same prompts, e.g. transformers'), a divergence is judged by the
arbiter's logits instead: moir-run's token must be the arbiter's choice and
the reference's its runner-up within LOGITS (for a reference whose arithmetic
moves logits by more than a near-tie's margin, as llama.cpp's 8-bit
activations do). At least N prompts must agree on 64 tokens or more. Prints one line per prompt and the summary; exits non-zero on a
failure.
"""
import argparse
import json
import subprocess
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("moir_run")
    p.add_argument("artifact")
    p.add_argument("reference")
    p.add_argument("--near-tie", type=float, required=True)
    p.add_argument("--min-long", type=int, required=True)
    p.add_argument("--arbiter")
    args = p.parse_args()
    arbiter = None
    if args.arbiter:
        arbiter = json.load(open(args.arbiter, encoding="utf-8"))["prompts"]
    moir_run, artifact, greedy_path = args.moir_run, args.artifact, args.reference
    near_tie, need = args.near_tie, args.min_long
    greedy = json.load(open(greedy_path, encoding="utf-8"))
    prompts = greedy["prompts"]
    if not prompts:
        print("FAIL: no prompts in %s" % greedy_path)
        return 1
    failed = long_agreements = 0
    for index, p in enumerate(prompts):
        want = p["generated_ids"]
        run = subprocess.run(
            [moir_run, artifact, "--tokens", ",".join(map(str, p["prompt_ids"])),
             "-n", str(len(want)), "--json"],
            capture_output=True, text=True)
        if run.returncode != 0:
            print("FAIL %r: moir-run: %s" % (p["prompt"], run.stderr.strip()))
            failed += 1
            continue
        got = json.loads(run.stdout.strip().splitlines()[-1])["tokens"]
        same = 0
        while same < min(len(got), len(want)) and got[same] == want[same]:
            same += 1
        label = p["prompt"].replace("\n", "\\n")
        if same == len(want) and len(got) == len(want):
            print("same %d of %d: %r" % (same, len(want), label))
            long_agreements += same >= 64
            continue
        if same >= len(got):
            print("FAIL %r: moir-run gave %d tokens, the reference %d" % (label, len(got), len(want)))
            failed += 1
            continue
        step = p["steps"][same]
        margin = step["top1"] - step["top2"]
        swap = got[same] == step["top2_id"] and margin <= near_tie
        if arbiter is not None:
            exact = arbiter[index]
            if exact["prompt_ids"] != p["prompt_ids"]:
                print("FAIL %r: the arbiter's prompt differs" % label)
                failed += 1
                continue
            # The arbiter's own continuation may differ earlier: then it
            # says nothing about this step.
            ours = got[:same] == exact["generated_ids"][:same]
            e = exact["steps"][same] if ours and same < len(exact["steps"]) else None
            swap = (e is not None and got[same] == e["id"] and step["id"] == e["top2_id"] and
                    e["top1"] - e["top2"] <= near_tie)
            if e is not None:
                print("  the arbiter there: %d (logit %.4f) over %d (%.4f): margin %.4f" % (
                    e["id"], e["top1"], e["top2_id"], e["top2"], e["top1"] - e["top2"]))
        print("%s %r: same %d of %d, then %d where the reference has %d (logit %.4f) over %d "
              "(%.4f): margin %.4f" % (
                  "near-tie" if swap else "FAIL", label, same, len(want), got[same],
                  step["id"], step["top1"], step["top2_id"], step["top2"], margin))
        failed += not swap
        long_agreements += same >= 64
    print("%d prompts, %d agree on 64+ tokens (need %d), %d fail" %
          (len(prompts), long_agreements, need, failed))
    return 1 if failed or long_agreements < need else 0


if __name__ == "__main__":
    sys.exit(main())
