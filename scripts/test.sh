#!/usr/bin/env bash
# Runs every MoIR test: sets up, builds, then ctest (lit suite, C++ unit tests,
# the standalone runtime build). ctest's summary closes the output.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
bash "$root/scripts/build.sh"
cd "$build"
ctest --output-on-failure -j"$(nproc)"
