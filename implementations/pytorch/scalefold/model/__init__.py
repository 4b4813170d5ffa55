"""The AlphaFold2 network: `AlphaFold(AlphaFoldConfig.mlperf())`."""

from scalefold.model.alphafold import AlphaFold
from scalefold.model.config import AlphaFoldConfig

__all__ = ["AlphaFold", "AlphaFoldConfig"]
