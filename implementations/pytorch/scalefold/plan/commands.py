"""`scalefold plan`: the command line of scalefold.plan (registered by scalefold.cli)."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from scalefold.plan.config import LOADERS, RunShape, builtin_clusters, load_cluster
from scalefold.plan.model import TARGET_TO_BEAT_MIN, PlanOptions, predict
from scalefold.plan.profile import (
    BENCH_KINDS,
    default_profile_path,
    merge_bench,
    profile_from_dict,
)

LOADER_NAMES = {"PT": LOADERS[0], "PQ": LOADERS[1], LOADERS[0]: LOADERS[0],
                LOADERS[1]: LOADERS[1]}


def add_plan_parser(sub) -> None:
    p = sub.add_parser(
        "plan", help="predict time to train on a cluster from measured profiles "
        "(docs/PLAN.md)")
    p.add_argument("--cluster", default="dgxh100",
                   help=f"node kind ({', '.join(sorted(builtin_clusters()))}), a cluster JSON "
                        "or an MLPerf system description systems/*.json (default dgxh100)")
    p.add_argument("--nodes", type=int, default=None,
                   help="node count (default: the system description's, else 260)")
    p.add_argument("--global-batch", type=int, default=256)
    p.add_argument("--dap-size", type=int, default=8, choices=[1, 2, 4, 8])
    p.add_argument("--eval-ranks", "--num-async-eval-ranks", type=int, default=32,
                   help="asynchronous evaluation ranks (0: synchronous evaluation)")
    p.add_argument("--loader", default="PQ", choices=sorted(LOADER_NAMES),
                   help="InitialTrainingDataloaderPT (PT) or ...PQ (PQ)")
    p.add_argument("--workers-per-gpu", type=int, default=8)
    p.add_argument("--preset", default=None,
                   help="speed preset of the profile (default: the fastest that fits)")
    p.add_argument("--samples-to-target", type=float, default=None,
                   help="samples to converge, for a batch outside the reference points")
    p.add_argument("--profile", type=Path, default=None,
                   help=f"profile JSON (default: the shipped {default_profile_path().name})")
    p.add_argument("--bench", action="append", default=[], metavar="KIND=FILE",
                   help=f"a bench's --json output replacing a profile section; KIND one "
                        f"of {', '.join(BENCH_KINDS)} (repeatable)")
    p.add_argument("--validation-lengths", type=Path, default=None,
                   help="JSON list of the validation chains' lengths (default: assumed)")
    p.add_argument("--gpu-ratio", type=float, default=None,
                   help="step time on the cluster's GPU over the profile's (default: "
                        "documented ratio, 1 for the same kind)")
    p.add_argument("--eval-speedup", type=float, default=1.0,
                   help="take the evaluation this many times faster than profiled")
    p.add_argument("--dap-overlap", type=float, default=0.0,
                   help="share of DAP communication hidden behind compute (0..1)")
    p.add_argument("--grad-sync", choices=["flat", "bucketed"], default="flat",
                   help="gradient all-reduce after backward (flat, the configs') or in "
                        "buckets from inside backward, hidden behind it but the last")
    p.add_argument("--accumulate", action="store_true",
                   help="run a local batch > 1 as sequential micro-batches")
    p.add_argument("--lr-schedule", choices=["mlperf", "alphafold"], default="mlperf",
                   help="alphafold: AlphaFold2's initial training from scratch instead")
    p.add_argument("--sweep", action="store_true",
                   help="predict every GPU count x DAP size on DGX H100 and H200; writes "
                        "sweep.csv and sweep.png to --out")
    p.add_argument("--sweep-nodes", default=None,
                   help="comma-separated node counts for --sweep (default: 1 to 320)")
    p.add_argument("--out", type=Path, default=Path("plan_out"))
    p.add_argument("--replay", type=Path, action="append", default=[],
                   help="a published MLPerf log: its own figures through the time line")
    p.add_argument("--json", type=Path, default=None, help="write the prediction here")
    p.add_argument("--trials", type=int, default=2000, help="drawn 10-run results")
    p.set_defaults(func=run_plan)


def _profile(args: argparse.Namespace):
    path = args.profile or default_profile_path()
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SystemExit(f"scalefold plan: profile {path} not found") from None
    for spec in args.bench:
        kind, sep, file = spec.partition("=")
        if not sep or kind not in BENCH_KINDS:
            raise SystemExit(f"scalefold plan: --bench {spec!r}: expected KIND=FILE with KIND "
                             f"one of {', '.join(BENCH_KINDS)}")
        raw = merge_bench(raw, kind, file)
    return replace(profile_from_dict(raw, str(path)), path=str(path))


def _lengths(path: Path | None) -> tuple[int, ...] | None:
    if path is None:
        return None
    data = json.loads(path.read_text())
    if not isinstance(data, list) or not data or not all(
            isinstance(n, int) and n > 0 for n in data):
        raise SystemExit(f"scalefold plan: {path}: expected a JSON list of positive lengths")
    return tuple(data)


def run_plan(args: argparse.Namespace) -> int:
    from scalefold.plan import report

    try:
        return _run(args, report)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"scalefold plan: {e}") from None


def _run(args: argparse.Namespace, report) -> int:
    for log in args.replay:
        from scalefold.plan.published import log_figures

        print(report.format_replay(log_figures(log)))
    profile = _profile(args)
    options = PlanOptions(gpu_ratio=args.gpu_ratio, dap_overlap=args.dap_overlap,
                          validation_lengths=_lengths(args.validation_lengths),
                          eval_speedup=args.eval_speedup, accumulate=args.accumulate,
                          trials=args.trials, grad_sync=args.grad_sync)
    is_system = Path(args.cluster).suffix == ".json"
    nodes = args.nodes if args.nodes is not None else (None if is_system else 260)
    cluster = load_cluster(args.cluster, nodes)
    shape = RunShape(global_batch=args.global_batch, dap_size=args.dap_size,
                     eval_ranks=args.eval_ranks, loader=LOADER_NAMES[args.loader],
                     workers_per_gpu=args.workers_per_gpu, preset=args.preset,
                     samples_to_target=args.samples_to_target)
    if args.lr_schedule == "alphafold":
        from scalefold.plan.pretrain import predict_pretraining

        pre = predict_pretraining(cluster, shape, profile, options)
        print(report.format_pretraining(pre))
        return 0
    pred = predict(cluster, shape, profile, options)
    print(report.format_prediction(pred))
    if args.json:
        args.json.write_text(json.dumps(report.prediction_json(pred), indent=1))
    if args.sweep:
        _sweep(args, profile, options)
    return 0


def _sweep(args: argparse.Namespace, profile, options: PlanOptions) -> None:
    from scalefold.plan import sweep as sw

    options = sw.default_options_for_sweep(options)
    clusters = [load_cluster("dgxh100"), load_cluster("dgxh200")]
    nodes = (tuple(int(n) for n in args.sweep_nodes.split(",")) if args.sweep_nodes
             else sw.NODES)
    points = sw.sweep(clusters, profile, options, nodes=nodes)
    args.out.mkdir(parents=True, exist_ok=True)
    sw.write_table(points, args.out / "sweep.csv")
    print(f"sweep: {len(points)} points -> {args.out / 'sweep.csv'}")
    for c in clusters:
        for dap in sw.DAP_SIZES:
            found = sw.fewest_nodes_to_beat(c, dap, profile, options, TARGET_TO_BEAT_MIN,
                                            max_nodes=max(nodes))
            if found is None:
                print(f"  {c.name}, DAP {dap}: not predicted to beat {TARGET_TO_BEAT_MIN} min "
                      f"up to {max(nodes)} nodes")
            else:
                n, p = found
                print(f"  {c.name}, DAP {dap}: fewest to beat {TARGET_TO_BEAT_MIN} min: {n} "
                      f"nodes = {n * c.gpus_per_node} GPUs (batch {p.shape.global_batch}, "
                      f"{p.shape.eval_ranks} evaluation ranks, {p.stats.olympic_mean_s / 60:.2f} min)")
    # What it takes at NVIDIA's shape: 260 nodes, DAP 8, global batch 256, 32 evaluators.
    nv_shape = RunShape(global_batch=256, dap_size=8, eval_ranks=32)
    for c in clusters:
        need = sw.eval_speedup_to_beat(c.with_nodes(260), nv_shape, profile, options,
                                       TARGET_TO_BEAT_MIN)
        head = f"  {c.name}, 260 nodes, DAP 8, batch 256, 32 evaluation ranks:"
        if need == 1.0:
            # No speed-up needed: say so rather than "1.00x faster".
            print(f"{head} predicted to beat {TARGET_TO_BEAT_MIN} min with the evaluation "
                  f"as profiled (no evaluation faster than profiled needed)")
            continue
        text = (f"{need:.2f}x" if need is not None else "more than 64x")
        print(f"{head} evaluation {text} faster than profiled is predicted to beat "
              f"{TARGET_TO_BEAT_MIN} min")
    try:
        sw.plot(points, args.out / "sweep.png", TARGET_TO_BEAT_MIN,
                f"scalefold plan, profile {Path(profile.path).name}: PREDICTIONS")
        print(f"plot -> {args.out / 'sweep.png'}")
    except RuntimeError as e:
        print(f"no plot: {e}")
