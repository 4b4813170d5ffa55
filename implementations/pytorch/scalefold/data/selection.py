"""Which chains train and validate, how they are weighted and sampled, and recycling draws.

Facts follow the MLPerf HPC OpenFold benchmark (docs/DATA.md): training chains released
up to 2021-09-16, validation = CAMEO targets submitted 2021-09-17..2021-12-11 with length
<= 700, samples drawn with replacement by weight, one recycling count per step shared by
all ranks.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

import numpy as np
import pandas as pd
import torch


@dataclass(frozen=True)
class TrainingSetConfig:
    min_release_date: str = "1900-01-01"
    max_release_date: str = "2021-09-16"
    # Supplementary 1.2.5 of AlphaFold 2: drop very low resolution and low-complexity chains.
    max_resolution: float = 9.0
    max_aa_frequency: float = 0.8
    # "inverse": 1/cluster size, what the MLPerf reference computes (openfold/datasets.py,
    # `_get_weight`) and what its convergence points were measured with: the default.
    # "inverse_sqrt": 1/sqrt(cluster size), the formula BENCHMARK_RULES.md quotes.
    cluster_weighting: Literal["inverse_sqrt", "inverse"] = "inverse"


@dataclass(frozen=True)
class ValidationSetConfig:
    min_cameo_submission_date: str = "2021-09-17"
    max_cameo_submission_date: str = "2021-12-11"
    max_sequence_length: int = 700


def _max_aa_frequency(sequences: pd.Series) -> np.ndarray:
    """Frequency of the most common residue letter of each sequence; 1.0 for empty ones."""
    out = np.ones(len(sequences), dtype=np.float64)
    for i, seq in enumerate(sequences.tolist()):  # per chain, not per residue
        if seq:
            counts = np.bincount(np.frombuffer(seq.encode(), dtype=np.uint8), minlength=256)
            out[i] = counts.max() / len(seq)
    return out


def filter_training_chains(
    chains: pd.DataFrame, config: TrainingSetConfig = TrainingSetConfig()
) -> pd.DataFrame:
    """Training chains: release date in range, resolution < max (or unknown), not low
    complexity, member of a sequence cluster (pdb_cluster_id != -1)."""
    dates = chains["release_date"]
    keep = (dates >= config.min_release_date) & (dates <= config.max_release_date)
    res = chains["resolution"]
    keep &= (res < config.max_resolution) | res.isna()
    keep &= chains["sequence"].str.len().to_numpy() > 0
    keep &= _max_aa_frequency(chains["sequence"]) <= config.max_aa_frequency
    keep &= chains["pdb_cluster_id"] != -1
    return chains[keep.to_numpy()].reset_index(drop=True)


def add_cluster_sizes(chains: pd.DataFrame) -> pd.DataFrame:
    """Adds ``pdb_cluster_size``: members of each chain's cluster within ``chains``."""
    out = chains.copy()
    sizes = out.groupby("pdb_cluster_id")["pdb_cluster_id"].transform("size").astype(np.int64)
    out["pdb_cluster_size"] = np.where(out["pdb_cluster_id"] == -1, 0, sizes)
    return out


def sample_weights(chains: pd.DataFrame, cluster_weighting: str = "inverse") -> np.ndarray:
    """max(min(len, 512), 256) / 512 divided by the cluster size (or its sqrt). [n] f64."""
    if "pdb_cluster_size" not in chains.columns:
        chains = add_cluster_sizes(chains)
    length = chains["sequence_length"].to_numpy(dtype=np.float64)
    size = chains["pdb_cluster_size"].to_numpy(dtype=np.float64)
    length_term = np.clip(length, 256.0, 512.0) / 512.0
    if cluster_weighting == "inverse_sqrt":
        cluster_term = np.where(size > 0, 1.0 / np.sqrt(np.maximum(size, 1.0)), 1.0)
    elif cluster_weighting == "inverse":
        cluster_term = np.where(size > 0, 1.0 / np.maximum(size, 1.0), 1.0)
    else:
        raise ValueError(f"unknown cluster_weighting {cluster_weighting!r}")
    return length_term * cluster_term


# --------------------------------------------------------------------------- validation


def load_cameo_targets() -> dict[str, list[str]]:
    """{submission date: ['pdb_id [chain]', ...]} from the packaged list (source inside)."""
    text = resources.files("scalefold.data").joinpath("cameo_targets.json").read_text()
    return json.loads(text)["targets"]


def _chain_id_mapping(chains: pd.DataFrame) -> dict[str, str]:
    """'{pdb_id}_{mmcif or author chain}' -> '{pdb_id}_{author chain}' (the pdb_chain_id)."""
    mapping: dict[str, str] = {}
    author_ids = []
    for pdb_id, author, mmcif_ids in zip(
        chains["pdb_id"], chains["author_chain_id"], chains["mmcif_chain_ids"]
    ):
        pdb_chain_id = f"{pdb_id}_{author}"
        author_ids.append(pdb_chain_id)
        for mmcif_id in str(mmcif_ids).split(";"):
            mapping[f"{pdb_id}_{mmcif_id}"] = pdb_chain_id
    # CAMEO sometimes names the author chain: accept it where no mmCIF id collides.
    for pdb_chain_id in author_ids:
        mapping.setdefault(pdb_chain_id, pdb_chain_id)
    return mapping


def select_validation_chains(
    chains: pd.DataFrame,
    config: ValidationSetConfig = ValidationSetConfig(),
    targets: dict[str, list[str]] | None = None,
) -> pd.DataFrame:
    """CAMEO targets of the date window found in ``chains`` with length <= max, in target
    order, with a ``cameo_target_id`` column. Two targets mapping to one author chain count once."""
    targets = load_cameo_targets() if targets is None else targets
    mapping = _chain_id_mapping(chains)
    selected: dict[str, str] = {}
    for date in sorted(targets):
        if not (config.min_cameo_submission_date <= date <= config.max_cameo_submission_date):
            continue
        for target in targets[date]:
            pdb_id, chain = target.split()
            key = f"{pdb_id.lower()}_{chain.strip('[]')}"
            if key in mapping and mapping[key] not in selected:
                selected[mapping[key]] = target
    by_id = chains.set_index("pdb_chain_id", drop=False)
    rows = by_id.loc[[c for c in selected if c in by_id.index]].copy()
    rows = rows[rows["sequence_length"] <= config.max_sequence_length]
    rows["cameo_target_id"] = [selected[c] for c in rows["pdb_chain_id"]]
    return rows.reset_index(drop=True)


def seed_from_string(text: str) -> int:
    """A stable 63-bit seed for a string (e.g. the fixed per-chain seed of validation)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


# --------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class SamplerConfig:
    global_batch_size: int
    num_steps: int
    seed: int
    rank: int = 0
    world_size: int = 1
    start_step: int = 0  # resume: skip the samples of earlier steps


@dataclass
class TrainingSampler:
    """(chain index, sample seed) pairs for one rank, drawn with replacement by weight.

    The global sequence depends only on (weights, seed, steps, batch size); rank r takes
    every world_size-th pair, so the set of samples each rank consumes is well defined and
    reproducible on restart.
    """

    weights: np.ndarray
    config: SamplerConfig
    pairs: list[tuple[int, int]] = field(init=False)

    def __post_init__(self) -> None:
        cfg = self.config
        if cfg.global_batch_size % cfg.world_size:
            raise ValueError("global batch size must be divisible by the world size")
        total = cfg.num_steps * cfg.global_batch_size
        gen = torch.Generator().manual_seed(cfg.seed)
        indices = torch.multinomial(
            torch.as_tensor(self.weights, dtype=torch.float64),
            total,
            replacement=True,
            generator=gen,
        )
        seed_gen = torch.Generator().manual_seed(cfg.seed + 1)
        seeds = torch.randint(0, 2**63 - 1, (total,), generator=seed_gen)
        pairs = list(zip(indices.tolist(), seeds.tolist()))[cfg.rank :: cfg.world_size]
        per_rank_batch = cfg.global_batch_size // cfg.world_size
        self.pairs = pairs[cfg.start_step * per_rank_batch :]

    def __iter__(self):
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


@dataclass(frozen=True)
class RecyclingSchedule:
    """Number of recycling iterations for each training step, identical on every rank.

    Each block of len(values) steps is a seeded permutation of ``values``: every value is
    drawn uniformly often, and the draw of step s is a pure function of (seed, s), so ranks
    need no communication and a resumed run continues the same sequence.
    """

    seed: int
    values: tuple[int, ...] = (0, 1, 2, 3)

    def __call__(self, step: int) -> int:
        block, pos = divmod(step, len(self.values))
        order = list(self.values)
        random.Random(f"{self.seed}:{block}").shuffle(order)
        return order[pos]

    def draws(self, steps: Iterable[int]) -> list[int]:
        return [self(s) for s in steps]


def truncate_recycling(
    features: dict[str, torch.Tensor], num_recycling: int
) -> dict[str, torch.Tensor]:
    """Keep the first ``num_recycling + 1`` entries of the trailing recycling dimension."""
    return {k: v[..., : num_recycling + 1] for k, v in features.items()}


def last_iteration(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The final recycling slice of every feature (what the loss and the metrics read)."""
    return {k: v[..., -1] for k, v in features.items()}


def chain_ids(chains: pd.DataFrame) -> Sequence[str]:
    return chains["pdb_chain_id"].tolist()
