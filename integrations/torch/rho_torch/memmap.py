"""Reader for `rho export --format memmap` folders (format "rho-memmap", version 1).

Layout (all arrays flat, little-endian, concatenated over documents in export order):
  header.json        {"format": "rho-memmap", "version": 1, "n_docs", "n_tokens", "token_dtype",
                      "score_dtype", "vocab_size", "columns": {name: {"file", "dtype"}},
                      "doc_offsets": {"file", "dtype": "uint64"}, "provenance": {...}}
  token_ids.bin      N tokens, uint16 (vocab <= 65536) or uint32
  <model>_logprob.bin  float32, float16 or bfloat16 per token, NaN where rho wrote null (bfloat16: the high
                       16 bits of a float32; numpy has no such dtype, so it is read as uint16 and widened)
  labels.bin         int32, -100 where not selected       (only after `rho select`)
  select_mask.bin    uint8                                (only after `rho select`)
  doc_offsets.bin    D+1 uint64: doc d spans [off[d], off[d+1])
  docs.jsonl         one {"id", "source", "row", "n_tokens"} per document
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from .packing import PackedSequences

FORMAT = 'rho-memmap'
VERSION = 1
TOKEN_DTYPES = ('uint16', 'uint32')
SCORE_DTYPES = ('float32', 'float16', 'bfloat16')
# Columns that are not scores: everything else in header["columns"] is a per-token float column.
NON_SCORE = ('token_ids', 'labels', 'select_mask')


class BFloat16Array:
    """A read-only view of bfloat16 values stored as little-endian uint16: slicing gives float32 (exact)."""

    def __init__(self, bits: np.ndarray):
        self.bits = bits
        self.shape = bits.shape
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.bits)

    def __getitem__(self, key):
        b = np.asarray(self.bits[key])
        return (b.astype(np.uint32) << 16).view(np.float32)

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class MemmapFormatError(ValueError):
    """The folder is not a valid rho memmap export; the message names the file and field."""


class RhoMemmap:
    """A rho memmap export opened read-only. Arrays are ``np.memmap``: nothing is read until sliced.

    Attributes: ``header`` (dict), ``n_docs``, ``n_tokens``, ``vocab_size``, ``token_ids``, ``columns``
    (score column name -> array, e.g. ``ref_logprob``), ``labels`` / ``select_mask`` (None when the export
    had no select columns), ``doc_offsets`` (int64 array, D+1), ``docs`` (list of docs.jsonl records).
    """

    def __init__(self, path: str):
        self.path = path
        header_path = os.path.join(path, 'header.json')
        if not os.path.isfile(header_path):
            raise MemmapFormatError(f'{header_path}: not found; is {path} a `rho export --format memmap` folder?')
        try:
            with open(header_path, encoding='utf-8') as f:
                h = json.load(f)
        except json.JSONDecodeError as e:
            raise MemmapFormatError(f'{header_path}: invalid JSON: {e}') from None
        self.header = h
        if h.get('format') != FORMAT:
            raise MemmapFormatError(f'{header_path}: field "format" is {h.get("format")!r}, expected {FORMAT!r}')
        if h.get('version') != VERSION:
            raise MemmapFormatError(
                f'{header_path}: field "version" is {h.get("version")!r}; this reader knows version {VERSION}')
        for key in ('n_docs', 'n_tokens'):
            if not isinstance(h.get(key), int) or h[key] < 0:
                raise MemmapFormatError(f'{header_path}: field "{key}" must be a non-negative integer, got {h.get(key)!r}')
        self.n_docs: int = h['n_docs']
        self.n_tokens: int = h['n_tokens']
        self.vocab_size: Optional[int] = h.get('vocab_size')
        cols = h.get('columns')
        if not isinstance(cols, dict) or 'token_ids' not in cols:
            raise MemmapFormatError(f'{header_path}: field "columns" must be an object with at least "token_ids"')

        self.token_ids = self._array(cols['token_ids'], 'columns.token_ids', TOKEN_DTYPES, self.n_tokens)
        self.columns: Dict[str, np.ndarray] = {}
        for name, spec in cols.items():
            if name not in NON_SCORE:
                self.columns[name] = self._array(spec, f'columns.{name}', SCORE_DTYPES, self.n_tokens)
        self.labels = self._array(cols['labels'], 'columns.labels', ('int32',), self.n_tokens) if 'labels' in cols else None
        self.select_mask = (self._array(cols['select_mask'], 'columns.select_mask', ('uint8', 'bool'), self.n_tokens)
                            if 'select_mask' in cols else None)

        off_spec = h.get('doc_offsets')
        off = np.asarray(self._array(off_spec, 'doc_offsets', ('uint64',), self.n_docs + 1))
        off_file = os.path.join(path, off_spec['file'])
        if self.n_docs + 1 > 0 and (off[0] != 0 or off[-1] != self.n_tokens):
            raise MemmapFormatError(
                f'{off_file}: doc_offsets must start at 0 and end at n_tokens={self.n_tokens}, got {off[0]} .. {off[-1]}')
        bad = np.nonzero(np.diff(off.astype(np.int64)) < 0)[0]
        if len(bad):
            raise MemmapFormatError(f'{off_file}: doc_offsets decrease at document {int(bad[0])} '
                                    f'({off[bad[0]]} > {off[bad[0] + 1]})')
        self.doc_offsets = off.astype(np.int64)
        self._docs: Optional[List[dict]] = None

    def _array(self, spec, field: str, dtypes: Sequence[str], count: int) -> np.ndarray:
        hp = os.path.join(self.path, 'header.json')
        if not isinstance(spec, dict) or not isinstance(spec.get('file'), str) or not isinstance(spec.get('dtype'), str):
            raise MemmapFormatError(f'{hp}: field "{field}" must be {{"file": ..., "dtype": ...}}, got {spec!r}')
        if spec['dtype'] not in dtypes:
            raise MemmapFormatError(f'{hp}: field "{field}.dtype" is {spec["dtype"]!r}, expected one of {list(dtypes)}')
        bf16 = spec['dtype'] == 'bfloat16'
        dt = np.dtype('uint16' if bf16 else spec['dtype']).newbyteorder('<')
        fp = os.path.join(self.path, spec['file'])
        if not os.path.isfile(fp):
            raise MemmapFormatError(f'{fp}: not found (named by field "{field}" of {hp})')
        size = os.path.getsize(fp)
        if size != count * dt.itemsize:
            raise MemmapFormatError(f'{fp}: {size} bytes, expected {count} x {dt.itemsize} = {count * dt.itemsize} '
                                    f'(field "{field}", {spec["dtype"]})')
        if count == 0:
            arr = np.zeros(0, dtype=dt)  # np.memmap refuses empty files
        else:
            arr = np.memmap(fp, dtype=dt, mode='r', shape=(count,))
        return BFloat16Array(arr) if bf16 else arr

    @property
    def docs(self) -> List[dict]:
        """docs.jsonl records ({id, source, row, n_tokens}), loaded on first use and checked against doc_offsets."""
        if self._docs is None:
            spec = self.header.get('docs')
            fp = os.path.join(self.path, spec['file'] if isinstance(spec, dict) and 'file' in spec else 'docs.jsonl')
            docs = []
            with open(fp, encoding='utf-8') as f:
                for i, line in enumerate(f):
                    if not line.strip():
                        continue
                    try:
                        docs.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise MemmapFormatError(f'{fp}: line {i + 1}: invalid JSON: {e}') from None
            if len(docs) != self.n_docs:
                raise MemmapFormatError(f'{fp}: {len(docs)} records, header says n_docs={self.n_docs}')
            lens = np.diff(self.doc_offsets)
            for d, rec in enumerate(docs):
                if rec.get('n_tokens') != int(lens[d]):
                    raise MemmapFormatError(f'{fp}: line {d + 1} (id {rec.get("id")!r}): field "n_tokens" is '
                                            f'{rec.get("n_tokens")!r}, doc_offsets give {int(lens[d])}')
            self._docs = docs
        return self._docs

    @property
    def score_columns(self) -> List[str]:
        return list(self.columns)

    def doc(self, d: int) -> Dict[str, np.ndarray]:
        """Arrays of document d (token_ids, each score column, labels/select_mask if present)."""
        if not 0 <= d < self.n_docs:
            raise IndexError(f'document {d} out of range ({self.n_docs} documents)')
        a, b = int(self.doc_offsets[d]), int(self.doc_offsets[d + 1])
        out = {'token_ids': np.asarray(self.token_ids[a:b])}
        for name, arr in self.columns.items():
            out[name] = np.asarray(arr[a:b])
        if self.labels is not None:
            out['labels'] = np.asarray(self.labels[a:b])
        if self.select_mask is not None:
            out['select_mask'] = np.asarray(self.select_mask[a:b])
        return out


class MemmapDataset(PackedSequences):
    """Packed training sequences over a rho memmap export (see PackedSequences for the item layout).

    ``score_columns``: which per-token float columns to return (default: all, e.g. ``ref_logprob``).
    Map-style, so ``DataLoader(shuffle=True)`` and ``DistributedSampler`` work; arrays stay memory-mapped.
    """

    def __init__(self, path: str, seq_len: int, score_columns: Optional[Sequence[str]] = None,
                 include_next: bool = False, drop_last: bool = True, pad_id: int = 0):
        self.export = RhoMemmap(path)
        names = self.export.score_columns if score_columns is None else list(score_columns)
        missing = [c for c in names if c not in self.export.columns]
        if missing:
            raise KeyError(f'{os.path.join(path, "header.json")}: no score column {missing}; '
                           f'it has {self.export.score_columns}')
        super().__init__(self.export.token_ids, self.export.doc_offsets,
                         {c: self.export.columns[c] for c in names}, self.export.labels,
                         seq_len, include_next=include_next, drop_last=drop_last, pad_id=pad_id)
