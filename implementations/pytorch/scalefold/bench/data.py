"""`scalefold bench data`: the data pipeline's two speed figures.

Measurements: docs/perf-log/2026-11-29_data-pipeline.md.

``prep``: time to prepare one training sample (``ChainDataset[(index, seed)]``: read the
structure and alignments, parse, merge MSAs, templates with Kalign, ground truth, the MSA
transforms for R recycling iterations, crop/pad) on ONE CPU core at the benchmark's shapes,
over the chains of a dataset (the embedded mini dataset by default), several seeds each.
The mini dataset's synthetic MSAs are shallow (about 170 merged rows) while real
OpenProteinSet MSAs hold thousands, so synthetic deep-MSA cases are added: the longest
chains with a uniref90 a3m of N synthetic rows, generated in-process by the mini dataset's
own generator and fed through the same reading/parsing path. Its chains are at most
about 280 residues long; ``deep_residues`` lengthens the deep cases' chains (sequence
and atoms repeated, the MSA generated for the longer sequence) to time longer chains.

``loaders``: PT (in-order) vs PQ (priority-queue) on ``SkewedDelayDataset`` with a skewed
per-sample time (log-normal body plus a tail of 20-50x slower samples, as long chains with
deep MSAs are) and a simulated fixed GPU step per batch. The consumer sleeps for the GPU
step (a GPU step leaves the host idle) and measures how long it waits for each batch.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

STAGES = ("read", "parse", "templates", "msa", "ground_truth", "other")
STAGE_HELP = {
    "read": "mmCIF dict shard + alignment shard bytes (zlib, unpickle)",
    "parse": "a3m/hhr parsing, MSA merge and de-duplication",
    "templates": "hhr prefilter, Kalign realignment, template atoms, torsions, pseudo-beta",
    "msa": "profile, sparse form, cluster sampling, BERT masking, assignment, summaries (x R)",
    "ground_truth": "atom14/frames/chi/pseudo-beta ground truth (float64, full chain)",
    "other": "crop, pad, stack over R, tensor conversion",
}


# --------------------------------------------------------------------------- prep


@dataclass(frozen=True)
class PrepConfig:
    data_dir: Path
    seeds: int = 3  # samples per chain (different crops, templates, MSA draws)
    chains: tuple[str, ...] | None = None  # None: the dataset's training + validation split
    deep_rows: tuple[int, ...] = (2048, 8192, 16384)  # synthetic uniref90 rows of the deep cases
    deep_chains: int = 2  # the longest chains get the deep cases
    deep_residues: int = 0  # > 0: the deep cases' chains repeated up to this many residues
    threads: int = 1
    crop_size: int = 256
    num_recycling_iters: int = 3  # R = 4
    max_templates: int = 4
    breakdown: bool = True


@dataclass
class PrepCase:
    name: str
    chain: str
    residues: int
    msa_rows: int  # merged, de-duplicated rows (query included)
    times: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)


class _DeepAlignments:
    """Alignment DB whose uniref90 a3m of one chain is a synthetic deep MSA; with
    ``only_msa`` its other MSA files are left out (they fit the chain's original length,
    not a lengthened one)."""

    def __init__(self, base, chain: str, a3m: str, only_msa: bool = False) -> None:
        self._base, self._chain, self._a3m, self._only = base, chain, a3m, only_msa

    def __getattr__(self, name):
        return getattr(self._base, name)

    def read(self, chain_id: str) -> dict[str, str]:
        files = self._base.read(chain_id)
        if chain_id == self._chain:
            if self._only:
                files = {k: v for k, v in files.items() if not k.endswith((".a3m", ".sto"))}
            files = {**files, "uniref90_hits.a3m": self._a3m}
        return files


class _LongChainStore:
    """Structure store whose atoms of one chain are repeated up to ``length`` residues,
    each copy shifted 100 A along x (copies apart; geometry within a copy unchanged)."""

    def __init__(self, base, pdb_id: str, author_chain_id: str, length: int) -> None:
        self._base, self._key, self._length = base, (pdb_id, author_chain_id), length

    def __getattr__(self, name):
        return getattr(self._base, name)

    def chain_atoms(self, pdb_id: str, author_chain_id: str):
        record, positions, mask = self._base.chain_atoms(pdb_id, author_chain_id)
        if (pdb_id, author_chain_id) != self._key:
            return record, positions, mask
        copies = -(-self._length // positions.shape[0])
        shift = np.zeros(3, dtype=positions.dtype)
        shift[0] = 100.0
        positions = np.concatenate([positions + k * shift for k in range(copies)])
        mask = np.concatenate([mask] * copies)
        return record, positions[: self._length], mask[: self._length]


def _lengthen(ds, index: int, length: int) -> str:
    """Make chain ``index`` of ``ds`` ``length`` residues long (its sequence and atoms
    repeated); returns the new sequence. Its template hits stay those of the original
    sequence, which is the new one's first part."""
    rec = ds.records[index]
    sequence = rec["sequence"]
    sequence = (sequence * -(-length // len(sequence)))[:length]
    ds.records[index] = {**rec, "sequence": sequence}
    ds.store = _LongChainStore(ds.store, rec["pdb_id"], rec["author_chain_id"], length)
    return sequence


class _StageClock:
    """Wraps the pipeline's stage functions with timers for one sample at a time.

    Patching keeps the timed path exactly the training path (no copy of
    ChainDataset.raw_chain here to drift from it); the wrappers cost microseconds.
    """

    def __init__(self, ds) -> None:
        from scalefold.data import dataset as dataset_mod
        from scalefold.data import features as features_mod
        from scalefold.data import msa as msa_mod

        self.spent: dict[str, float] = defaultdict(float)
        self._targets = [
            (ds.store, "chain_atoms", "read"),
            (ds.alignments, "read", "read"),
            (dataset_mod, "read_chain_msas", "parse"),
            (dataset_mod, "merge_msas", "parse"),
            (dataset_mod, "parse_hhr", "parse"),
            (ds.template_featurizer, "features", "templates"),
            (features_mod, "_template_features", "templates"),
            (features_mod, "_structure_features", "ground_truth"),
            (features_mod, "_msa_iteration", "msa"),
            (features_mod, "_msa_per_sample", "msa"),
            (msa_mod, "block_delete", "msa"),
        ]
        self._saved: list[tuple[object, str, object, bool]] = []

    def _wrap(self, fn, stage: str):
        spent = self.spent

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[stage] += time.perf_counter() - t0

        return timed

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        for obj, name, stage in self._targets:
            own = name in vars(obj)
            self._saved.append((obj, name, vars(obj).get(name), own))
            setattr(obj, name, self._wrap(getattr(obj, name), stage))
        try:
            yield
        finally:
            for obj, name, old, own in reversed(self._saved):
                if own:
                    setattr(obj, name, old)
                else:  # an instance attribute shadowing a method: remove it again
                    delattr(obj, name)
            self._saved.clear()


def _clear_shard_caches(ds) -> None:
    # A worker on the 600 GiB set almost never finds a sample's shard in its 8-shard LRU;
    # on the 4-entry mini dataset it always would, which would hide the read cost.
    ds.store._cache.clear()
    ds.template_featurizer.store._cache.clear()


def _percentile(xs: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def _time_sample(ds, index: int, seed: int, clock: _StageClock | None) -> tuple[float, dict]:
    _clear_shard_caches(ds)
    if clock is None:
        t0 = time.perf_counter()
        ds[(index, seed)]
        return time.perf_counter() - t0, {}
    clock.spent.clear()
    with clock.installed():
        t0 = time.perf_counter()
        ds[(index, seed)]
        total = time.perf_counter() - t0
    stages = dict(clock.spent)
    stages["other"] = total - sum(stages.values())
    return total, stages


def _datasets(cfg: PrepConfig):
    from scalefold.data.dataset import ChainDataset
    from scalefold.data.features import FeatureConfig
    from scalefold.data.layout import DataLayout, load_chains_csv
    from scalefold.data.msa import MsaConfig

    layout = DataLayout(Path(cfg.data_dir))
    chains = cfg.chains
    if chains is None:
        split = json.loads((Path(cfg.data_dir) / "mini_split.json").read_text())
        chains = tuple(split["train"]) + tuple(split["validation"])
    all_chains = load_chains_csv(layout.chains_csv)
    rows = all_chains.set_index("pdb_chain_id", drop=False).loc[list(chains)]
    features = FeatureConfig(
        mode="train", crop_size=cfg.crop_size, num_recycling_iters=cfg.num_recycling_iters,
        max_templates=cfg.max_templates, msa=MsaConfig(max_msa_clusters=124, max_extra_msa=1024),
    )
    # Training-mode templates (top-20 shuffled by the seed), as the training loader sees them.
    return layout, rows.reset_index(drop=True), all_chains, features, ChainDataset


def run_prep(cfg: PrepConfig) -> tuple[list[PrepCase], list[float]]:
    from scalefold.data.mini import synthetic_a3m

    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        layout, rows, all_chains, features, chain_dataset = _datasets(cfg)
        ds = chain_dataset(layout, rows, all_chains, features)
        clock = _StageClock(ds) if cfg.breakdown else None
        ds[(0, 0)]  # first-call costs (imports, Kalign start-up, allocator) are not a sample's
        cases = []
        for i in range(len(ds)):
            raw = ds.raw_chain(i, 0)
            case = PrepCase("mini", ds.chain_id(i), len(raw.sequence), raw.msa.shape[0])
            for s in range(cfg.seeds):
                t, stages = _time_sample(ds, i, 1000 * s + i, clock)
                case.times.append(t)
                for k, v in stages.items():
                    case.stages.setdefault(k, []).append(v)
            cases.append(case)
        longest = sorted(range(len(ds)), key=lambda i: -len(ds.records[i]["sequence"]))
        picked: list[int] = []
        for i in longest:  # distinct sequences: identical chains would repeat a case
            if all(ds.records[i]["sequence"] != ds.records[j]["sequence"] for j in picked):
                picked.append(i)
            if len(picked) == cfg.deep_chains:
                break
        for rows_n in cfg.deep_rows:
            for i in picked:
                chain = ds.chain_id(i)
                deep = chain_dataset(layout, rows, all_chains, features)
                sequence = ds.records[i]["sequence"]
                if cfg.deep_residues > 0:
                    sequence = _lengthen(deep, i, cfg.deep_residues)
                a3m = synthetic_a3m(sequence, rows_n, rows_n + i, f"{chain} deep benchmark case")
                deep.alignments = _DeepAlignments(deep.alignments, chain, a3m,
                                                  only_msa=cfg.deep_residues > 0)
                deep_clock = _StageClock(deep) if cfg.breakdown else None
                raw = deep.raw_chain(i, 0)
                case = PrepCase(f"deep {rows_n}", chain, len(raw.sequence), raw.msa.shape[0])
                for s in range(cfg.seeds):
                    t, stages = _time_sample(deep, i, 1000 * s + i, deep_clock)
                    case.times.append(t)
                    for k, v in stages.items():
                        case.stages.setdefault(k, []).append(v)
                cases.append(case)
        return cases, kalign_pair_seconds(ds, picked, cfg.seeds)
    finally:
        torch.set_num_threads(threads)


def kalign_pair_seconds(ds, picked: list[int], repeats: int) -> list[float]:
    """Seconds of one Kalign realignment (the two longest distinct chains).

    The mini dataset's hit sequences are always found in their template structures, so
    its samples never realign; a real sample realigns up to max_templates hits.
    """
    if len(picked) < 2:
        return []
    pair = [ds.records[i]["sequence"] for i in picked[:2]]
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ds.template_featurizer.kalign.align(pair)
        out.append(time.perf_counter() - t0)
    return out


def format_prep(cases: list[PrepCase], cfg: PrepConfig, kalign: Sequence[float] = ()) -> str:
    lines = [
        f"sample preparation, {cfg.threads} thread(s), crop {cfg.crop_size}, 124 clusters + "
        f"1024 extra rows, {cfg.max_templates} templates, R={cfg.num_recycling_iters + 1}, "
        f"{cfg.seeds} seeds per chain",
        "",
        "| case | chains | residues | MSA rows | samples | median s | p95 s | max s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[str, list[PrepCase]] = defaultdict(list)
    for c in cases:
        groups[c.name].append(c)
    for name, group in groups.items():
        times = [t for c in group for t in c.times]
        res = [c.residues for c in group]
        rows = [c.msa_rows for c in group]
        lines.append(
            f"| {name} | {len(group)} | {min(res)}-{max(res)} | {min(rows)}-{max(rows)} | "
            f"{len(times)} | {statistics.median(times):.3f} | {_percentile(times, 95):.3f} | "
            f"{max(times):.3f} |"
        )
    if any(c.stages for c in cases):
        lines += ["", "median seconds per stage (per sample)", "",
                  "| case | " + " | ".join(STAGES) + " |",
                  "|---|" + "---|" * len(STAGES)]
        for name, group in groups.items():
            cells = []
            for stage in STAGES:
                xs = [v for c in group for v in c.stages.get(stage, [])]
                cells.append(f"{statistics.median(xs):.3f}" if xs else "-")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += [""] + [f"- {k}: {v}" for k, v in STAGE_HELP.items()]
    if kalign:
        lines += ["", f"Kalign realignment of one hit (longest two chains, subprocess): median "
                  f"{statistics.median(kalign):.3f} s; the mini dataset's samples need none, a real one "
                  f"up to {cfg.max_templates}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- loaders


@dataclass(frozen=True)
class LoaderBenchConfig:
    samples: int = 200  # positions in the rank's list (= steps at batch size 1)
    batch_size: int = 1  # per rank, as in the benchmark
    num_workers: int = 4
    window: int = 16
    gpu_step_s: float = 0.1
    median_s: float = 0.05  # median sample preparation time
    sigma: float = 0.5  # log-normal spread of the body
    tail_fraction: float = 0.05
    tail_factor: tuple[float, float] = (20.0, 50.0)  # tail samples are this much slower
    repeats: int = 3
    seed: int = 0
    settle_s: float = 5.0  # after the first batch, before the clock starts (see _consume)


def skewed_times(cfg: LoaderBenchConfig, seed: int) -> list[float]:
    """Per-sample seconds: log-normal around median_s, a few 20-50x slower."""
    rng = np.random.default_rng(seed)
    times = cfg.median_s * rng.lognormal(0.0, cfg.sigma, cfg.samples)
    tail = rng.random(cfg.samples) < cfg.tail_fraction
    times[tail] = cfg.median_s * rng.uniform(*cfg.tail_factor, int(tail.sum()))
    return times.tolist()


@dataclass
class LoaderRun:
    loader: str
    repeat: int
    steps: int
    seconds: float
    waited: float

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds

    @property
    def idle(self) -> float:
        return self.waited / self.seconds


def _consume(loader, gpu_step_s: float, settle_s: float = 0.0) -> tuple[int, float, float]:
    """(steps, seconds, seconds waited) after the first batch and ``settle_s``.

    Worker start-up happens once per run, not per step: the pool spawns all workers at
    once and the first batch arrives when the first one has imported torch, while the
    others still compete for the CPU. The settle time lets them all start (the window
    fills meanwhile, as it is full in steady state whenever workers outpace the GPU).
    """
    it = iter(loader)
    next(it)
    time.sleep(settle_s)
    start = time.perf_counter()
    waited, steps = 0.0, 0
    while True:
        time.sleep(gpu_step_s)  # the GPU step of the batch in hand
        steps += 1
        end = time.perf_counter()
        try:
            next(it)
        except StopIteration:  # that call only shut the pool down: not GPU idle time
            break
        waited += time.perf_counter() - end
    return steps, end - start, waited


def run_loaders(cfg: LoaderBenchConfig) -> list[LoaderRun]:
    from scalefold.data.loaders import (
        InOrderLoader,
        LoaderConfig,
        PriorityQueueLoader,
        SkewedDelayDataset,
    )
    from scalefold.data.selection import RecyclingSchedule

    runs = []
    for r in range(cfg.repeats):
        times = skewed_times(cfg, cfg.seed + r)
        pairs = [(i, i) for i in range(cfg.samples)]
        # Alternate which loader goes first, so drift in machine load hits both alike.
        order = [("PT", InOrderLoader), ("PQ", PriorityQueueLoader)]
        for name, cls in order if r % 2 == 0 else order[::-1]:
            loader = cls(
                SkewedDelayDataset(times), pairs, RecyclingSchedule(seed=cfg.seed),
                LoaderConfig(batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                             window=cfg.window),
            )
            steps, seconds, waited = _consume(loader, cfg.gpu_step_s, cfg.settle_s)
            runs.append(LoaderRun(name, r, steps, seconds, waited))
    return runs


def format_loaders(runs: list[LoaderRun], cfg: LoaderBenchConfig) -> str:
    times = skewed_times(cfg, cfg.seed)
    mean = statistics.fmean(times)
    lines = [
        f"PT vs PQ: {cfg.samples} samples, batch {cfg.batch_size}, {cfg.num_workers} workers, "
        f"window {cfg.window}, simulated GPU step {cfg.gpu_step_s * 1e3:.0f} ms, "
        f"{cfg.repeats} repeats, clock from the first batch + {cfg.settle_s:g} s settle",
        f"sample times: median {statistics.median(times) * 1e3:.0f} ms, mean {mean * 1e3:.0f} ms, "
        f"p95 {_percentile(times, 95) * 1e3:.0f} ms, max {max(times) * 1e3:.0f} ms "
        f"(log-normal sigma {cfg.sigma}, {cfg.tail_fraction:.0%} at "
        f"{cfg.tail_factor[0]:.0f}-{cfg.tail_factor[1]:.0f}x the median); worker supply "
        f"{cfg.num_workers / mean:.1f} samples/s vs GPU demand "
        f"{cfg.batch_size / cfg.gpu_step_s:.1f} samples/s",
        "",
        "| loader | steps/s (median) | GPU idle (median) | steps/s per repeat | idle per repeat |",
        "|---|---|---|---|---|",
    ]
    med: dict[str, tuple[float, float]] = {}
    for name in ("PT", "PQ"):
        rs = [r for r in runs if r.loader == name]
        sps = [r.steps_per_s for r in rs]
        idle = [r.idle for r in rs]
        med[name] = (statistics.median(sps), statistics.median(idle))
        lines.append(
            f"| {name} | {med[name][0]:.2f} | {med[name][1]:.1%} | "
            f"{', '.join(f'{x:.2f}' for x in sps)} | {', '.join(f'{x:.1%}' for x in idle)} |"
        )
    lines += [
        "",
        f"PQ/PT steps/s: {med['PQ'][0] / med['PT'][0]:.2f}x; "
        f"ideal (never waiting): {1.0 / cfg.gpu_step_s:.2f} steps/s",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- entry


def main_prep(cfg: PrepConfig, json_path: str | None = None) -> int:
    cases, kalign = run_prep(cfg)
    print(format_prep(cases, cfg, kalign), flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps(
            {"config": {**asdict(cfg), "data_dir": str(cfg.data_dir)},
             "torch": torch.__version__, "kalign_pair_s": kalign,
             "cases": [asdict(c) for c in cases]},
            indent=1))
    return 0


def main_loaders(cfg: LoaderBenchConfig, json_path: str | None = None) -> int:
    runs = run_loaders(cfg)
    print(format_loaders(runs, cfg), flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps(
            {"config": asdict(cfg), "torch": torch.__version__,
             "runs": [{**asdict(r), "steps_per_s": r.steps_per_s, "idle": r.idle}
                      for r in runs]},
            indent=1))
    return 0


__all__ = ["LoaderBenchConfig", "PrepConfig", "main_loaders", "main_prep"]
