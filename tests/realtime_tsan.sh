#!/usr/bin/env bash
# Runs the ThreadSanitizer build of the real-time tests (test_realtime_tsan). Where TSan cannot
# start on this system (some kernels' ASLR settings break its memory layout) it reports SKIPPED
# with TSan's own reason and exits 77, which ctest shows as Skipped, never as Passed.
bin="$1"
out=$(mktemp)
TSAN_OPTIONS="halt_on_error=1 ${TSAN_OPTIONS:-}" "$bin" >"$out" 2>&1
rc=$?
cat "$out"
if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && ! grep -q "WARNING: ThreadSanitizer" "$out" \
   && grep -qE "FATAL: ThreadSanitizer|ThreadSanitizer: unexpected memory mapping|ThreadSanitizer: failed" "$out"; then
  echo "SKIPPED: ThreadSanitizer cannot run here: $(grep -m1 -E 'ThreadSanitizer' "$out")"
  rm -f "$out"
  exit 77
fi
rm -f "$out"
exit "$rc"
