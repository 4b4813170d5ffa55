"""Preprocessing: raw mmCIF files and per-chain alignment folders -> the official layout.

Both commands run over worker processes with a tqdm progress bar, are resumable (work
is written per shard, atomically, and finished shards are skipped on a re-run), and keep
going past bad inputs: every failed file is reported by name with its error, and a
summary counts successes and failures.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import multiprocessing
import os
import pickle
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from scalefold.geometry import residue_constants as rc

from .layout import CHAINS_CSV_COLUMNS, compress_atoms, dicts_shard_name, write_chains_csv

# --------------------------------------------------------------------------- mmCIF parsing


def _read_cif(path: Path):
    import biotite.structure.io.pdbx as pdbx

    if path.name.endswith(".gz"):
        with gzip.open(path, "rt") as f:
            return pdbx.CIFFile.read(f).block
    return pdbx.CIFFile.read(str(path)).block


def _column(block, category: str, name: str) -> np.ndarray | None:
    if category not in block or name not in block[category]:
        return None
    return block[category][name].as_array(str)


def _resolution(block) -> float:
    for category, name in (
        ("refine", "ls_d_res_high"),
        ("em_3d_reconstruction", "resolution"),
        ("reflns", "d_resolution_high"),
    ):
        values = _column(block, category, name)
        if values is not None:
            parsed = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
            return float(parsed.max()) if len(parsed) else float("nan")
    return float("nan")


def parse_mmcif(path: os.PathLike | str) -> dict:
    """One mmCIF (plain or .gz) -> the reference's mmcif_dict, atoms uncompressed.

    Protein chains are the entities with at least one peptide-like monomer; sequences use
    one-letter codes from the Chemical Component Dictionary (X when none); atoms come from
    the first model, at most one location per (residue, atom), selenium of MSE stored as SD.
    """
    from biotite.structure.info import one_letter_code

    path = Path(path)
    block = _read_cif(path)
    pdb_id = str(_column(block, "entry", "id")[0]).lower()
    methods = _column(block, "exptl", "method")
    dates = _column(block, "pdbx_audit_revision_history", "revision_date")
    if dates is None or len(dates) == 0:
        raise ValueError("no _pdbx_audit_revision_history.revision_date")
    entity_to_chains: dict[str, list[str]] = defaultdict(list)
    for asym, entity in zip(
        _column(block, "struct_asym", "id"), _column(block, "struct_asym", "entity_id")
    ):
        entity_to_chains[str(entity)].append(str(asym))

    seq_entity = _column(block, "entity_poly_seq", "entity_id")
    if seq_entity is None:
        raise ValueError("no _entity_poly_seq: no polymer")
    seq_num = _column(block, "entity_poly_seq", "num").astype(int)
    seq_mon = _column(block, "entity_poly_seq", "mon_id")
    chem_type = dict(zip(_column(block, "chem_comp", "id"), _column(block, "chem_comp", "type")))
    polymers: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for entity, num, mon in zip(seq_entity, seq_num, seq_mon):
        polymers[str(entity)].append((int(num), str(mon)))
    legal: dict[str, list[tuple[int, str]]] = {}
    for entity, monomers in polymers.items():
        if any("peptide" in chem_type.get(mon, "").lower() for _, mon in monomers):
            for asym in entity_to_chains.get(entity, []):
                legal[asym] = monomers
    if not legal:
        raise ValueError("no protein chains")

    site = block["atom_site"]
    col = {name: site[name].as_array(str) for name in (
        "label_comp_id", "label_asym_id", "auth_asym_id", "label_seq_id", "label_atom_id", "pdbx_PDB_model_num"
    )}  # fmt: skip
    xyz = np.stack([site[f"Cartn_{a}"].as_array(np.float32) for a in "xyz"], axis=-1)  # [atoms, 3]
    first_model = col["pdbx_PDB_model_num"] == col["pdbx_PDB_model_num"][0]
    mmcif_to_author: dict[str, str] = {}
    for asym, auth in zip(col["label_asym_id"][first_model], col["auth_asym_id"][first_model]):
        mmcif_to_author.setdefault(str(asym), str(auth))  # one entry per chain, C-speed enough

    atom_lut = dict(rc.atom_order)
    sequences: dict[str, str] = {}
    atoms: dict[str, dict[str, np.ndarray]] = {}
    for asym, monomers in legal.items():
        if asym not in mmcif_to_author:
            continue  # polymer declared but without coordinates in the first model
        author = mmcif_to_author[asym]
        if author in sequences:
            raise ValueError(f"author chain {author} holds two polymers")
        codes = [one_letter_code(mon) for _, mon in monomers]
        seq = "".join(c if c is not None and len(c) == 1 else "X" for c in codes)
        start = min(num for num, _ in monomers)
        n = len(seq)
        rows = first_model & (col["label_asym_id"] == asym) & (col["label_seq_id"] != ".")
        idx = np.flatnonzero(rows)
        res = col["label_seq_id"][idx].astype(int) - start
        names = col["label_atom_id"][idx]
        is_se = (names == "SE") & (col["label_comp_id"][idx] == "MSE")
        names = np.where(is_se, "SD", names)
        uniq, inverse = np.unique(names, return_inverse=True)  # look up each distinct name once
        atom = np.array([atom_lut.get(str(a), -1) for a in uniq], dtype=np.int64)[
            inverse.reshape(-1)
        ]
        ok = (atom >= 0) & (res >= 0) & (res < n)
        res, atom, idx = res[ok], atom[ok], idx[ok]
        _, first = np.unique(res * rc.atom_type_num + atom, return_index=True)  # first altloc wins
        positions = np.zeros((n, rc.atom_type_num, 3), dtype=np.float32)
        mask = np.zeros((n, rc.atom_type_num), dtype=bool)
        positions[res[first], atom[first]] = xyz[idx[first]]
        mask[res[first], atom[first]] = True
        sequences[author] = seq
        atoms[author] = {"all_atom_positions": positions, "all_atom_mask": mask}
    if not sequences:
        raise ValueError("no protein chain has coordinates")
    return {
        "pdb_id": pdb_id,
        "exptl_method": ";".join(str(m) for m in methods) if methods is not None else "",
        "release_date": str(min(dates)),
        "resolution": _resolution(block),
        "author_chain_ids": list(sequences),
        "entity_id_to_mmcif_chain_ids": dict(entity_to_chains),
        "mmcif_chain_id_to_author_chain_id": mmcif_to_author,
        "sequences": sequences,
        "atoms": atoms,
    }


def mmcif_dict_chains(record: dict, cluster_ids: dict[str, int]) -> list[dict]:
    """chains.csv rows of one entry; ``cluster_ids`` maps 'PDBID_ENTITY' (upper) -> cluster."""
    pdb_id = record["pdb_id"]
    author_to_mmcif: dict[str, list[str]] = defaultdict(list)
    for mmcif_id, author in record["mmcif_chain_id_to_author_chain_id"].items():
        author_to_mmcif[author].append(mmcif_id)
    chain_entity = {c: e for e, cs in record["entity_id_to_mmcif_chain_ids"].items() for c in cs}
    rows = []
    for author in record["author_chain_ids"]:
        mmcif_ids = author_to_mmcif[author]
        clusters = [
            cluster_ids[key]
            for key in {
                f"{pdb_id}_{chain_entity[m]}".upper() for m in mmcif_ids if m in chain_entity
            }
            if key in cluster_ids
        ]
        cluster = Counter(clusters).most_common(1)[0][0] if clusters else -1
        seq = record["sequences"][author]
        rows.append(
            {
                "pdb_chain_id": f"{pdb_id}_{author}",
                "pdb_id": pdb_id,
                "author_chain_id": author,
                "mmcif_chain_ids": ";".join(mmcif_ids),
                "release_date": record["release_date"],
                "resolution": record["resolution"],
                "pdb_cluster_id": cluster,
                "sequence_length": len(seq),
                "sequence": seq,
            }
        )
    return rows


def load_cluster_file(path: os.PathLike | str | None) -> dict[str, int]:
    """RCSB clusters-by-entity file (one cluster per line, 'PDBID_ENTITY' members) -> id map."""
    if path is None:
        return {}
    out = {}
    with open(path) as f:
        for cluster, line in enumerate(f.read().strip().splitlines()):
            for member in line.split():
                out[member.upper()] = cluster
    return out


# --------------------------------------------------------------------------- runner


@dataclass
class PreprocessReport:
    total: int = 0
    succeeded: int = 0
    skipped_done: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # file -> error
    outputs: dict[str, int] = field(default_factory=dict)  # what was written, e.g. chains

    def summary(self) -> str:
        lines = [
            f"files: {self.total}, succeeded: {self.succeeded}, failed: {len(self.errors)}, "
            f"already done (resumed): {self.skipped_done}"
        ]
        if self.outputs:
            lines.append("written: " + ", ".join(f"{k} {v}" for k, v in self.outputs.items()))
        lines += [f"  FAILED {name}: {err}" for name, err in sorted(self.errors.items())]
        return "\n".join(lines)

    def write_errors_csv(self, path: os.PathLike | str) -> Path:
        """Every skipped input with its reason, as CSV (columns: file, reason), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        df = pd.DataFrame(sorted(self.errors.items()), columns=["file", "reason"])
        _atomic_write_bytes(path, df.to_csv(index=False).encode())
        return path


def _run_parallel(
    func: Callable, jobs: list, workers: int, desc: str, progress: bool = True
) -> Iterable:
    if workers <= 1 or len(jobs) <= 1:
        for job in tqdm(jobs, desc=desc, disable=not progress):
            yield func(job)
        return
    ctx = multiprocessing.get_context("spawn")  # no inherited torch/thread state
    with ctx.Pool(min(workers, len(jobs))) as pool:
        yield from tqdm(
            pool.imap_unordered(func, jobs), total=len(jobs), desc=desc, disable=not progress
        )


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``: an
    interrupted run leaves the old file or none, never a partial one."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _mmcif_shard_job(job: tuple[str, list[str], str]) -> tuple[str, dict[str, str], int]:
    shard, files, dicts_dir = job
    records, errors = {}, {}
    for file in files:
        try:
            record = parse_mmcif(file)
            record["atoms"] = compress_atoms(record["atoms"])
            records[record["pdb_id"]] = record
        except Exception as exc:  # noqa: BLE001 - any broken file is reported and skipped
            errors[file] = f"{type(exc).__name__}: {exc}"
    # The log is written after the shard: its presence marks the shard finished.
    _atomic_write_bytes(
        Path(dicts_dir) / shard, pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)
    )
    log_path = Path(dicts_dir).parent / "dicts_logs" / f"{shard}.json"
    _atomic_write_bytes(log_path, json.dumps({"files": files, "errors": errors}).encode())
    return shard, errors, len(files)


def _raw_mmcif_files(raw_dir: Path) -> list[Path]:
    return sorted(
        p for p in raw_dir.rglob("*") if p.is_file() and p.name.endswith((".cif", ".cif.gz"))
    )


def preprocess_mmcif(
    raw_dir: os.PathLike | str,
    out_dir: os.PathLike | str,
    obsolete_file: os.PathLike | str | None,
    clusters_file: os.PathLike | str | None = None,
    workers: int = 1,
    progress: bool = True,
) -> PreprocessReport:
    """raw mmCIFs -> out_dir/{dicts/, chains.csv, obsolete.dat} (pdb_mmcif/processed).

    ``obsolete_file`` None writes an obsolete.dat without entries (no id is replaced)."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    dicts_dir = out_dir / "dicts"
    dicts_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "dicts_logs").mkdir(exist_ok=True)
    by_shard: dict[str, list[str]] = defaultdict(list)
    files = _raw_mmcif_files(raw_dir)
    for path in files:
        by_shard[dicts_shard_name(path.name.split(".")[0])].append(str(path))
    report = PreprocessReport(total=len(files))
    jobs = []
    for shard, shard_files in sorted(by_shard.items()):
        log_path = out_dir / "dicts_logs" / f"{shard}.json"
        if (dicts_dir / shard).exists() and log_path.exists():
            done = json.loads(log_path.read_text())
            if sorted(done["files"]) == sorted(shard_files):
                report.skipped_done += len(shard_files)
                report.errors.update(done["errors"])
                continue
        jobs.append((shard, shard_files, str(dicts_dir)))
    for _, errors, _count in _run_parallel(
        _mmcif_shard_job, jobs, workers, "mmCIF shards", progress
    ):
        report.errors.update(errors)
    report.succeeded = report.total - len(report.errors)
    clusters = load_cluster_file(clusters_file)
    rows = []
    shards = sorted(by_shard)  # this run's shards only: not leftovers of another input
    for shard in shards:
        with open(dicts_dir / shard, "rb") as f:
            for record in pickle.load(f).values():
                rows.extend(mmcif_dict_chains(record, clusters))
    tmp = out_dir / f"chains.csv.{os.getpid()}.tmp"
    write_chains_csv(pd.DataFrame(rows, columns=list(CHAINS_CSV_COLUMNS)), tmp)
    os.replace(tmp, out_dir / "chains.csv")
    if obsolete_file is None:
        obsolete = _EMPTY_OBSOLETE
    else:
        obsolete = Path(obsolete_file).read_bytes()
    _atomic_write_bytes(out_dir / "obsolete.dat", obsolete)
    report.outputs = {
        "dicts shards": len(shards),
        "entries": len({r["pdb_id"] for r in rows}),
        "chains": len(rows),
        "chains without cluster": sum(r["pdb_cluster_id"] == -1 for r in rows),
    }
    return report


# The header line of the wwPDB file, without any OBSLTE entry.
_EMPTY_OBSOLETE = b" LIST OF OBSOLETE COORDINATE ENTRIES AND SUCCESSORS\n"


# --------------------------------------------------------------------------- alignments


def alignment_shard_id(chain_id: str, num_shards: int) -> int:
    """Stable shard of a chain: first 8 bytes of sha256, little endian, modulo num_shards."""
    digest = hashlib.sha256(chain_id.encode()).digest()
    return int.from_bytes(digest[:8], "little") % num_shards


def _alignment_shard_job(
    job: tuple[int, list[tuple[str, list[str]]], str],
) -> tuple[int, dict, dict[str, str]]:
    shard_id, entries, out_dir = job
    name = f"{shard_id}.db"
    index: dict[str, dict] = {}
    errors: dict[str, str] = {}
    offset = 0
    tmp = Path(out_dir) / f"{name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as out:
        for chain_dir, members in entries:
            files = sorted(p for p in Path(chain_dir).rglob("*") if p.is_file())
            if not files:
                errors[chain_dir] = "no alignment files"
                continue
            entry = {"db": name, "files": []}
            for path in files:
                data = path.read_bytes()
                try:
                    data.decode("utf-8")
                except UnicodeDecodeError as exc:
                    errors[str(path)] = f"not UTF-8 text: {exc}"
                    continue
                out.write(data)
                entry["files"].append([path.name, offset, len(data)])
                offset += len(data)
            for member in members:
                index[member] = entry
    os.replace(tmp, Path(out_dir) / name)
    # The marker is written after the shard: its presence marks the shard finished.
    _atomic_write_bytes(
        Path(out_dir) / f"{name}.index.json",
        json.dumps(
            {"dirs": [d for d, _ in entries], "index": index, "errors": errors}
        ).encode(),
    )
    return shard_id, index, errors


def preprocess_alignments(
    src_dir: os.PathLike | str,
    out_dir: os.PathLike | str,
    num_shards: int = 10,
    duplicates_file: os.PathLike | str | None = None,
    workers: int = 1,
    progress: bool = True,
) -> PreprocessReport:
    """Per-chain folders ``src_dir/<pdb_chain_id>/**`` (.a3m, .sto, .hhr) -> shards
    ``0.db..N-1.db`` + ``super.index``. ``duplicates_file`` (OpenProteinSet's
    duplicate_pdb_chains.txt: identical chains per line) lets one folder serve all its
    duplicates."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    chain_dirs = sorted(p for p in src_dir.iterdir() if p.is_dir())
    members: dict[str, list[str]] = {}
    if duplicates_file is not None:
        for line in Path(duplicates_file).read_text().splitlines():
            group = line.split()
            for chain in group:
                members[chain] = group
    shards: dict[int, list[tuple[str, list[str]]]] = defaultdict(list)
    for d in chain_dirs:
        shards[alignment_shard_id(d.name, num_shards)].append(
            (str(d), members.get(d.name, [d.name]))
        )
    report = PreprocessReport(total=len(chain_dirs))
    super_index: dict[str, dict] = {}
    jobs = []
    for shard_id in range(num_shards):
        done = out_dir / f"{shard_id}.db.index.json"
        expected = [d for d, _ in shards.get(shard_id, [])]
        if (out_dir / f"{shard_id}.db").exists() and done.exists():
            saved = json.loads(done.read_text())
            if saved.get("dirs") != expected:  # another input tree: redo the shard
                jobs.append((shard_id, shards.get(shard_id, []), str(out_dir)))
                continue
            super_index.update(saved["index"])
            report.errors.update(saved["errors"])
            report.skipped_done += len(shards.get(shard_id, []))
            continue
        jobs.append((shard_id, shards.get(shard_id, []), str(out_dir)))
    for _, index, errors in _run_parallel(
        _alignment_shard_job, jobs, workers, "alignment shards", progress
    ):
        super_index.update(index)
        report.errors.update(errors)
    report.succeeded = report.total - sum(1 for k in report.errors if Path(k).parent == src_dir)
    # Sorted keys: shards finish (and resumed ones load) in any order, the file must not
    # depend on it.
    _atomic_write_bytes(out_dir / "super.index",
                        json.dumps(super_index, sort_keys=True).encode())
    report.outputs = {
        "shards": num_shards,
        "index entries": len(super_index),
        "bytes": sum((out_dir / f"{i}.db").stat().st_size for i in range(num_shards)),
    }
    return report
