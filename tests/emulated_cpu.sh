#!/usr/bin/env bash
# Runs binaries of the portable build (-DSTRATA_NATIVE=OFF) on an emulated older CPU: qemu-user
# (Debian: qemu-user) with -cpu Haswell, an x86-64-v3 CPU without AVX-512. An instruction beyond
# what that CPU has, in our code, in a wrong run-time choice of a kernel copy, or in a library
# that assumes more, ends the binary with SIGILL there. QEMU >= 7.2 emulates AVX2 and FMA.
#
#   tests/emulated_cpu.sh STRATA_BIN TEST_BINARY...
#
# Runs `STRATA_BIN --version`, a few training steps of a tiny model (`STRATA_BIN train`), then every
# test binary (GoogleTest), each on the emulated CPU.
# Exits 77 (ctest: Skipped) with the reason where qemu-x86_64 is missing or cannot emulate the
# CPU. QEMU_CPU overrides the model (qemu-x86_64 -cpu help lists them). Slow: QEMU translates every
# instruction (the kernel tests take a few minutes instead of seconds).
set -uo pipefail
# Haswell without the features QEMU's TCG lacks anyway (it warns about each on every start).
cpu="${QEMU_CPU:-Haswell,-hle,-rtm,-pcid,-invpcid,-x2apic,-tsc-deadline}"
if ! command -v qemu-x86_64 >/dev/null 2>&1; then
  echo "SKIPPED: qemu-x86_64 not found (Debian: apt-get install qemu-user); no emulated older CPU to run on"
  exit 77
fi
# TCG (QEMU's translator) emulates AVX2 and FMA from QEMU 7.2 on; an older one cannot run x86-64-v3 code.
qv=$(qemu-x86_64 --version | sed -n 's/.*version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -1)
read -r qmaj qmin <<<"${qv:-0 0}"
if [ "$qmaj" -lt 7 ] || { [ "$qmaj" -eq 7 ] && [ "$qmin" -lt 2 ]; }; then
  echo "SKIPPED: $(qemu-x86_64 --version | head -1): QEMU before 7.2 does not emulate AVX2"
  exit 77
fi
if [ $# -lt 1 ]; then
  echo "usage: tests/emulated_cpu.sh STRATA_BIN TEST_BINARY..." >&2
  exit 2
fi
# The probe: strata itself. Where even /bin/true fails, QEMU cannot emulate the model (skip);
# otherwise a failure is ours (SIGILL: an instruction the emulated CPU lacks).
probe=$(qemu-x86_64 -cpu "$cpu" "$1" --version 2>&1)
rc=$?
if [ "$rc" -ne 0 ]; then
  if ! why=$(qemu-x86_64 -cpu "$cpu" /bin/true 2>&1); then
    echo "SKIPPED: qemu-x86_64 cannot emulate '$cpu': $(echo "$why" | head -1)"
    exit 77
  fi
  echo "FAILED: $1 --version on the emulated CPU '$cpu' (exit $rc):"
  echo "$probe"
  exit 1
fi
echo "emulated CPU '$cpu': $probe"
failed=()
# A few steps of a tiny hybrid (Mamba-2, attention, MLP) end to end: data, layers, trainer, eval and
# the checkpoint, all of which the kernel tests do not reach.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
yes "the cat sat on a mat and the dog ran to its home" | head -c 100000 >"$work/data.txt"
cat >"$work/tiny.yaml" <<'EOF'
model:
  d_model: 64
  pattern: "M-*-"
  mamba: {version: 2, d_state: 16, d_conv: 4, expand: 2, head_dim: 16, chunk: 32}
  attention: {heads: 4, kv_heads: 2}
train: {steps: 4, batch: 2, seq: 64, seed: 1, eval_every: 4, save_every: 4, run_dir: run}
data: {kind: text, path: data.txt, val_fraction: 0.05}
EOF
echo "=== strata train (4 steps of a tiny hybrid) on the emulated CPU"
strata=$(realpath "$1")
(cd "$work" && qemu-x86_64 -cpu "$cpu" "$strata" train tiny.yaml --quiet)
rc=$?
if [ "$rc" -ne 0 ] || [ ! -f "$work/run/ckpt-00000004.h5" ]; then
  [ "$rc" -eq 132 ] && echo "SIGILL: strata train executed an instruction the emulated CPU lacks"
  failed+=("strata train (exit $rc)")
fi
for bin in "${@:2}"; do
  echo "=== $(basename "$bin") on the emulated CPU"
  qemu-x86_64 -cpu "$cpu" "$bin" --gtest_brief=1
  rc=$?
  # 77: every case skipped (tests/gtest_main.cpp); 132 / 4: SIGILL.
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    [ "$rc" -eq 132 ] && echo "SIGILL: $(basename "$bin") executed an instruction the emulated CPU lacks"
    failed+=("$(basename "$bin") (exit $rc)")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED on the emulated CPU: ${failed[*]}"
  exit 1
fi
echo "strata train and all $(( $# - 1 )) test binaries passed on the emulated CPU"
