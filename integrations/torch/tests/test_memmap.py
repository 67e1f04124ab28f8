"""MemmapDataset / RhoMemmap over exports written by the format spec (conftest.write_memmap) and, when the ava
wrapper prepared one, over a real `rho score` + `rho export --format memmap` output compared with the Parquet
rows read back by DuckDB."""
import json
import math
import os

import numpy as np
import pytest
import torch

from conftest import make_docs, write_memmap
from rho_torch import MemmapDataset, MemmapFormatError, RhoMemmap


def expected_stream(docs, col):
    """(doc index, position in doc, value) for every token of the concatenated stream, from the source docs."""
    out = []
    for d, doc in enumerate(docs):
        for j, v in enumerate(doc[col]):
            out.append((d, j, v))
    return out


def close_or_both_null(got, want):
    """got: float from the reader (NaN = null); want: the value written (None = null), compared as float32."""
    if want is None:
        return math.isnan(got)
    return not math.isnan(got) and got == float(np.float32(want))


@pytest.mark.parametrize('include_next', [False, True])
@pytest.mark.parametrize('with_select', [False, True])
def test_sequences_line_up_token_for_token_with_their_documents(tmp_path, include_next, with_select):
    docs = make_docs([5, 1, 17, 0, 9, 30], with_select=with_select, base=True)
    write_memmap(str(tmp_path), docs, with_select=with_select)
    L = 8
    ds = MemmapDataset(str(tmp_path), seq_len=L, include_next=include_next, drop_last=False)
    toks = expected_stream(docs, 'token_ids')
    refs = expected_stream(docs, 'ref_logprob')
    bases = expected_stream(docs, 'base_logprob')
    labs = expected_stream(docs, 'labels' if with_select else 'token_ids')
    N = len(toks)  # 62
    W = L + 1 if include_next else L
    assert len(ds) == (-(-(N - 1) // L) if include_next else -(-N // L))
    seen = []
    for j in range(len(ds)):
        item = ds[j]
        assert item['offset'].item() == j * L
        assert item['input_ids'].shape == (W,) and item['input_ids'].dtype == torch.int64
        assert item['ref_logprob'].dtype == torch.float32
        for i in range(W):
            p = j * L + i
            if p >= N:  # padding of the last sequence
                assert item['attention_mask'][i] == 0 and item['labels'][i] == -100
                assert item['doc_index'][i] == -1 and math.isnan(item['ref_logprob'][i])
                continue
            d, pos, tok = toks[p]
            assert item['attention_mask'][i] == 1
            assert item['input_ids'][i].item() == tok
            assert item['doc_index'][i].item() == d
            assert close_or_both_null(float(item['ref_logprob'][i]), refs[p][2])
            assert close_or_both_null(float(item['base_logprob'][i]), bases[p][2])
            assert item['labels'][i].item() == labs[p][2]
            # the first token of every document has no score (no context)
            assert math.isnan(item['ref_logprob'][i]) == (pos == 0)
            seen.append(p)
    # every token appears; with include_next consecutive items share exactly one token
    assert sorted(set(seen)) == list(range(N))
    assert len(seen) == N + (len(ds) - 1 if include_next else 0)


def test_drop_last_and_doc_boundaries(tmp_path):
    docs = make_docs([10, 10, 10])
    write_memmap(str(tmp_path), docs)
    ds = MemmapDataset(str(tmp_path), seq_len=7)
    assert len(ds) == 4  # 30 // 7, the partial 2-token tail is dropped
    assert len(MemmapDataset(str(tmp_path), seq_len=7, include_next=True)) == 4  # 29 // 7
    item = ds[1]  # stream positions 7..13: doc 0 tokens 7-9, doc 1 tokens 0-3
    assert item['doc_index'].tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert item['input_ids'].tolist() == docs[0]['token_ids'][7:] + docs[1]['token_ids'][:4]
    assert torch.isnan(item['ref_logprob']).tolist() == [False, False, False, True, False, False, False]
    assert ds[-1]['offset'].item() == 21
    with pytest.raises(IndexError):
        ds[4]


def test_dataloader_batches(tmp_path):
    write_memmap(str(tmp_path), make_docs([40, 25]))
    ds = MemmapDataset(str(tmp_path), seq_len=16)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch['input_ids'].shape == (3, 16) and batch['ref_logprob'].shape == (3, 16)
    assert batch['offset'].tolist() == [0, 16, 32]


def test_float16_scores_uint32_tokens_and_column_choice(tmp_path):
    docs = make_docs([6, 4], vocab=70000, base=True)
    h = write_memmap(str(tmp_path), docs, vocab_size=70000, score_dtype='float16')
    assert h['token_dtype'] == 'uint32'
    ex = RhoMemmap(str(tmp_path))
    assert ex.score_columns == ['base_logprob', 'ref_logprob'] and ex.labels is None
    assert ex.doc(1)['token_ids'].tolist() == docs[1]['token_ids']
    assert max(docs[0]['token_ids'] + docs[1]['token_ids']) > 0
    ds = MemmapDataset(str(tmp_path), seq_len=10, score_columns=['ref_logprob'])
    item = ds[0]
    assert 'base_logprob' not in item
    want = [np.nan if v is None else float(np.float16(v)) for v in docs[0]['ref_logprob'] + docs[1]['ref_logprob']]
    assert np.allclose(item['ref_logprob'].numpy(), want, equal_nan=True, atol=0)
    assert item['input_ids'].tolist() == docs[0]['token_ids'] + docs[1]['token_ids']
    with pytest.raises(KeyError, match='entropy'):
        MemmapDataset(str(tmp_path), seq_len=10, score_columns=['ref_entropy'])


def test_docs_jsonl_records(tmp_path):
    docs = make_docs([3, 0, 2])
    write_memmap(str(tmp_path), docs)
    ex = RhoMemmap(str(tmp_path))
    assert [(r['id'], r['source'], r['row'], r['n_tokens']) for r in ex.docs] == [
        ('doc-0', 'shard-0.jsonl', 0, 3), ('doc-1', 'shard-1.jsonl', 0, 0), ('doc-2', 'shard-0.jsonl', 1, 2)]
    assert ex.doc_offsets.tolist() == [0, 3, 3, 5]


def _header(p):
    with open(os.path.join(p, 'header.json')) as f:
        return json.load(f)


def _put_header(p, h):
    with open(os.path.join(p, 'header.json'), 'w') as f:
        json.dump(h, f)


def test_bad_exports_get_errors_naming_file_and_field(tmp_path):
    p = str(tmp_path)
    with pytest.raises(MemmapFormatError, match='header.json: not found'):
        RhoMemmap(p)
    write_memmap(p, make_docs([4, 4]))
    h = _header(p)

    _put_header(p, dict(h, format='something'))
    with pytest.raises(MemmapFormatError, match='field "format"'):
        RhoMemmap(p)
    _put_header(p, dict(h, version=2))
    with pytest.raises(MemmapFormatError, match='field "version" is 2'):
        RhoMemmap(p)
    _put_header(p, dict(h, n_tokens=9))
    with pytest.raises(MemmapFormatError, match=r'token_ids.bin: 16 bytes, expected 9 x 2'):
        RhoMemmap(p)
    bad_cols = dict(h['columns'], ref_logprob={'file': 'ref_logprob.bin', 'dtype': 'int8'})
    _put_header(p, dict(h, columns=bad_cols))
    with pytest.raises(MemmapFormatError, match=r'field "columns.ref_logprob.dtype" is \'int8\''):
        RhoMemmap(p)
    _put_header(p, h)
    np.asarray([0, 5, 9], dtype='<u8').tofile(os.path.join(p, 'doc_offsets.bin'))
    with pytest.raises(MemmapFormatError, match='doc_offsets must start at 0 and end at n_tokens=8, got 0 .. 9'):
        RhoMemmap(p)
    np.asarray([0, 6, 8], dtype='<u8').tofile(os.path.join(p, 'doc_offsets.bin'))
    np.asarray([0, 9, 8], dtype='<u8').tofile(os.path.join(p, 'doc_offsets.bin'))
    with pytest.raises(MemmapFormatError, match='doc_offsets decrease at document 1'):
        RhoMemmap(p)
    np.asarray([0, 4, 8], dtype='<u8').tofile(os.path.join(p, 'doc_offsets.bin'))
    with open(os.path.join(p, 'docs.jsonl'), 'w') as f:
        f.write(json.dumps({'id': 'a', 'source': 's', 'row': 0, 'n_tokens': 4}) + '\n')
        f.write(json.dumps({'id': 'b', 'source': 's', 'row': 1, 'n_tokens': 3}) + '\n')
    with pytest.raises(MemmapFormatError, match=r'docs.jsonl: line 2 \(id \'b\'\): field "n_tokens" is 3'):
        RhoMemmap(p).docs
    with pytest.raises(ValueError, match='seq_len'):
        MemmapDataset(p, seq_len=0)


# ---- the real thing: `rho score` + `rho export --format memmap`, prepared by test/python/python.test.ts ----

REAL_EXPORT = os.environ.get('RHO_TORCH_EXPORT')
REAL_ROWS = os.environ.get('RHO_TORCH_ROWS')


def _real_or_skip():
    if REAL_EXPORT and REAL_ROWS:
        return
    msg = ('RHO_TORCH_EXPORT / RHO_TORCH_ROWS not set: run through `npx ava dist/test/python/`, which scores the '
           'fixture shards with ./bin/rho, exports memmap and dumps the Parquet rows with DuckDB')
    if os.environ.get('CI') == 'true':
        pytest.fail(msg)
    pytest.skip(msg)


def test_real_export_matches_parquet_rows():
    _real_or_skip()
    with open(REAL_ROWS) as f:
        # [{id, source, row, token_ids, ref_logprob (null at no-context positions), labels, select_mask}], export order
        rows = json.load(f)
    ex = RhoMemmap(REAL_EXPORT)
    assert ex.n_docs == len(rows) > 0
    nulls = 0
    for d, (rec, row) in enumerate(zip(ex.docs, rows)):
        where = f"doc {d} ({row['id']})"
        assert (rec['id'], rec['source'], rec['row']) == (row['id'], row['source'], row['row']), where
        arrs = ex.doc(d)
        assert arrs['token_ids'].tolist() == row['token_ids'], where
        ref = arrs['ref_logprob']
        want = np.array([np.nan if v is None else v for v in row['ref_logprob']], dtype=np.float32)
        assert np.array_equal(np.isnan(ref), np.isnan(want)), where
        assert np.array_equal(ref[~np.isnan(ref)], want[~np.isnan(want)]), where  # float32 both ways: exact
        nulls += int(np.isnan(want).sum())
        assert arrs['labels'].tolist() == row['labels'], where
        assert arrs['select_mask'].astype(bool).tolist() == row['select_mask'], where
    assert nulls >= ex.n_docs  # at least position 0 of every document


def test_real_export_sequences_line_up_with_parquet_rows():
    _real_or_skip()
    with open(REAL_ROWS) as f:
        rows = json.load(f)
    stream_ids = [t for r in rows for t in r['token_ids']]
    stream_ref = [v for r in rows for v in r['ref_logprob']]
    stream_doc = [d for d, r in enumerate(rows) for _ in r['token_ids']]
    stream_labels = [v for r in rows for v in r['labels']]
    L = 64
    ds = MemmapDataset(REAL_EXPORT, seq_len=L, include_next=True)
    assert len(ds) == (len(stream_ids) - 1) // L
    for j in range(len(ds)):
        item = ds[j]
        a, b = j * L, j * L + L + 1
        assert item['input_ids'].tolist() == stream_ids[a:b], f'sequence {j}'
        assert item['doc_index'].tolist() == stream_doc[a:b], f'sequence {j}'
        assert item['labels'].tolist() == stream_labels[a:b], f'sequence {j}'  # -100 where `rho select` dropped it
        want = np.array([np.nan if v is None else v for v in stream_ref[a:b]], dtype=np.float32)
        assert np.array_equal(item['ref_logprob'].numpy(), want, equal_nan=True), f'sequence {j}'
