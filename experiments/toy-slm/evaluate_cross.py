"""Evaluate the cross-tokenizer toy runs (cross.sh): final held-out target-domain loss of causal, SLM with the
same-tokenizer reference (ref) and SLM with the other-tokenizer reference (xref, projected by rho), per seed,
with mean and spread. Loss: mean cross-entropy over held-out target-kind tokens that have a score from both
references (the same tokens for every run).

Usage: evaluate_cross.py RUNS_DIR HELDOUT_MEMMAP OUT_JSON "SEEDS" XMERGES [WALL_SECONDS]
"""
import json
import os
import statistics
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'integrations', 'torch'))
from rho_torch import MemmapDataset  # noqa: E402

runs_dir, heldout, out_json, seeds, xmerges = sys.argv[1:6]
wall = float(sys.argv[6]) if len(sys.argv) > 6 else None
seeds = [int(s) for s in seeds.split()]
RUNS = ('causal', 'slm-ref', 'slm-xref')

first = json.load(open(os.path.join(runs_dir, 'causal-s%d' % seeds[0], 'train_log.json')))
L = first['seq_len']
ds = MemmapDataset(heldout, seq_len=L, include_next=True)
items = [ds[i] for i in range(len(ds))]
REF = torch.stack([it['ref_logprob'] for it in items])[:, 1:]
XREF = torch.stack([it['xref_logprob'] for it in items])[:, 1:]
DOC = torch.stack([it['doc_index'] for it in items])[:, 1:]
kinds = sorted({d['id'].split('-')[0] for d in ds.export.docs})
KIND = torch.tensor([kinds.index(d['id'].split('-')[0]) for d in ds.export.docs])[DOC]
VALID = ~torch.isnan(REF) & ~torch.isnan(XREF)
TARGET = VALID & (KIND == kinds.index('target'))

final = {r: {} for r in RUNS}
by_kind = {r: {} for r in RUNS}
for r in RUNS:
    for s in seeds:
        log = json.load(open(os.path.join(runs_dir, '%s-s%d' % (r, s), 'train_log.json')))
        ce = torch.load(os.path.join(runs_dir, '%s-s%d' % (r, s), log['checkpoints'][-1]['file']))
        final[r][s] = float(ce[TARGET].mean())
        by_kind[r][s] = {k: float(ce[VALID & (KIND == i)].mean()) for i, k in enumerate(kinds)}


def summary(xs):
    return {'mean': statistics.mean(xs), 'stdev': statistics.stdev(xs) if len(xs) > 1 else 0.0, 'min': min(xs), 'max': max(xs)}


table = {r: summary(list(final[r].values())) for r in RUNS}
diff = {r: summary([final[r][s] - final['causal'][s] for s in seeds]) for r in ('slm-ref', 'slm-xref')}
results = {
    'about': 'Cross-tokenizer toy Rho-1 (issue 16): trainees on the fixture tokenizer; ref = reference on the same tokenizer; '
             'xref = reference trained and run on the fixture tokenizer cut to its first %s merges, its scores projected onto the '
             "trainees' tokens by rho (--model-tokenizer). Final held-out target-domain loss, nats/token, over tokens scored by both references." % xmerges,
    'seeds': seeds, 'steps': first['steps'], 'ratio': first['ratio'], 'xref_merges': int(xmerges),
    'heldout_target_tokens': int(TARGET.sum()),
    'reference_heldout_target_loss': {'ref': float(-REF[TARGET].mean()), 'xref_projected': float(-XREF[TARGET].mean())},
    'final_heldout_target_loss': final,
    'final_heldout_loss_by_kind': by_kind,
    'summary': table,
    'difference_vs_causal_same_seed': diff,
    'total_wall_seconds': wall,
}
with open(out_json, 'w') as f:
    json.dump(results, f, indent=1)
print('| run | held-out target loss, mean ± stdev over seeds %s | per seed | vs causal (same seed), mean |' % seeds)
print('|---|---|---|---|')
for r in RUNS:
    t = table[r]
    d = ('%+.4f' % diff[r]['mean']) if r in diff else '-'
    print('| %s | %.4f ± %.4f | %s | %s |' % (r, t['mean'], t['stdev'], ', '.join('%.4f' % final[r][s] for s in seeds), d))
