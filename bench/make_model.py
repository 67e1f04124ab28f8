"""Benchmark model: a Llama-style causal LM with a real 32000-token vocabulary, random but seeded weights,
exported to ONNX (opset 14, dynamic batch/sequence) the way an HF/optimum export looks to rho
(inputs input_ids, attention_mask, position_ids; output logits).

Not committed: `npm run bench` generates it into bench/work/ (gitignored). The same weights are saved as a
state_dict so the PyTorch baseline (bench/torch_score.py) scores with exactly this model.

Usage: /usr/bin/python3 bench/make_model.py --out bench/work/model [--d 256 --layers 4 --heads 4 --ff 688]
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
# The module code is the fixtures' Llama block (RMSNorm, RoPE, SwiGLU), so the bench measures the same graph shape.
sys.path.insert(0, os.path.join(HERE, '..', 'fixtures', 'scripts'))
from tiny_models import TinyLlama  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument('--out', required=True)
p.add_argument('--vocab', type=int, default=32000)
p.add_argument('--d', type=int, default=256)
p.add_argument('--layers', type=int, default=4)
p.add_argument('--heads', type=int, default=4)
p.add_argument('--ff', type=int, default=688)
p.add_argument('--max-positions', type=int, default=4096)
p.add_argument('--seed', type=int, default=7)
a = p.parse_args()

torch.manual_seed(a.seed)
model = TinyLlama(vocab=a.vocab, d=a.d, heads=a.heads, layers=a.layers, ff=a.ff).eval()
os.makedirs(a.out, exist_ok=True)
torch.save({'cfg': model.cfg, 'state_dict': model.state_dict()}, os.path.join(a.out, 'weights.pt'))

B0, T0 = 2, 9
ids = torch.randint(0, a.vocab, (B0, T0), generator=torch.Generator().manual_seed(5))
am = torch.ones(B0, T0, dtype=torch.int64)
pos = torch.arange(T0)[None, :].expand(B0, T0).contiguous()
BT = {0: 'batch', 1: 'sequence'}
onnx_path = os.path.join(a.out, 'model.onnx')
with torch.no_grad():
    torch.onnx.export(model, (ids, am, pos), onnx_path, opset_version=14,
                      input_names=['input_ids', 'attention_mask', 'position_ids'], output_names=['logits'],
                      dynamic_axes={'input_ids': BT, 'attention_mask': BT, 'position_ids': BT, 'logits': BT},
                      do_constant_folding=False)  # keeps the tied embedding one initializer (half the file)
with open(os.path.join(a.out, 'config.json'), 'w') as f:
    json.dump({'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'vocab_size': a.vocab,
               'hidden_size': a.d, 'num_hidden_layers': a.layers, 'num_attention_heads': a.heads,
               'intermediate_size': a.ff, 'max_position_embeddings': a.max_positions, 'rho_bench_seed': a.seed}, f, indent=2)
n_params = sum(t.numel() for t in model.state_dict().values() if t.dtype == torch.float32)
print(json.dumps({'model': onnx_path, 'params': n_params, **model.cfg}))
