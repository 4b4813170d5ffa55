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

`build_real_tree` makes a second tiny tree of real data only: PDB 2Q2K (chains A and B,
identical) with the real AlphaFold-pipeline alignments of its chain, from the OpenFold
repository's test data (tests/data/real/README.md: source, commit, license). Its chain
folder is in OpenFold's flat layout, which preprocess-alignments also reads (every file
of the folder, stored by name; .sto read where no .a3m of the same name is present):

    <root>/open_protein_set/original/pdb/2q2k_A/{uniref90_hits.sto, mgnify_hits.sto,
                                                  bfd_uniclust_hits.a3m}
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


def _add_mmcif(mm: Path, entry: str, src: Path) -> dict:
    """Copies ``src`` to raw/<id[1:3]>/<id>.cif.gz; its parsed record, with its polymer
    entity ids under "polymers"."""
    from scalefold.data.preprocess import _column, _read_cif, parse_mmcif

    dst = mm / "raw" / entry.lower()[1:3] / f"{entry.lower()}.cif.gz"
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = src.read_bytes()
    dst.write_bytes(data if src.name.endswith(".gz") else gzip.compress(data))
    record = parse_mmcif(src)
    record["polymers"] = set(_column(_read_cif(src), "entity_poly", "entity_id"))
    return record


def _write_clusters(mm: Path, records: list[dict]) -> list[tuple[str, str]]:
    """RCSB clusters-by-entity: one line per cluster of 'PDBID_ENTITY' members; entities
    with identical sequences share a line (a stand-in for RCSB's 40% clustering).
    Returns every (pdb_chain_id, sequence)."""
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
    return chains


def build_download_tree(root: Path, msa_rows: int = 24) -> Path:
    from scalefold.data.mini import MiniConfig, _seed, synthetic_a3m, synthetic_hhr
    from scalefold.data.templates import Kalign

    root = Path(root)
    mm = root / "pdb_mmcif" / "original"
    ops = root / "open_protein_set" / "original"
    records = []
    for entry in ENTRIES:
        records.append(_add_mmcif(mm, entry, _source(entry)))
    good = _source("3KPR").read_bytes()
    (mm / "raw" / "kp").mkdir(parents=True, exist_ok=True)
    (mm / "raw" / "kp" / "3kpr.cif.gz").write_bytes(good[: len(good) // 3])  # broken download
    (mm / "obsolete.dat").write_text(OBSOLETE)

    chains = _write_clusters(mm, records)

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


# ----------------------------------------------------------------------------- real tree

REAL_DIR = Path(__file__).parent / "real"
REAL_ENTRY = "2Q2K"
REAL_FOLDER = "2q2k_A"  # the one alignment folder, serving both identical chains
REAL_TRAIN = ("2q2k_A",)
REAL_VALIDATION = ("2q2k_B",)
REAL_ALIGNMENTS = ("uniref90_hits.sto", "mgnify_hits.sto", "bfd_uniclust_hits.a3m")


def build_real_tree(root: Path) -> Path:
    """The download layout holding PDB 2Q2K and the real alignments of its chain
    (tests/data/real/): mmCIF, clusters, obsolete.dat, one chain folder, duplicates."""
    root = Path(root)
    mm = root / "pdb_mmcif" / "original"
    ops = root / "open_protein_set" / "original"
    record = _add_mmcif(mm, REAL_ENTRY, REAL_DIR / f"{REAL_ENTRY.lower()}.cif.gz")
    chains = _write_clusters(mm, [record])
    (mm / "obsolete.dat").write_text(OBSOLETE)
    folder = ops / "pdb" / REAL_FOLDER
    folder.mkdir(parents=True)
    for name in REAL_ALIGNMENTS:
        (folder / name).write_bytes(
            gzip.decompress((REAL_DIR / f"{REAL_FOLDER}.{name}.gz").read_bytes()))
    (ops / "duplicate_pdb_chains.txt").write_text(" ".join(c for c, _ in chains) + "\n")
    (ops / "LICENSE").write_text(
        "test tree: real data from the OpenFold repository, see tests/data/real/README.md\n")
    return root
