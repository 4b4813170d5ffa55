"""`scalefold data ...` subcommands: build the official layout from the reference's
downloads, and check a layout before a run.

    scalefold data preprocess SRC DATADIR              both steps below, from the download root
    scalefold data preprocess-mmcif SRC DATADIR        mmCIF tree -> pdb_mmcif/processed
    scalefold data preprocess-alignments SRC DATADIR   OpenProteinSet tree -> pdb_alignments
    scalefold data check DATADIR                       is DATADIR ready for a run?

``add_data_commands(data_sub)`` adds them to the ``scalefold data`` subparser group of
``scalefold.cli``; every handler takes the argparse Namespace and returns an exit code.
The layouts are described in docs/DATA.md ("Preprocessing" and "Dataset check").
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

# Reference download layout (mlcommons/hpc openfold README, scripts/download_*.sh):
#   <root>/pdb_mmcif/original/{raw/<xx>/<id>.cif.gz, clusters-by-entity-40.txt, obsolete.dat}
#   <root>/open_protein_set/original/{pdb/<chain>/{a3m,hhr}/..., duplicate_pdb_chains.txt}
MMCIF_ORIGINAL = Path("pdb_mmcif") / "original"
OPS_ORIGINAL = Path("open_protein_set") / "original"
CLUSTERS_NAME = "clusters-by-entity-40.txt"
OBSOLETE_NAME = "obsolete.dat"
DUPLICATES_NAME = "duplicate_pdb_chains.txt"
MMCIF_SKIPPED_CSV = "preprocess_mmcif_skipped.csv"  # beside chains.csv
ALIGNMENTS_SKIPPED_CSV = "preprocess_alignments_skipped.csv"  # beside pdb_alignments/


def default_workers() -> int:
    """Every core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class InputError(Exception):
    """A command's input is not where or what it should be (exit status 2)."""


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class MmcifInputs:
    raw_dir: Path
    obsolete: Path | None
    clusters: Path | None


def resolve_mmcif_inputs(
    src: Path, obsolete: Path | None, clusters: Path | None, no_obsolete: bool
) -> MmcifInputs:
    """SRC is the reference's ``pdb_mmcif/original`` (holding raw/ and the two side
    files), or any tree of ``*.cif``/``*.cif.gz`` (raw/ itself, an ``mmcif_files`` folder)."""
    src = Path(src)
    if not src.is_dir():
        raise InputError(f"mmCIF source {src} is not a directory")
    if (src / MMCIF_ORIGINAL).is_dir():  # the download root was given
        src = src / MMCIF_ORIGINAL
    raw = src / "raw" if (src / "raw").is_dir() else src
    if obsolete is None and not no_obsolete:
        for cand in (src / OBSOLETE_NAME, raw / OBSOLETE_NAME):
            if cand.is_file():
                obsolete = cand
                break
        else:
            raise InputError(
                f"no {OBSOLETE_NAME} in {src}: pass --obsolete FILE (the wwPDB file the "
                "reference's download_pdb_mmcif.sh fetches), or --no-obsolete to write one "
                "without entries"
            )
    if obsolete is not None and not Path(obsolete).is_file():
        raise InputError(f"--obsolete {obsolete} is not a file")
    if clusters is None:
        cand = src / CLUSTERS_NAME
        clusters = cand if cand.is_file() else None
    elif not Path(clusters).is_file():
        raise InputError(f"--clusters {clusters} is not a file")
    return MmcifInputs(raw, None if no_obsolete else obsolete, clusters)


@dataclass(frozen=True)
class AlignmentInputs:
    chains_dir: Path
    duplicates: Path | None


def resolve_alignment_inputs(src: Path, duplicates: Path | None) -> AlignmentInputs:
    """SRC is the reference's ``open_protein_set/original`` (holding pdb/ and
    duplicate_pdb_chains.txt), or a folder of per-chain folders ``<pdb_chain_id>/**``."""
    src = Path(src)
    if not src.is_dir():
        raise InputError(f"alignment source {src} is not a directory")
    if (src / OPS_ORIGINAL).is_dir():
        src = src / OPS_ORIGINAL
    chains = src / "pdb" if (src / "pdb").is_dir() else src
    if duplicates is None:
        cand = src / DUPLICATES_NAME
        duplicates = cand if cand.is_file() else None
    elif not Path(duplicates).is_file():
        raise InputError(f"--duplicates {duplicates} is not a file")
    return AlignmentInputs(chains, duplicates)


# --------------------------------------------------------------------------- preprocessing


def run_preprocess_mmcif(args: argparse.Namespace) -> int:
    from .layout import DataLayout
    from .preprocess import preprocess_mmcif

    inputs = resolve_mmcif_inputs(args.src, args.obsolete, args.clusters, args.no_obsolete)
    layout = DataLayout(Path(args.datadir))
    print(f"mmCIF files under {inputs.raw_dir} -> {layout.pdb_mmcif_dir}", flush=True)
    print(f"  obsolete: {inputs.obsolete or '(none: an obsolete.dat without entries)'}; "
          f"clusters: {inputs.clusters or '(none)'}; workers: {args.workers}", flush=True)
    t0 = time.perf_counter()
    report = preprocess_mmcif(inputs.raw_dir, layout.pdb_mmcif_dir, inputs.obsolete,
                              inputs.clusters, workers=args.workers,
                              progress=not args.no_progress)
    csv = report.write_errors_csv(layout.pdb_mmcif_dir / MMCIF_SKIPPED_CSV)
    _print_summary("mmCIF", report, csv, time.perf_counter() - t0)
    if inputs.clusters is None:
        print("  NOTE: no cluster file: every pdb_cluster_id is -1, and the training "
              f"selection drops such chains (pass --clusters {CLUSTERS_NAME})", flush=True)
    if report.total == 0:
        print(f"no *.cif / *.cif.gz file under {inputs.raw_dir}", file=sys.stderr)
        return 1
    return 0 if report.succeeded > 0 else 1


def run_preprocess_alignments(args: argparse.Namespace) -> int:
    from .layout import DataLayout
    from .preprocess import preprocess_alignments

    inputs = resolve_alignment_inputs(args.src, args.duplicates)
    layout = DataLayout(Path(args.datadir))
    print(f"alignment folders under {inputs.chains_dir} -> {layout.alignments_dir}", flush=True)
    print(f"  duplicates: {inputs.duplicates or '(none)'}; shards: {args.num_shards}; "
          f"workers: {args.workers}", flush=True)
    t0 = time.perf_counter()
    report = preprocess_alignments(inputs.chains_dir, layout.alignments_dir,
                                   num_shards=args.num_shards, duplicates_file=inputs.duplicates,
                                   workers=args.workers, progress=not args.no_progress)
    csv = report.write_errors_csv(layout.alignments_dir.parent / ALIGNMENTS_SKIPPED_CSV)
    _print_summary("alignments", report, csv, time.perf_counter() - t0)
    if report.total == 0:
        print(f"no chain folder under {inputs.chains_dir}", file=sys.stderr)
        return 1
    return 0 if report.succeeded > 0 else 1


def run_preprocess_all(args: argparse.Namespace) -> int:
    src = Path(args.src)
    if not (src / MMCIF_ORIGINAL).is_dir() or not (src / OPS_ORIGINAL).is_dir():
        raise InputError(f"{src} should hold {MMCIF_ORIGINAL}/ and {OPS_ORIGINAL}/ (the "
                         "reference's download layout); otherwise run preprocess-mmcif and "
                         "preprocess-alignments separately")
    mm = argparse.Namespace(**{**vars(args), "src": src / MMCIF_ORIGINAL})
    al = argparse.Namespace(**{**vars(args), "src": src / OPS_ORIGINAL})
    code = run_preprocess_mmcif(mm)
    return max(code, run_preprocess_alignments(al))


def _print_summary(what: str, report, csv: Path, seconds: float) -> None:
    print(f"{what} done in {seconds:.1f} s: {report.total} inputs, {report.succeeded} "
          f"prepared, {len(report.errors)} skipped, {report.skipped_done} already done "
          "(resumed)", flush=True)
    if report.outputs:
        print("  written: " + ", ".join(f"{k} {v}" for k, v in report.outputs.items()),
              flush=True)
    for name, err in sorted(report.errors.items())[:10]:
        print(f"  SKIPPED {name}: {err}", flush=True)
    if len(report.errors) > 10:
        print(f"  ... and {len(report.errors) - 10} more", flush=True)
    print(f"  skipped inputs and reasons: {csv}", flush=True)


# --------------------------------------------------------------------------- check


@dataclass
class Problem:
    """One finding of the check, naming its file and chain."""

    kind: str  # "fault" (exit status 1) or "warning"
    where: str  # which part of the check found it
    message: str
    chain: str | None = None
    path: str | None = None

    def line(self) -> str:
        parts = [f"[{self.where}]"]
        if self.path:
            parts.append(f"file {self.path}")
        if self.chain:
            parts.append(f"chain {self.chain}")
        return " ".join(parts) + f": {self.message}"


@dataclass
class CheckResult:
    datadir: Path
    funnel: list[tuple[str, int]] = field(default_factory=list)  # train selection steps
    validation: dict = field(default_factory=dict)
    coverage: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def faults(self) -> list[Problem]:
        return [p for p in self.problems if p.kind == "fault"]

    def report(self) -> str:
        lines = [f"dataset check of {self.datadir}"]
        if self.files:
            lines.append("files:")
            lines += [f"  {k}: {v}" for k, v in self.files.items()]
        if self.funnel:
            lines.append("training chains (each filter applied after the ones above):")
            lines += [f"  {name:<46s} {n:>9d}" for name, n in self.funnel]
        if self.validation:
            lines.append("validation chains:")
            lines += [f"  {k}: {v}" for k, v in self.validation.items()]
        if self.coverage:
            lines.append("alignment coverage (chains with a super.index entry):")
            lines += [f"  {k}: {v}" for k, v in self.coverage.items()]
        warnings = [p for p in self.problems if p.kind == "warning"]
        if warnings:
            lines.append(f"warnings ({len(warnings)}):")
            lines += [f"  - {p.line()}" for p in warnings[:50]]
        if self.faults:
            lines.append(f"FAULTS ({len(self.faults)}) - a run on this data would stop or go wrong:")
            lines += [f"  - {p.line()}" for p in self.faults]
        lines.append(f"result: {'FAILED' if self.faults else 'OK'} ({self.seconds:.1f} s)")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "datadir": str(self.datadir), "ok": not self.faults, "files": self.files,
            "funnel": self.funnel, "validation": self.validation, "coverage": self.coverage,
            "problems": [vars(p) for p in self.problems], "seconds": self.seconds,
        }


def _training_funnel(chains, cfg, chain_ids: Sequence[str] | None, index) -> list[tuple[str, int]]:
    """Counts after each of the training filters (selection.filter_training_chains, in
    its order), the --train-chain-ids restriction and the alignment requirement."""
    import numpy as np

    from .selection import _max_aa_frequency

    out = [("rows of chains.csv", len(chains))]
    keep = np.ones(len(chains), dtype=bool)
    dates = chains["release_date"]
    keep &= ((dates >= cfg.min_release_date) & (dates <= cfg.max_release_date)).to_numpy()
    out.append((f"released {cfg.min_release_date}..{cfg.max_release_date}", int(keep.sum())))
    res = chains["resolution"]
    keep &= ((res < cfg.max_resolution) | res.isna()).to_numpy()
    out.append((f"resolution < {cfg.max_resolution:g} A or unknown (NMR)", int(keep.sum())))
    seq = chains["sequence"].fillna("")
    keep &= (seq.str.len().to_numpy() > 0) & (_max_aa_frequency(seq) <= cfg.max_aa_frequency)
    out.append((f"most frequent residue <= {cfg.max_aa_frequency:.0%}", int(keep.sum())))
    keep &= (chains["pdb_cluster_id"] != -1).to_numpy()
    out.append(("in a sequence cluster (pdb_cluster_id != -1)", int(keep.sum())))
    if chain_ids is not None:
        keep &= chains["pdb_chain_id"].isin(set(chain_ids)).to_numpy()
        out.append(("in --train-chain-ids", int(keep.sum())))
    keep &= chains["pdb_chain_id"].isin(index.keys()).to_numpy()
    out.append(("with an alignment entry (training set)", int(keep.sum())))
    return out


def _read_dicts_shard(job: tuple[str, list[tuple[str, str]]]):
    """(shard path, entries, problems) for one dicts/ file: unpickled, every entry's
    fields and atoms decoded, every chain of chains.csv stored there present."""
    from .layout import DataError, _record_problem, decompress_atoms

    path, chains = job
    problems: list[tuple[str, str | None, str]] = []  # (message, chain, path)
    try:
        with open(path, "rb") as f:
            shard = pickle.load(f)
    except OSError as exc:
        return path, 0, [(f"cannot be read: {exc}", None, path)]
    except Exception as exc:  # noqa: BLE001 - any unpickling error of bad bytes
        return path, 0, [(f"unreadable (truncated or corrupt pickle): {exc!r}", None, path)]
    if not isinstance(shard, dict):
        return path, 0, [(f"holds a {type(shard).__name__}, not a dict", None, path)]
    for pdb_id, record in shard.items():
        bad = _record_problem(record)
        if bad is None:
            try:
                decompress_atoms(record["atoms"], pdb_id=pdb_id, path=path)
            except DataError as exc:
                bad = exc.message
        if bad is not None:
            problems.append((f"malformed mmcif dict: {bad}", str(pdb_id), path))
    for pdb_id, chain in chains:
        record = shard.get(pdb_id)
        if record is None:
            problems.append(("entry of chains.csv not in its dicts shard", chain, path))
        elif isinstance(record, dict) and isinstance(record.get("atoms"), dict):
            if chain.split("_", 1)[1] not in record["atoms"]:
                problems.append(("author chain not in the entry's atoms", chain, path))
    return path, len(shard), problems


def _read_alignment_entries(job: tuple[str, list[str], str]):
    """Read and parse every alignment file of the given chains of one shard."""
    from .dataset import read_chain_hits, read_chain_msas
    from .layout import AlignmentDB, DataError

    alignments_dir, chains, queries = job
    db = AlignmentDB(alignments_dir)
    seqs = json.loads(queries)
    problems = []
    for chain in chains:
        try:
            files = db.read(chain)
            shard = str(db.shard_path(chain))
            read_chain_msas(files, chain, shard, query=seqs.get(chain))
            read_chain_hits(files, chain, shard)
        except DataError as exc:
            problems.append((exc.message, exc.chain or chain, exc.path))
    return len(chains), problems


# Fewer jobs than this run in the calling process: a spawned worker imports torch and
# takes seconds to start, more than a small dataset's whole check.
MIN_PARALLEL_JOBS = 8


def _pool(workers: int) -> ProcessPoolExecutor | None:
    """One pool for the file phases."""
    if workers <= 1:
        return None
    return ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"))


def _map(func, jobs: list, pool: ProcessPoolExecutor | None, desc: str, progress: bool):
    from tqdm import tqdm

    if pool is None or len(jobs) < max(2, MIN_PARALLEL_JOBS):
        for job in tqdm(jobs, desc=desc, disable=not progress):
            yield func(job)
        return
    yield from tqdm(pool.map(func, jobs), total=len(jobs), desc=desc, disable=not progress)


def check_datadir(
    datadir: Path,
    *,
    workers: int = 1,
    train_chain_ids: Sequence[str] | None = None,
    val_chain_ids: Sequence[str] | None = None,
    max_release_date: str | None = None,
    prepare_validation: bool = True,
    read_dicts: bool = True,
    read_alignments: bool = False,
    progress: bool = True,
) -> CheckResult:
    """The `scalefold data check` work: check_dataset (layout, chains.csv, selections, every
    validation chain prepared once, in ``workers`` processes) plus every dicts/ file read,
    counts of the training filters, validation presence and alignment coverage."""
    import dataclasses

    from .check import DatasetCheckError, check_dataset
    from .layout import AlignmentDB, DataError, DataLayout, load_chains_csv
    from .selection import (
        TrainingSetConfig,
        ValidationSetConfig,
        load_cameo_targets,
        select_validation_chains,
    )

    t0 = time.perf_counter()
    layout = DataLayout(Path(datadir))
    result = CheckResult(Path(datadir))

    def fault(where: str, exc: DataError) -> None:
        result.problems.append(Problem("fault", where, exc.message, exc.chain, exc.path))

    train_cfg = TrainingSetConfig()
    if max_release_date is not None:
        train_cfg = dataclasses.replace(train_cfg, max_release_date=max_release_date)
    # 1. Layout and tables (cheap; without them nothing else can be checked).
    try:
        layout.check()
        chains = load_chains_csv(layout.chains_csv)
        alignments = AlignmentDB(layout.alignments_dir)
    except DataError as exc:
        fault("layout", exc)
        result.seconds = time.perf_counter() - t0
        return result
    index = alignments.index
    result.files = {
        "chains.csv rows": len(chains),
        "super.index entries": len(index),
        "alignment shards": len({e.get("db") for e in index.values() if isinstance(e, dict)}),
        "dicts shards": len(_dicts_files(layout.dicts_dir)),
    }

    many = (read_dicts and result.files["dicts shards"] >= MIN_PARALLEL_JOBS) or (
        read_alignments and len(index) >= MIN_PARALLEL_JOBS)
    pool = _pool(workers) if many else None
    try:
        _read_files(result, layout, chains, index, pool, read_dicts, read_alignments, progress)
    finally:
        if pool is not None:
            pool.shutdown()

    # 4. Counts: training filters, validation presence, coverage.
    result.funnel = _training_funnel(chains, train_cfg, train_chain_ids, index)
    val_cfg = ValidationSetConfig()
    targets = load_cameo_targets()
    in_window = sum(len(v) for d, v in targets.items()
                    if val_cfg.min_cameo_submission_date <= d <= val_cfg.max_cameo_submission_date)
    if val_chain_ids is None:
        val = select_validation_chains(chains, val_cfg)
        result.validation["CAMEO targets in the window"] = in_window
        result.validation[f"found in chains.csv, length <= {val_cfg.max_sequence_length}"] = len(val)
        val_ids = list(val["pdb_chain_id"])
    else:
        val_ids = list(val_chain_ids)
        result.validation["given (--val-chain-ids)"] = len(val_ids)
    known = set(chains["pdb_chain_id"])
    result.coverage = {
        "chains.csv": _fraction(chains["pdb_chain_id"].isin(index.keys()).sum(), len(chains)),
        "training set before the alignment filter": _fraction(
            result.funnel[-1][1], result.funnel[-2][1]),
        "validation chains": _fraction(sum(c in index for c in val_ids), len(val_ids)),
        "index entries naming no chain of chains.csv": sum(c not in known for c in index),
    }

    # 5. check_dataset: the check every run does (faults that stop a run), validation
    #    chains prepared once each, in worker processes.
    try:
        report = check_dataset(
            layout, train_chain_ids=train_chain_ids, val_chain_ids=val_chain_ids,
            train_selection=train_cfg, prepare_validation=prepare_validation,
            keep_validation_samples=False,
            num_workers=workers if workers > 1 and len(val_ids) >= MIN_PARALLEL_JOBS else 0,
        )
    except DatasetCheckError as exc:
        for f in exc.failures:
            fault("run check", f)
    else:
        result.validation["prepared once without fault"] = (
            report.num_validated if prepare_validation else "skipped (--no-prepare-validation)")
        result.problems += [Problem("warning", "run check", w) for w in report.warnings]
    result.seconds = time.perf_counter() - t0
    return result


def _read_files(result, layout, chains, index, pool, read_dicts, read_alignments, progress):
    # 2. Every dicts/ shard read and decoded; chains.csv entries found in them.
    if read_dicts:
        by_shard: dict[str, list[tuple[str, str]]] = {}
        for pdb_id, chain in zip(chains["pdb_id"], chains["pdb_chain_id"]):
            by_shard.setdefault(str(layout.dicts_dir / pdb_id.lower()[1:3]), []).append(
                (pdb_id.lower(), chain))
        files = sorted(set(_dicts_files(layout.dicts_dir)) | set(by_shard))
        jobs = [(f, by_shard.get(f, [])) for f in files]
        entries = 0
        for path, n, problems in _map(_read_dicts_shard, jobs, pool, "dicts shards",
                                      progress):
            entries += n
            if not Path(path).exists():
                problems = [("dicts shard missing (named by chains.csv entries)",
                             by_shard[path][0][1], path)]
            for message, chain, p in problems:
                result.problems.append(Problem("fault", "dicts", message, chain, p))
        result.files["dicts entries read"] = entries

    # 3. Every alignment entry read and parsed (optional: the full set is ~600 GiB).
    if read_alignments:
        seqs = dict(zip(chains["pdb_chain_id"], chains["sequence"]))
        groups: dict[str, list[str]] = {}
        for chain, entry in index.items():
            db = entry.get("db") if isinstance(entry, dict) else None
            groups.setdefault(str(db), []).append(chain)
        step = 512  # chains per job: a shard's chains spread over the workers
        jobs = [(str(layout.alignments_dir), part,
                 json.dumps({c: seqs[c] for c in part if isinstance(seqs.get(c), str)}))
                for group in groups.values() for part in (
                    group[i : i + step] for i in range(0, len(group), step))]
        read = 0
        for n, problems in _map(_read_alignment_entries, jobs, pool, "alignment entries",
                                progress):
            read += n
            for message, chain, p in problems:
                result.problems.append(Problem("fault", "alignments", message, chain, p))
        result.files["alignment entries read and parsed"] = read


def _dicts_files(dicts_dir: Path) -> list[str]:
    """The shard files of dicts/ (not the temporary files of an interrupted write)."""
    return sorted(str(p) for p in dicts_dir.iterdir() if p.is_file() and p.suffix != ".tmp")


def _fraction(n: int, total: int) -> str:
    return f"{int(n)}/{int(total)}" + (f" ({n / total:.1%})" if total else "")


def _chain_list(text: str) -> tuple[str, ...]:
    return tuple(c for c in text.split(",") if c)


def run_check(args: argparse.Namespace) -> int:
    datadir = Path(args.datadir)
    train_ids, val_ids = args.train_chain_ids, args.val_chain_ids
    split = datadir / "mini_split.json"
    if split.is_file():  # a mini dataset: its split, as `scalefold train` uses it
        names = json.loads(split.read_text())
        train_ids = train_ids if train_ids is not None else tuple(names["train"])
        val_ids = val_ids if val_ids is not None else tuple(names["validation"])
    result = check_datadir(
        datadir, workers=args.workers, train_chain_ids=train_ids, val_chain_ids=val_ids,
        max_release_date=args.max_release_date,
        prepare_validation=not args.no_prepare_validation,
        read_dicts=not args.no_read_dicts, read_alignments=args.read_alignments,
        progress=not args.no_progress,
    )
    print(result.report(), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result.to_json(), indent=1, default=str))
    return 1 if result.faults else 0


# --------------------------------------------------------------------------- parser


def _guard(func):
    """Input errors become a message and exit status 2, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    run.__name__ = func.__name__
    return run


_LAYOUT_OUT = (
    "Writes under DATADIR the official layout (docs/DATA.md): "
    "pdb_mmcif/processed/{chains.csv, dicts/, obsolete.dat} and "
    "open_protein_set/processed/pdb_alignments/{0..N-1.db, super.index}. "
)
_RUN_NOTES = (
    "Runs over --workers processes with a progress bar; resumable: work is written per "
    "shard, atomically (a temporary file renamed into place), with a marker beside it, and "
    "finished shards are skipped when the command runs again on the same input. Bad input "
    "files are skipped and listed with their reason in a CSV; a closing summary counts them."
)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="worker processes (default: all cores, %(default)s here)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _mmcif_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--obsolete", type=Path, default=None,
                   help=f"wwPDB {OBSOLETE_NAME} (default: SRC/{OBSOLETE_NAME})")
    p.add_argument("--no-obsolete", action="store_true",
                   help=f"write an {OBSOLETE_NAME} without entries (no template id replaced)")
    p.add_argument("--clusters", type=Path, default=None,
                   help=f"RCSB {CLUSTERS_NAME} (default: SRC/{CLUSTERS_NAME}); without "
                        "one every pdb_cluster_id is -1 and no chain is selected for training")


def _alignment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-shards", type=int, default=10,
                   help="alignment .db shards (default 10, as the reference)")
    p.add_argument("--duplicates", type=Path, default=None,
                   help=f"OpenProteinSet {DUPLICATES_NAME}: identical chains per line share "
                        f"one folder's alignments (default: SRC/{DUPLICATES_NAME})")


def add_data_commands(data_sub: argparse._SubParsersAction) -> None:
    """Add the preprocessing and check subcommands to the ``scalefold data`` group."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = data_sub.add_parser(
        "preprocess-mmcif", formatter_class=fmt,
        help="mmCIF files -> pdb_mmcif/processed (dicts/, chains.csv, obsolete.dat)",
        description=(
            "Parse every *.cif / *.cif.gz under SRC into the reference's mmcif dicts. "
            f"SRC is the reference download's pdb_mmcif/original (raw/<xx>/<id>.cif.gz, "
            f"{CLUSTERS_NAME}, {OBSOLETE_NAME}), the download root holding it, or any tree "
            "of mmCIF files (e.g. raw/ or an mmcif_files/ folder; then pass --obsolete and "
            "--clusters). Writes DATADIR/pdb_mmcif/processed/: dicts/<id[1:3]> (pickled "
            "{pdb_id: mmcif_dict}, atoms zlib-compressed), chains.csv (one row per protein "
            "chain), obsolete.dat (copied), and " + MMCIF_SKIPPED_CSV + " (file, reason). "
            + _RUN_NOTES))
    p.add_argument("src", type=Path, help="mmCIF source folder (see above)")
    p.add_argument("datadir", type=Path, help="root of the official layout to write")
    _mmcif_args(p)
    _common(p)
    p.set_defaults(func=_guard(run_preprocess_mmcif))

    p = data_sub.add_parser(
        "preprocess-alignments", formatter_class=fmt,
        help="OpenProteinSet per-chain folders -> pdb_alignments (N.db + super.index)",
        description=(
            "Pack the per-chain alignment folders into the reference's sharded database. "
            "SRC is the reference download's open_protein_set/original (pdb/<pdb_chain_id>/"
            "{a3m/uniref90_hits.a3m, a3m/bfd_uniclust_hits.a3m, a3m/mgnify_hits.a3m, "
            f"hhr/pdb70_hits.hhr}} and {DUPLICATES_NAME}), the download root holding it, or "
            "a folder of <pdb_chain_id>/ folders. Writes DATADIR/open_protein_set/processed/"
            "pdb_alignments/: 0.db .. N-1.db (the files' bytes, concatenated; a chain's shard "
            "is a hash of its id) and super.index (JSON: chain -> {db, files: [[name, "
            "offset, size]]}), and open_protein_set/processed/" + ALIGNMENTS_SKIPPED_CSV
            + ". " + _RUN_NOTES))
    p.add_argument("src", type=Path, help="alignment source folder (see above)")
    p.add_argument("datadir", type=Path, help="root of the official layout to write")
    _alignment_args(p)
    _common(p)
    p.set_defaults(func=_guard(run_preprocess_alignments))

    p = data_sub.add_parser(
        "preprocess", formatter_class=fmt,
        help="the reference's download root -> the whole official layout",
        description=(
            f"preprocess-mmcif on SRC/{MMCIF_ORIGINAL} and preprocess-alignments on "
            f"SRC/{OPS_ORIGINAL} (the tree the reference's download_pdb_mmcif.sh and "
            "download_open_protein_set.sh write). " + _LAYOUT_OUT + _RUN_NOTES
            + " Then run `scalefold data check DATADIR`."))
    p.add_argument("src", type=Path, help="download root (holding pdb_mmcif/ and "
                   "open_protein_set/)")
    p.add_argument("datadir", type=Path, help="root of the official layout to write")
    _mmcif_args(p)
    _alignment_args(p)
    _common(p)
    p.set_defaults(func=_guard(run_preprocess_all))

    p = data_sub.add_parser(
        "check", formatter_class=fmt,
        help="is DATADIR ready for a run? (exit status 1 on a fault)",
        description=(
            "Check the official layout under DATADIR before a run and print a report: the "
            "files (layout present; chains.csv, obsolete.dat and super.index readable; every "
            "dicts/ shard unpickled and every entry decoded; with --read-alignments every "
            "alignment entry read and parsed), the number of training chains left after "
            "each filter (release date, resolution, low complexity, cluster, alignments), "
            "the validation chains (CAMEO targets found, each prepared once as evaluation "
            "prepares it), and the alignment coverage. It runs the dataset check every "
            "training run does before run_start (scalefold.data.check_dataset). Exit status "
            "0: no fault; 1: faults, each printed with its file and chain; 2: bad arguments. "
            "A mini dataset (mini_split.json) is checked with its split."))
    p.add_argument("datadir", type=Path, help="root of the official layout")
    p.add_argument("--train-chain-ids", type=_chain_list, default=None,
                   help="comma-separated: restrict training to these (as `scalefold train`)")
    p.add_argument("--val-chain-ids", type=_chain_list, default=None,
                   help="comma-separated: validate exactly these (default: the CAMEO selection)")
    p.add_argument("--max-release-date", default=None,
                   help="last training release date (default: the benchmark's 2021-09-16)")
    p.add_argument("--no-prepare-validation", action="store_true",
                   help="skip preparing the validation chains (~1 s each per core)")
    p.add_argument("--no-read-dicts", action="store_true",
                   help="do not read every dicts/ shard (15 GiB on the full dataset)")
    p.add_argument("--read-alignments", action="store_true",
                   help="also read and parse every alignment entry (~600 GiB: hours)")
    p.add_argument("--json", default=None, help="also write the report here as JSON")
    _common(p)
    p.set_defaults(func=_guard(run_check))


__all__ = ["add_data_commands", "check_datadir", "default_workers"]
