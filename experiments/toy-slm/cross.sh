#!/usr/bin/env bash
# Cross-tokenizer extension of the toy Rho-1 reproduction (issue 16). Same data and trainees as run.sh; two
# reference models trained on the same target-domain text:
#   ref   on the trainees' tokenizer (fixtures/tokenizer/tokenizer.json)
#   xref  on ANOTHER tokenizer: the fixture tokenizer cut to its first $XMERGES BPE merges (same byte-level
#         family and id space, so the same tiny model code fits it; different segmentation almost everywhere)
# rho scores both in one pass, xref with --model-tokenizer (projected onto the trainees' tokens). For each seed:
# plain causal LM, SLM with ref, SLM with xref. Writes results-cross.json and prints the table.
# Run: bash experiments/toy-slm/cross.sh   (SEEDS="1 2 3", PARALLEL=2 trainees at a time, WORK=dir to keep or resume;
# a rerun with the same WORK skips what exists: scores, and any trainee whose folder exists (delete a partial one))
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY=${PYTHON:-/usr/bin/python3}
WORK=${WORK:-$(mktemp -d /tmp/toy-cross-XXXXXX)}
REF_STEPS=${REF_STEPS:-500}
STEPS=${STEPS:-500}
RATIO=${RATIO:-0.6}
SEEDS=${SEEDS:-"1 2 3"}
XMERGES=${XMERGES:-300}
PARALLEL=${PARALLEL:-2}
TOK="$ROOT/fixtures/tokenizer/tokenizer.json"
TOKB="$WORK/xref-tokenizer.json"
RHO="$ROOT/bin/rho"
export PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
cd "$ROOT"
[ -f dist/bin/main.js ] || { echo "cross.sh: build rho first: npx tsc -p tsconfig.json" >&2; exit 2; }
mkdir -p "$WORK"
echo "== toy-slm cross: work dir $WORK" >&2
T0=$SECONDS

echo "== data and the second tokenizer" >&2
[ -f "$WORK/data/heldout.jsonl" ] || "$PY" "$HERE/make_data.py" "$WORK/data"
node -e '
const fs = require("fs");
const j = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
j.model.merges = j.model.merges.slice(0, Number(process.argv[3]));
fs.writeFileSync(process.argv[2], JSON.stringify(j));' "$TOK" "$TOKB" "$XMERGES"
node "$HERE/tokenize.mjs" "$TOK" "$WORK/data/ref_train.jsonl" "$WORK/ref_train.bin"
node "$HERE/tokenize.mjs" "$TOKB" "$WORK/data/ref_train.jsonl" "$WORK/xref_train.bin"

echo "== reference models ($REF_STEPS steps each, in parallel)" >&2
[ -f "$WORK/ref/model.onnx" ] || "$PY" "$HERE/train_ref.py" "$WORK/ref_train.bin" "$WORK/ref" "$REF_STEPS" 2> >(grep -v -i warn >&2) &
P1=$!
[ -f "$WORK/xref/model.onnx" ] || "$PY" "$HERE/train_ref.py" "$WORK/xref_train.bin" "$WORK/xref" "$REF_STEPS" 2> >(grep -v -i warn >&2) &
P2=$!
wait $P1; wait $P2

echo "== rho score (ref on the trainees' tokens, xref on its own, projected) + rho export" >&2
for set in corpus heldout; do
  [ -f "$WORK/memmap-$set/header.json" ] && continue
  "$RHO" score --model "ref=$WORK/ref/model.onnx" --model "xref=$WORK/xref/model.onnx" --model-tokenizer "xref=$TOKB" \
    --tokenizer "$TOK" --input "$WORK/data/$set.jsonl" --output "$WORK/score-$set" --id-field id --context 128 --stride 64 \
    --cache-dir "$WORK/cache" --no-progress --overwrite >&2
  "$RHO" verify "$WORK/score-$set" >&2
  rm -rf "$WORK/memmap-$set"
  "$RHO" export "$WORK/score-$set" --format memmap --output "$WORK/memmap-$set" --no-progress >&2
done

echo "== trainees: causal, SLM with ref, SLM with xref, seeds $SEEDS ($PARALLEL at a time, one core each)" >&2
jobs_run=()
for seed in $SEEDS; do
  for run in causal slm-ref slm-xref; do
    mode=${run%%-*}; col=ref_logprob; [ "$run" = slm-xref ] && col=xref_logprob
    [ -d "$WORK/runs/$run-s$seed" ] && continue
    TOY_SEED=$seed TOY_REF_COLUMN=$col TOY_RUN_NAME=$run-s$seed \
      "$PY" "$HERE/train_lm.py" "$mode" "$WORK/memmap-corpus" "$WORK/memmap-heldout" "$WORK/runs" "$STEPS" "$RATIO" &
    jobs_run+=($!)
    if [ ${#jobs_run[@]} -ge "$PARALLEL" ]; then wait "${jobs_run[0]}"; jobs_run=("${jobs_run[@]:1}"); fi
  done
done
for p in "${jobs_run[@]}"; do wait "$p"; done
# Trainees of an earlier invocation may still be running: wait for every train_log.json.
for seed in $SEEDS; do for run in causal slm-ref slm-xref; do
  while [ ! -f "$WORK/runs/$run-s$seed/train_log.json" ]; do sleep 10; done
done; done

echo "== evaluate" >&2
"$PY" "$HERE/evaluate_cross.py" "$WORK/runs" "$WORK/memmap-heldout" "$HERE/results-cross.json" "$SEEDS" "$XMERGES" "$((SECONDS - T0))"
echo "== done in $((SECONDS - T0))s: $HERE/results-cross.json" >&2
