#!/usr/bin/env bash
# Perplexity and batch-1 decode speed of fp32, int8 and int4 weights (strata quantize / eval-ppl),
# the quantised ones with fp32 activations and with int8 activations (--activations int8: "+a8").
#
#   bench/quant/ppl.sh [options] NAME=CKPT [NAME=CKPT ...]
#     CKPT: a strata checkpoint, a run directory or a Hugging Face model directory (fp32)
#   options (environment):
#     STRATA=build/strata  TEXT=../shared/data/tinyshakespeare.txt  MAX_TOKENS=65536  CONTEXT=256
#     DECODE_TOKENS=128  OUT=/tmp/strata_quant_bench (quantised checkpoints written there)
#     EXTRA="--bytes"  (more eval-ppl options, e.g. for a byte-level model imported without a tokenizer)
#
# Prints one markdown table: per model and weights, perplexity, its change from fp32, the weight
# bytes in memory as stored (quantised bytes + scales + the fp32 tensors kept), the checkpoint file
# size, and decode tokens/s at batch 1: per wall-clock second and per CPU second of the process
# (run single-threaded, OMP_NUM_THREADS=1, so that the second is the work itself on a shared machine).
set -euo pipefail
STRATA=${STRATA:-build/strata}
TEXT=${TEXT:-../shared/data/tinyshakespeare.txt}
MAX_TOKENS=${MAX_TOKENS:-65536}
CONTEXT=${CONTEXT:-256}
DECODE_TOKENS=${DECODE_TOKENS:-128}
OUT=${OUT:-/tmp/strata_quant_bench}
if [[ $# -eq 0 || $1 == -h || $1 == --help ]]; then
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi
[[ -x $STRATA ]] || { echo "no strata binary at $STRATA (set STRATA=)" >&2; exit 2; }
[[ -f $TEXT ]] || { echo "no text at $TEXT (set TEXT=)" >&2; exit 2; }
mkdir -p "$OUT"

field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
# A run directory: its newest checkpoint; a Hugging Face directory: all of it.
size_of() {
  if [[ -f $1 ]]; then stat -c %s "$1"
  elif compgen -G "$1/ckpt-*.h5" >/dev/null; then stat -c %s "$(ls "$1"/ckpt-*.h5 | sort | tail -1)"
  else du -sb "$1" | cut -f1; fi
}

echo "| model | weights | ppl | delta | delta % | weight MB | file MB | decode tok/s (wall) | decode tok/CPU-s |"
echo "|---|---|---|---|---|---|---|---|---|"
for spec in "$@"; do
  name=${spec%%=*}
  ckpt=${spec#*=}
  base=""
  for w in fp32 int8 int8+a8 int4 int4+a8; do
    acts=fp32
    case $w in
      fp32) path=$ckpt ;;
      int8) path=$OUT/$name.q8.h5; "$STRATA" quantize "$ckpt" -o "$path" --bits 8 --quiet ;;
      int4) path=$OUT/$name.q4.h5; "$STRATA" quantize "$ckpt" -o "$path" --bits 4 --quiet ;;
      *+a8) acts=int8 ;;  # the checkpoint just written for ${w%+a8}
    esac
    line=$(OMP_NUM_THREADS=1 "$STRATA" eval-ppl --ckpt "$path" --activations "$acts" --text-file "$TEXT" --max-tokens "$MAX_TOKENS" \
           --context "$CONTEXT" --decode-tokens "$DECODE_TOKENS" ${EXTRA:-} --quiet)
    ppl=$(field ppl "$line")
    [[ -z $base ]] && base=$ppl
    bytes=$(field weight_bytes "$line")
    tps=$(field decode_tok_s "$line")
    cps=$(field decode_tok_per_cpu_s "$line")
    awk -v n="$name" -v w="$w" -v p="$ppl" -v b="$base" -v wb="$bytes" -v fb="$(size_of "$path")" -v t="$tps" -v c="$cps" \
      'BEGIN { printf "| %s | %s | %.4f | %+.4f | %+.2f%% | %.2f | %.2f | %.1f | %.1f |\n", n, w, p, p - b, 100 * (p - b) / b, wb / 1e6, fb / 1e6, t, c }'
  done
done
