"""Packed training sequences straight from rho's Parquet score output (needs pyarrow).

Reads every ``*.parquet`` data file under the output folder (``<shard>/part-NNNNN.parquet``, ``_rho/`` is
skipped) in sorted path order, rows in file order, and packs them exactly like MemmapDataset. Everything
is loaded into memory: for corpora larger than RAM use ``rho export --format memmap`` + MemmapDataset.
"""
from __future__ import annotations

import glob
import os
from typing import List, Optional, Sequence, Union

import numpy as np

from .packing import PackedSequences

_NOT_SCORE = {'id', 'source', 'row', 'token_ids', 'n_tokens', 'select_mask', 'labels', 'doc_ids', 'doc_offsets'}


def _require_pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError(
            'rho_torch.ParquetDataset needs pyarrow (pip install pyarrow). Without it, export the scores with '
            '`rho export --format memmap` and use rho_torch.MemmapDataset, which needs only numpy.') from e
    return pq


def parquet_files(path: Union[str, Sequence[str]]) -> List[str]:
    """Data files of a rho output folder (sorted, ``_rho/`` excluded), or the given file list as is."""
    if not isinstance(path, str):
        return list(path)
    if os.path.isfile(path):
        return [path]
    files = sorted(f for f in glob.glob(os.path.join(path, '**', '*.parquet'), recursive=True)
                   if '_rho' not in os.path.relpath(f, path).split(os.sep))
    if not files:
        raise FileNotFoundError(f'{path}: no .parquet data files (expected <shard>/part-NNNNN.parquet from `rho score`)')
    return files


def _selection_file(selection: str, score_root: str, score_file: str) -> str:
    """The compact selection file (``rho select --compact``) that goes with one score file: same relative path."""
    rel = os.path.relpath(score_file, score_root)
    f = os.path.join(selection, rel)
    if not os.path.isfile(f):
        raise FileNotFoundError(f'{f}: no selection file for score file {score_file} '
                                f'(was {selection} made from {score_root} by `rho select --compact`?)')
    return f


def _compact_labels(pq, sel_file: str, t, tokens: np.ndarray, n: np.ndarray) -> np.ndarray:
    """labels from a compact selection file: the token id where select_mask is true, -100 elsewhere. Checks that
    the file is aligned row for row with the score table ``t`` (same source, row and token count)."""
    s = pq.read_table(sel_file, columns=['source', 'row', 'select_mask'])
    if s.num_rows != t.num_rows:
        raise ValueError(f'{sel_file}: {s.num_rows} rows, its score file has {t.num_rows}')
    for key in ('source', 'row'):
        if s.column(key).to_pylist() != t.column(key).to_pylist():
            raise ValueError(f'{sel_file}: column "{key}" differs from its score file: made from other scores')
    m = s.column('select_mask').combine_chunks()
    if not np.array_equal(np.diff(m.offsets.to_numpy()).astype(np.int64), n):
        raise ValueError(f'{sel_file}: select_mask lengths differ from token_ids lengths')
    mask = m.flatten().to_numpy(zero_copy_only=False).astype(bool)
    return np.where(mask, tokens, -100).astype(np.int64)


class ParquetDataset(PackedSequences):
    """Like MemmapDataset, reading rho's Parquet output with pyarrow. Also keeps ``docs`` ({id, source, row,
    n_tokens} per document, in stream order) for mapping sequences back to rows.

    ``selection``: a compact selection dir (``rho select SCORES --compact``) made from ``path``: labels are then
    derived from its ``select_mask`` (token id where selected, -100 elsewhere), exactly as in a full-copy
    selection dir. Score columns of any ``--score-dtype`` (float32, float16, bfloat16) come out as float32."""

    def __init__(self, path: Union[str, Sequence[str]], seq_len: int, score_columns: Optional[Sequence[str]] = None,
                 include_next: bool = False, drop_last: bool = True, pad_id: int = 0,
                 selection: Optional[str] = None):
        pq = _require_pyarrow()
        import pyarrow as pa

        if selection is not None and not isinstance(path, str):
            raise ValueError('selection= needs path to be the score dir (the selection files mirror its layout)')
        tokens, labels, cols, lengths, docs = [], [], None, [], []
        for f in parquet_files(path):
            t = pq.read_table(f)
            names = [n for n in t.column_names if n not in _NOT_SCORE and n.endswith(('_logprob', '_entropy'))]
            want = names if score_columns is None else list(score_columns)
            missing = [c for c in want if c not in t.column_names]
            if missing:
                raise KeyError(f'{f}: no score column {missing}; it has {names}')
            if cols is None:
                cols = {c: [] for c in want}
            elif set(cols) != set(want):
                raise ValueError(f'{f}: score columns {want} differ from earlier files {list(cols)}; pass score_columns=')
            tok = t.column('token_ids').combine_chunks()
            n = np.diff(tok.offsets.to_numpy()).astype(np.int64)
            lengths.append(n)
            tokens.append(tok.flatten().to_numpy(zero_copy_only=False).astype(np.int64))
            for c in want:
                arr = t.column(c).combine_chunks()
                if not pa.types.is_list(arr.type):
                    raise TypeError(f'{f}: column "{c}" is {arr.type}, expected list<float>')
                vals = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32)  # nulls become NaN
                if len(vals) != len(tokens[-1]):
                    raise ValueError(f'{f}: column "{c}" has {len(vals)} values, token_ids has {len(tokens[-1])}')
                cols[c].append(vals)
            has_labels = 'labels' in t.column_names or selection is not None
            if len(lengths) > 1 and has_labels != bool(labels):
                raise ValueError(f'{f}: {"has" if has_labels else "has no"} "labels" column, unlike earlier files '
                                 '(run `rho select` over the whole output)')
            if selection is not None:
                if 'labels' in t.column_names:
                    raise ValueError(f'{f}: already has labels (a full-copy selection); drop selection=')
                labels.append(_compact_labels(pq, _selection_file(selection, path, f), t, tokens[-1], n))
            elif has_labels:
                labels.append(t.column('labels').combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(np.int64))
            ids, sources, rows = (t.column(k).to_pylist() for k in ('id', 'source', 'row'))
            docs.extend({'id': i, 'source': s, 'row': r, 'n_tokens': int(k)} for i, s, r, k in zip(ids, sources, rows, n))
        lengths_all = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths_all)]).astype(np.int64)
        self.docs = docs
        super().__init__(np.concatenate(tokens), offsets, {c: np.concatenate(v) for c, v in (cols or {}).items()},
                         np.concatenate(labels) if labels else None, seq_len,
                         include_next=include_next, drop_last=drop_last, pad_id=pad_id)
