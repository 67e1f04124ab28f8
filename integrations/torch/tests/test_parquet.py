"""ParquetDataset: needs pyarrow, which cannot be installed on the machine this project is built on (no PyPI,
no Debian package). Without it we check the clear ImportError; with it, the same alignment checks as the
memmap reader against the rows DuckDB read back (prepared by test/python/python.test.ts)."""
import json
import os

import numpy as np
import pytest

from rho_torch import MemmapDataset, ParquetDataset

try:
    import pyarrow  # noqa: F401
    HAVE_PYARROW = True
except ImportError:
    HAVE_PYARROW = False


@pytest.mark.skipif(HAVE_PYARROW, reason='pyarrow is installed: the ImportError path cannot happen')
def test_without_pyarrow_the_error_says_what_to_do(tmp_path):
    with pytest.raises(ImportError, match=r'needs pyarrow \(pip install pyarrow\).*rho export --format memmap'):
        ParquetDataset(str(tmp_path), seq_len=8)


@pytest.mark.skipif(not HAVE_PYARROW, reason='pyarrow is not installable on this machine (no PyPI, no Debian '
                    'package); ParquetDataset is only checked where pyarrow exists')
def test_parquet_dataset_matches_rows_and_memmap():
    score, rows_path, export = (os.environ.get(k) for k in ('RHO_TORCH_SCORE', 'RHO_TORCH_ROWS', 'RHO_TORCH_EXPORT'))
    if not (score and rows_path and export):
        pytest.skip('RHO_TORCH_SCORE / RHO_TORCH_ROWS / RHO_TORCH_EXPORT not set: run through the ava wrapper')
    with open(rows_path) as f:
        rows = json.load(f)
    ds = ParquetDataset(score, seq_len=64, include_next=True)
    assert [(d['id'], d['source'], d['row']) for d in ds.docs] == [(r['id'], r['source'], r['row']) for r in rows]
    mm = MemmapDataset(export, seq_len=64, include_next=True)
    assert len(ds) == len(mm) > 0
    for j in range(len(ds)):
        a, b = ds[j], mm[j]
        assert a['input_ids'].tolist() == b['input_ids'].tolist()
        assert np.array_equal(a['ref_logprob'].numpy(), b['ref_logprob'].numpy(), equal_nan=True)
