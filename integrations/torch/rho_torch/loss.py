"""Rho-1 Selective Language Modeling losses.

Conventions (Hugging Face causal LM): ``logits[b, t]`` is the model's prediction for token ``t + 1``.
With ``shift=True`` (default) the losses pair ``logits[:, :-1]`` with ``labels[:, 1:]`` and
``ref_logprob[:, 1:]``, i.e. the score that rho wrote FOR token t+1 (``log P_ref(x_{t+1} | x_<=t)``) is
compared with the trainer's loss on that same token. With ``shift=False`` the caller has already aligned
them: ``logits[b, t]`` predicts ``labels[b, t]``, whose reference score is ``ref_logprob[b, t]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


@dataclass
class SelectionStats:
    """What slm_loss selected. Tensors are [B, T-1] with shift=True ([B, T] without), detached."""
    n_selected: int
    n_valid: int
    #: smallest excess loss among selected tokens (nan when nothing was selected)
    threshold: float
    #: bool: token was back-propagated
    mask: torch.Tensor
    #: bool: token could be selected (label != ignore_index and reference score not NaN)
    valid: torch.Tensor
    #: per-token cross-entropy of the model being trained (0 where not valid)
    token_loss: torch.Tensor
    #: per-token excess loss L_train - L_ref (-inf where not valid)
    excess: torch.Tensor


#: float32 values per chunk when computing cross-entropy (64 MiB): the float32 working copy never exceeds this,
#: whatever the batch, sequence or vocabulary size.
CHUNK_ELEMENTS = 1 << 24


class _TokenCrossEntropy(torch.autograd.Function):
    """Per-token cross-entropy of [B, T, V] logits (any float dtype) against [B, T] targets, computed in float32 one
    chunk of positions at a time, so no float32 copy of the whole logits exists (F.cross_entropy on ``.float()`` logits
    holds one, and autograd keeps its float32 log-softmax for the backward pass). Saves only the logits (already
    alive in the caller's graph) and one float32 log-sum-exp per token; the backward pass recomputes the softmax per
    chunk. Ignored targets get CE 0 and exactly zero gradient."""

    @staticmethod
    def forward(ctx, logits, target, valid, chunk):
        B, T, V = logits.shape
        lse = torch.empty(B, T, dtype=torch.float32, device=logits.device)
        for b in range(B):
            for s in range(0, T, chunk):
                lse[b, s:s + chunk] = torch.logsumexp(logits[b, s:s + chunk].float(), dim=-1)
        safe = torch.where(valid, target, torch.zeros_like(target))
        picked = logits.gather(2, safe.unsqueeze(-1)).squeeze(-1).float()
        ce = torch.where(valid, lse - picked, torch.zeros_like(lse))
        ctx.save_for_backward(logits, safe, valid, lse)
        ctx.chunk = chunk
        return ce

    @staticmethod
    def backward(ctx, grad_ce):
        logits, safe, valid, lse = ctx.saved_tensors
        B, T, V = logits.shape
        g = torch.where(valid, grad_ce.float(), torch.zeros_like(lse))
        grad = torch.empty_like(logits)
        for b in range(B):
            for s in range(0, T, ctx.chunk):
                e = min(T, s + ctx.chunk)
                p = torch.exp(logits[b, s:e].float() - lse[b, s:e, None])  # softmax of this chunk
                gb = g[b, s:e, None]
                # Rows with zero upstream gradient (ignored, unselected) get exactly 0, even where logits hold inf.
                p = torch.where(gb != 0, p * gb, torch.zeros_like(p))
                p.scatter_add_(1, safe[b, s:e, None], -gb)
                grad[b, s:e] = p.to(grad.dtype)
        return grad, None, None, None


def token_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX,
                        chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """Per-token cross-entropy [B, T] (float32; 0 where target == ignore_index), chunked over positions so memory
    stays flat in the vocabulary (see _TokenCrossEntropy)."""
    V = logits.shape[-1]
    chunk = max(1, chunk_elements // max(1, V))
    valid = target != ignore_index
    return _TokenCrossEntropy.apply(logits, target, valid, chunk)


def _check_ratio(ratio) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (0 < ratio <= 1):
        raise ValueError(f'ratio (the fraction k of tokens to select) must be a number in (0, 1], got {ratio!r}; '
                         'the paper uses 0.6 or 0.7')
    return float(ratio)


def _align(logits, labels, others, shift):
    if logits.dim() != 3:
        raise ValueError(f'logits must be [batch, seq, vocab], got shape {tuple(logits.shape)}')
    for name, x in [('labels', labels)] + others:
        if tuple(x.shape) != tuple(logits.shape[:2]):
            raise ValueError(f'{name} must be [batch, seq] = {tuple(logits.shape[:2])} like logits, got {tuple(x.shape)}')
    if shift:
        return logits[:, :-1], labels[:, 1:], [x[:, 1:] for _, x in others]
    return logits, labels, [x for _, x in others]


def slm_loss(logits: torch.Tensor, labels: torch.Tensor, ref_logprob: torch.Tensor, ratio: float,
             shift: bool = True, ignore_index: int = IGNORE_INDEX):
    """Selective LM loss: back-propagate only the top ``ratio`` of tokens by excess loss.

    ``excess_i = CE_train(x_i) - L_ref(x_i)`` with ``L_ref = -ref_logprob``. Tokens whose label is
    ``ignore_index`` or whose ref_logprob is NaN are not candidates. Of the ``N_valid`` candidates in this
    call (the whole batch, not per sequence), the ``k = ceil(ratio * N_valid)`` with the largest excess are
    selected (exactly k; ties broken by torch.topk) and
    ``loss = sum of CE over selected / k``, the paper's L_SLM normalised by the number of selected tokens.
    Selection uses detached values: gradients flow only through the CE of selected tokens, so the logits of
    unselected tokens get zero gradient. Under data parallelism each rank selects within its own batch.

    Returns ``(loss, SelectionStats)``. With no valid token the loss is 0 (still attached to the graph) and every
    gradient is 0. The cross-entropy is computed in float32 chunk by chunk (token_cross_entropy): no float32 copy of
    the whole logits is made, whatever their dtype.
    """
    ratio = _check_ratio(ratio)
    lg, y, (ref,) = _align(logits, labels, [('ref_logprob', ref_logprob)], shift)
    B, T, V = lg.shape
    ce = token_cross_entropy(lg, y, ignore_index)
    valid = (y != ignore_index) & ~torch.isnan(ref)
    excess = torch.where(valid, ce.detach() - (-ref.float()), torch.full_like(ce, -math.inf))
    n_valid = int(valid.sum())
    # round() first: 0.6 * 10 is 6.000000000000001 in floating point, which must still select 6, not 7.
    k = math.ceil(round(ratio * n_valid, 6)) if n_valid else 0
    mask = torch.zeros(B * T, dtype=torch.bool, device=lg.device)
    if k == 0:
        loss = ce.sum() * 0.0  # 0, attached to the graph, zero gradient (no NaN even where logits hold inf)
        threshold = math.nan
    else:
        top, idx = torch.topk(excess.reshape(-1), k)
        mask[idx] = True
        loss = ce.reshape(-1)[idx].sum() / k
        threshold = float(top[-1])
    return loss, SelectionStats(n_selected=k, n_valid=n_valid, threshold=threshold, mask=mask.view(B, T),
                                valid=valid, token_loss=ce.detach(), excess=excess)


def static_loss(logits: torch.Tensor, labels: torch.Tensor, shift: bool = True,
                ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Static selection (labels from `rho select`, -100 where not selected): mean cross-entropy over the
    tokens whose label is not ignore_index, same shift convention as slm_loss. Equals
    ``F.cross_entropy(..., ignore_index=-100)`` on the shifted tensors within float rounding, except that a batch
    with no selected token gives 0 with zero gradient (F.cross_entropy gives NaN). Chunked like slm_loss."""
    lg, y, _ = _align(logits, labels, [], shift)
    ce = token_cross_entropy(lg, y, ignore_index)
    n = int((y != ignore_index).sum())
    return ce.sum() / max(n, 1)
