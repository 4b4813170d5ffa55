"""The embedded mini dataset: real structures, SYNTHETIC alignments, official layout.

Structures: the PDB entries 5PTI, 1BD2, 3KPR and 3PWP as shipped (mmCIF) in the PyPI
package ``mdanalysistests`` (MDAnalysis test suite, LGPL-2.1+/GPL; the coordinates are
wwPDB data, CC0). They give 21 protein chains of 9-276 residues, with related chains
across entries (HLA-A2 heavy chains, beta-2-microglobulin, T-cell receptor chains).

Alignments are SYNTHETIC and say so in every file:
- MSAs (uniref90/bfd_uniclust/mgnify a3m): homologues of the query drawn from a seeded
  generator (seed = sha256 of the sequence): each row has a divergence d in [0.05, 0.6];
  every residue is substituted with probability d (uniform over the 20 amino acids),
  deleted with probability d/10 ('-'), and followed by an insertion of 1-3 random
  lower-case residues with probability d/20; rows are then cut to a random local window
  (the rest gaps), as local hits are.
- Template hits (pdb70 hhr): real pairwise alignments (Kalign 3.3.5) of the query with
  every chain of the other entries, kept at >= 25% identity over >= 20 aligned columns,
  written in HHsearch's .hhr format with scores derived from identity.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .layout import DataLayout, MmcifDictStore, load_chains_csv
from .parsers import parse_a3m
from .preprocess import preprocess_alignments, preprocess_mmcif
from .templates import Kalign

MINI_ENTRIES = ("5PTI", "1BD2", "3KPR", "3PWP")
MINI_VALIDATION = ("3pwp_A", "3pwp_B", "3pwp_D")
AMINO = "ACDEFGHIKLMNPQRSTVWY"


@dataclass(frozen=True)
class MiniConfig:
    uniref90_rows: int = 96
    bfd_rows: int = 48
    mgnify_rows: int = 24
    min_template_identity: float = 0.25
    min_template_columns: int = 20


def structures_dir() -> Path:
    spec = importlib.util.find_spec("MDAnalysisTests")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the mini dataset reads structures from the PyPI package 'mdanalysistests' "
            "(pip install --no-deps mdanalysistests)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "mmcif"


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def synthetic_a3m(query: str, rows: int, seed: int, label: str) -> str:
    """A deterministic synthetic a3m of ``rows`` homologues + the query (see module doc)."""
    rng = np.random.default_rng(seed)
    n = len(query)
    q = np.frombuffer(query.encode(), dtype=np.uint8)
    amino = np.frombuffer(AMINO.encode(), dtype=np.uint8)
    lines = [f">query {label} SYNTHETIC alignment\n{query}\n"]
    for i in range(rows):
        d = rng.uniform(0.05, 0.6)
        row = np.where(rng.random(n) < d, amino[rng.integers(0, 20, n)], q)
        row = np.where(rng.random(n) < d / 10, ord("-"), row)
        lo = int(rng.integers(0, max(1, n // 4)))
        hi = int(n - rng.integers(0, max(1, n // 4)))
        row[:lo] = ord("-")
        row[hi:] = ord("-")
        inserts = (rng.random(n) < d / 20) & (row != ord("-"))
        parts = []
        for j, ch in enumerate(row.tobytes().decode()):  # builder only, not the training path
            parts.append(ch)
            if inserts[j]:
                parts.append(
                    "".join(AMINO[k] for k in rng.integers(0, 20, int(rng.integers(1, 4)))).lower()
                )
        lines.append(f">synthetic_homolog_{i} d={d:.2f} SYNTHETIC\n{''.join(parts)}\n")
    return "".join(lines)


def _hhr_hit(
    no: int, name: str, q_aln: str, t_aln: str, t_len: int, q_len: int
) -> tuple[str, dict]:
    q = np.frombuffer(q_aln.encode(), np.uint8)
    t = np.frombuffer(t_aln.encode(), np.uint8)
    gap = ord("-")
    both = (q != gap) & (t != gap)
    cols = int(both.sum())
    ident = float((both & (q == t)).sum()) / max(cols, 1)
    # Trim to the span between the first and last aligned column, as HHsearch reports.
    idx = np.flatnonzero(both)
    a, b = int(idx[0]), int(idx[-1]) + 1
    q_start = int((q[:a] != gap).sum()) + 1
    t_start = int((t[:a] != gap).sum()) + 1
    q_seg, t_seg = q_aln[a:b], t_aln[a:b]
    q_end = q_start + len(q_seg.replace("-", "")) - 1
    t_end = t_start + len(t_seg.replace("-", "")) - 1
    prob = min(99.9, 100.0 * ident + 20.0)
    sum_probs = cols * ident
    text = (
        f"No {no}\n>{name} SYNTHETIC hit from a Kalign alignment\n"
        f"Probab={prob:.2f}  E-value=1e-{max(1, int(ident * 50))}  Score={cols * ident * 2:.2f}  "
        f"Aligned_cols={cols}  Identities={100 * ident:.0f}%  Similarity=0.5  Sum_probs={sum_probs:.1f}  "
        f"Template_Neff=5.0\n\n"
        f"Q {'query':<15s} {q_start:>4d} {q_seg} {q_end:>4d} ({q_len})\n"
        f"T {name[:14]:<15s} {t_start:>4d} {t_seg} {t_end:>4d} ({t_len})\n\n"
    )
    return text, {"identity": ident, "cols": cols, "sum_probs": sum_probs}


def synthetic_hhr(
    query: str, query_pdb: str, chains: list[tuple[str, str]], kalign: Kalign, cfg: MiniConfig
) -> str:
    """hhr text with one hit per sufficiently similar chain of another entry."""
    hits = []
    for chain_id, seq in chains:
        if chain_id.split("_")[0] == query_pdb or len(seq) < 10 or len(query) < 10:
            continue
        q_aln, t_aln = parse_a3m(kalign.align([query, seq])).sequences[:2]
        _, stats = _hhr_hit(0, chain_id, q_aln, t_aln, len(seq), len(query))
        if (
            stats["identity"] >= cfg.min_template_identity
            and stats["cols"] >= cfg.min_template_columns
        ):
            hits.append((stats["sum_probs"], chain_id, q_aln, t_aln, len(seq)))
    hits.sort(key=lambda h: -h[0])
    header = (
        "Query         query SYNTHETIC template search (Kalign 3.3.5 pairwise alignments, scalefold mini)\n"
        f"Match_columns {len(query)}\nNo_of_seqs    1 out of 1\n\n"
    )
    body = "".join(
        _hhr_hit(i + 1, h[1], h[2], h[3], h[4], len(query))[0] for i, h in enumerate(hits)
    )
    return header + body + "Done!\n"


def build_mini(out_dir: str | Path, config: MiniConfig = MiniConfig()) -> DataLayout:
    """Write the mini dataset in the official layout under ``out_dir``; returns its layout.

    Also writes ``mini_split.json`` (train/validation chain ids) and ``README.md``.
    """
    out = Path(out_dir)
    layout = DataLayout(out)
    kalign = Kalign()
    src = structures_dir()
    with tempfile.TemporaryDirectory(prefix="scalefold_mini_") as tmp:
        tmp = Path(tmp)
        raw = tmp / "raw"
        for entry in MINI_ENTRIES:
            dst = raw / entry.lower()[1:3] / f"{entry.lower()}.cif.gz"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / f"{entry}.cif.gz", dst)
        obsolete = tmp / "obsolete.dat"
        # A real obsolete.dat line (wwPDB format); none of the mini entries is obsolete.
        obsolete.write_text(
            " LIST OF OBSOLETE COORDINATE ENTRIES AND SUCCESSORS\nOBSLTE    31-JUL-94 116L     216L\n"
        )
        report = preprocess_mmcif(
            raw, layout.pdb_mmcif_dir, obsolete, clusters_file=None, workers=1
        )
        if report.errors:
            raise RuntimeError(report.summary())
        chains = load_chains_csv(layout.chains_csv)
        # Sequence clusters: identical sequences share a cluster (documented stand-in for RCSB's).
        cluster_of = {s: i for i, s in enumerate(dict.fromkeys(chains["sequence"]))}
        chains["pdb_cluster_id"] = chains["sequence"].map(cluster_of)
        chains.to_csv(layout.chains_csv, index=False)

        per_chain = tmp / "alignments"
        pairs = list(zip(chains["pdb_chain_id"], chains["sequence"]))
        for chain_id, seq in pairs:
            d = per_chain / chain_id
            d.mkdir(parents=True)
            s = _seed(seq)
            (d / "uniref90_hits.a3m").write_text(
                synthetic_a3m(seq, config.uniref90_rows, s, chain_id)
            )
            (d / "bfd_uniclust_hits.a3m").write_text(
                synthetic_a3m(seq, config.bfd_rows, s + 1, chain_id)
            )
            (d / "mgnify_hits.a3m").write_text(
                synthetic_a3m(seq, config.mgnify_rows, s + 2, chain_id)
            )
            (d / "pdb70_hits.hhr").write_text(
                synthetic_hhr(seq, chain_id.split("_")[0], pairs, kalign, config)
            )
        report = preprocess_alignments(per_chain, layout.alignments_dir, num_shards=4, workers=1)
        if report.errors:
            raise RuntimeError(report.summary())
    train = [c for c in chains["pdb_chain_id"] if c not in MINI_VALIDATION]
    (out / "mini_split.json").write_text(
        json.dumps({"train": train, "validation": list(MINI_VALIDATION)}, indent=1)
    )
    (out / "README.md").write_text(_README)
    MmcifDictStore(layout.dicts_dir).get(MINI_ENTRIES[0])  # fail here, not at training time
    return layout


_README = """# scalefold mini dataset

Official MLPerf OpenFold layout (pdb_mmcif/processed, open_protein_set/processed/pdb_alignments).

Structures: PDB entries 5PTI, 1BD2, 3KPR, 3PWP (wwPDB, CC0), taken from the mmCIF test
files of the PyPI package `mdanalysistests` (LGPL-2.1+).

ALL ALIGNMENTS ARE SYNTHETIC: MSAs are seeded random homologues of each query; template
hits are Kalign 3.3.5 pairwise alignments between chains of different entries. Cluster
ids group identical sequences. See scalefold/data/mini.py for the exact procedure.
`mini_split.json` names the training and validation chains.
"""
