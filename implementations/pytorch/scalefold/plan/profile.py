"""Measured profiles: what one GPU of a kind does, read from one JSON schema.

Schema `scalefold-plan-profile/1` (docs/PLAN.md has the full description): `device`,
`gpu` (the kind: "h100", "h200"), `date`, and the sections `step` (per speed preset:
`per_n_s` for n = 0..3 recycling iterations, `peak_mem_gib`), `trainer`
(`step_over_bench_step`, `multi_rank_step_over_bench_step`, `boundary_s`), `startup`
(`timed_s`, `warmup_s`), `dp` (`world_sizes`, `step_s`), `dap` (`sizes`, `step_s`,
`peak_mem_gib`, `variant`), `eval` (schema `scalefold-plan-eval/1`), `eval_presets`
(preset name -> an `eval` entry, for presets whose evaluation levers differ from the
`eval` entry's), `data` (`prep_median_s`, `prep_p95_s`). Every section names its `source`
and `date`; `"measured": false` marks an assumption.

The benches' own `--json` outputs convert into sections (`section_from_bench`), so a
profile can be refreshed from new measurements without editing it by hand.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

PROFILE_SCHEMA = "scalefold-plan-profile/1"
EVAL_SCHEMA = "scalefold-plan-eval/1"
BENCH_KINDS = ("step", "train", "dp", "dap", "eval", "data")
VALIDATION_CHAINS = 180  # the benchmark's CAMEO validation set


@dataclass(frozen=True)
class StepProfile:
    preset: str
    per_n_s: tuple[float, float, float, float]  # n = 0..3 recycling iterations
    peak_mem_gib: float
    source: str = ""
    date: str = ""

    @property
    def avg_s(self) -> float:
        """The benchmark's mean step: n is drawn uniformly from 0..3."""
        return statistics.fmean(self.per_n_s)


@dataclass(frozen=True)
class EvalProfile:
    """Evaluations of a known set of chains on `ranks` GPUs."""

    seconds_per_evaluation: tuple[float, ...]  # in run order; the first may hold warm-up
    lengths: tuple[int, ...]  # residues of the chains evaluated
    ranks: int = 1
    chain_seconds: tuple[float | None, ...] = ()  # per chain where measured
    peak_mem_gib: float | None = None
    source: str = ""
    date: str = ""
    preset: str = ""  # the speed preset (evaluation levers) measured; "" = any
    # The chains stand for the whole validation set (in its order), not a sample of lengths.
    validation_set: bool = False
    lengths_assumed: bool = False  # their lengths are an assumption (synthetic chains)

    @property
    def per_chain_measured(self) -> bool:
        return bool(self.chain_seconds) and all(s is not None for s in self.chain_seconds)

    @property
    def steady_s(self) -> float:
        return self.seconds_per_evaluation[-1]

    @property
    def first_extra_s(self) -> float:
        return max(0.0, self.seconds_per_evaluation[0] - self.steady_s)


@dataclass(frozen=True)
class Profile:
    device: str
    gpu: str
    date: str
    steps: dict[str, StepProfile]
    trainer_ratio: float = 1.0
    # The trainer's multi-rank path (torchrun, flat gradient sync, CUDA graphs) over
    # `bench step`; None: not measured, the single-process ratio is used for every shape.
    multi_rank_ratio: float | None = None
    boundary_s: float = 0.0
    timed_startup_s: float = 0.0
    warmup_s: float = 0.0
    dp_sizes: tuple[int, ...] = ()
    dp_step_s: tuple[float, ...] = ()
    dap_sizes: tuple[int, ...] = ()
    dap_step_s: tuple[float, ...] = ()
    dap_peak_mem_gib: tuple[float, ...] = ()
    dap_variant: str = ""
    eval: EvalProfile | None = None
    eval_presets: dict[str, EvalProfile] = field(default_factory=dict)
    prep_median_s: float | None = None
    prep_p95_s: float | None = None
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    assumed: tuple[str, ...] = ()  # sections marked "measured": false
    path: str = ""

    def step(self, preset: str) -> StepProfile:
        if preset not in self.steps:
            raise ValueError(f"profile {self.path or self.device}: no step for preset "
                             f"{preset!r} (has {', '.join(sorted(self.steps))})")
        return self.steps[preset]

    def eval_for(self, preset: str, asynchronous: bool = False) -> EvalProfile | None:
        """The evaluation measured with the levers `preset` evaluates with, else the main
        one. A preset's own entry is a training rank's evaluation (synchronous); on ranks
        that only evaluate (`asynchronous`) a preset with `eval_plain_beside_training`
        keeps all its evaluation levers, those of the main measurement (`h100`'s are
        `h200`'s: tests/plan check it)."""
        from scalefold.train.config import PRESETS

        if (asynchronous and preset in PRESETS
                and PRESETS[preset].speed.eval_plain_beside_training):
            return self.eval
        return self.eval_presets.get(preset, self.eval)

    def validation_lengths(self) -> tuple[int, ...] | None:
        """The validation set's chain lengths in its order, where the profile's main
        evaluation ran the whole set (assumed or real lengths)."""
        if self.eval is not None and self.eval.validation_set:
            return self.eval.lengths
        return None

    @property
    def dp_overhead_s(self) -> float:
        """Measured cost of the gradient all-reduce between two GPUs of one host."""
        if 1 in self.dp_sizes and 2 in self.dp_sizes:
            one = self.dp_step_s[self.dp_sizes.index(1)]
            two = self.dp_step_s[self.dp_sizes.index(2)]
            return max(0.0, two - one)
        return 0.0

    @property
    def dap_replicated_memory_share(self) -> float | None:
        """Share of the one-GPU peak that DAP does not divide, from a DAP-1/DAP-P pair:
        mem(P) = mem(1) * (r + (1 - r) / P)."""
        if 1 not in self.dap_sizes or len(self.dap_sizes) < 2 or not self.dap_peak_mem_gib:
            return None
        m1 = self.dap_peak_mem_gib[self.dap_sizes.index(1)]
        p = max(self.dap_sizes)
        mp = self.dap_peak_mem_gib[self.dap_sizes.index(p)]
        return min(1.0, max(0.0, (mp / m1 - 1 / p) / (1 - 1 / p)))


def shipped_profiles() -> dict[str, Path]:
    root = resources.files("scalefold.plan") / "profiles"
    return {p.name.removesuffix(".json"): Path(str(p)) for p in root.iterdir()
            if p.name.endswith(".json")}


def default_profile_path() -> Path:
    shipped = shipped_profiles()
    return shipped[sorted(shipped)[-1]]


def _req(d: dict, key: str, where: str):
    if key not in d:
        raise ValueError(f"{where}: missing field '{key}'")
    return d[key]


def _eval_from_dict(d: dict, where: str) -> EvalProfile:
    if d.get("schema", EVAL_SCHEMA) != EVAL_SCHEMA:
        raise ValueError(f"{where}: schema {d.get('schema')!r}, expected {EVAL_SCHEMA!r}")
    secs = _req(d, "seconds_per_evaluation", where)
    secs = tuple(float(s) for s in (secs if isinstance(secs, list) else [secs]))
    chains = _req(d, "chains", where)
    if not secs or not chains:
        raise ValueError(f"{where}: needs at least one evaluation and one chain")
    lengths = tuple(int(_req(c, "length", f"{where} chain {i}")) for i, c in enumerate(chains))
    if min(lengths) < 1 or min(secs) <= 0:
        raise ValueError(f"{where}: lengths and seconds must be > 0")
    return EvalProfile(
        seconds_per_evaluation=secs, lengths=lengths, ranks=int(d.get("ranks", 1)),
        chain_seconds=tuple(c.get("seconds") for c in chains),
        peak_mem_gib=d.get("peak_mem_gib"), source=d.get("source", ""),
        date=d.get("date", ""), preset=d.get("preset", ""),
        validation_set=bool(d.get("validation_set", False)),
        lengths_assumed=d.get("lengths_source") == "assumed")


def profile_from_dict(raw: dict, where: str = "profile") -> Profile:
    """A Profile from schema `scalefold-plan-profile/1`; errors name the field."""
    if raw.get("schema") != PROFILE_SCHEMA:
        raise ValueError(f"{where}: schema {raw.get('schema')!r}, expected {PROFILE_SCHEMA!r}")
    steps = {}
    for preset, s in _req(raw, "step", where).items():
        w = f"{where} step.{preset}"
        per_n = tuple(float(x) for x in _req(s, "per_n_s", w))
        if len(per_n) != 4 or min(per_n) <= 0:
            raise ValueError(f"{w}: per_n_s must be 4 positive times (n = 0..3)")
        steps[preset] = StepProfile(preset, per_n, float(_req(s, "peak_mem_gib", w)),
                                    s.get("source", ""), s.get("date", ""))
    if not steps:
        raise ValueError(f"{where}: 'step' holds no preset")
    sources = {f"step.{k}": f"{v.source} ({v.date})" for k, v in steps.items()}
    assumed = [f"step.{k}" for k, v in raw["step"].items() if v.get("measured", True) is False]
    kw: dict = {}
    for name in ("trainer", "startup", "dp", "dap", "eval", "data"):
        sec = raw.get(name)
        if sec is None:
            continue
        sources[name] = f"{sec.get('source', '')} ({sec.get('date', raw.get('date', ''))})"
        if sec.get("measured", True) is False:
            assumed.append(name)
    if "trainer" in raw:
        t = raw["trainer"]
        kw["trainer_ratio"] = float(t.get("step_over_bench_step", 1.0))
        if t.get("multi_rank_step_over_bench_step") is not None:
            kw["multi_rank_ratio"] = float(t["multi_rank_step_over_bench_step"])
            sources["trainer.multi_rank"] = t.get("multi_rank_source", sources["trainer"])
        kw["boundary_s"] = float(t.get("boundary_s", 0.0))
    if "startup" in raw:
        kw["timed_startup_s"] = float(raw["startup"].get("timed_s", 0.0))
        kw["warmup_s"] = float(raw["startup"].get("warmup_s", 0.0))
    if "dp" in raw:
        d = raw["dp"]
        kw["dp_sizes"] = tuple(int(x) for x in _req(d, "world_sizes", f"{where} dp"))
        kw["dp_step_s"] = tuple(float(x) for x in _req(d, "step_s", f"{where} dp"))
    if "dap" in raw:
        d = raw["dap"]
        kw["dap_sizes"] = tuple(int(x) for x in _req(d, "sizes", f"{where} dap"))
        kw["dap_step_s"] = tuple(float(x) for x in _req(d, "step_s", f"{where} dap"))
        kw["dap_peak_mem_gib"] = tuple(float(x) for x in d.get("peak_mem_gib", ()))
        kw["dap_variant"] = d.get("variant", "")
    if "eval" in raw:
        kw["eval"] = _eval_from_dict(raw["eval"], f"{where} eval")
    if "eval_presets" in raw:
        kw["eval_presets"] = {
            name: _eval_from_dict(e, f"{where} eval_presets.{name}")
            for name, e in raw["eval_presets"].items()}
        for name, e in raw["eval_presets"].items():
            sources[f"eval_presets.{name}"] = f"{e.get('source', '')} ({e.get('date', '')})"
    if "data" in raw:
        kw["prep_median_s"] = float(_req(raw["data"], "prep_median_s", f"{where} data"))
        kw["prep_p95_s"] = float(raw["data"].get("prep_p95_s", kw["prep_median_s"]))
    return Profile(device=_req(raw, "device", where), gpu=_req(raw, "gpu", where),
                   date=raw.get("date", ""), steps=steps, sources=sources,
                   assumed=tuple(assumed), **kw)


def load_profile(path: str | Path | None = None) -> Profile:
    """A profile file, or the newest one shipped with the package."""
    p = Path(path) if path is not None else default_profile_path()
    try:
        raw = json.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"profile {p} not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"profile {p}: not JSON ({e})") from None
    return replace(profile_from_dict(raw, str(p)), path=str(p))


# ------------------------------------------------------------------ bench outputs


def section_from_bench(kind: str, bench: dict, where: str) -> tuple[str, dict]:
    """(section name, section) of the profile from one bench's `--json` output:
    `bench step` (one step entry per variant named h100/h200), `bench train`, `bench dp`,
    `bench dap`, `bench eval` (already in the eval schema), `bench data prep`."""
    if kind == "step":
        out = {}
        for r in bench.get("results", []):
            if r.get("error") or len(r.get("per_n", [])) != 4:
                continue
            out[r.get("name", "")] = {
                "per_n_s": [x["median_s"] for x in sorted(r["per_n"], key=lambda x: x["n"])],
                "peak_mem_gib": max(x["peak_mem_gb"] for x in r["per_n"]),
                "source": f"{where} (bench step)",
            }
        if not out:
            raise ValueError(f"{where}: no bench step variant with all of n = 0..3")
        return "step", out
    if kind == "train":
        train = _req(bench, "train", where)
        sec: dict = {"source": f"{where} (bench train)"}
        # A run with the flat gradient sync is the multi-rank trainer's path (torchrun,
        # also at world size 1); its ratio prices data-parallel shapes, not one GPU.
        key = ("multi_rank_step_over_bench_step" if "grad_sync='flat'" in
               str(bench.get("config", "")) else "step_over_bench_step")
        if bench.get("bench_step_avg_s") and train.get("avg_s"):
            sec[key] = train["avg_s"] / bench["bench_step_avg_s"]
        stalls = [e["stall_s"] for e in train.get("evals", [])
                  if isinstance(e.get("stall_s"), float) and e["stall_s"] == e["stall_s"]]
        if stalls:
            sec["boundary_s"] = max(0.0, statistics.median(stalls))
        return "trainer", sec
    if kind in ("dp", "dap"):
        key = "world_size" if kind == "dp" else "dap_size"
        rows = sorted((r for r in _req(bench, "results", where) if not r.get("error")),
                      key=lambda r: r[key])
        if not rows:
            raise ValueError(f"{where}: no successful bench {kind} row")
        cfg = bench.get("config", {})
        sec = {"step_s": [r["median_s"] for r in rows], "n": cfg.get("recycles", 0),
               "variant": cfg.get("variant", ""), "source": f"{where} (bench {kind})"}
        sec["world_sizes" if kind == "dp" else "sizes"] = [r[key] for r in rows]
        if kind == "dap":
            sec["peak_mem_gib"] = [max(r["peak_mem_gib"]) for r in rows]
        return kind, sec
    if kind == "eval":
        if "schema" not in bench and "eval_seconds" in bench:
            # `bench eval --json` as it writes today: one rank, steady per-chain times in
            # run order. Its default chains (lengths_source "assumed") and a set of the
            # CAMEO set's size stand for the whole validation set; a few given lengths
            # (`--lengths`) only sample the length curve.
            chains = bench.get("chains", [])
            total = sum(c.get("seconds") or 0.0 for c in chains)
            if total > bench["eval_seconds"]:
                # Chains in flight at once (eval_concurrent_chains) overlap: scaled to sum
                # to the pass, each chain's time is its share of the GPU.
                scale = bench["eval_seconds"] / total
                chains = [{**c, "seconds": c["seconds"] * scale} if c.get("seconds")
                          is not None else c for c in chains]
            bench = {"schema": EVAL_SCHEMA, "device": bench.get("device", ""), "ranks": 1,
                     "seconds_per_evaluation": [bench.get("eval_seconds_first",
                                                          bench["eval_seconds"]),
                                                bench["eval_seconds"]],
                     "chains": chains,
                     "peak_mem_gib": bench.get("peak_memory_gib"),
                     "lengths_source": bench.get("lengths_source", "given"),
                     "validation_set": (bench.get("lengths_source") == "assumed"
                                        or len(chains) == VALIDATION_CHAINS),
                     "source": f"{where} (bench eval)"}
        _eval_from_dict(bench, where)  # validates
        return "eval", bench
    if kind == "data":
        times = [t for c in _req(bench, "cases", where) for t in c.get("times", [])]
        if not times:
            raise ValueError(f"{where}: bench data prep holds no sample times")
        times.sort()
        return "data", {"prep_median_s": statistics.median(times),
                        "prep_p95_s": times[min(len(times) - 1, int(0.95 * len(times)))],
                        "source": f"{where} (bench data prep)"}
    raise ValueError(f"unknown bench kind {kind!r}; one of {', '.join(BENCH_KINDS)}")


def merge_bench(raw_profile: dict, kind: str, path: str | Path) -> dict:
    """`raw_profile` (a profile dict) with one section replaced by a bench's output.
    `bench eval --variants` writes several results: `FILE#VARIANT` names the one to use
    (a file with a single variant needs no name)."""
    path, _, variant = str(path).partition("#")
    try:
        bench = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"bench {kind} output {path} not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"bench {kind} output {path}: not JSON ({e})") from None
    if isinstance(bench, dict) and isinstance(bench.get("variants"), dict):
        names = list(bench["variants"])
        if not variant and len(names) == 1:
            variant = names[0]
        if variant not in bench["variants"]:
            raise ValueError(f"bench {kind} output {path} holds the variants {names}: name "
                             f"one as {path}#VARIANT")
        bench = bench["variants"][variant]
        if "error" in bench:
            raise ValueError(f"bench {kind} output {path}: variant {variant!r} failed "
                             f"({bench['error']})")
        path = f"{path}#{variant}"
    name, sec = section_from_bench(kind, bench, str(path))
    out = dict(raw_profile)
    if name == "step":
        out["step"] = {**raw_profile.get("step", {}), **sec}
    elif name == "trainer":
        out["trainer"] = {**raw_profile.get("trainer", {}), **sec}
    else:
        out[name] = sec
    return out
