#!/usr/bin/env python3
"""Checks a moir-run --energy-report file (docs/energy.md).

    check_energy_report.py REPORT.json --not-measured
    check_energy_report.py REPORT.json --measured --watts W [--idle]

--not-measured: electricity says "not measured" with a reason and carries no
J/token; the J/token appear only under "estimate", labelled so.
--measured: the counter is RAPL summing package-0 only (its core subzone
left out); each phase's net energy is the fake counter's W watts times the
phase's time (--idle: 0, the idle power W having been subtracted) within
the report's stated uncertainty; without --idle the attribution closes: the
components add up to the measured energy within 5% in each phase.

Every number must be finite (NaN and infinities are not JSON; the report
writes null where a value does not exist). Prints one "energy report ok"
line, or the failures and exits 1.
"""
import argparse
import os
import json
import math
import sys

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
    return ok


def finite(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def reject_constant(name):
    raise ValueError("non-JSON number " + name)


def walk(value, path, visit):
    visit(value, path)
    if isinstance(value, dict):
        for k, v in value.items():
            walk(v, path + "." + k, visit)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            walk(v, "%s[%d]" % (path, i), visit)


def check_attribution(r, measured):
    a = r["attribution"]
    check(a["basis"] == ("measured" if measured else "estimate"), "attribution basis")
    k = a["coefficients"]
    check(finite(k["alpha_j_per_byte"]) and k["alpha_j_per_byte"] >= 0, "alpha >= 0")
    check(finite(k["beta_j_per_flop"]) and k["beta_j_per_flop"] >= 0, "beta >= 0")
    for name in ("prefill", "decode"):
        p = a["phases"][name]
        if not check(p is not None, name + ": attributed"):
            continue
        comps = p["components"]
        total = sum(c["j"] for c in comps)
        check(finite(total) and math.isclose(total, p["attributed_j"], rel_tol=1e-9),
              "%s: components add up to attributed_j (%r vs %r)" % (name, total, p["attributed_j"]))
        layers = sum(l["j"] for l in p["layers"])
        check(math.isclose(layers, p["attributed_j"], rel_tol=1e-9),
              name + ": layers add up to attributed_j")
        for c in comps:
            check(finite(c["bytes"]) and finite(c["flops"]) and finite(c["j"]) and c["j"] >= 0,
                  name + ": component numbers " + c["name"])
            if "experts" in c:
                check(math.isclose(c["j_per_expert"] * c["experts"], c["j"], rel_tol=1e-9),
                      name + ": j_per_expert x experts = j for " + c["name"])
        if measured:
            # Recomputed here, not taken from the report's flag.
            m = p["measured_j"]
            check(finite(m), name + ": measured_j finite")
            p["_closure"] = abs(total - m) / m if finite(m) and m > 0 else float("nan")
    return a


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--not-measured", action="store_true")
    mode.add_argument("--measured", action="store_true")
    ap.add_argument("--watts", type=float, default=20.0)
    ap.add_argument("--idle", action="store_true")
    ap.add_argument("--fake-root", help="the fake tree, whose writer records its longest stall")
    args = ap.parse_args()

    with open(args.report) as f:
        r = json.load(f, parse_constant=reject_constant)
    check(r.get("schema") == "moir-energy-report/1", "schema")
    for key in ("hardware", "model", "compute", "bytes", "electricity", "attribution", "run"):
        check(key in r, "section " + key)

    def no_bad_numbers(value, path):
        if isinstance(value, float):
            check(math.isfinite(value), path + " is not finite")
    walk(r, "report", no_bad_numbers)

    c, b = r["compute"], r["bytes"]
    for key in ("flops_per_prefill_token", "flops_per_decode_token", "total_flops"):
        check(finite(c[key]) and c[key] > 0, "compute." + key)
    for key in ("bytes_per_prefill_token", "bytes_per_decode_token", "total_bytes"):
        check(finite(b[key]) and b[key] > 0, "bytes." + key)
    check(r["model"]["precision"]["weights"], "model.precision.weights")

    e = r["electricity"]
    if args.not_measured:
        check(e["status"] == "not measured", "status not measured")
        check(isinstance(e.get("reason"), str) and e["reason"], "a reason")
        check(e.get("counter_source") is None, "no counter source")
        for key in e:
            check("j_per_token" not in key and key not in ("prefill", "decode"),
                  "no measured field under electricity: " + key)
        est = r.get("estimate")
        if check(isinstance(est, dict), "an estimate"):
            check(est.get("label") == "estimate", "labelled estimate")
            check("NOT MEASURED" in est.get("note", ""), "the note says not measured")
            for key in ("prefill_j_per_token", "decode_j_per_token"):
                check(finite(est.get(key)) and est[key] > 0, "estimate." + key)
            check("assumptions" in est["coefficients"]["source"], "coefficients are assumptions")
        check_attribution(r, measured=False)
        check(r["attribution"]["closure_ok"] is None, "no closure claimed")
        label = "not measured, estimate"
    else:
        check(e["status"] == "measured", "status measured")
        check("estimate" not in r, "no estimate when measured")
        check(e["counter_source"] == "rapl", "counter source rapl")
        summed = e["counter_detail"].split(";")[0]
        check("package-0 (intel-rapl:0)" in summed and "core" not in summed,
              "package summed, core subzone not: " + e["counter_detail"])
        check(finite(e["counter_resolution_j"]) and e["counter_resolution_j"] > 0, "resolution")
        check(finite(e["counter_update_interval_s"]) and e["counter_update_interval_s"] > 0,
              "update interval")
        if args.idle:
            check(e["idle_subtracted"] is True, "idle subtracted")
            check(abs(e["idle_power_w"] - args.watts) <= 0.05 * args.watts,
                  "idle power %r W ~ %r W" % (e["idle_power_w"], args.watts))
        else:
            check(e["idle_subtracted"] is False and e["idle_power_w"] == 0, "idle off")
        power = 0.0 if args.idle else args.watts
        for name in ("prefill", "decode"):
            p = e[name]
            if not check(isinstance(p, dict), name + " measured"):
                continue
            for key in ("j_per_token", "uncertainty_j_per_token", "net_j", "uncertainty_j",
                        "seconds"):
                check(finite(p[key]), "%s.%s finite" % (name, key))
            check(p["uncertainty_j"] > 0, name + ": an uncertainty")
            check(math.isclose(p["j_per_token"] * p["tokens"], p["net_j"], rel_tol=1e-9),
                  name + ": j_per_token x tokens = net_j")
            check(math.isclose(e[name + "_j_per_token"], p["j_per_token"], rel_tol=1e-12),
                  name + ": the headline J/token")
            # Within the stated uncertainty, plus 10% of the fake counter's
            # energy over the phase: the fake is a Python process whose
            # updates can stall (scheduling) for longer than any gap the
            # meter saw while probing, which a hardware counter does not do.
            # A core subzone added (+75%), a wrap missed (+-200 J) or wrong
            # units are far outside.
            expected = power * p["seconds"]
            slack = 0.10 * args.watts * p["seconds"]
            # Each of the phase's counter windows can be read stale by the
            # fake writer's longest stall at both ends.
            if args.fake_root:
                try:
                    stall = float(open(os.path.join(args.fake_root, "longest_gap_s")).read())
                except (OSError, ValueError):
                    stall = 0.0
                slack += 2 * args.watts * stall * max(1, p.get("intervals", 1))
            check(abs(p["net_j"] - expected) <= p["uncertainty_j"] + slack,
                  "%s: net %.4f J vs %.0f W x %.4f s = %.4f J: off by more than the stated "
                  "+-%.4f J (+%.4f J for the fake's jitter)"
                  % (name, p["net_j"], power, p["seconds"], expected, p["uncertainty_j"], slack))
            print("%s: net %.4f J, %.0f W x %.4f s = %.4f J, stated +-%.4f J"
                  % (name, p["net_j"], power, p["seconds"], expected, p["uncertainty_j"]),
                  file=sys.stderr)
        a = check_attribution(r, measured=True)
        if not args.idle:
            for name in ("prefill", "decode"):
                p = a["phases"][name]
                closure = p.get("_closure", float("nan"))
                check(finite(closure) and closure <= 0.05,
                      "%s: components add up to the measurement within 5%% (off by %r)"
                      % (name, closure))
                check(p["closure"]["ok"] is True, name + ": closure ok in the report")
            check(a["closure_ok"] is True, "closure_ok true")
        label = "measured" + (", idle subtracted" if args.idle else ", closure within 5%")

    if failures:
        for f in failures:
            print("FAIL: " + f)
        return 1
    print("energy report ok: " + label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
