#!/usr/bin/env bash
# The toy Rho-1 reproduction, end to end, on CPU: data -> reference model -> rho score -> rho export (memmap)
# -> two identical tiny LMs (plain causal LM vs SLM top-60% by excess loss) -> results.json + results.svg.
# Run from anywhere: bash experiments/toy-slm/run.sh   (WORK=dir to keep intermediates; default a temp dir)
# Needs: node with this repo built (npx tsc), /usr/bin/python3 with Debian torch 1.13 + numpy + onnx.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY=${PYTHON:-/usr/bin/python3}
WORK=${WORK:-$(mktemp -d /tmp/toy-slm-XXXXXX)}
REF_STEPS=${REF_STEPS:-500}
STEPS=${STEPS:-500}
RATIO=${RATIO:-0.6}
TOK="$ROOT/fixtures/tokenizer/tokenizer.json"
RHO="$ROOT/bin/rho"
export PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
cd "$ROOT"
[ -f dist/bin/main.js ] || { echo "run.sh: build rho first: npx tsc -p tsconfig.json" >&2; exit 2; }
echo "== toy-slm: work dir $WORK" >&2
T0=$SECONDS

echo "== data" >&2
"$PY" "$HERE/make_data.py" "$WORK/data"
node "$HERE/tokenize.mjs" "$TOK" "$WORK/data/ref_train.jsonl" "$WORK/ref_train.bin"

echo "== reference model ($REF_STEPS steps on target-domain text)" >&2
"$PY" "$HERE/train_ref.py" "$WORK/ref_train.bin" "$WORK/ref" "$REF_STEPS" 2> >(grep -v -i warn >&2)

echo "== rho score + rho export" >&2
for set in corpus heldout; do
  "$RHO" score --model "$WORK/ref/model.onnx" --tokenizer "$TOK" --input "$WORK/data/$set.jsonl" \
    --output "$WORK/score-$set" --id-field id --context 128 --stride 64 --cache-dir "$WORK/cache" --no-progress >&2
  "$RHO" export "$WORK/score-$set" --format memmap --output "$WORK/memmap-$set" --no-progress >&2
done

echo "== train causal and SLM (in parallel, one core each)" >&2
"$PY" "$HERE/train_lm.py" causal "$WORK/memmap-corpus" "$WORK/memmap-heldout" "$WORK/runs" "$STEPS" "$RATIO" &
P1=$!
"$PY" "$HERE/train_lm.py" slm "$WORK/memmap-corpus" "$WORK/memmap-heldout" "$WORK/runs" "$STEPS" "$RATIO" &
P2=$!
wait $P1
wait $P2

echo "== evaluate" >&2
"$PY" "$HERE/evaluate.py" "$WORK/runs" "$WORK/memmap-heldout" "$HERE/results.json" "$HERE/results.svg" "$((SECONDS - T0))"
echo "== done in $((SECONDS - T0))s: $HERE/results.json, $HERE/results.svg" >&2
