"""`scalefold` command line: train, build the mini dataset, describe presets."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from dataclasses import fields
from pathlib import Path

from scalefold.data.commands import add_data_commands
from scalefold.plan.commands import add_plan_parser
from scalefold.train.config import PRESETS, MLPerfLogConfig, SpeedConfig, TrainConfig

DEFAULT_MINI_DIR = Path(".cache/mini")
DEFAULT_OUTPUT_DIR = Path("runs/default")


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    from scalefold.model import AlphaFold, AlphaFoldConfig

    preset = getattr(AlphaFoldConfig, args.preset)()
    with torch.device("meta"):
        model = AlphaFold(preset)
    n = sum(p.numel() for p in model.parameters())
    print(f"preset={args.preset} parameters={n:,} tensors={len(model.state_dict())}")
    return 0


def ensure_mini_dataset(directory: Path) -> Path:
    """Build the embedded mini dataset on first use (a few seconds)."""
    from scalefold.data.mini import build_mini

    if not (directory / "mini_split.json").is_file():
        print(f"building the mini dataset in {directory} ...", flush=True)
        build_mini(directory)
    return directory


def _cmd_build_mini(args: argparse.Namespace) -> int:
    from scalefold.data.mini import build_mini

    build_mini(Path(args.out))
    print(f"mini dataset written to {args.out}")
    return 0


# The embedded default: a small model from scratch on the mini dataset, on a CPU.
# Reaching lDDT-Ca 0.8 on held-out chains is out of reach for a model this size trained
# for minutes, so it is a *fitting check*: it trains and evaluates on one training chain
# (BPTI, 5PTI:A, 58 residues) and says so in the log's platform field.
EMBEDDED_FIT_CHAINS = ("5pti_A",)
EMBEDDED_DEFAULT = dict(
    preset="small", precision="fp32", crop_size=64, max_msa_clusters=16, max_extra_msa=32,
    max_templates=4, num_recycling_iters=0, base_lr=1e-3, warmup_lr_init=1e-5,
    warmup_lr_iters=0, val_every_iters=20, num_train_iters=2000, num_workers=1,
    train_chain_ids=EMBEDDED_FIT_CHAINS, val_chain_ids=EMBEDDED_FIT_CHAINS,
)
EMBEDDED_PLATFORM_NOTE = "(embedded default: fitting check on training chain 5PTI:A, " \
    "mini dataset with synthetic alignments, small model from scratch)"


def default_platform(embedded: bool) -> str:
    """The log's platform when none is given: this process's accelerator, e.g.
    "1xNVIDIA H200", or "1xCPU"; the embedded default says what it is."""
    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    return f"1x{name} {EMBEDDED_PLATFORM_NOTE}" if embedded else f"1x{name}"


def _seed(text: str) -> int | str:
    if text == "random":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer or 'random': {text!r}") from None


def _chain_ids(text: str) -> tuple[str, ...]:
    return tuple(c for c in text.split(",") if c)


def _add_speed_args(p: argparse.ArgumentParser) -> None:
    """`--speed PRESET` and one flag per `SpeedConfig` field, made from the field's type
    and help text: the speed-ups are defined once, in `SpeedConfig`."""
    sp = p.add_argument_group("speed-ups (scalefold.train.config.SpeedConfig; "
                              "docs/PERFORMANCE.md)")
    sp.add_argument("--speed", dest="speed_preset", choices=sorted(PRESETS), default=None,
                    help="a measured preset; the flags below override its fields. " + "; ".join(
                        f"{name}: {pre.help}" + (f" ({pre.precision})" if pre.precision else "")
                        for name, pre in PRESETS.items())
                    + ". Default: h200 for the embedded default on a CUDA machine, else eager")
    hints = typing.get_type_hints(SpeedConfig)
    for f in fields(SpeedConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        if kind is bool:
            sp.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                            help=f.metadata["help"])
        else:
            sp.add_argument(flag, choices=typing.get_args(kind), default=None,
                            help=f.metadata["help"])


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None,
                   help="official-layout data root (default: the embedded mini dataset)")
    p.add_argument("--output-dir", "--training-dirpath", type=Path, default=DEFAULT_OUTPUT_DIR)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"],
                   help="where to train (default auto: a GPU where there is one)")
    p.add_argument("--preset", choices=["mlperf", "small", "tiny"])
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16"])
    p.add_argument("--seed", type=_seed,
                   help="an integer, or 'random': rank 0 draws one and every rank uses it "
                        "(the log records it)")
    p.add_argument("--num-train-iters", type=int)
    p.add_argument("--val-every-iters", type=int)
    p.add_argument("--local-batch-size", "--device-batch-size", type=int)
    p.add_argument("--base-lr", type=float)
    p.add_argument("--warmup-lr-init", type=float)
    p.add_argument("--warmup-lr-iters", type=int)
    p.add_argument("--lr-schedule", choices=["mlperf", "alphafold"],
                   help="alphafold: AlphaFold2's schedule for long runs from scratch")
    p.add_argument("--gradient-clip-norm", "--clip-grad-max-norm", type=float)
    p.add_argument("--swa-decay", type=float)
    p.add_argument("--target-avg-lddt-ca", type=float)
    p.add_argument("--dap-size", type=int,
                   help="ranks that share one sample (dynamic axial parallelism)")
    p.add_argument("--train-chain-ids", type=_chain_ids,
                   help="comma-separated chains to train on (default: the release-date "
                        "selection, or the mini dataset's split)")
    p.add_argument("--val-chain-ids", type=_chain_ids,
                   help="comma-separated chains to evaluate on (default: the CAMEO "
                        "selection, or the mini dataset's split)")
    p.add_argument("--num-async-eval-ranks", "--num-async-val-ranks", type=int,
                   help="the last N ranks evaluate while the others train")
    p.add_argument("--initialize-parameters-from", type=Path)
    p.add_argument("--initial-training-dataloader-type", dest="loader",
                   choices=["InitialTrainingDataloaderPT", "InitialTrainingDataloaderPQ"])
    p.add_argument("--num-workers", "--num-train-dataloader-workers", type=int)
    p.add_argument("--crop-size", type=int)
    p.add_argument("--max-msa-clusters", type=int)
    p.add_argument("--max-extra-msa", type=int)
    p.add_argument("--max-templates", type=int)
    p.add_argument("--num-recycling-iters", type=int)
    p.add_argument("--checkpoint-every-iters", type=int,
                   help="write a resumable checkpoint every N steps, in the background "
                        "(default 0: none, as a timed benchmark run should)")
    p.add_argument("--checkpoint-dir", type=Path,
                   help="where checkpoints go (default OUTPUT_DIR/checkpoints); keep it "
                        "out of the results folder")
    p.add_argument("--checkpoint-on-stop", action="store_true", default=None,
                   help="write a checkpoint when SIGTERM/SIGUSR1 stops the run")
    p.add_argument("--keep-last-checkpoints", type=int)
    p.add_argument("--activation-checkpointing", action="store_true", default=None)
    _add_speed_args(p)
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                   help="continue an earlier run: from the newest checkpoint of the "
                        "checkpoint directory, or from CHECKPOINT (a file or directory). "
                        "Without it a run starts fresh and refuses a directory holding "
                        "checkpoints; a resumed run's log says so and is no result")
    p.add_argument("--mlperf-log", type=Path, help="write the MLPerf log here")
    p.add_argument("--mlperf-stdout", action="store_true",
                   help="also print the :::MLLOG lines on stdout (what run_and_time.sh captures)")
    p.add_argument("--division", choices=["closed", "open"])
    p.add_argument("--org")
    p.add_argument("--platform")
    p.add_argument("--status", choices=["onprem", "cloud", "preview", "research"])
    p.add_argument("--progress", dest="progress", action="store_true", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false")


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Explicit flags win; the embedded default fills the rest when no data is given."""
    values: dict = {}
    if args.data_dir is None:
        values.update(EMBEDDED_DEFAULT)
        data_dir = ensure_mini_dataset(DEFAULT_MINI_DIR)
    else:
        data_dir = args.data_dir
        split_file = data_dir / "mini_split.json"
        if split_file.is_file():  # a mini dataset given explicitly
            split = json.loads(split_file.read_text())
            values["train_chain_ids"] = tuple(split["train"])
            values["val_chain_ids"] = tuple(split["validation"])
    names = {f.name for f in fields(TrainConfig)}
    for name in names:
        v = getattr(args, name, None)
        if v is not None:
            values[name] = v
    if values.get("seed") == "random":
        values["seed"] = None
    flags = {f.name: getattr(args, f.name, None) for f in fields(SpeedConfig)}
    preset = args.speed_preset
    if preset is None and args.data_dir is None and args.precision is None:
        # The embedded default on a CUDA machine runs the H200 recipe (bf16, kernels,
        # CUDA graphs): it reaches the target in about as many steps as fp32. Single
        # speed flags override fields of that recipe; they do not fall back to eager.
        import torch

        preset = "h200" if torch.cuda.is_available() else "eager"
    preset = PRESETS[preset or "eager"]
    if args.precision is None and preset.precision is not None:
        values["precision"] = preset.precision
    speed = dataclasses.replace(preset.speed, **{k: v for k, v in flags.items() if v is not None})
    mlperf = MLPerfLogConfig(
        path=args.mlperf_log,
        division=args.division or ("open" if args.data_dir is None else "closed"),
        org=args.org or "ScaleFold",
        platform=args.platform or default_platform(embedded=args.data_dir is None),
        status=args.status or "research",
    )
    return TrainConfig(data_dir=data_dir, output_dir=args.output_dir, mlperf=mlperf, speed=speed,
                       **{k: v for k, v in values.items() if k not in ("data_dir", "output_dir")})


def _cmd_train(args: argparse.Namespace) -> int:
    from scalefold.train.run import run_training

    cfg = train_config_from_args(args)
    outcome = run_training(cfg, mlperf_stdout=args.mlperf_stdout)
    if outcome.rank == 0:
        r = outcome.result
        evals = ", ".join(f"{it}:{acc:.4f}" for it, acc in r.evaluations[-5:])
        print(f"done: iterations={r.iterations} reached_target={r.reached_target} "
              f"train_seconds={r.train_seconds:.1f} last evaluations [{evals}]", flush=True)
    return 0 if outcome.result.reached_target else 3


def _cmd_bench_train(args: argparse.Namespace) -> int:
    import tempfile

    from scalefold.bench.train import run

    if args.data_dir is None:  # the mini dataset, at the benchmark's shapes by default
        args.data_dir = ensure_mini_dataset(DEFAULT_MINI_DIR)
    if args.num_train_iters is None:
        args.num_train_iters = 120
    if args.output_dir == DEFAULT_OUTPUT_DIR:  # a fresh directory: nothing to resume
        Path("runs").mkdir(exist_ok=True)
        args.output_dir = Path(tempfile.mkdtemp(prefix="bench_train_", dir="runs"))
    cfg = train_config_from_args(args)
    label = args.speed_preset or "eager"
    overrides = [f"{f.name}={getattr(args, f.name)}" for f in fields(SpeedConfig)
                 if getattr(args, f.name, None) is not None]
    label = "+".join([f"{label}@{cfg.precision}", *overrides])
    return run(cfg, warmup=args.warmup, compare_step=args.compare_step, json_path=args.json,
               label=label)


def _cmd_bench_eval(args: argparse.Namespace) -> int:
    import torch

    from scalefold.bench.eval import EvalBenchConfig, check_lddt, main

    flags = {f.name: getattr(args, f.name) for f in fields(SpeedConfig)
             if getattr(args, f.name, None) is not None}
    name = args.speed_preset or ("h200" if args.device.startswith("cuda")
                                 and torch.cuda.is_available() else "eager")
    preset = PRESETS[name]
    cfg = EvalBenchConfig(
        preset=args.preset, device=args.device,
        precision=args.precision or preset.precision or "fp32",
        speed=dataclasses.replace(preset.speed, **flags),
        lengths=tuple(int(n) for n in args.lengths.split(",")) if args.lengths else None,
        num_chains=args.num_chains, passes=args.passes, step_time_s=args.step_time,
        cadence_steps=args.cadence, seed=args.seed, beside_training=args.beside_training,
        async_rank=args.async_rank, gpu_memory_gib=args.gpu_memory_gib,
        **{k: getattr(args, k) for k in ("max_msa_clusters", "max_extra_msa", "max_templates",
                                         "num_recycling_iters", "warm_up_max_length",
                                         "profile_length")
           if getattr(args, k) is not None},
    )
    if args.check_lddt:
        data_dir = args.data_dir or ensure_mini_dataset(DEFAULT_MINI_DIR)
        return check_lddt(cfg, data_dir, args.checkpoint, args.tolerance, args.json,
                          chains=_chain_ids(args.val_chain_ids) or None)
    if args.variants:
        from scalefold.bench.eval import compare_variants
        from scalefold.bench.step import parse_variant

        # a field flag beside --variants holds for each variant (its own fields win)
        specs = [parse_variant(v, flags) for v in args.variants.split(",")]
        return compare_variants(
            [(v.name, dataclasses.replace(cfg, precision=v.precision, speed=v.speed))
             for v in specs], json_path=args.json)
    return main(cfg, json_path=args.json)


def _cmd_bench_step(args: argparse.Namespace) -> int:
    from scalefold.bench.step import DEFAULT_VARIANTS, BenchConfig, main

    variants = tuple(args.variants.split(",")) if args.variants else DEFAULT_VARIANTS
    cfg = BenchConfig(
        preset=args.preset, device=args.device, variants=variants,
        recycles=tuple(int(n) for n in args.recycles.split(",")),
        warmup=args.warmup, steps=args.steps, seed=args.seed,
        count_flops=not args.no_flops, activation_checkpointing=args.checkpointing,
        peak_tflops=args.peak_tflops, profile=args.profile, memory_report=args.memory_report,
        timeline=args.timeline,
    )
    return main(cfg, json_path=args.json)


def _add_kernel_bench_args(p: argparse.ArgumentParser, reps: int) -> None:
    p.add_argument("--preset", choices=["mlperf", "small", "tiny"], default="mlperf")
    p.add_argument("--device", default="cuda")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=reps, help="graph replays per timing (CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-sweep", action="store_true", help="default launches only")
    p.add_argument("--json", default=None)


def _cmd_bench_attention(args: argparse.Namespace) -> int:
    from scalefold.bench.attention import AttnBenchConfig, main

    cfg = AttnBenchConfig(preset=args.preset, device=args.device, warmup=args.warmup,
                          reps=args.reps, seed=args.seed, sweep=not args.no_sweep,
                          max_seconds=args.max_seconds, dq_kernel=not args.dq_atomics,
                          store_ds=not args.no_store_ds, fused_logits=args.fused_logits,
                          precomputed_delta=args.precomputed_delta,
                          unmasked_loads=args.unmasked_loads,
                          ds_dq_kernel=args.ds_dq_kernel,
                          n_res=args.n_res,
                          forward_only=args.forward_only,
                          kinds=tuple(k for k in args.kinds.split(",") if k))
    return main(cfg, json_path=args.json)


def _cmd_bench_sass(args: argparse.Namespace) -> int:
    from scalefold.bench.sass import main

    return main(arch=args.arch, json_path=args.json, aligned=not args.unaligned,
                tiles=args.tiles)


def _cmd_bench_layernorm(args: argparse.Namespace) -> int:
    from scalefold.bench.layer_norm import LNBenchConfig, main

    cfg = LNBenchConfig(preset=args.preset, device=args.device, warmup=args.warmup,
                        reps=args.reps, seed=args.seed, sweep=not args.no_sweep)
    return main(cfg, json_path=args.json)


def _cmd_bench_dap(args: argparse.Namespace) -> int:
    from scalefold.bench.dap import DapBenchConfig, main
    from scalefold.bench.step import PRESET_SHAPES, Shapes

    base = PRESET_SHAPES[args.preset]
    shapes = Shapes(
        n_res=args.n_res or base.n_res, n_clust=args.n_clust or base.n_clust,
        n_extra=args.n_extra or base.n_extra, n_templ=args.n_templ or base.n_templ,
    )
    cfg = DapBenchConfig(
        preset=args.preset, device=args.device,
        dap_sizes=tuple(int(p) for p in args.dap_sizes.split(",")),
        variant=args.variant, recycles=args.recycles, warmup=args.warmup, steps=args.steps,
        seed=args.seed, activation_checkpointing=args.checkpointing, threads=args.threads,
        shapes=shapes,
    )
    return main(cfg, json_path=args.json)


def _cmd_bench_dp(args: argparse.Namespace) -> int:
    from scalefold.bench.dp import DpBenchConfig, main

    cfg = DpBenchConfig(
        preset=args.preset, device=args.device,
        world_sizes=tuple(int(w) for w in args.world_sizes.split(",")),
        modes=tuple(args.modes.split(",")), variant=args.variant, recycles=args.recycles,
        warmup=args.warmup, steps=args.steps, seed=args.seed, threads=args.threads,
    )
    return main(cfg, json_path=args.json)


def _cmd_bench_data_prep(args: argparse.Namespace) -> int:
    from scalefold.bench.data import PrepConfig, main_prep

    data_dir = args.data_dir or ensure_mini_dataset(DEFAULT_MINI_DIR)
    cfg = PrepConfig(
        data_dir=data_dir, seeds=args.seeds, threads=args.threads,
        chains=tuple(args.chains.split(",")) if args.chains else None,
        deep_rows=tuple(int(n) for n in args.deep_rows.split(",") if n),
        deep_chains=args.deep_chains, deep_residues=args.deep_residues,
        breakdown=not args.no_breakdown,
    )
    return main_prep(cfg, json_path=args.json)


def _cmd_bench_data_loaders(args: argparse.Namespace) -> int:
    from scalefold.bench.data import LoaderBenchConfig, main_loaders

    cfg = LoaderBenchConfig(
        samples=args.samples, batch_size=args.batch_size, num_workers=args.num_workers,
        window=args.window, gpu_step_s=args.gpu_step_ms / 1e3, median_s=args.median_ms / 1e3,
        sigma=args.sigma, tail_fraction=args.tail_fraction, repeats=args.repeats, seed=args.seed,
        settle_s=args.settle_s,
    )
    return main_loaders(cfg, json_path=args.json)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scalefold", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="describe a model preset")
    info.add_argument("--preset", choices=["mlperf", "small", "tiny"], default="mlperf")
    info.set_defaults(func=_cmd_info)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench", required=True)
    step = bench.add_parser("step", help="time complete training steps of named variants")
    step.add_argument("--preset", choices=["mlperf", "small", "tiny"], default="mlperf")
    step.add_argument("--device", default="cuda")
    step.add_argument("--variants", default="",
                      help="comma-separated PRESET[@PRECISION][+FIELD[=VALUE]]..., e.g. "
                           "eager@tf32+ckpt,h100,h200+recompute_outer_product (default: "
                           "eager@tf32+ckpt,h100,h200)")
    step.add_argument("--recycles", default="0,1,2,3")
    step.add_argument("--warmup", type=int, default=2)
    step.add_argument("--steps", type=int, default=5)
    step.add_argument("--seed", type=int, default=0)
    step.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    step.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    step.add_argument("--peak-tflops", type=float, default=None)
    step.add_argument("--json", default=None, help="write all timings here")
    step.add_argument("--profile", action="store_true",
                      help="print a torch.profiler table of the last variant (n=0)")
    step.add_argument("--timeline", action="store_true",
                      help="the last variant's step as run (CUDA graphs included), for the "
                           "two smallest --recycles: kernel time against idle time between "
                           "kernels, and the kernels most followed by a gap")
    step.add_argument("--memory-report", action="store_true",
                      help="print the activations the last variant saves for backward "
                           "(n=0), by module and dtype")
    step.set_defaults(func=_cmd_bench_step)
    att = bench.add_parser("attention", help="flash-attention kernels at the model's call "
                           "sites: default vs candidate launches")
    _add_kernel_bench_args(att, reps=10)
    att.add_argument("--max-seconds", type=float, default=600.0,
                     help="sweep no further signatures after this long")
    att.add_argument("--dq-atomics", action="store_true",
                     help="sweep around dq by fp32 atomics instead of the dq kernel `--fast` uses")
    att.add_argument("--no-store-ds", action="store_true",
                     help="sweep around the backward without the stored dS `--fast` uses")
    att.add_argument("--fused-logits", action="store_true",
                     help="sweep around the fused logits (the plain form is timed beside)")
    att.add_argument("--precomputed-delta", action="store_true",
                     help="sweep around the precomputed delta (the recomputing backward is "
                          "timed beside)")
    att.add_argument("--ds-dq-kernel", action="store_true",
                     help="sweep around dq from the stored dS by one kernel (the batched "
                          "matmul is timed beside)")
    att.add_argument("--unmasked-loads", action="store_true",
                     help="sweep around the unmasked loads (the bounded loads are timed "
                          "beside)")
    att.add_argument("--n-res", type=int, default=None,
                     help="record the calls at this many residues (default: the preset's "
                          "crop; 704: the longest evaluation bucket)")
    att.add_argument("--forward-only", action="store_true",
                     help="time forwards without gradients (recycling, evaluation); no backward")
    att.add_argument("--kinds", default="fwd,bwd_kv,bwd_q,bwd_dq",
                     help="comma-separated kernels to sweep")
    att.set_defaults(func=_cmd_bench_attention)
    sass = bench.add_parser("sass", help="the attention kernels' main loops compiled for a "
                            "GPU architecture and counted by instruction (no GPU needed)")
    sass.add_argument("--arch", type=int, default=90, help="SM architecture (90: H100/H200)")
    sass.add_argument("--unaligned", action="store_true",
                      help="mark no length or stride a multiple of 16 (the worst case of "
                           "chains at their own lengths) instead of the crop's and buckets' "
                           "alignment")
    sass.add_argument("--tiles", action="store_true",
                      help="every launch bench attention sweeps (tiles, warps, stages), "
                           "plain and with every switch: instructions a score element, "
                           "registers, shared memory, spills")
    sass.add_argument("--json", default=None)
    sass.set_defaults(func=_cmd_bench_sass)
    ln = bench.add_parser("layernorm", help="Triton LayerNorm kernels at the model's "
                          "shapes: default vs candidate launches")
    _add_kernel_bench_args(ln, reps=20)
    ln.set_defaults(func=_cmd_bench_layernorm)
    bench_data = bench.add_parser("data", help="data pipeline speed").add_subparsers(
        dest="bench_data", required=True)
    prep = bench_data.add_parser("prep", help="sample preparation time on one CPU core")
    prep.add_argument("--data-dir", type=Path, default=None,
                      help="official-layout root with mini_split.json (default: the mini dataset)")
    prep.add_argument("--chains", default="", help="comma-separated (default: the split's chains)")
    prep.add_argument("--seeds", type=int, default=3, help="samples per chain")
    prep.add_argument("--threads", type=int, default=1)
    prep.add_argument("--deep-rows", default="2048,8192,16384",
                      help="synthetic deep-MSA cases, uniref90 rows (empty: none)")
    prep.add_argument("--deep-chains", type=int, default=2)
    prep.add_argument("--deep-residues", type=int, default=0,
                      help="repeat the deep cases' chains (sequence, atoms) up to this length")
    prep.add_argument("--no-breakdown", action="store_true", help="skip the per-stage timers")
    prep.add_argument("--json", default=None, help="write all timings here")
    prep.set_defaults(func=_cmd_bench_data_prep)
    loaders = bench_data.add_parser("loaders", help="PT vs PQ on a skewed workload")
    loaders.add_argument("--samples", type=int, default=200)
    loaders.add_argument("--batch-size", type=int, default=1)
    loaders.add_argument("--num-workers", type=int, default=4)
    loaders.add_argument("--window", type=int, default=16)
    loaders.add_argument("--gpu-step-ms", type=float, default=100.0)
    loaders.add_argument("--median-ms", type=float, default=50.0)
    loaders.add_argument("--sigma", type=float, default=0.5)
    loaders.add_argument("--tail-fraction", type=float, default=0.05)
    loaders.add_argument("--repeats", type=int, default=3)
    loaders.add_argument("--seed", type=int, default=0)
    loaders.add_argument("--settle-s", type=float, default=5.0,
                         help="wait after the first batch so all workers have started")
    loaders.add_argument("--json", default=None, help="write all runs here")
    loaders.set_defaults(func=_cmd_bench_data_loaders)
    dap = bench.add_parser("dap", help="time training steps by DAP size (processes on this host)")
    dap.add_argument("--preset", choices=["mlperf", "small", "tiny"], default="mlperf")
    dap.add_argument("--device", default="cuda", help="cuda (one GPU per rank, NCCL) or cpu (gloo)")
    dap.add_argument("--dap-sizes", default="1,2,4,8")
    dap.add_argument("--n-res", type=int, default=None, help="crop size N (default: preset's)")
    dap.add_argument("--n-clust", type=int, default=None)
    dap.add_argument("--n-extra", type=int, default=None)
    dap.add_argument("--n-templ", type=int, default=None)
    dap.add_argument("--variant", default="eager@fp32",
                     help="a `bench step` variant (not compiled)")
    dap.add_argument("--recycles", type=int, default=0,
                     help="gradient-free recycling iterations per step")
    dap.add_argument("--warmup", type=int, default=2)
    dap.add_argument("--steps", type=int, default=5)
    dap.add_argument("--seed", type=int, default=0)
    dap.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    dap.add_argument("--threads", type=int, default=None,
                     help="CPU threads per rank (default: cores // P)")
    dap.add_argument("--json", default=None, help="write all timings here")
    dap.set_defaults(func=_cmd_bench_dap)

    dp = bench.add_parser("dp", help="step time by data-parallel world size (weak scaling)")
    dp.add_argument("--preset", choices=["mlperf", "small", "tiny"], default="mlperf")
    dp.add_argument("--device", default="cuda", help="cuda (one GPU per rank, NCCL) or cpu (gloo)")
    dp.add_argument("--world-sizes", default="1,2,4,8")
    dp.add_argument("--modes", default="ddp,flat",
                    help="gradient averaging: ddp (DDP hooks), flat (one all-reduce after "
                         "backward), bucketed (buckets from inside backward)")
    dp.add_argument("--variant", default="h100+cuda_graphs=0+compile_glue=0",
                    help="a `bench step` variant (graph variants need --modes flat or "
                         "bucketed)")
    dp.add_argument("--recycles", type=int, default=0)
    dp.add_argument("--warmup", type=int, default=2)
    dp.add_argument("--steps", type=int, default=5)
    dp.add_argument("--seed", type=int, default=0)
    dp.add_argument("--threads", type=int, default=None, help="CPU threads per rank")
    dp.add_argument("--json", default=None, help="write all timings here")
    dp.set_defaults(func=_cmd_bench_dp)

    btrain = bench.add_parser(
        "train", help="the real trainer timed: steady-state step by recycling count, "
        "evaluations, data-loader wait (default: mini dataset at the benchmark's shapes)")
    _add_train_args(btrain)
    btrain.add_argument("--warmup", type=int, default=5,
                        help="first steps left out of the steady state")
    btrain.add_argument("--compare-step", action="store_true",
                        help="then time the same step with `bench step` in this process")
    btrain.add_argument("--json", default=None, help="write the measurements here")
    btrain.set_defaults(func=_cmd_bench_train)

    bev = bench.add_parser(
        "eval", help="one full evaluation pass timed through the trainer's Evaluator "
        "(default: 180 chains at the assumed CAMEO lengths); --check-lddt: fp32 vs the "
        "fast path on the mini dataset's validation chains")
    bev.add_argument("--preset", choices=["mlperf", "small", "tiny"], default="mlperf")
    bev.add_argument("--device", default="cuda")
    bev.add_argument("--precision", choices=["fp32", "tf32", "bf16"],
                     help="default: the speed preset's (fp32 for eager)")
    _add_speed_args(bev)
    bev.add_argument("--variants", default="",
                     help="comma-separated variants as bench step takes them "
                          "(PRESET[@PRECISION][+field[=value]]...), evaluated one after the "
                          "other in this process, each with its own warm-up; each names its "
                          "preset and precision (--speed and --precision are not used); the "
                          "speed field flags apply to every variant, its own fields win")
    bev.add_argument("--lengths", default="",
                     help="comma-separated chain lengths (default: the assumed CAMEO lengths)")
    bev.add_argument("--num-chains", type=int, default=180,
                     help="chains of the assumed distribution (without --lengths)")
    bev.add_argument("--passes", type=int, default=2, help="the first includes first-time work")
    bev.add_argument("--step-time", type=float, default=0.45,
                     help="training step seconds, for the evaluation GPUs a cadence needs")
    bev.add_argument("--cadence", type=int, default=40, help="steps between evaluations")
    bev.add_argument("--seed", type=int, default=0)
    bev.add_argument("--max-msa-clusters", type=int)
    bev.add_argument("--max-extra-msa", type=int)
    bev.add_argument("--max-templates", type=int)
    bev.add_argument("--num-recycling-iters", type=int)
    bev.add_argument("--warm-up-max-length", type=int,
                     help="--eval-warm-up: warm every bucket up to this length (default: "
                          "the validation set's 700 residues, as the trainer does)")
    bev.add_argument("--profile-length", type=int,
                     help="after the passes, profile one chain of this many residues "
                          "(kernel families and the largest kernels, without graphs)")
    bev.add_argument("--beside-training", action="store_true",
                     help="capture the training step's graphs and run one step of each "
                          "recycling count first, so that the evaluation runs beside what "
                          "a training rank holds (synchronous evaluation)")
    bev.add_argument("--async-rank", action="store_true",
                     help="evaluate as a rank that only evaluates (--num-async-eval-ranks): "
                          "with eval_plain_beside_training (the h100 preset) the evaluation "
                          "levers stay on")
    bev.add_argument("--gpu-memory-gib", type=float, default=None,
                     help="cap this process's GPU memory, e.g. 74.5 (an 80 GB GPU) to check "
                          "on a larger GPU that a preset fits an H100")
    bev.add_argument("--check-lddt", action="store_true",
                     help="compare the fast path's mean lDDT-Ca with fp32's on the mini "
                          "dataset's validation chains")
    bev.add_argument("--data-dir", type=Path, default=None,
                     help="--check-lddt: a mini dataset (default: the embedded one)")
    bev.add_argument("--checkpoint", type=Path, default=None,
                     help="--check-lddt: a trainer checkpoint whose SWA weights to use "
                          "(default: random weights, zero-initialised matrices re-drawn)")
    bev.add_argument("--val-chain-ids", default="",
                     help="--check-lddt: comma-separated chains (default: the mini "
                          "dataset's validation split)")
    bev.add_argument("--tolerance", type=float, default=1e-3,
                     help="--check-lddt: the largest |difference| that passes")
    bev.add_argument("--json", default=None, help="write the measurements here")
    bev.set_defaults(func=_cmd_bench_eval)

    train = sub.add_parser("train", help="train (the embedded default when --data-dir is absent)")
    _add_train_args(train)
    train.set_defaults(func=_cmd_train)

    data = sub.add_parser("data", help="datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    mini = data_sub.add_parser("build-mini", help="build the embedded mini dataset")
    mini.add_argument("out", type=Path)
    mini.set_defaults(func=_cmd_build_mini)
    add_data_commands(data_sub)
    add_plan_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
