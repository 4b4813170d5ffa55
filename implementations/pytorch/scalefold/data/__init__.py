"""Data pipeline: the official MLPerf OpenFold layout, features, sampling and the mini dataset.

See docs/DATA.md. build_mini (scalefold.data.mini) and the preprocess commands (scalefold.data.preprocess)
are imported from their modules.
"""

from .check import DatasetCheckError, DatasetReport, check_dataset
from .dataset import ChainDataset, training_dataset, validation_dataset, validation_seeds
from .features import FEATURE_NAMES, FeatureConfig, RawChain, process_chain
from .layout import (
    AlignmentDB,
    DataError,
    DataLayout,
    MmcifDictStore,
    load_chains_csv,
    load_obsolete,
)
from .loaders import CachedValidationLoader, InOrderLoader, LoaderConfig, PriorityQueueLoader
from .msa import MsaConfig
from .parsers import Msa, TemplateHit, parse_a3m, parse_hhr, parse_stockholm
from .selection import (
    RecyclingSchedule,
    SamplerConfig,
    TrainingSampler,
    TrainingSetConfig,
    ValidationSetConfig,
    filter_training_chains,
    sample_weights,
    select_validation_chains,
)
from .templates import KalignNotFoundError, TemplateConfig, TemplateFeaturizer

__all__ = [
    "FEATURE_NAMES",
    "AlignmentDB",
    "CachedValidationLoader",
    "InOrderLoader",
    "LoaderConfig",
    "PriorityQueueLoader",
    "ChainDataset",
    "DataError",
    "DataLayout",
    "DatasetCheckError",
    "DatasetReport",
    "FeatureConfig",
    "KalignNotFoundError",
    "MmcifDictStore",
    "Msa",
    "MsaConfig",
    "RawChain",
    "RecyclingSchedule",
    "SamplerConfig",
    "TemplateConfig",
    "TemplateFeaturizer",
    "TemplateHit",
    "TrainingSampler",
    "TrainingSetConfig",
    "ValidationSetConfig",
    "check_dataset",
    "filter_training_chains",
    "load_chains_csv",
    "load_obsolete",
    "parse_a3m",
    "parse_hhr",
    "parse_stockholm",
    "process_chain",
    "sample_weights",
    "select_validation_chains",
    "training_dataset",
    "validation_dataset",
    "validation_seeds",
]
