"""Shared test setup: import rho_torch from this checkout, and write memmap exports by the format spec."""
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_memmap(path, docs, vocab_size=1024, score_dtype='float32', with_select=False):
    """Write a rho memmap export of ``docs`` following the format spec, independently of the reader.

    docs: list of dicts {id, source, row, token_ids, <col>: list (None = null), labels?, select_mask?}.
    """
    os.makedirs(path, exist_ok=True)
    token_dtype = 'uint16' if vocab_size <= 65536 else 'uint32'
    score_cols = sorted(k for k in docs[0] if k.endswith('_logprob')) if docs else ['ref_logprob']
    arrays = {'token_ids': ([], token_dtype)}
    for c in score_cols:
        arrays[c] = ([], score_dtype)
    if with_select:
        arrays['labels'] = ([], 'int32')
        arrays['select_mask'] = ([], 'uint8')
    offsets = [0]
    with open(os.path.join(path, 'docs.jsonl'), 'w') as f:
        for d in docs:
            n = len(d['token_ids'])
            for name, (vals, _) in arrays.items():
                col = d[name]
                assert len(col) == n, (name, d['id'])
                vals.extend(np.nan if v is None else v for v in col)
            offsets.append(offsets[-1] + n)
            f.write(json.dumps({'id': d['id'], 'source': d['source'], 'row': d['row'], 'n_tokens': n}) + '\n')
    columns = {}
    for name, (vals, dt) in arrays.items():
        np.asarray(vals, dtype=np.dtype(dt).newbyteorder('<')).tofile(os.path.join(path, name + '.bin'))
        columns[name] = {'file': name + '.bin', 'dtype': dt}
    np.asarray(offsets, dtype='<u8').tofile(os.path.join(path, 'doc_offsets.bin'))
    header = {'format': 'rho-memmap', 'version': 1, 'n_docs': len(docs), 'n_tokens': offsets[-1],
              'token_dtype': token_dtype, 'score_dtype': score_dtype, 'vocab_size': vocab_size, 'columns': columns,
              'doc_offsets': {'file': 'doc_offsets.bin', 'dtype': 'uint64'}, 'provenance': {}}
    with open(os.path.join(path, 'header.json'), 'w') as f:
        json.dump(header, f)
    return header


def make_docs(lengths, seed=0, vocab=1024, with_select=False, base=False):
    """Documents with distinct, recognisable values: token j of doc d has ref_logprob -(d + j/1000)."""
    rng = np.random.default_rng(seed)
    docs = []
    for d, n in enumerate(lengths):
        toks = [int(x) for x in rng.integers(0, vocab, n)]
        ref = [None if j == 0 else -(d + 1 + j / 1000) for j in range(n)]
        doc = {'id': f'doc-{d}', 'source': f'shard-{d % 2}.jsonl', 'row': d // 2, 'token_ids': toks, 'ref_logprob': ref}
        if base:
            doc['base_logprob'] = [None if j == 0 else -(d + 2 + j / 500) for j in range(n)]
        if with_select:
            sel = [j % 3 != 0 for j in range(n)]
            doc['select_mask'] = [int(s) for s in sel]
            doc['labels'] = [t if s else -100 for t, s in zip(toks, sel)]
        docs.append(doc)
    return docs


@pytest.fixture
def tmpdir_path(tmp_path):
    return str(tmp_path)
