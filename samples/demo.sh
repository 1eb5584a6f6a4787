#!/usr/bin/env bash
# `make demo`: the whole job on the nginx sample with trimcage's embedded runtime (no daemon).
# inspect the original -> build (static analysis + trace + slim + policy + verify) -> report.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out/demo}
SAMPLE=$("$PY" -c 'import samples.build as b; print(b.ensure("nginx").path)')

echo "== trimcage inspect (the original image) =="
"$PY" -m trimcage inspect "oci-archive:$SAMPLE"
echo
echo "== trimcage build (analyze, trace, slim, lock down, verify) =="
"$PY" -m trimcage build "oci-archive:$SAMPLE" --probe http://127.0.0.1:80/ -o "$OUT"
echo
echo "== what was written =="
ls -l "$OUT"
echo
echo "== trimcage inspect (the slim image) =="
"$PY" -m trimcage inspect "oci-archive:$OUT/image.oci.tar"
