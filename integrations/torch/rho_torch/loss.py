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

    Returns ``(loss, SelectionStats)``. With no valid token the loss is 0 (still attached to the graph).
    """
    ratio = _check_ratio(ratio)
    lg, y, (ref,) = _align(logits, labels, [('ref_logprob', ref_logprob)], shift)
    B, T, V = lg.shape
    ce = F.cross_entropy(lg.reshape(-1, V).float(), y.reshape(-1), ignore_index=ignore_index,
                         reduction='none').view(B, T)
    valid = (y != ignore_index) & ~torch.isnan(ref)
    excess = torch.where(valid, ce.detach() - (-ref.float()), torch.full_like(ce, -math.inf))
    n_valid = int(valid.sum())
    # round() first: 0.6 * 10 is 6.000000000000001 in floating point, which must still select 6, not 7.
    k = math.ceil(round(ratio * n_valid, 6)) if n_valid else 0
    mask = torch.zeros(B * T, dtype=torch.bool, device=lg.device)
    if k == 0:
        loss = lg.sum() * 0.0
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
    ``F.cross_entropy(..., ignore_index=-100)`` on the shifted tensors (NaN if every label is ignored)."""
    lg, y, _ = _align(logits, labels, [], shift)
    return F.cross_entropy(lg.reshape(-1, lg.shape[-1]), y.reshape(-1), ignore_index=ignore_index)
