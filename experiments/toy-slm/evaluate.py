"""Evaluate the causal and SLM checkpoints on the held-out set; write results.json and a hand-written SVG plot.

Usage: evaluate.py RUNS_DIR HELDOUT_MEMMAP RESULTS_JSON PLOT_SVG [WALL_SECONDS]

Held-out loss: mean cross-entropy over held-out tokens that have a reference score (the same tokens for both
models), by document kind; "target" is the target-domain loss the experiment is about.
Selected vs unselected (the shape of Rho-1 Fig. 6): at every checkpoint the SLM model's selection rule is
applied to the whole held-out set (top RATIO of tokens by excess loss CE_slm - L_ref); the mean loss of both
models is reported on the selected tokens and on the rest.
"""
import json
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..', 'integrations', 'torch'))
from rho_torch import MemmapDataset  # noqa: E402

runs_dir, heldout, out_json, out_svg = sys.argv[1:5]
wall = float(sys.argv[5]) if len(sys.argv) > 5 else None
logs = {m: json.load(open(os.path.join(runs_dir, m, 'train_log.json'))) for m in ('causal', 'slm')}
ratio = logs['slm']['ratio']
L = logs['slm']['seq_len']

ds = MemmapDataset(heldout, seq_len=L, include_next=True)
items = [ds[i] for i in range(len(ds))]
X = torch.stack([it['input_ids'] for it in items])
REF = torch.stack([it['ref_logprob'] for it in items])[:, 1:]
DOC = torch.stack([it['doc_index'] for it in items])[:, 1:]
kinds = sorted({d['id'].split('-')[0] for d in ds.export.docs})
KIND = torch.tensor([kinds.index(d['id'].split('-')[0]) for d in ds.export.docs])[DOC]
VALID = ~torch.isnan(REF)


def token_losses(mode, ckpt):
    """Per-token CE on the held-out sequences, computed by train_lm.py at that checkpoint."""
    ce = torch.load(os.path.join(runs_dir, mode, ckpt))
    assert ce.shape == REF.shape, (ce.shape, REF.shape)
    return ce


def mean(t):
    return float(t.mean()) if t.numel() else None


curves = {m: [] for m in logs}
fig6 = []
final_ce = {}
for c_slm, c_causal in zip(logs['slm']['checkpoints'], logs['causal']['checkpoints']):
    assert c_slm['step'] == c_causal['step']
    ce = {'slm': token_losses('slm', c_slm['file']), 'causal': token_losses('causal', c_causal['file'])}
    for m in ce:
        curves[m].append({'step': c_slm['step'], 'tokens': c_slm['tokens'],
                          'loss_by_kind': {k: mean(ce[m][VALID & (KIND == i)]) for i, k in enumerate(kinds)},
                          'loss_all': mean(ce[m][VALID])})
    excess = torch.where(VALID, ce['slm'] + REF, torch.full_like(REF, -math.inf)).flatten()
    n_valid = int(VALID.sum())
    k = math.ceil(round(ratio * n_valid, 6))
    sel = torch.zeros(excess.numel(), dtype=torch.bool)
    sel[torch.topk(excess, k).indices] = True
    sel = sel.view(REF.shape)
    unsel = VALID & ~sel
    fig6.append({'step': c_slm['step'], 'tokens': c_slm['tokens'],
                 'slm_selected': mean(ce['slm'][sel]), 'causal_selected': mean(ce['causal'][sel]),
                 'slm_unselected': mean(ce['slm'][unsel]), 'causal_unselected': mean(ce['causal'][unsel]),
                 'selected_fraction_by_kind': {kk: mean(sel[VALID & (KIND == i)].float()) for i, kk in enumerate(kinds)}})
    print('evaluate: step %d: held-out target loss causal %.4f slm %.4f' % (
        c_slm['step'], curves['causal'][-1]['loss_by_kind']['target'], curves['slm'][-1]['loss_by_kind']['target']),
        file=sys.stderr)

train_sel = {k: logs['slm']['selected_by_kind'][k] / max(1, logs['slm']['candidates_by_kind'][k]) for k in logs['slm']['kinds']}
final = {m: curves[m][-1] for m in curves}
results = {
    'about': 'Toy Rho-1 reproduction: two identical tiny LMs (TinyLlama d=64, 2 layers) trained on the same batches of a '
             'corpus mixing target-domain text (Python docstrings) with noise; one with plain causal LM loss, one with '
             'rho_torch.slm_loss (top-%d%% tokens by excess loss vs a reference model trained on target-domain text and '
             'scored with rho). Losses in nats/token.' % round(ratio * 100),
    'ratio': ratio,
    'steps': logs['slm']['steps'], 'batch': logs['slm']['batch'], 'seq_len': L,
    'train_tokens_per_run': logs['slm']['steps'] * logs['slm']['tokens_per_step'],
    'train_corpus_sequences': logs['slm']['sequences'],
    'heldout_tokens_scored': int(VALID.sum()),
    'heldout_tokens_by_kind': {k: int((VALID & (KIND == i)).sum()) for i, k in enumerate(kinds)},
    'final_heldout_loss_by_kind': {m: final[m]['loss_by_kind'] for m in final},
    'final_heldout_target_loss': {m: final[m]['loss_by_kind']['target'] for m in final},
    # For scale, not a fair competitor: the reference model trained on ~target text only, scored by rho with
    # windows of 128 tokens (stride 64) where the two trainees see 64; -ref_logprob on the same tokens.
    'reference_model_heldout_loss_by_kind': {k: mean(-REF[VALID & (KIND == i)]) for i, k in enumerate(kinds)},
    'target_loss_difference_slm_minus_causal': final['slm']['loss_by_kind']['target'] - final['causal']['loss_by_kind']['target'],
    'train_selected_fraction_by_kind': train_sel,
    'train_candidates_by_kind': logs['slm']['candidates_by_kind'],
    'heldout_curves': curves,
    'heldout_selected_vs_unselected': fig6,
    'train_selected_vs_unselected': {m: logs[m]['log'] for m in logs},
    'train_wall_seconds': {m: logs[m]['wall_seconds'] for m in logs},
    'total_wall_seconds': wall,
}
with open(out_json, 'w') as f:
    json.dump(results, f, indent=1)


# ---- SVG, by hand ----
def esc(s):
    return str(s).replace('&', '&amp;').replace('<', '&lt;')


def line_panel(x0, y0, w, h, title, xlabel, series):
    xs = [x for s in series for x in s['x']]
    ys = [y for s in series for y in s['y'] if y is not None]
    xmin, xmax = min(xs), max(xs)
    ymin, ymax = min(ys), max(ys)
    pad = (ymax - ymin) * 0.08 or 0.1
    ymin, ymax = ymin - pad, ymax + pad
    px = lambda x: x0 + 50 + (x - xmin) / ((xmax - xmin) or 1) * (w - 60)  # noqa: E731
    py = lambda y: y0 + h - 35 - (y - ymin) / (ymax - ymin) * (h - 60)  # noqa: E731
    out = ['<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>' % (x0 + 50, y0 + 15, esc(title)),
           '<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>' % (x0 + 50, y0 + 25, w - 60, h - 60)]
    for i in range(5):
        yv = ymin + (ymax - ymin) * i / 4
        out.append('<text x="%d" y="%.1f" font-size="10" text-anchor="end">%.2f</text>' % (x0 + 46, py(yv) + 3, yv))
        xv = xmin + (xmax - xmin) * i / 4
        out.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%s</text>' % (px(xv), y0 + h - 22, '%dk' % round(xv / 1000)))
    out.append('<text x="%d" y="%d" font-size="11" text-anchor="middle">%s</text>' % (x0 + 50 + (w - 60) / 2, y0 + h - 6, esc(xlabel)))
    for j, s in enumerate(series):
        pts = ' '.join('%.1f,%.1f' % (px(x), py(y)) for x, y in zip(s['x'], s['y']) if y is not None)
        out.append('<polyline points="%s" fill="none" stroke="%s" stroke-width="2" %s/>' % (
            pts, s['color'], 'stroke-dasharray="6,4"' if s.get('dash') else ''))
        ly = y0 + 35 + 14 * j
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2" %s/>' % (
            x0 + w - 190, ly, x0 + w - 170, ly, s['color'], 'stroke-dasharray="6,4"' if s.get('dash') else ''))
        out.append('<text x="%d" y="%d" font-size="10">%s</text>' % (x0 + w - 166, ly + 3, esc(s['label'])))
    return out


def bar_panel(x0, y0, w, h, title, values):
    out = ['<text x="%d" y="%d" font-size="13" font-weight="bold">%s</text>' % (x0 + 50, y0 + 15, esc(title))]
    n = len(values)
    bw = (w - 60) / n
    base = y0 + h - 35
    for i, (k, v) in enumerate(values.items()):
        bh = v * (h - 70)
        out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>' % (
            x0 + 50 + i * bw + 8, base - bh, bw - 16, bh, '#2b7' if k == 'target' else '#c54'))
        out.append('<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%.0f%%</text>' % (x0 + 50 + (i + 0.5) * bw, base - bh - 4, v * 100))
        out.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%s</text>' % (x0 + 50 + (i + 0.5) * bw, base + 14, esc(k)))
    ry = base - ratio * (h - 70)
    out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#555" stroke-dasharray="3,3"/>' % (x0 + 50, ry, x0 + w - 10, ry))
    out.append('<text x="%d" y="%.1f" font-size="10" text-anchor="end">k=%d%%</text>' % (x0 + 46, ry + 3, ratio * 100))
    out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>' % (x0 + 50, base, x0 + w - 10, base))
    return out


W, H = 1260, 360
tok = lambda rows: [r['tokens'] for r in rows]  # noqa: E731
svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif">' % (W, H),
       '<rect width="100%" height="100%" fill="white"/>']
svg += line_panel(0, 0, 420, H, 'Held-out target-domain loss (nats/token)', 'training tokens', [
    {'label': 'causal LM (all tokens)', 'color': '#36c', 'x': tok(curves['causal']), 'y': [r['loss_by_kind']['target'] for r in curves['causal']]},
    {'label': 'SLM top-%d%%' % (ratio * 100), 'color': '#e63', 'x': tok(curves['slm']), 'y': [r['loss_by_kind']['target'] for r in curves['slm']]},
])
svg += line_panel(420, 0, 420, H, 'Held-out loss (nats/token), SLM-selected vs not', 'training tokens', [
    {'label': 'SLM, selected', 'color': '#e63', 'x': tok(fig6), 'y': [r['slm_selected'] for r in fig6]},
    {'label': 'causal, selected', 'color': '#36c', 'x': tok(fig6), 'y': [r['causal_selected'] for r in fig6]},
    {'label': 'SLM, unselected', 'color': '#e63', 'dash': True, 'x': tok(fig6), 'y': [r['slm_unselected'] for r in fig6]},
    {'label': 'causal, unselected', 'color': '#36c', 'dash': True, 'x': tok(fig6), 'y': [r['causal_unselected'] for r in fig6]},
])
svg += bar_panel(840, 0, 420, H, 'SLM: fraction of training tokens selected, by kind', train_sel)
svg.append('</svg>')
with open(out_svg, 'w') as f:
    f.write('\n'.join(svg) + '\n')
print('evaluate: final held-out target loss: causal %.4f, SLM %.4f (difference %+.4f); train selected fraction %s' % (
    results['final_heldout_target_loss']['causal'], results['final_heldout_target_loss']['slm'],
    results['target_loss_difference_slm_minus_causal'], json.dumps({k: round(v, 3) for k, v in train_sel.items()})),
    file=sys.stderr)
