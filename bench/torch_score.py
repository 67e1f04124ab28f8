"""What a user would run instead of rho: a straightforward PyTorch scoring loop over the same padded windows rho
forms (dumped by `bench/measure.ts dump`), with the same weights: torch.no_grad, forward, log_softmax, gather.
Tokenizing and writing are not timed here (rho's figure includes both), so the ratio favours PyTorch.

Usage: python bench/torch_score.py WEIGHTS BATCHES_PREFIX THREADS   -> one JSON line on stdout
"""
import json
import os
import resource
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'fixtures', 'scripts'))
from tiny_models import TinyLlama  # noqa: E402

weights, prefix, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
ck = torch.load(weights)
cfg = ck['cfg']
model = TinyLlama(vocab=cfg['vocab'], d=cfg['d'], heads=cfg['heads'], layers=cfg['layers'], ff=cfg['ff'], theta=cfg['theta'])
model.load_state_dict(ck['state_dict'])
model.eval()

index = json.load(open(prefix + '.json'))
flat = np.fromfile(prefix + '.tokens.i32', dtype=np.int32)
batches = []
for b in index['batches']:
    rows, width = b['rows'], b['width']
    ids = torch.from_numpy(flat[b['offset']:b['offset'] + rows * width].astype(np.int64).reshape(rows, width))
    lengths = torch.tensor(b['lengths'])
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    pos = torch.arange(width)[None, :].expand(rows, width) * mask
    batches.append((ids, mask, pos, lengths))

scored = 0
t0 = time.perf_counter()
with torch.no_grad():
    for ids, mask, pos, lengths in batches:
        logits = model(ids, mask, pos)
        lp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        keep = mask[:, 1:].bool()
        vals = lp[keep]  # what a user keeps: the real positions' log-probs
        scored += int(vals.numel())
seconds = time.perf_counter() - t0
print(json.dumps({'mode': 'torch', 'torch': torch.__version__, 'threads': torch.get_num_threads(),
                  'mkldnn': torch.backends.mkldnn.is_available(), 'seconds': seconds, 'scored_tokens': scored,
                  'tokens_per_second': scored / seconds,
                  'max_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
