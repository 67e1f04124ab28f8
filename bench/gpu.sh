#!/usr/bin/env bash
# Run the benchmark on a GPU machine, as is: installs nothing from the network.
# Needs: this checkout with node_modules installed with the CUDA provider (ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci;
# CUDA 12 + cuDNN 9 libraries on the loader path), /usr/bin/python3 with torch + onnx (to generate the model).
# Prints which execution providers load, then runs `bench/run.ts --device cuda` with a GPU-sized model
# (d=1024, 8 layers, V=32000) and GPU-sized batches. The PyTorch baseline is skipped on GPU (the local torch
# wheel is CPU-only). UNTESTED ON A GPU: written on a CPU-only machine.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not found"
node --version

echo "== build"
npx tsc -p tsconfig.json >/dev/null || true   # other modules' type errors still emit
test -f dist/bench/run.js || { echo "gpu.sh: dist/bench/run.js missing after tsc" >&2; exit 2; }

DEVICE=cuda
MODEL_ARGS="--d 1024 --layers 8 --heads 16 --ff 2752"
MODEL_DIR=bench/work/model-d1024layers8heads16ff2752   # the folder bench/run.ts derives from MODEL_ARGS
test -f "$MODEL_DIR/model.onnx" || /usr/bin/python3 bench/make_model.py --out "$MODEL_DIR" $MODEL_ARGS

echo "== execution providers"
node --input-type=module -e "
import ort from 'onnxruntime-node';
import { existsSync } from 'node:fs';
console.log('onnxruntime-node', ort.env.versions?.node ?? '', 'providers listed by the binding:', (ort.listSupportedBackends?.() ?? []).map((b) => b.name).join(', ') || 'n/a');
const m = process.cwd() + '/$MODEL_DIR/model.onnx';
for (const ep of ['cuda', 'cpu']) {
  try {
    if (!existsSync(m)) throw new Error('probe model not generated yet');
    await ort.InferenceSession.create(m, { executionProviders: [ep] });
    console.log('  ' + ep + ': loads');
  } catch (e) { console.log('  ' + ep + ': FAILS: ' + e.message.split('\n')[0]); }
}
" || true

echo "== vocabulary: full vs chunked head at V = 32k / 128k / 152k (bench/figures/vocab.ts; host peak RSS, not GPU memory)"
node dist/bench/figures/vocab.js --device cuda --d 1024 --layers 2 --tokens 16384 --big-tokens 65536 --reps 3 --threads 4 || echo "vocab figure failed (see above)"

# A GPU holds [B,T,V] logits of much larger batches; the CPU default (1024) would starve it.
BATCH_TOKENS=${BATCH_TOKENS:-16384}
exec node dist/bench/run.js --device "$DEVICE" --model-args "$MODEL_ARGS" --batch-tokens "$BATCH_TOKENS" --threads 4 --docs-1x "${DOCS_1X:-4000}" --reps "${REPS:-3}" "$@"
