#!/usr/bin/env python3
"""Check an MLPerf HPC OpenFold results tree with the official MLCommons tools.

    python compliance/check.py RESULTS_ROOT [--org ORG] [--systems DIR] [--partial]

RESULTS_ROOT is either a results tree, ``RESULTS_ROOT/<SYSTEM>/strong/openfold/result_*.txt``
(system descriptions then come from ``--systems``, default: this repository's
``systems/``), or a whole submission package ``ORG/{systems,results}``. Steps:

1. the compliance checker on every result log;
2. the system-description checker on every system JSON;
3. consistency of each log with its system JSON (division, submitter, node and
   accelerator counts), one fresh run per log (not resumed from a checkpoint, not two
   runs in one file), initialisation under the rules' 30 minutes (which the official
   checkers do not check) and distinct seeds per system;
4. the package checker on an assembled package ``ORG/systems/*.json``,
   ``ORG/results/<SYSTEM>/<scaling>/openfold/result_<i>.txt`` and
   ``ORG/benchmarks/openfold/implementations/pytorch/`` (this repository's sources);
5. the result summarizer's score (olympic mean of 10 times to train, in minutes).

The exit status is 0 only when every step passes. The package checker wants exactly 10
strong-scaling runs per system; ``--partial`` leaves systems with another count out of
steps 4-5 (reported as SKIPPED) instead of failing them.

Only the Python standard library and ``mlperf-logging`` are needed; the official tools run
as subprocesses of the current interpreter.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

USAGE = "hpc"
BENCHMARK = "openfold"
TOKEN = ":::MLLOG "
REPO_ROOT = Path(__file__).resolve().parents[1]
# What a strong-scaling time-to-train needs (mlperf_logging.benchmark_meta, hpc/openfold).
STRONG_RUNS = 10
WEAK_MIN_RUNS = 10
# Files of this repository that make up the implementation in an assembled package.
IMPL_SOURCES = (
    "implementations/pytorch/scalefold",
    "pyproject.toml",
    "README.md",
    "Dockerfile",
    "run_and_time.sh",
    "systems",
    "compliance",
)
IMPL_SUFFIXES = {".py", ".sh", ".sub", ".toml", ".md", ".json", ".txt", ".cfg", ".yaml", ""}

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIPPED"
# What scalefold logs when a run continued from a checkpoint (scalefold.train.run).
RESUMED_KEY = "scalefold_resumed_from_iteration"
# The benchmark's rules: initialisation (init_start .. init_stop: compilation, graph
# capture, the evaluation's warm-up) must stay under 30 minutes. The official checkers
# do not look at it.
INIT_LIMIT_MIN = 30.0


@dataclass
class Step:
    name: str
    status: str = PASS
    lines: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.status = FAIL
        self.lines.append(f"FAIL  {message}")

    def ok(self, message: str) -> None:
        self.lines.append(f"ok    {message}")

    def note(self, message: str) -> None:
        self.lines.append(f"      {message}")


@dataclass
class Run:
    path: Path
    system: str
    scaling: str
    values: dict = field(default_factory=dict)
    init_start_ms: float | None = None
    init_stop_ms: float | None = None
    run_start_ms: float | None = None
    run_stop_ms: float | None = None
    status: str | None = None
    samples_to_converge: int | None = None
    compliant: bool = False
    counts: Counter = field(default_factory=Counter)  # lines per key

    def integrity_problems(self) -> list[str]:
        """Why this log is not one fresh run within the rules: resumed from a checkpoint
        (the time to train would leave out the steps before it), two runs in one log, or an
        initialisation over the rules' limit."""
        problems = []
        init = self.init_minutes
        if init is not None and init >= INIT_LIMIT_MIN:
            problems.append(f"{self.path.name}: initialisation took {init:.1f} min "
                            f"(init_start to init_stop): the rules allow under "
                            f"{INIT_LIMIT_MIN:.0f} min")
        if self.counts[RESUMED_KEY]:
            problems.append(f"{self.path.name}: resumed from a checkpoint at iteration "
                            f"{self.values.get(RESUMED_KEY)}: not a fresh run")
        for key in ("init_start", "run_start", "run_stop"):
            if self.counts[key] > 1:
                problems.append(f"{self.path.name}: {self.counts[key]} {key} lines: more than "
                                f"one run in one log")
        return problems

    @property
    def init_minutes(self) -> float | None:
        if self.init_start_ms is None or self.init_stop_ms is None:
            return None  # the compliance checker reports a missing key
        return (self.init_stop_ms - self.init_start_ms) / 60000.0

    @property
    def minutes(self) -> float | None:
        if self.run_start_ms is None or self.run_stop_ms is None or self.status != "success":
            return None
        return (self.run_stop_ms - self.run_start_ms) / 60000.0


def read_run(path: Path, system: str, scaling: str) -> Run:
    """The facts of a log that the report and the consistency checks need."""
    run = Run(path=path, system=system, scaling=scaling)
    last_epoch = None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for text in handle:
            at = text.find(TOKEN)
            if at < 0:
                continue
            try:
                obj = json.loads(text[at + len(TOKEN) :])
            except json.JSONDecodeError:
                continue  # the compliance checker reports unparsable lines
            key, meta = obj.get("key"), obj.get("metadata") or {}
            run.values.setdefault(key, obj.get("value"))
            run.counts[key] += 1
            if key == "init_start" and run.init_start_ms is None:
                run.init_start_ms = float(obj["time_ms"])
            elif key == "init_stop" and run.init_stop_ms is None:
                run.init_stop_ms = float(obj["time_ms"])
            elif key == "run_start" and run.run_start_ms is None:
                run.run_start_ms = float(obj["time_ms"])
            elif key == "eval_accuracy":
                last_epoch = meta.get("epoch_num")
            elif key == "run_stop" and run.run_stop_ms is None:
                run.run_stop_ms = float(obj["time_ms"])
                run.status = meta.get("status")
                # as the RCP checker counts: epoch_num of the last evaluation before run_stop
                run.samples_to_converge = last_epoch if run.status == "success" else None
    return run


def python_module(module: str, *args: str, cwd: Path, timeout: float = 900.0):
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def error_lines(output: str, limit: int = 6) -> list[str]:
    # The checkers report a failed rule as a WARNING line and the verdict as an ERROR line.
    marks = ("ERROR", "WARNING", "Traceback", "Error:", "FAILED")
    keep = [ln.strip() for ln in output.splitlines() if any(m in ln for m in marks)]
    return keep[:limit] + ([f"... {len(keep) - limit} more"] if len(keep) > limit else [])


def only_missed_target(output: str) -> bool:
    """True when the compliance checker's sole complaint is that no evaluation reached the
    target: a run that did not converge, which the rules tolerate once per result set."""
    issues = [
        ln
        for ln in output.splitlines()
        if ("WARNING" in ln or "ERROR" in ln) and "ERROR - FAILED" not in ln
    ]
    return bool(issues) and all("eval_accuracy" in ln for ln in issues)


def olympic_mean(minutes: list[float | None], total: int) -> float | None:
    """Drop the slowest and the fastest run and average the rest; a run that did not
    converge counts as the slowest (at most one may)."""
    done = sorted(m for m in minutes if m is not None)
    failed = total - len(done)
    if failed > 1 or total < 3:
        return None
    kept = done[1 : len(done) - (1 - failed)]
    return sum(kept) / len(kept) if kept else None


# --- discovery ---------------------------------------------------------------------------


def locate(root: Path, systems_opt: Path | None) -> tuple[Path, Path]:
    """(results dir, systems dir) for a results tree or a whole package."""
    if (root / "results").is_dir() and (root / "systems").is_dir():
        return root / "results", systems_opt or root / "systems"
    return root, systems_opt or REPO_ROOT / "systems"


def find_runs(results: Path) -> dict[tuple[str, str], list[Run]]:
    groups: dict[tuple[str, str], list[Run]] = {}
    for system_dir in sorted(p for p in results.iterdir() if p.is_dir()):
        for scaling in ("strong", "weak"):
            bench = system_dir / scaling / BENCHMARK
            files = sorted(bench.glob("result_*.txt")) if bench.is_dir() else []
            if files:
                groups[(system_dir.name, scaling)] = [
                    read_run(f, system_dir.name, scaling) for f in files
                ]
    return groups


# --- steps -------------------------------------------------------------------------------


def check_logs(groups, ruleset: str, work: Path) -> Step:
    step = Step("1. compliance checker on every log")
    for runs in groups.values():
        not_converged = 0
        for run in runs:
            rc, out = python_module(
                "mlperf_logging.compliance_checker",
                "--usage",
                USAGE,
                "--ruleset",
                ruleset,
                "--log_output",
                str(work / "compliance.log"),
                str(run.path),
                cwd=work,
            )
            run.compliant = rc == 0 and "SUCCESS" in out
            label = run.path.relative_to(run.path.parents[3])
            division = run.values.get("submission_division")
            if run.compliant:
                ttt = "no time to train" if run.minutes is None else f"{run.minutes:.2f} min"
                step.ok(f"{label}  ({division}, {ttt})")
            elif run.status == "aborted" and only_missed_target(out) and not_converged == 0:
                # The package checker and the summarizer accept (and drop) one such run.
                not_converged += 1
                step.ok(f"{label}  ({division}, did not converge: the one tolerated)")
            else:
                step.fail(str(label))
                for line in error_lines(out):
                    step.note(line)
    return step


def check_systems(systems: Path, groups, ruleset: str, work: Path) -> tuple[Step, dict]:
    step = Step("2. system-description checker on every system JSON")
    descs: dict[str, dict] = {}
    files = sorted(systems.glob("*.json")) if systems.is_dir() else []
    if not files:
        step.fail(f"no system JSON in {systems}")
    for path in files:
        try:
            descs[path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            step.fail(f"{path.name}: not JSON ({exc})")
            continue
        rc, out = python_module(
            "mlperf_logging.system_desc_checker",
            str(path),
            USAGE,
            ruleset,
            "--log_output",
            str(work / "system_desc.log"),
            cwd=work,
        )
        # The tool exits 0 either way; its verdict is in the log line.
        if rc == 0 and "System description checker passed" in out:
            step.ok(path.name)
        else:
            step.fail(path.name)
            for line in error_lines(out):
                step.note(line)
    for system, _ in groups:
        if system not in descs:
            step.fail(f"results for {system} but no {system}.json in {systems}")
    return step, descs


def check_consistency(groups, descs: dict) -> Step:
    step = Step("3. logs against their system JSON; one fresh run per log; initialisation "
                "under 30 min; distinct seeds")
    for (system, scaling), runs in groups.items():
        desc = descs.get(system)
        if desc is None:
            step.fail(f"{system}: no system description")
            continue
        problems = []
        for run in runs:
            problems += run.integrity_problems()
            v = run.values
            pairs = (
                ("submission_division", desc.get("division")),
                ("submission_org", desc.get("submitter")),
                ("number_of_nodes", desc.get("number_of_nodes")),
                ("accelerators_per_node", desc.get("accelerators_per_node")),
            )
            for key, expected in pairs:
                if str(v.get(key)) != str(expected):
                    problems.append(
                        f"{run.path.name}: {key} {v.get(key)!r} != {expected!r} in {system}.json"
                    )
        seeds = Counter(str(run.values.get("seed")) for run in runs)
        if "None" in seeds:
            problems.append("a log has no seed")
        problems += [
            f"seed {s} used by {n} runs" for s, n in seeds.items() if n > 1 and s != "None"
        ]
        if problems:
            step.fail(f"{system}/{scaling}")
            for p in problems:
                step.note(p)
        else:
            inits = [m for run in runs if (m := run.init_minutes) is not None]
            longest = f", initialisation up to {max(inits):.1f} min" if inits else ""
            step.ok(
                f"{system}/{scaling}: {len(runs)} runs, {desc.get('division')}, "
                f"{len(seeds)} distinct seeds{longest}"
            )
    return step


def package_eligible(groups, partial: bool) -> tuple[dict, list[str]]:
    chosen, skipped = {}, []
    for (system, scaling), runs in groups.items():
        n = len(runs)
        ok = n == STRONG_RUNS if scaling == "strong" else n >= WEAK_MIN_RUNS
        if ok or not partial:
            chosen[(system, scaling)] = runs
        else:
            need = f"exactly {STRONG_RUNS}" if scaling == "strong" else f">= {WEAK_MIN_RUNS}"
            skipped.append(f"{system}/{scaling}: {n} runs ({need} needed)")
    return chosen, skipped


def copy_implementation(dest: Path) -> None:
    for rel in IMPL_SOURCES:
        src = REPO_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
        elif src.is_dir():
            for path in sorted(src.rglob("*")):
                if (
                    path.is_file()
                    and "__pycache__" not in path.parts
                    and path.suffix in IMPL_SUFFIXES
                    and path.stat().st_size < 1 << 20
                ):
                    target = dest / path.relative_to(REPO_ROOT)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)


def assemble(package: Path, chosen, systems: Path) -> dict[Path, Path]:
    """ORG/systems, ORG/results, ORG/benchmarks; returns packaged path -> source log."""
    mapping = {}
    (package / "systems").mkdir(parents=True)
    for system in sorted({s for s, _ in chosen}):
        shutil.copy2(systems / f"{system}.json", package / "systems" / f"{system}.json")
    for (system, scaling), runs in chosen.items():
        bench = package / "results" / system / scaling / BENCHMARK
        bench.mkdir(parents=True)
        for i, run in enumerate(sorted(runs, key=lambda r: r.path.name)):
            target = bench / f"result_{i}.txt"
            shutil.copy2(run.path, target)
            mapping[target] = run.path
    copy_implementation(package / "benchmarks" / BENCHMARK / "implementations" / "pytorch")
    return mapping


def check_package(package: Path, ruleset: str, work: Path, kept: bool) -> Step:
    where = f" (kept in {package.parent})" if kept else ""
    step = Step(f"4. package checker on the assembled package {package.name}/{where}")
    rc, out = python_module(
        "mlperf_logging.package_checker",
        str(package),
        USAGE,
        ruleset,
        "--log_output",
        str(work / "package_checker.log"),
        cwd=work,
    )
    # The tool exits 0 whatever it finds; its verdict is this line.
    if rc == 0 and "PACKAGE CHECKER FOUND NO ERRORS" in out:
        step.ok("PACKAGE CHECKER FOUND NO ERRORS")
        for line in out.splitlines():
            if "RCP Test Passed" in line or "accepting this under olympic scoring" in line:
                step.note(line.strip())
    else:
        step.fail("the package checker found errors")
        for line in error_lines(out, limit=12):
            step.note(line)
    return step


def summarize(package: Path, chosen, ruleset: str, work: Path) -> Step:
    step = Step("5. result summarizer's score")
    out_csv = work / "summary.csv"
    rc, out = python_module(
        "mlperf_logging.result_summarizer",
        str(package),
        USAGE,
        ruleset,
        "--csv",
        str(out_csv),
        cwd=work,
    )
    detailed = work / "summary_detailed.csv"
    rows = []
    if rc == 0 and detailed.exists():
        with open(detailed, newline="") as handle:
            rows = list(csv.DictReader(handle))
    else:
        step.fail("the result summarizer did not run")
        for line in error_lines(out):
            step.note(line)
        return step
    by_name = {}
    for row in rows:
        by_name.setdefault(row.get("system"), row)
    for (system, scaling), runs in chosen.items():
        if scaling != "strong":
            step.note(f"{system}/{scaling}: weak scaling, see the summarizer's output")
            continue
        name = json.loads((package / "systems" / f"{system}.json").read_text())["system_name"]
        row = by_name.get(name, {})
        score = row.get(f"{BENCHMARK}:time_to_train") or ""
        ours = olympic_mean([r.minutes for r in runs], len(runs))
        try:
            value = float(score)
        except ValueError:
            value = math.nan
        if math.isnan(value):
            step.fail(f"{system}: no score (too many failed runs, or too few runs)")
            continue
        extra = []
        for col, label in (
            ("samples_to_converge", "samples to converge"),
            ("GBS", "global batch"),
            ("RCP", "RCP"),
        ):
            cell = row.get(f"{BENCHMARK}:{col}")
            if cell not in (None, ""):
                extra.append(f"{label} {cell}")
        step.ok(
            f"{system}: {value:.3f} min (olympic mean of {len(runs)} runs)"
            + (f"; {', '.join(extra)}" if extra else "")
        )
        if ours is not None and abs(ours - value) > 1e-3 * max(1.0, value):
            step.note(
                f"note: the logs' own olympic mean is {ours:.3f} min "
                "(a scaling.json from the RCP check can explain a difference)"
            )
    return step


# --- main --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results_root", type=Path)
    parser.add_argument("--org", help="package folder name (default: the systems' submitter)")
    parser.add_argument("--systems", type=Path, help="system JSON folder (default: see above)")
    parser.add_argument("--ruleset", default="3.0.0")
    parser.add_argument(
        "--partial",
        action="store_true",
        help="leave systems without a full set of runs out of steps 4-5",
    )
    parser.add_argument("--keep", type=Path, help="assemble the package here and keep it")
    args = parser.parse_args(argv)

    root = args.results_root.resolve()
    if not root.is_dir():
        print(f"check.py: {root} is not a directory", file=sys.stderr)
        return 2
    results, systems = locate(root, args.systems.resolve() if args.systems else None)
    groups = find_runs(results)
    steps: list[Step] = []
    print(f"Results: {results}\nSystems: {systems}")
    if not groups:
        step = Step("0. find result logs")
        step.fail(f"no <SYSTEM>/{{strong,weak}}/{BENCHMARK}/result_*.txt under {results}")
        steps.append(step)
        return report(steps)

    with tempfile.TemporaryDirectory(prefix="mlperf_check_") as tmp:
        work = Path(tmp)
        steps.append(check_logs(groups, args.ruleset, work))
        step, descs = check_systems(systems, groups, args.ruleset, work)
        steps.append(step)
        steps.append(check_consistency(groups, descs))

        chosen, skipped = package_eligible(groups, args.partial)
        chosen = {k: v for k, v in chosen.items() if k[0] in descs}
        submitters = sorted({str(descs[s].get("submitter")) for s, _ in chosen})
        org = args.org or (submitters[0] if len(submitters) == 1 else None)
        if not chosen:
            for name in ("4. package checker", "5. result summarizer's score"):
                step = Step(name, status=SKIP)
                for line in skipped or ["no system to package"]:
                    step.note(f"skipped {line}")
                steps.append(step)
            return report(steps)
        if org is None:
            step = Step("4. package checker")
            step.fail(f"systems have several submitters {submitters}; pass --org")
            steps.append(step)
            return report(steps)
        parent = args.keep.resolve() if args.keep else work / "package"
        package = parent / org
        if package.exists():
            shutil.rmtree(package)
        assemble(package, chosen, systems)
        step = check_package(package, args.ruleset, work, kept=args.keep is not None)
        for line in skipped:
            step.note(f"skipped {line}")
        for (system, scaling), runs in chosen.items():
            if scaling == "strong" and len(runs) != STRONG_RUNS:
                step.note(
                    f"{system}: {len(runs)} strong-scaling runs; a time-to-train result "
                    f"needs exactly {STRONG_RUNS} (--partial checks such systems log by "
                    "log only)"
                )
        steps.append(step)
        steps.append(summarize(package, chosen, args.ruleset, work))
    return report(steps)


def report(steps: list[Step]) -> int:
    print()
    for step in steps:
        print(f"[{step.status}] {step.name}")
        for line in step.lines:
            print(f"    {line}")
    failed = [s.name for s in steps if s.status == FAIL]
    print()
    print("RESULT: FAIL (" + "; ".join(failed) + ")" if failed else "RESULT: PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
