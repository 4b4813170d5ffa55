"""A tiny tree in the MLPerf reference's download layout, for the `scalefold data` commands.

    <root>/pdb_mmcif/original/raw/<id[1:3]>/<id>.cif.gz     real PDB entries (mdanalysistests)
    <root>/pdb_mmcif/original/{clusters-by-entity-40.txt, obsolete.dat}
    <root>/open_protein_set/original/pdb/<pdb_chain_id>/a3m/{uniref90,bfd_uniclust,mgnify}_hits.a3m
    <root>/open_protein_set/original/pdb/<pdb_chain_id>/hhr/pdb70_hits.hhr
    <root>/open_protein_set/original/duplicate_pdb_chains.txt

Structures: 5PTI, 1BD2, 3PWP (X-ray, 1984-2011), 1YJP (7 residues) and 7ETN (released
2022: after the training cut-off), plus one truncated download that preprocessing must
skip. No PyPI package ships OpenProteinSet alignments (/work/shared/reference/ORACLES.md),
so the alignments are made as the mini dataset makes them (scalefold.data.mini): the hhr
files hold real Kalign 3.3.5 alignments of the real sequences against the chains of the
other entries; the a3m files are seeded synthetic homologues (labelled SYNTHETIC). As in
OpenProteinSet, identical chains share one folder, listed in duplicate_pdb_chains.txt.
"""

from __future__ import annotations

import gzip
from pathlib import Path

ENTRIES = ("5PTI", "1BD2", "3PWP", "1YJP", "7ETN")
TRAIN = ("5pti_A", "1bd2_A", "1bd2_B", "1bd2_D", "1yjp_A")
VALIDATION = ("3pwp_B", "3pwp_C")
OBSOLETE = (
    " LIST OF OBSOLETE COORDINATE ENTRIES AND SUCCESSORS\n"
    "OBSLTE    31-JUL-94 116L     216L\n"
)


def _source(entry: str) -> Path:
    from scalefold.data.mini import structures_dir

    d = structures_dir()
    return d / f"{entry}.cif.gz" if (d / f"{entry}.cif.gz").exists() else d / f"{entry}.cif"


def build_download_tree(root: Path, msa_rows: int = 24) -> Path:
    from scalefold.data.mini import MiniConfig, _seed, synthetic_a3m, synthetic_hhr
    from scalefold.data.preprocess import _column, _read_cif, parse_mmcif
    from scalefold.data.templates import Kalign

    root = Path(root)
    mm = root / "pdb_mmcif" / "original"
    ops = root / "open_protein_set" / "original"
    records = []
    for entry in ENTRIES:
        src = _source(entry)
        dst = mm / "raw" / entry.lower()[1:3] / f"{entry.lower()}.cif.gz"
        dst.parent.mkdir(parents=True, exist_ok=True)
        data = src.read_bytes()
        dst.write_bytes(data if src.name.endswith(".gz") else gzip.compress(data))
        record = parse_mmcif(src)
        record["polymers"] = set(_column(_read_cif(src), "entity_poly", "entity_id"))
        records.append(record)
    good = _source("3KPR").read_bytes()
    (mm / "raw" / "kp").mkdir(parents=True, exist_ok=True)
    (mm / "raw" / "kp" / "3kpr.cif.gz").write_bytes(good[: len(good) // 3])  # broken download
    (mm / "obsolete.dat").write_text(OBSOLETE)

    # RCSB clusters-by-entity: one line per cluster of 'PDBID_ENTITY' members; entities
    # with identical sequences share a line (a stand-in for RCSB's 40% clustering).
    clusters: dict[str, list[str]] = {}
    chains: list[tuple[str, str]] = []
    for r in records:
        author_of = r["mmcif_chain_id_to_author_chain_id"]
        for entity, mmcif_ids in r["entity_id_to_mmcif_chain_ids"].items():
            if entity not in r["polymers"]:
                continue  # RCSB clusters polymer entities only
            authors = [author_of[m] for m in mmcif_ids if m in author_of]
            if authors and authors[0] in r["sequences"]:
                seq = r["sequences"][authors[0]]
                clusters.setdefault(seq, []).append(f"{r['pdb_id'].upper()}_{entity}")
        chains += [(f"{r['pdb_id']}_{a}", s) for a, s in r["sequences"].items()]
    (mm / "clusters-by-entity-40.txt").write_text(
        "\n".join(" ".join(m) for m in clusters.values()) + "\n")

    kalign, cfg = Kalign(), MiniConfig()
    groups: dict[str, list[str]] = {}
    for chain, seq in chains:
        groups.setdefault(seq, []).append(chain)
    for seq, members in groups.items():
        chain = members[0]
        a3m = ops / "pdb" / chain / "a3m"
        a3m.mkdir(parents=True)
        s = _seed(seq)
        for i, name in enumerate(("uniref90_hits", "bfd_uniclust_hits", "mgnify_hits")):
            (a3m / f"{name}.a3m").write_text(synthetic_a3m(seq, msa_rows >> i, s + i, chain))
        hhr = ops / "pdb" / chain / "hhr"
        hhr.mkdir()
        (hhr / "pdb70_hits.hhr").write_text(
            synthetic_hhr(seq, chain.split("_")[0], chains, kalign, cfg))
    (ops / "duplicate_pdb_chains.txt").write_text(
        "\n".join(" ".join(m) for m in groups.values()) + "\n")
    (ops / "LICENSE").write_text("test tree: see tests/data/download_tree.py\n")
    return root
