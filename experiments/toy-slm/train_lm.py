"""Train one tiny LM on the rho memmap export of the corpus: plain causal LM or Rho-1 SLM (rho_torch.slm_loss).

Usage: train_lm.py causal|slm CORPUS_MEMMAP HELDOUT_MEMMAP OUT_DIR STEPS [RATIO]
Both modes use the same seed, initial weights, batches (same order) and optimizer schedule, so the only
difference is which tokens are back-propagated. Writes OUT_DIR/<mode>/heldout-ce-<step>.pt (per-token
cross-entropy on the held-out sequences at each checkpoint, for evaluate.py) and train_log.json:
every LOG_EVERY steps, the in-batch mean loss on the tokens the SLM rule selects (top RATIO by excess
loss under this model) and on the rest, plus per-kind selected/candidate token counts.
"""
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'integrations', 'torch'))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'fixtures', 'scripts'))
from rho_torch import MemmapDataset, slm_loss  # noqa: E402
from tiny_models import TinyLlama  # noqa: E402

mode, corpus, heldout, out, steps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ratio = float(sys.argv[6]) if len(sys.argv) > 6 else 0.6
assert mode in ('causal', 'slm'), mode
torch.set_num_threads(int(os.environ.get('TOY_THREADS', '1')))
# Cross-tokenizer extension (cross.sh): seed, score column and run folder; the defaults are the original run's.
SEED = int(os.environ.get('TOY_SEED', '1'))
REF_COLUMN = os.environ.get('TOY_REF_COLUMN', 'ref_logprob')
RUN_NAME = os.environ.get('TOY_RUN_NAME', mode)
B, L, LOG_EVERY, N_CKPT = 8, 64, 10, 8

ds = MemmapDataset(corpus, seq_len=L, include_next=True)  # 65 tokens: inputs [:-1], targets [1:]
kinds = sorted({d['id'].split('-')[0] for d in ds.export.docs})
doc_kind = torch.tensor([kinds.index(d['id'].split('-')[0]) for d in ds.export.docs])

held = MemmapDataset(heldout, seq_len=L, include_next=True)
HX = torch.stack([held[i]['input_ids'] for i in range(len(held))])


def heldout_ce():
    """Per-token cross-entropy [n_seq, L] on the held-out sequences (evaluated here, in parallel with the other run)."""
    model.eval()
    out = []
    with torch.no_grad():
        for a in range(0, len(HX), 64):
            x = HX[a:a + 64]
            n = len(x)
            lg = model(x[:, :-1], torch.ones(n, L, dtype=torch.int64), torch.arange(L)[None, :].expand(n, L))
            out.append(F.cross_entropy(lg.reshape(-1, lg.shape[-1]), x[:, 1:].reshape(-1), reduction='none').view(n, L))
    model.train()
    return torch.cat(out)


torch.manual_seed(SEED)
model = TinyLlama()
opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.01)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=steps, pct_start=0.1)
order_gen = torch.Generator().manual_seed(1234 + SEED - 1)
order, at = torch.randperm(len(ds), generator=order_gen), 0
pos = torch.arange(L)[None, :].expand(B, L)
am = torch.ones(B, L, dtype=torch.int64)
ckpt_steps = sorted({round(i * steps / N_CKPT) for i in range(N_CKPT + 1)})
run_dir = os.path.join(out, RUN_NAME)
os.makedirs(run_dir, exist_ok=True)
log = {'mode': mode, 'ratio': ratio, 'steps': steps, 'batch': B, 'seq_len': L, 'kinds': kinds, 'sequences': len(ds),
       'tokens_per_step': B * L, 'log': [], 'checkpoints': []}
sel_by_kind = np.zeros(len(kinds), dtype=np.int64)
cand_by_kind = np.zeros(len(kinds), dtype=np.int64)
t0 = time.time()
for step in range(steps + 1):
    if step in ckpt_steps:
        torch.save(heldout_ce(), os.path.join(run_dir, 'heldout-ce-%05d.pt' % step))
        log['checkpoints'].append({'step': step, 'tokens': step * B * L, 'file': 'heldout-ce-%05d.pt' % step})
    if step == steps:
        break
    if at + B > len(order):  # next epoch: a new permutation from the same generator, same in both modes
        order, at = torch.randperm(len(ds), generator=order_gen), 0
    items = [ds[int(i)] for i in order[at:at + B]]
    at += B
    x = torch.stack([it['input_ids'] for it in items])
    ref = torch.stack([it[REF_COLUMN] for it in items])[:, 1:]
    doc = torch.stack([it['doc_index'] for it in items])[:, 1:]
    logits = model(x[:, :-1], am, pos)
    y = x[:, 1:]
    if mode == 'slm':
        loss, st = slm_loss(logits, y, ref, ratio, shift=False)
    else:
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        with torch.no_grad():  # what SLM would have selected, for the same curves
            _, st = slm_loss(logits.detach(), y, ref, ratio, shift=False)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    k = doc_kind[doc]
    sel_by_kind += np.bincount(k[st.mask].numpy(), minlength=len(kinds))
    cand_by_kind += np.bincount(k[st.valid].numpy(), minlength=len(kinds))
    if step % LOG_EVERY == 0 or step == steps - 1:
        unsel = st.valid & ~st.mask
        entry = {'step': step + 1, 'tokens': (step + 1) * B * L, 'loss': loss.item(),
                 'selected_loss': st.token_loss[st.mask].mean().item(),
                 'unselected_loss': st.token_loss[unsel].mean().item() if unsel.any() else None,
                 'threshold': st.threshold}
        log['log'].append(entry)
        if step % 100 == 0 or step == steps - 1:
            print('train_lm %s: step %d/%d loss %.3f selected %.3f unselected %s (%.0fs)' % (
                mode, step + 1, steps, entry['loss'], entry['selected_loss'],
                '%.3f' % entry['unselected_loss'] if entry['unselected_loss'] is not None else '-', time.time() - t0),
                file=sys.stderr)
log['selected_by_kind'] = {kk: int(s) for kk, s in zip(kinds, sel_by_kind)}
log['candidates_by_kind'] = {kk: int(c) for kk, c in zip(kinds, cand_by_kind)}
log['wall_seconds'] = time.time() - t0
with open(os.path.join(run_dir, 'train_log.json'), 'w') as f:
    json.dump(log, f, indent=1)
