"""Datasets over the official layout: (chain index, seed) -> feature dict."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .features import FeatureConfig, RawChain, process_chain
from .layout import (
    AlignmentDB,
    DataError,
    DataLayout,
    MmcifDictStore,
    load_chains_csv,
    load_obsolete,
)
from .msa import merge_msas
from .parsers import Msa, TemplateHit, parse_a3m, parse_hhr, parse_stockholm
from .selection import (
    TrainingSetConfig,
    ValidationSetConfig,
    add_cluster_sizes,
    filter_training_chains,
    sample_weights,
    seed_from_string,
    select_validation_chains,
)
from .templates import TemplateConfig, TemplateFeaturizer

log = logging.getLogger(__name__)

# Alignment files of an OpenProteinSet chain entry, in the reference's MSA order.
MSA_FILES = ("uniref90_hits", "bfd_uniclust_hits", "mgnify_hits")
HHR_FILE = "pdb70_hits.hhr"


def read_chain_msas(
    files: dict[str, str], chain: str, shard: str, query: str | None = None
) -> list[Msa]:
    """Parsed MSAs in reference order (a3m preferred, .sto accepted), read as the MLPerf
    reference reads them: an empty (or whitespace-only) file is passed over and the
    others are used; with no usable file the list is empty and ``merge_msas`` gives the
    query-only MSA. A file that does not parse, holds no sequence records, or (given
    ``query``) has another width than the query raises DataError naming it."""
    msas = []
    for stem in MSA_FILES:
        for ext, parser in ((".a3m", parse_a3m), (".sto", parse_stockholm)):
            name = stem + ext
            if name not in files:
                continue
            text = files[name]
            if text.strip():
                msas.append(_parse_msa(parser, text, name, chain, shard, query))
            else:
                log.debug("chain %s: empty %s in %s passed over", chain, name, shard)
            break
    return msas


def _parse_msa(parser, text: str, name: str, chain: str, shard: str, query: str | None) -> Msa:
    try:
        parsed = parser(text)
    except (ValueError, IndexError) as exc:  # UnicodeError is a ValueError
        raise DataError(f"{name} does not parse: {exc}", chain=chain, path=shard) from exc
    if len(parsed) == 0:
        raise DataError(
            f"{name} holds no sequence records (and is not empty)", chain=chain, path=shard
        )
    width = parsed.deletion_matrix.shape[1]
    if query is not None and width != len(query):
        raise DataError(
            f"{name} has {width} aligned columns, the query sequence {len(query)} "
            "(an alignment of another chain?)",
            chain=chain,
            path=shard,
        )
    return parsed


def read_chain_hits(files: dict[str, str], chain: str, shard: str) -> list[TemplateHit]:
    """Template hits of ``pdb70_hits.hhr`` (none when the file is absent or empty)."""
    try:
        return parse_hhr(files.get(HHR_FILE, ""))
    except (ValueError, IndexError) as exc:
        raise DataError(f"{HHR_FILE} does not parse: {exc}", chain=chain, path=shard) from exc


@dataclass
class ChainDataset(torch.utils.data.Dataset):
    """Feature dicts for the chains of ``chains`` (rows of chains.csv).

    ``template_pool`` is every chain of chains.csv (templates may come from any entry);
    items are addressed by (index, seed) so that sampling stays outside the dataset.
    """

    layout: DataLayout
    chains: pd.DataFrame
    template_pool: pd.DataFrame
    features: FeatureConfig = field(default_factory=FeatureConfig)
    templates: TemplateConfig = field(default_factory=TemplateConfig)
    # An AlignmentDB already read (super.index is large: read it once per process).
    alignment_db: AlignmentDB | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.records = self.chains.to_dict("records")
        self.store = MmcifDictStore(self.layout.dicts_dir)
        self.alignments = self.alignment_db or AlignmentDB(self.layout.alignments_dir)
        release = dict(zip(self.template_pool["pdb_id"], self.template_pool["release_date"]))
        self.template_featurizer = TemplateFeaturizer(
            store=MmcifDictStore(self.layout.dicts_dir),
            release_dates=release,
            template_chain_ids=set(self.template_pool["pdb_chain_id"]),
            obsolete=load_obsolete(self.layout.obsolete_dat),
            config=self.templates,
        )

    def __len__(self) -> int:
        return len(self.records)

    def raw_chain(self, index: int, seed: int) -> RawChain:
        rec = self.records[index]
        chain = rec["pdb_chain_id"]
        _, positions, mask = self.store.chain_atoms(rec["pdb_id"], rec["author_chain_id"])
        sequence = rec["sequence"]
        if not isinstance(sequence, str) or not sequence:
            raise DataError("empty sequence in chains.csv", chain=chain,
                            path=self.layout.chains_csv)
        if positions.shape[0] != len(sequence):
            raise DataError(
                f"atoms cover {positions.shape[0]} residues, the sequence {len(sequence)}",
                chain=chain,
                path=self.store.shard_path(rec["pdb_id"]),
            )
        files = self.alignments.read(chain)
        shard = str(self.alignments.shard_path(chain))
        msas = read_chain_msas(files, chain, shard, query=sequence)
        msa, deletions = merge_msas(sequence, msas, chain=chain)
        hits = read_chain_hits(files, chain, shard)
        tfeats = self.template_featurizer.features(
            sequence,
            hits,
            query_pdb_id=rec["pdb_id"],
            query_release_date=rec["release_date"],
            seed=seed,
        )
        resolution = rec.get("resolution")
        return RawChain(
            chain_id=chain,
            sequence=sequence,
            all_atom_positions=positions.astype(np.float32),
            all_atom_mask=mask.astype(np.float32),
            msa=msa,
            deletion_matrix=deletions,
            template_aatype=tfeats["template_aatype"],
            template_all_atom_positions=tfeats["template_all_atom_positions"],
            template_all_atom_mask=tfeats["template_all_atom_mask"],
            resolution=0.0 if resolution is None or np.isnan(resolution) else float(resolution),
        )

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = item
        return process_chain(self.raw_chain(index, seed), self.features, seed)

    def chain_id(self, index: int) -> str:
        return self.records[index]["pdb_chain_id"]


def training_dataset(
    layout: DataLayout,
    selection: TrainingSetConfig | None = None,
    features: FeatureConfig | None = None,
    templates: TemplateConfig | None = None,
    require_alignments: bool = True,
    chain_ids: list[str] | None = None,
    all_chains: pd.DataFrame | None = None,
    alignments: AlignmentDB | None = None,
) -> tuple[ChainDataset, np.ndarray]:
    """The training dataset and its per-chain sampling weights [n] f64.

    `chain_ids` restricts the selection to those chains (the reference's
    `use_only_pdb_chain_ids`; e.g. the mini dataset's training split). `all_chains` and
    `alignments` pass chains.csv and super.index already read (`check_dataset`).
    """
    selection = selection or TrainingSetConfig()
    features = features or FeatureConfig(mode="train")
    templates = templates or TemplateConfig()
    if all_chains is None:
        all_chains = load_chains_csv(layout.chains_csv)
    if alignments is None:
        alignments = AlignmentDB(layout.alignments_dir)
    chains = filter_training_chains(all_chains, selection)
    if chain_ids is not None:
        unknown = sorted(set(chain_ids) - set(chains["pdb_chain_id"]))
        if unknown:
            raise DataError(f"training chains not in the selection: {unknown[:10]}",
                            path=layout.chains_csv)
        chains = chains[chains["pdb_chain_id"].isin(set(chain_ids))].reset_index(drop=True)
    chains = add_cluster_sizes(chains)
    chains = _check_alignments(chains, alignments, require_alignments)
    ds = ChainDataset(layout, chains, all_chains, features, templates, alignment_db=alignments)
    return ds, sample_weights(chains, selection.cluster_weighting)


def validation_dataset(
    layout: DataLayout,
    selection: ValidationSetConfig | None = None,
    features: FeatureConfig | None = None,
    templates: TemplateConfig | None = None,
    chain_ids: list[str] | None = None,
    require_alignments: bool = True,
    all_chains: pd.DataFrame | None = None,
    alignments: AlignmentDB | None = None,
) -> ChainDataset:
    """CAMEO validation chains (or exactly ``chain_ids``, e.g. the mini dataset's split)."""
    selection = selection or ValidationSetConfig()
    features = features or FeatureConfig(mode="eval")
    templates = templates or TemplateConfig(shuffle_top_k=None)
    if all_chains is None:
        all_chains = load_chains_csv(layout.chains_csv)
    if alignments is None:
        alignments = AlignmentDB(layout.alignments_dir)
    if chain_ids is None:
        chains = select_validation_chains(all_chains, selection)
    else:
        unknown = [c for c in chain_ids if c not in set(all_chains["pdb_chain_id"])]
        if unknown:
            raise DataError(f"validation chains not in chains.csv: {unknown[:10]}",
                            chain=unknown[0], path=layout.chains_csv)
        chains = (
            all_chains.set_index("pdb_chain_id", drop=False).loc[chain_ids].reset_index(drop=True)
        )
    chains = _check_alignments(chains, alignments, require_alignments)
    return ChainDataset(layout, chains, all_chains, features, templates, alignment_db=alignments)


def validation_seeds(ds: ChainDataset) -> list[int]:
    """Fixed per-chain seeds, so every evaluation sees identical features."""
    return [seed_from_string(ds.chain_id(i)) for i in range(len(ds))]


def _check_alignments(chains: pd.DataFrame, db: AlignmentDB, require: bool) -> pd.DataFrame:
    present = chains["pdb_chain_id"].isin(db.index.keys())
    if present.all():
        return chains
    missing = chains.loc[~present, "pdb_chain_id"].tolist()
    if require:
        raise DataError(
            f"{len(missing)} selected chains have no alignment entry (first: {missing[:5]})",
            chain=missing[0],
            path=db.index_path,
        )
    log.warning("dropping %d chains without alignments (first: %s)", len(missing), missing[:5])
    return chains[present.to_numpy()].reset_index(drop=True)
