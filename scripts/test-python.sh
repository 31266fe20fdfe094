#!/usr/bin/env bash
# Tests the Python package (python/): installs it into a venv in the build
# folder (made on first use, with nanobind, scikit-build-core, numpy and
# pytest from PyPI) and runs its pytest suite against this build's moirc.
# ctest runs it as python.pytest.
#
#   bash scripts/test-python.sh [BUILD_DIR]     (default: $BUILD_DIR or build/)
#
# Exit 77 (ctest: skipped) only when pip cannot reach PyPI; any other
# failure, and a run that collects no tests, fails.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$(cd "${1:-${BUILD_DIR:-$root/build}}" && pwd)" || exit 1
venv="$build/python-venv"
log="$build/python-pip.log"

if [ ! -x "$build/bin/moirc" ]; then
  echo "test-python: $build/bin/moirc not found: build first (scripts/build.sh)" >&2
  exit 1
fi

# Debian's python (a pyenv shim may come first on PATH).
python=/usr/bin/python3
[ -x "$python" ] || python="$(command -v python3)"
if ! "$venv/bin/python" -c "" 2>/dev/null; then
  rm -rf "$venv"
  if ! "$python" -m venv "$venv"; then
    echo "test-python: cannot make a venv with $python (Debian: apt-get install python3-venv; scripts/setup.sh does)" >&2
    exit 1
  fi
fi

# pip's output goes to a log; on failure, a network error means PyPI is out
# of reach (skip), anything else is a failure.
pip_install() {
  if "$venv/bin/python" -m pip install --retries 2 --timeout 60 "$@" >>"$log" 2>&1; then
    return 0
  fi
  tail -n 30 "$log" >&2
  if grep -qE "NewConnectionError|Max retries exceeded|Temporary failure in name resolution|Network is unreachable|Could not fetch URL|ProxyError|ConnectTimeoutError|ReadTimeoutError|Name or service not known" "$log"; then
    echo "test-python: SKIPPED: pip cannot reach PyPI (see $log)" >&2
    exit 77
  fi
  echo "test-python: pip install $* failed (see $log)" >&2
  exit 1
}

: >"$log"
start=$SECONDS
pip_install nanobind scikit-build-core numpy pytest
# Built in place (pip copies nothing from a local folder); CMake's build
# folder stays in the build tree, so reinstalls rebuild only what changed.
pip_install --no-build-isolation --config-settings=build-dir="$build/python-build" "$root/python"
echo "test-python: moir installed into $venv in $((SECONDS - start)) s"

export MOIR_MOIRC="$build/bin/moirc"
export PATH="$build/bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1
cd "$root/python"
"$venv/bin/python" -m pytest -p no:cacheprovider -v tests
status=$?
if [ "$status" -eq 5 ]; then
  echo "test-python: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
