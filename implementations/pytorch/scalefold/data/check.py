"""The dataset check, run once before ``run_start`` (inside MLPerf's initialisation window).

A timed run must not die (or go silently wrong) on a data fault it could have found
before the clock started. ``check_dataset`` finds every fault that would stop a run:

- the layout: every required file and folder of DATADIR present (docs/DATA.md);
- ``chains.csv``: readable, every column of its type, ids unique and consistent;
- ``obsolete.dat`` readable; ``super.index`` readable, every shard it names present;
- the training selection (non-empty, every chain with an alignment entry);
- the validation set: every validation chain (of this rank's share) prepared once, its
  features kept so that evaluation reuses them (``DatasetReport.validation_loader``).

Training samples are far too many to prepare here; they stay checked lazily, and a bad
one is skipped by the loaders with a logged warning (docs/DATA.md, "Loaders"). Index
entries of training chains that are visibly bad (byte ranges past the end of a shard,
malformed entries) are counted in ``DatasetReport.warnings``.

Every fault raises ``DatasetCheckError`` (a ``DataError``), whose message lists each
problem with the chain and the file it concerns; ``.failures`` holds them one by one.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .dataset import ChainDataset, training_dataset, validation_dataset, validation_seeds
from .features import FeatureConfig
from .layout import AlignmentDB, DataError, DataLayout, load_chains_csv, load_obsolete
from .loaders import CachedValidationLoader, collate
from .selection import TrainingSetConfig, ValidationSetConfig
from .templates import TemplateConfig

log = logging.getLogger("scalefold.data")

_MAX_LISTED = 20  # problems spelled out in one DatasetCheckError message


class DatasetCheckError(DataError):
    """The dataset check failed; ``failures`` lists every problem (each a DataError
    naming its chain and file); ``chain`` and ``path`` are those of the first."""

    def __init__(self, failures: Sequence[DataError], context: str):
        self.failures = list(failures)
        first = self.failures[0]
        lines = [f"  - {f}" for f in self.failures[:_MAX_LISTED]]
        if len(self.failures) > _MAX_LISTED:
            lines.append(f"  ... and {len(self.failures) - _MAX_LISTED} more")
        super().__init__(
            f"dataset check failed, {len(self.failures)} problem(s) {context}:\n"
            + "\n".join(lines),
            chain=first.chain,
            path=first.path,
        )


@dataclass
class DatasetReport:
    """What ``check_dataset`` found and built; the trainer reuses the datasets and the
    prepared validation samples instead of building them again."""

    layout: DataLayout
    num_chains: int  # rows of chains.csv
    num_alignment_entries: int  # entries of super.index
    train_dataset: ChainDataset
    train_weights: np.ndarray  # [len(train_dataset)] f64 sampling weights
    validation_dataset: ChainDataset
    validation_seeds: list[int]  # the fixed per-chain seeds of every evaluation
    val_rank: int  # the share of the validation chains prepared here:
    val_world_size: int  # indices val_rank::val_world_size (CachedValidationLoader's)
    # Prepared validation features of that share, by chain index, each collated to a
    # batch of one (what CachedValidationLoader yields); empty if not kept.
    validation_samples: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    num_validated: int = 0  # validation chains prepared without fault
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def num_train_chains(self) -> int:
        return len(self.train_dataset)

    @property
    def num_val_chains(self) -> int:
        return len(self.validation_dataset)

    def validation_loader(
        self, rank: int | None = None, world_size: int | None = None
    ) -> CachedValidationLoader:
        """The evaluation loader of a share (default: the one checked), its cache filled
        with the samples prepared by the check: the first evaluation prepares nothing."""
        rank = self.val_rank if rank is None else rank
        world_size = self.val_world_size if world_size is None else world_size
        loader = CachedValidationLoader(
            self.validation_dataset, self.validation_seeds, rank=rank, world_size=world_size
        )
        for i in loader.indices():
            if i in self.validation_samples:
                loader.cache[i] = self.validation_samples[i]
        return loader

    def summary(self) -> str:
        return (
            f"dataset check of {self.layout.root}: {self.num_chains} chains in chains.csv, "
            f"{self.num_alignment_entries} alignment entries, {self.num_train_chains} "
            f"training chains, {self.num_val_chains} validation chains "
            f"({self.num_validated} prepared here, share {self.val_rank}/{self.val_world_size}),"
            f" {len(self.warnings)} warning(s), {self.seconds:.1f} s"
        )


def check_dataset(
    layout: DataLayout | os.PathLike | str,
    *,
    train_chain_ids: Sequence[str] | None = None,
    val_chain_ids: Sequence[str] | None = None,
    train_features: FeatureConfig | None = None,
    val_features: FeatureConfig | None = None,
    train_templates: TemplateConfig | None = None,
    val_templates: TemplateConfig | None = None,
    train_selection: TrainingSetConfig | None = None,
    val_selection: ValidationSetConfig | None = None,
    val_rank: int = 0,
    val_world_size: int = 1,
    prepare_validation: bool = True,
    keep_validation_samples: bool = True,
    num_workers: int = 0,
) -> DatasetReport:
    """Check DATADIR before the timed region; raise DatasetCheckError on any fault that
    would stop a run, naming the file and the chain.

    The dataset arguments are those of ``training_dataset`` / ``validation_dataset``
    (defaults: the benchmark's). The validation chains ``val_rank::val_world_size`` (the
    share a CachedValidationLoader of that rank evaluates; default all) are prepared once,
    with ``num_workers`` processes (0: here), and kept in the report
    (``keep_validation_samples``) for ``DatasetReport.validation_loader``.
    ``prepare_validation=False`` skips that step (a rank that never evaluates).
    """
    t0 = time.perf_counter()
    layout = layout if isinstance(layout, DataLayout) else DataLayout(Path(layout))
    if val_world_size < 1 or not 0 <= val_rank < val_world_size:
        raise ValueError(f"validation share {val_rank} of {val_world_size} does not exist")

    def fail(context: str, *errors: DataError):
        raise DatasetCheckError(errors, context)

    try:
        layout.check()
        chains = load_chains_csv(layout.chains_csv)
        load_obsolete(layout.obsolete_dat)
        alignments = AlignmentDB(layout.alignments_dir)
    except DataError as exc:
        fail("in the data layout", exc)
    problems = _chains_csv_problems(chains, layout.chains_csv)
    if problems:
        fail("in chains.csv", *problems)

    warnings: list[str] = []
    index_problems = alignments.problems()
    if index_problems["missing_shard"]:
        fail("in the alignment database (shards named by super.index are missing)",
             *_one_per_path(index_problems["missing_shard"]))

    try:
        train_ds, weights = training_dataset(
            layout, train_selection, train_features, train_templates,
            chain_ids=None if train_chain_ids is None else list(train_chain_ids),
            all_chains=chains, alignments=alignments,
        )
        val_ds = validation_dataset(
            layout, val_selection, val_features, val_templates,
            chain_ids=None if val_chain_ids is None else list(val_chain_ids),
            all_chains=chains, alignments=alignments,
        )
    except DataError as exc:
        fail("in the training or validation selection", exc)
    if len(train_ds) == 0:
        fail("in the training selection", DataError("no training chain selected",
                                                    path=layout.chains_csv))
    if len(val_ds) == 0:
        fail("in the validation selection", DataError("no validation chain selected",
                                                      path=layout.chains_csv))
    if not (np.isfinite(weights).all() and (weights > 0).all()):
        fail("in the training selection", DataError(
            "sampling weights not all finite and positive", path=layout.chains_csv))

    bad_entries = index_problems["malformed"] + index_problems["past_end"]
    val_ids = set(val_ds.chains["pdb_chain_id"])
    bad_val = {e.chain: e for e in bad_entries if e.chain in val_ids}
    train_ids = set(train_ds.chains["pdb_chain_id"])
    bad_train = [e for e in bad_entries if e.chain in train_ids]
    if bad_train:
        warnings.append(
            f"{len(bad_train)} training chain(s) have bad super.index entries and will be "
            f"skipped when drawn (first: {bad_train[0]})"
        )

    seeds = validation_seeds(val_ds)
    report = DatasetReport(
        layout=layout, num_chains=len(chains), num_alignment_entries=len(alignments),
        train_dataset=train_ds, train_weights=weights, validation_dataset=val_ds,
        validation_seeds=seeds, val_rank=val_rank, val_world_size=val_world_size,
        warnings=warnings,
    )
    indices = list(range(len(val_ds)))[val_rank::val_world_size]
    # Entries visibly bad in the index fail without preparing (all shares report them).
    failures = list(bad_val.values())
    if prepare_validation:
        todo = [i for i in indices if val_ds.chain_id(i) not in bad_val]
        for index, sample, error in _prepare_all(val_ds, seeds, todo, num_workers):
            if error is not None:
                failures.append(error)
                continue
            report.num_validated += 1
            if keep_validation_samples:
                report.validation_samples[index] = collate([sample])
    if failures:
        fail(f"in {len(failures)} validation chain(s) (evaluation needs every one)",
             *failures)
    for w in warnings:
        log.warning("dataset check: %s", w)
    report.seconds = time.perf_counter() - t0
    log.info("%s", report.summary())
    return report


# --------------------------------------------------------------------------- chains.csv


def _chains_csv_problems(chains: pd.DataFrame, path: Path) -> list[DataError]:
    """Row-level consistency of chains.csv beyond column types (load_chains_csv)."""
    out = []

    def flag(bad: np.ndarray, column: str, problem: str) -> None:
        rows = np.flatnonzero(bad)
        if rows.size:
            row = int(rows[0])
            more = f" (and {rows.size - 1} more rows)" if rows.size > 1 else ""
            out.append(DataError(
                f"row {row + 1} (line {row + 2}), column {column!r}: {problem}: "
                f"{chains[column].iloc[row]!r}{more}",
                chain=chains["pdb_chain_id"].iloc[row], path=path,
            ))

    ids = chains["pdb_chain_id"]
    flag(ids.duplicated().to_numpy(), "pdb_chain_id", "appears twice")
    expected = chains["pdb_id"] + "_" + chains["author_chain_id"]
    flag((ids != expected).to_numpy(), "pdb_chain_id", "is not pdb_id + '_' + author_chain_id")
    seq = chains["sequence"].fillna("")
    has_seq = (seq.str.len() > 0).to_numpy()
    flag(has_seq & ~seq.str.fullmatch(r"[A-Z]+").fillna(False).to_numpy(dtype=bool),
         "sequence", "not upper-case one-letter residue codes")
    flag(has_seq & (seq.str.len().to_numpy() != chains["sequence_length"].to_numpy()),
         "sequence_length", "differs from the length of the sequence")
    return out


def _one_per_path(errors: list[DataError]) -> list[DataError]:
    seen, out = set(), []
    for e in errors:
        if e.path not in seen:
            seen.add(e.path)
            out.append(e)
    return out


# --------------------------------------------------------------------------- validation


def _prepare_one(dataset: ChainDataset, index: int, seed: int):
    """(index, features, None), or (index, None, DataError) for a data fault; any other
    exception is a bug and propagates."""
    chain = dataset.chain_id(index)
    try:
        sample = dataset[(index, seed)]
    except DataError as exc:
        if exc.chain is None:  # name at least the chain
            exc = _Reported(f"[chain {chain}] {exc}", chain, exc.path)
        return index, None, exc
    bad = sorted(k for k, v in sample.items() if v.is_floating_point() and not v.isfinite().all())
    if bad:
        rec = dataset.records[index]
        return index, None, DataError(
            f"non-finite values in the features {bad}", chain=chain,
            path=dataset.store.shard_path(rec["pdb_id"]),
        )
    return index, sample, None


_worker_state: list = []


def _init_worker(dataset: ChainDataset) -> None:
    torch.set_num_threads(1)
    _worker_state.clear()
    _worker_state.append(dataset)


def _prepare_in_worker(index: int, seed: int):
    index, sample, error = _prepare_one(_worker_state[0], index, seed)
    # An exception object loses .chain/.path when pickled: send its parts.
    if error is not None:
        return index, None, (str(error), error.chain, error.path)
    return index, sample, None


def _prepare_all(dataset: ChainDataset, seeds: list[int], indices: list[int], num_workers: int):
    if num_workers <= 0 or len(indices) <= 1:
        for i in indices:
            yield _prepare_one(dataset, i, seeds[i])
        return
    with ProcessPoolExecutor(
        max_workers=min(num_workers, len(indices)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(dataset,),
    ) as pool:
        futures = [pool.submit(_prepare_in_worker, i, seeds[i]) for i in indices]
        for fut in futures:
            index, sample, error = fut.result()
            if error is not None:
                message, chain, path = error
                yield index, None, _Reported(message, chain, path)
            else:
                yield index, sample, None


class _Reported(DataError):
    """A DataError rebuilt from a worker's (message, chain, path): the message already
    names the chain and the file, so it is kept as it is."""

    def __init__(self, message: str, chain: str | None, path: str | None):
        ValueError.__init__(self, message)
        self.message = message
        self.chain = chain
        self.path = path
