"""What a PyTorch user would run instead of rho, written the way they would write it: the same weights in a
Llama module whose attention is `F.scaled_dot_product_attention` (checked against the fixtures' reference
module before timing), windows grouped by length and batched with the user's own best batch size (a small
untimed sweep picks it), `torch.inference_mode()`, `log_softmax` + `gather`, the real positions kept.

The windows are exactly the ones rho scores (the rows of rho's batches, dumped by `bench/measure.ts dump`), so
both sides compute the same log-probs. Tokenizing and writing are not timed here (rho's figure includes both),
so the ratio favours PyTorch.

Usage: python bench/torch_score.py WEIGHTS BATCHES_PREFIX THREADS   -> one JSON line on stdout
"""
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'fixtures', 'scripts'))
from tiny_models import TinyLlama, rotate_half  # noqa: E402

weights, prefix, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
ck = torch.load(weights)
cfg = ck['cfg']


class SdpaLlama(TinyLlama):
    """TinyLlama's parameters and maths, attention through F.scaled_dot_product_attention (fused kernels)."""

    def forward(self, input_ids, attention_mask, position_ids):
        B, T = input_ids.shape
        x = self.embed(input_ids)
        freqs = position_ids[:, :, None].float() * self.inv_freq[None, None, :]
        emb = torch.cat([freqs, freqs], dim=-1)[:, None, :, :]
        cos, sin = emb.cos(), emb.sin()
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        mask = causal[None, None] & attention_mask[:, None, None, :].bool()  # [B,1,T,T], True = attend
        for blk in self.blocks:
            a = blk.attn_norm(x)
            q = blk.q(a).view(B, T, blk.h, blk.dh).transpose(1, 2)
            k = blk.k(a).view(B, T, blk.h, blk.dh).transpose(1, 2)
            v = blk.v(a).view(B, T, blk.h, blk.dh).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(B, T, -1)
            x = x + blk.o(y)
            m = blk.mlp_norm(x)
            x = x + blk.down(F.silu(blk.gate(m)) * blk.up(m))
        return torch.matmul(self.norm(x), self.embed.weight.t())


def build(cls):
    m = cls(vocab=cfg['vocab'], d=cfg['d'], heads=cfg['heads'], layers=cfg['layers'], ff=cfg['ff'], theta=cfg['theta'])
    m.load_state_dict(ck['state_dict'])
    return m.eval()


model = build(SdpaLlama)

# The windows rho scores: every row of every dumped batch, unpadded.
index = json.load(open(prefix + '.json'))
flat = np.fromfile(prefix + '.tokens.i32', dtype=np.int32)
windows = []
for b in index['batches']:
    rows, width = b['rows'], b['width']
    block = flat[b['offset']:b['offset'] + rows * width].reshape(rows, width)
    for r, n in enumerate(b['lengths']):
        windows.append(block[r, :n].astype(np.int64))
# Group by length (what HF's group_by_length / a length-sorted sampler does), so padding stays small.
windows.sort(key=len, reverse=True)


def batches(ws, size):
    for i in range(0, len(ws), size):
        chunk = ws[i:i + size]
        width = max(len(w) for w in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for r, w in enumerate(chunk):
            ids[r, :len(w)] = torch.from_numpy(w)
            mask[r, :len(w)] = 1
        pos = torch.arange(width)[None, :].expand(len(chunk), width)
        yield ids, mask, pos


def score(ws, size):
    scored = 0
    for ids, mask, pos in batches(ws, size):
        logits = model(ids, mask, pos)
        lp = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        vals = lp[mask[:, 1:].bool()]  # what a user keeps: the real positions' log-probs
        scored += int(vals.numel())
    return scored


with torch.inference_mode():
    # Same model as the reference module (manual attention), on a padded batch of real windows.
    ref = build(TinyLlama)
    ids, mask, pos = next(batches(windows[len(windows) // 2:len(windows) // 2 + 4], 4))
    diff = (torch.log_softmax(model(ids, mask, pos), -1) - torch.log_softmax(ref(ids, mask, pos), -1))[mask.bool()].abs().max().item()
    if not diff < 1e-3:
        sys.exit(f'torch_score: the SDPA module differs from the reference module by {diff}')
    del ref

    # The user's own batch size: a small sweep over a sample spread across the length range, untimed.
    sample = windows[::max(1, len(windows) // 128)]
    sweep = {}
    for size in (4, 8, 16, 32):  # 64 rows x 512 x V=32000 needed 12 GiB of logits + log_softmax: not a size a user keeps
        score(sample[:size], size)  # warm this shape family
        t0 = time.perf_counter()
        n = score(sample, size)
        sweep[size] = n / (time.perf_counter() - t0)
    best = max(sweep, key=sweep.get)

    score(windows[:best], best)  # warm-up at the chosen size, untimed
    t0 = time.perf_counter()
    scored = score(windows, best)
    seconds = time.perf_counter() - t0

print(json.dumps({'mode': 'torch', 'torch': torch.__version__, 'threads': torch.get_num_threads(),
                  'mkldnn': torch.backends.mkldnn.is_available(), 'batch_rows': best,
                  'sweep_tokens_per_second': {str(k): round(v) for k, v in sweep.items()},
                  'max_abs_logprob_diff_vs_reference': diff, 'windows': len(windows),
                  'seconds': seconds, 'scored_tokens': scored, 'tokens_per_second': scored / seconds,
                  'max_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
