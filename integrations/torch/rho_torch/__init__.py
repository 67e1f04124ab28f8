"""rho_torch: train with rho's reference-model scores (Rho-1 Selective Language Modeling) in PyTorch.

* MemmapDataset: packed sequences over `rho export --format memmap` output (numpy + torch only)
* ParquetDataset: the same over rho's Parquet score output (needs pyarrow)
* slm_loss: top-k% tokens by excess loss (dynamic selection); static_loss: labels from `rho select`
"""
from .loss import IGNORE_INDEX, SelectionStats, slm_loss, static_loss
from .memmap import MemmapDataset, MemmapFormatError, RhoMemmap
from .packing import PackedSequences
from .parquet import ParquetDataset

__all__ = ['IGNORE_INDEX', 'SelectionStats', 'slm_loss', 'static_loss', 'MemmapDataset', 'MemmapFormatError',
           'RhoMemmap', 'PackedSequences', 'ParquetDataset']
__version__ = '0.1.0'
