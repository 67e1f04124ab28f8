"""Train the reference model on target-domain tokens and export it to ONNX for `rho score`.

Usage: train_ref.py TOKENS.bin OUT_DIR STEPS. Writes OUT_DIR/model.onnx + config.json (max positions, vocab).
The model is the fixtures' TinyLlama (fixtures/scripts/tiny_models.py): d=64, 2 layers, 4 heads, vocab 1024.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'fixtures', 'scripts'))
from tiny_models import TinyLlama  # noqa: E402

tokens_path, out_dir, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(int(os.environ.get('TOY_THREADS', '1')))  # generic BLAS: 1 thread is not slower for d=64
torch.manual_seed(7)
ids = torch.from_numpy(np.fromfile(tokens_path, dtype=np.uint16).astype(np.int64))
B, T = 8, 64
model = TinyLlama()
opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.01)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=steps, pct_start=0.1)
g = torch.Generator().manual_seed(7)
pos = torch.arange(T)[None, :].expand(B, T)
am = torch.ones(B, T, dtype=torch.int64)
t0 = time.time()
for step in range(steps):
    starts = torch.randint(0, len(ids) - T - 1, (B,), generator=g)
    x = torch.stack([ids[s:s + T + 1] for s in starts])
    logits = model(x[:, :-1], am, pos)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    if step % 100 == 0 or step == steps - 1:
        print('train_ref: step %d/%d loss %.3f (%.0fs)' % (step + 1, steps, loss.item(), time.time() - t0), file=sys.stderr)

model.eval()
os.makedirs(out_dir, exist_ok=True)
ex = torch.randint(0, 1000, (2, 9))
BT = {0: 'batch', 1: 'sequence'}
torch.onnx.export(model, (ex, torch.ones_like(ex), torch.arange(9)[None, :].expand(2, 9).contiguous()),
                  os.path.join(out_dir, 'model.onnx'), opset_version=14,
                  input_names=['input_ids', 'attention_mask', 'position_ids'], output_names=['logits'],
                  dynamic_axes={'input_ids': BT, 'attention_mask': BT, 'position_ids': BT, 'logits': BT},
                  do_constant_folding=False)
with open(os.path.join(out_dir, 'config.json'), 'w') as f:
    json.dump({'architectures': ['LlamaForCausalLM'], 'model_type': 'llama', 'vocab_size': 1024,
               'max_position_embeddings': 256, 'bos_token_id': 1022, 'eos_token_id': 1023}, f, indent=2)
torch.save(model.state_dict(), os.path.join(out_dir, 'ref.pt'))
print('train_ref: exported %s' % os.path.join(out_dir, 'model.onnx'), file=sys.stderr)
