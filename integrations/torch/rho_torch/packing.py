"""Packing: documents concatenated in order, cut into fixed-length training sequences.

Shared by MemmapDataset and ParquetDataset so both yield exactly the same items for the same tokens.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np
import torch

IGNORE_INDEX = -100


class PackedSequences(torch.utils.data.Dataset):
    """Map-style dataset of packed sequences over one token stream.

    The stream is every document's tokens in order (doc d spans ``[doc_offsets[d], doc_offsets[d+1])``),
    with no separator added: rho's tokens already hold what the tokenizer's post-processor adds (e.g. BOS).

    Item ``j`` covers stream positions ``[j*L, j*L + W)`` where ``L = seq_len`` and
    ``W = L`` (default) or ``W = L + 1`` with ``include_next=True``:

    * ``include_next=False``: the Hugging Face convention. Feed ``input_ids`` (L tokens) to the model and
      ``labels`` to a loss that shifts inside (``slm_loss``/``static_loss`` with ``shift=True``). The first
      token of each sequence is never a target (it has no logits before it).
    * ``include_next=True``: W = L + 1 tokens, consecutive items overlap by one token, so every token of the
      stream after the first is a target exactly once. Feed ``input_ids[:, :-1]`` to the model and use
      ``labels[:, 1:]``, ``ref_logprob[:, 1:]`` with ``shift=False``.

    Every per-token field is aligned TOKEN FOR TOKEN with ``input_ids``: ``ref_logprob[i]`` is
    ``log P_ref(input_ids[i] | earlier tokens)``, NaN where rho wrote null (first token of a document, or of
    a window without context). Fields of an item (tensors of length W unless noted):

    * ``input_ids`` int64
    * ``labels`` int64: the export's ``labels`` (-100 where not selected) if it has them, else ``input_ids``
    * one float32 tensor per score column (e.g. ``ref_logprob``, ``base_logprob``), NaN where no score
    * ``attention_mask`` int64: 1 on real tokens, 0 on padding (only the last item can be padded, and only
      with ``drop_last=False``); padding has ``input_ids = pad_id``, ``labels = -100``, scores NaN
    * ``doc_index`` int64: the document (row of docs.jsonl / index into doc_offsets) each token belongs to,
      -1 on padding. A change of value marks a document boundary (for masks or position ids that reset).
    * ``offset`` int64 scalar: stream position of the first token
    """

    def __init__(
        self,
        token_ids: np.ndarray,
        doc_offsets: np.ndarray,
        columns: Mapping[str, np.ndarray],
        labels: Optional[np.ndarray],
        seq_len: int,
        include_next: bool = False,
        drop_last: bool = True,
        pad_id: int = 0,
    ):
        if not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
            raise ValueError(f'seq_len must be a positive integer, got {seq_len!r}')
        self.token_ids = token_ids
        self.doc_offsets = np.asarray(doc_offsets, dtype=np.int64)
        self.columns: Dict[str, np.ndarray] = dict(columns)
        self.labels = labels
        self.seq_len = int(seq_len)
        self.width = self.seq_len + (1 if include_next else 0)
        self.include_next = include_next
        self.drop_last = drop_last
        self.pad_id = pad_id
        n = len(token_ids)
        # Targets available: all n tokens, or n - 1 when consecutive items share one token.
        span = n - 1 if include_next else n
        if span <= 0:
            self._len = 0
        elif drop_last:
            self._len = span // self.seq_len
        else:
            self._len = -(-span // self.seq_len)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, j: int) -> Dict[str, torch.Tensor]:
        if j < 0:
            j += self._len
        if not 0 <= j < self._len:
            raise IndexError(f'sequence {j} out of range (dataset has {self._len})')
        start = j * self.seq_len
        stop = min(start + self.width, len(self.token_ids))
        n = stop - start
        pad = self.width - n
        ids = np.array(self.token_ids[start:stop], dtype=np.int64)  # copies: memmaps are read-only
        lab = ids.copy() if self.labels is None else np.array(self.labels[start:stop], dtype=np.int64)
        pos = np.arange(start, stop, dtype=np.int64)
        # side='right' - 1: the last document starting at or before pos, which skips empty documents.
        doc = np.searchsorted(self.doc_offsets, pos, side='right').astype(np.int64) - 1
        item = {
            'input_ids': _pad(ids, pad, self.pad_id),
            'labels': _pad(lab, pad, IGNORE_INDEX),
            'attention_mask': _pad(np.ones(n, dtype=np.int64), pad, 0),
            'doc_index': _pad(doc, pad, -1),
        }
        for name, arr in self.columns.items():
            item[name] = _pad(np.array(arr[start:stop], dtype=np.float32), pad, np.nan)
        out = {k: torch.from_numpy(v) for k, v in item.items()}
        out['offset'] = torch.tensor(start, dtype=torch.int64)
        return out


def _pad(a: np.ndarray, pad: int, value) -> np.ndarray:
    if pad == 0:
        return a
    return np.concatenate([a, np.full(pad, value, dtype=a.dtype)])
