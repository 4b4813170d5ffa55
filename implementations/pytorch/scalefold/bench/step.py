"""`scalefold bench step`: time complete training steps of named variants side by side.

A step is what the trainer does per batch: forward with n recycling iterations (the
gradient flows through the last only), the MLPerf loss, backward, gradient clipping to a
global norm of 0.1, Adam, and the SWA (EMA) update. Every variant's step is built by the
trainer's own builder (`scalefold.train.build.build_step`) from a `TrainConfig`, so a
variant times exactly what `scalefold train` with the same settings runs; it warms up and
then times `steps` steps for every n in `recycles` with CUDA events (perf_counter on CPU).

A variant is a speed preset with overrides (`parse_variant`):
`PRESET[@PRECISION][+FIELD[=VALUE]]...`, e.g. `h200`, `eager@tf32+ckpt`,
`h200+recompute_outer_product`, `h100+cuda_graphs=0+compile_glue=0`; FIELD is a
`SpeedConfig` field, and `ckpt` turns on activation checkpointing.

Reported per variant: the median step time per n, their uniform average (the benchmark
draws n uniformly from 0..3), the ratio to the first variant, samples/s (batch 1), peak
memory, and the FLOP rate from a `FlopCounterMode` count of the eager model (the step's
model FLOPs, which do not depend on how a variant computes them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from scalefold.bench.by_module import format_module_breakdown, module_breakdown, module_ranges
from scalefold.bench.roofline import card_roofline, format_gemm_rows, gemm_rows
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.train.build import BuiltStep, build_step
from scalefold.train.config import PRESETS, SpeedConfig, TrainConfig
from scalefold.train.topology import Topology
from scalefold.utils.synthetic import synthetic_batch

_TRUE, _FALSE = ("1", "true", "on", "yes"), ("0", "false", "off", "no")


@dataclass(frozen=True)
class Variant:
    """One way of running the step: a precision, the speed-ups, activation checkpointing."""

    name: str
    precision: str
    speed: SpeedConfig
    checkpointing: bool = False


def parse_variant(spec: str, common: dict | None = None) -> Variant:
    """`PRESET[@PRECISION][+FIELD[=VALUE]]...` (see the module docstring). `common`:
    SpeedConfig fields set for every variant (a command's field flags), applied over the
    preset; the variant's own fields win over them."""
    head, *overrides = spec.split("+")
    preset, _, precision = head.partition("@")
    if preset not in PRESETS:
        raise ValueError(f"variant {spec!r}: unknown preset {preset!r}; known: "
                         f"{sorted(PRESETS)}")
    precision = precision or PRESETS[preset].precision or "fp32"
    if precision not in ("fp32", "tf32", "bf16"):
        raise ValueError(f"variant {spec!r}: precision must be fp32, tf32 or bf16")
    kinds = {f.name: f for f in dataclasses.fields(SpeedConfig)}
    changes: dict = {}
    ckpt = False
    for item in overrides:
        name, eq, value = item.partition("=")
        if name == "ckpt" and not eq:
            ckpt = True
            continue
        if name not in kinds:
            raise ValueError(f"variant {spec!r}: {name!r} is not a SpeedConfig field "
                             f"(or ckpt); fields: {sorted(kinds)}")
        default = getattr(SpeedConfig(), name)
        if isinstance(default, bool):
            if eq and value.lower() not in _TRUE + _FALSE:
                raise ValueError(f"variant {spec!r}: {name}={value!r} is not a boolean")
            changes[name] = not eq or value.lower() in _TRUE
        elif not eq:
            raise ValueError(f"variant {spec!r}: {name} needs a value ({name}=...)")
        else:
            changes[name] = value
    speed = dataclasses.replace(PRESETS[preset].speed, **{**(common or {}), **changes})
    return Variant(spec, precision, speed, ckpt)


DEFAULT_VARIANTS = ("eager@tf32+ckpt", "h100", "h200")


@dataclass(frozen=True)
class Shapes:
    n_res: int
    n_clust: int
    n_extra: int
    n_templ: int


PRESET_SHAPES = {
    "mlperf": Shapes(256, 124, 1024, 4),  # crop 256, 124 clusters, 1024 extra, 4 templates
    "small": Shapes(64, 32, 64, 2),
    "tiny": Shapes(16, 8, 16, 2),
}


@dataclass(frozen=True)
class BenchConfig:
    preset: str = "mlperf"
    device: str = "cuda"
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    recycles: tuple[int, ...] = (0, 1, 2, 3)
    warmup: int = 2
    steps: int = 5
    seed: int = 0
    count_flops: bool = True
    activation_checkpointing: bool = False
    peak_tflops: float | None = None  # for utilisation; default by device
    profile: bool = False  # torch.profiler table of one n=0 step of the last variant
    memory_report: bool = False  # activations saved for backward, by module (last variant)
    # the last variant's step as run (graphs included) at the two smallest recycling
    # counts: kernel time against the time between kernels (`scalefold.bench.timeline`)
    timeline: bool = False
    shapes: Shapes | None = None  # default by preset


@dataclass
class RecycleResult:
    n: int
    times_s: list[float]
    peak_mem_gb: float

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)


@dataclass
class VariantResult:
    variant: Variant
    per_n: list[RecycleResult] = field(default_factory=list)
    setup_s: float = 0.0
    error: str | None = None
    checkpointing: bool = False  # ran with activation checkpointing (asked, or needed to fit)

    @property
    def avg_s(self) -> float:
        """Uniform average over the measured recycling counts."""
        return statistics.fmean(r.median_s for r in self.per_n)

    @property
    def peak_mem_gb(self) -> float:
        return max((r.peak_mem_gb for r in self.per_n), default=0.0)


def step_config(preset: str, variant: Variant, seed: int,
                activation_checkpointing: bool = False) -> TrainConfig:
    """The `TrainConfig` of a variant: the benchmark's defaults for everything else (lr,
    clip, SWA decay); no data is read."""
    return TrainConfig(
        data_dir=Path("."), output_dir=Path("."), preset=preset, precision=variant.precision,
        speed=variant.speed, seed=seed,
        activation_checkpointing=activation_checkpointing or variant.checkpointing,
    )


class StepRunner:
    """One variant's step as the trainer builds it; `step()` runs one training step."""

    def __init__(self, cfg: TrainConfig, device: torch.device,
                 topology: Topology | None = None) -> None:
        self.device = device
        torch.manual_seed(cfg.seed)  # dropout's stream; the weights have their own seed
        topo = topology or Topology(rank=0, world_size=1, num_eval_ranks=0)
        self.built: BuiltStep = build_step(cfg, device, topo, eval_copy=False)
        self.model = self.built.model
        self.train_step = self.built.step
        self.graphed = self.built.graphed
        self.use_clamped = torch.ones(cfg.local_batch_size, device=device)

    def prepare(self, *batches: dict[str, torch.Tensor]) -> None:
        """Capture these batch shapes' graphs (graph variants; warm-up included). Give
        every shape at once: warm-ups after a capture would need memory twice."""
        if self.graphed is not None:
            self.graphed.capture([(b, self.use_clamped) for b in batches])

    def step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.graphed is not None:
            return self.graphed(batch, self.use_clamped).loss
        return self.train_step(batch, self.use_clamped).loss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(runner: StepRunner, batch, warmup: int, steps: int) -> list[float]:
    device = runner.device
    runner.prepare(batch)
    for _ in range(warmup):
        runner.step(batch)
    _sync(device)
    times = []
    if device.type == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(steps)]
        for start, end in events:
            start.record()
            runner.step(batch)
            end.record()
        _sync(device)
        times = [s.elapsed_time(e) / 1e3 for s, e in events]
    else:
        for _ in range(steps):
            t0 = time.perf_counter()
            runner.step(batch)
            times.append(time.perf_counter() - t0)
    return times


def count_iteration_flops(model_cfg: AlphaFoldConfig, batch, device: torch.device,
                          seed: int) -> int:
    """FLOPs of one recycling iteration's forward pass (FlopCounterMode, matmul-class ops).

    Counted on the plain eager model without gradients, so it needs no activation memory
    and sees every matmul (the Triton kernels are invisible to the counter). A training
    step with n recycles is then (n + 3) of these: n gradient-free iterations plus the
    last one's forward and its backward (about twice a forward), the accounting behind
    the benchmark's ~53 TFLOP per step at ~11.8 TFLOP per forward.
    """
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(seed)
    model = AlphaFold(model_cfg).to(device).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(batch)
    del model
    return int(counter.get_total_flops())


# Device kernels by family, for the profile's breakdown: the first pattern found in the
# lower-cased kernel name decides. Triton kernels of this package by their function names
# (scalefold/kernels), inductor's generated ones by their "triton_" prefix, cuBLAS and
# CUTLASS GEMMs by their naming.
KERNEL_FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("attention forward (Triton)", ("_attn_fwd",)),
    ("attention backward (Triton)", ("_attn_bwd", "_bias_tile")),
    ("LayerNorm (Triton)", ("_ln_",)),
    ("sigmoid gates (Triton)", ("_gate_",)),
    ("outer product projection (Triton)", ("_opm_proj",)),
    ("compiled glue (inductor)", ("triton_",)),
    ("matmul (cuBLAS/CUTLASS)", ("gemm", "gemv", "cutlass", "xmma", "nvjet", "cublas",
                                 "splitk")),
    ("optimizer (fused Adam)", ("adam", "multi_tensor")),
    ("communication (NCCL)", ("nccl",)),
    ("LayerNorm and softmax (PyTorch)", ("layer_norm", "softmax")),
    ("copies and layout", ("memcpy", "memset", "copy", "catarray", "transpose", "permute")),
    ("reductions", ("reduce_kernel", "reduce", "norm_kernel")),
    ("other elementwise", ("elementwise", "vectorized", "unrolled")),
)


def kernel_family(name: str) -> str:
    """The `KERNEL_FAMILIES` family of one device kernel name ("other" if none)."""
    low = name.lower()
    for family, patterns in KERNEL_FAMILIES:
        if any(p in low for p in patterns):
            return family
    return "other"


def family_breakdown(kernels: list[tuple[str, float, int]]) -> list[tuple[str, float, int]]:
    """(family, device ms, launches) from (kernel name, device ms, launches), largest
    first."""
    totals: dict[str, list[float]] = {}
    for name, ms, count in kernels:
        t = totals.setdefault(kernel_family(name), [0.0, 0])
        t[0] += ms
        t[1] += count
    return sorted(((f, ms, int(n)) for f, (ms, n) in totals.items()), key=lambda r: -r[1])


def format_breakdown(rows: list[tuple[str, float, int]]) -> str:
    total = sum(ms for _, ms, _ in rows) or 1.0
    lines = [f"{'kernel family':36s} {'ms':>9s} {'share':>7s} {'launches':>9s}"]
    lines += [f"{f:36s} {ms:9.2f} {100 * ms / total:6.1f}% {n:9d}" for f, ms, n in rows]
    lines.append(f"{'total device time':36s} {total:9.2f}")
    return "\n".join(lines)


def is_annotation(name: str, evt=None) -> bool:
    """Spans the profiler draws on the GPU's timeline around kernels (inductor's
    "## Call CompiledFxGraph ..", "Optimizer.step#Adam.step"): counting them would count
    their kernels twice."""
    if evt is not None and getattr(evt, "is_user_annotation", False):
        return True
    return name.startswith(("## ", "Optimizer.", "ProfilerStep")) or "#" in name


def top_kernels(kernels: list[tuple[str, float, int]], rows: int = 15) -> str:
    """The largest kernels by device time, with their family."""
    lines = [f"{'kernel':70s} {'family':28s} {'ms':>8s} {'launches':>8s}"]
    for name, ms, n in sorted(kernels, key=lambda r: -r[1])[:rows]:
        lines.append(f"{name[:70]:70s} {kernel_family(name)[:28]:28s} {ms:8.2f} {n:8d}")
    return "\n".join(lines)


def _device_kernels(prof) -> list[tuple[str, float, int]]:
    from torch.autograd import DeviceType

    out = []
    for evt in prof.key_averages():
        if evt.device_type != DeviceType.CUDA or is_annotation(evt.key, evt):
            continue
        us = getattr(evt, "self_device_time_total", None)
        if us is None:
            us = evt.self_cuda_time_total
        out.append((evt.key, us / 1e3, evt.count))
    return out


def _profiled(runner: StepRunner, batch, detail: bool = True):
    """One step under torch.profiler, after one unprofiled. `detail`: input shapes and
    module ranges recorded (host work that slows the eager steps; the timeline leaves
    them out)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if runner.device.type == "cuda":
        acts.append(ProfilerActivity.CUDA)
    runner.prepare(batch)
    runner.step(batch)
    _sync(runner.device)
    ranges = module_ranges(runner.model) if detail else contextlib.nullcontext()
    with profile(activities=acts, record_shapes=detail) as prof, ranges:
        runner.step(batch)
        _sync(runner.device)
    return prof


def step_timeline(runner: StepRunner, batch, label: str) -> str:
    """Kernel time and idle time of one step as the variant runs it (its CUDA graph
    replayed, if it has graphs)."""
    from scalefold.bench.timeline import device_kernel_events, format_timeline, timeline

    prof = _profiled(runner, batch, detail=False)
    return format_timeline(timeline(device_kernel_events(prof)), label)


def breakdown_difference(more: list[tuple[str, float, int]], less: list[tuple[str, float, int]],
                         ) -> list[tuple[str, float, int]]:
    """Per family, `more` minus `less` (e.g. the step with one recycle minus the step
    without: what one gradient-free recycling forward costs), largest first."""
    base = {f: (ms, n) for f, ms, n in family_breakdown(less)}
    rows = []
    for f, ms, n in family_breakdown(more):
        b_ms, b_n = base.pop(f, (0.0, 0))
        rows.append((f, ms - b_ms, n - b_n))
    rows += [(f, -ms, -n) for f, (ms, n) in base.items()]
    return sorted(rows, key=lambda r: -r[1])


def profile_recycle(runner: StepRunner, batch0, batch1) -> str:
    """Kernel families of one gradient-free recycling forward: the n=1 step's profile
    minus the n=0 step's."""
    k0 = _device_kernels(_profiled(runner, batch0))
    k1 = _device_kernels(_profiled(runner, batch1))
    return ("one gradient-free recycling forward (n=1 step minus n=0 step):\n"
            + format_breakdown(breakdown_difference(k1, k0)))


def profile_step(runner: StepRunner, batch, rows: int = 25) -> str:
    """Operator table (self device time) of one training step."""
    prof = _profiled(runner, batch)
    key = "self_cuda_time_total" if runner.device.type == "cuda" else "self_cpu_time_total"
    kernels = prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)
    # The same step by operator and input shapes: which op (and which tensor) launches
    # the kernels above.
    ops = prof.key_averages(group_by_input_shape=True).table(
        sort_by=key, row_limit=2 * rows, max_name_column_width=40, max_shapes_column_width=90)
    text = kernels + "\n" + ops
    if runner.device.type == "cuda":
        # Inside CUDA graphs the profiler may see only the graph launches: profile a
        # variant with cuda_graphs=0 for the breakdown.
        kernels = _device_kernels(prof)
        text += ("\n" + format_breakdown(family_breakdown(kernels))
                 + "\n" + top_kernels(kernels)
                 + "\nthe forward by module (backward and update: outside):\n"
                 + format_module_breakdown(module_breakdown(prof),
                                           sum(k[1] for k in kernels),
                                           sum(k[2] for k in kernels))
                 + "\nmatrix products by shape (time of their kernels against each one's "
                   "floor):\n"
                 + format_gemm_rows(gemm_rows(prof, True), card_roofline(runner.device)))
    return text


def saved_activation_report(runner: StepRunner, batch: dict[str, torch.Tensor],
                            depth: int = 5, rows: int = 30) -> str:
    """What one forward + loss keeps for backward: bytes by module and dtype.

    Every tensor autograd saves (custom Triton functions included) passes through
    `saved_tensors_hooks`; it is charged to the innermost module, `depth` levels deep,
    whose forward is running, once per storage (views and re-saves of one buffer count
    once). Block indices are folded (`evoformer_stack.blocks.*.msa_att_row`), so a row
    sums over the stack's blocks. Parameters are left out. Runs one eager step.
    """
    import re

    model = runner.model
    stack: list[str] = ["(outside modules)"]
    handles = []

    def enter(name: str):
        def hook(module, args) -> None:
            stack.append(name)
        return hook

    def leave(module, args, output) -> None:  # returns None: the output is kept
        stack.pop()

    for name, mod in model.named_modules():
        if name and name.count(".") < depth:
            handles.append(mod.register_forward_pre_hook(
                enter(re.sub(r"\.\d+(?=\.|$)", ".*", name))))
            handles.append(mod.register_forward_hook(leave))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    totals: dict[tuple[str, str], int] = {}

    def pack(t: torch.Tensor):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params and ptr not in seen and t.device.type != "meta":
            seen.add(ptr)
            key = (stack[-1], str(t.dtype).replace("torch.", ""))
            totals[key] = totals.get(key, 0) + t.untyped_storage().nbytes()
        return t

    runner.train_step.reset_grads()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss, _ = runner.train_step.forward_backward(batch, runner.use_clamped)
    finally:
        for h in handles:
            h.remove()
        runner.train_step.reset_grads()
    del loss
    total = sum(totals.values())
    by_dtype: dict[str, int] = {}
    for (_, dt), b in totals.items():
        by_dtype[dt] = by_dtype.get(dt, 0) + b
    lines = [f"saved for backward: {total / 2**30:.2f} GiB in all; by dtype: " + ", ".join(
        f"{dt} {b / 2**30:.2f} GiB" for dt, b in sorted(by_dtype.items(), key=lambda x: -x[1]))]
    lines.append(f"{'module':48s}{'dtype':>10s}{'GiB':>9s}{'share':>8s}")
    for (mod, dt), b in sorted(totals.items(), key=lambda x: -x[1])[:rows]:
        lines.append(f"{mod[:48]:48s}{dt:>10s}{b / 2**30:9.3f}{100 * b / max(total, 1):7.1f}%")
    return "\n".join(lines)


def _slice(batch: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    return {k: v[..., : n + 1] for k, v in batch.items()}


def default_peak_tflops(device: torch.device) -> float | None:
    """Dense bf16 tensor-core peak (datasheet) for utilisation; None if unknown."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    if "H100" in name or "H200" in name or "GH200" in name:
        return 989.0
    if "A100" in name:
        return 312.0
    return None


def _sweep(runner: StepRunner, full, cfg: BenchConfig, name: str, log) -> list[RecycleResult]:
    device = runner.device
    out = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runner.prepare(*(_slice(full, n) for n in cfg.recycles))
    # Graph variants allocate their activations once, at capture: that peak counts too.
    capture_peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    for n in cfg.recycles:
        batch = _slice(full, n)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = time_steps(runner, batch, cfg.warmup, cfg.steps)
        mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
        mem = max(mem, capture_peak)
        out.append(RecycleResult(n, times, mem))
        log(f"  {name:28s} n={n} median {statistics.median(times):.4f} s peak {mem:.1f} GiB")
    return out


def run_bench(cfg: BenchConfig, log=print, variants: list[Variant] | None = None,
              after_variant=None) -> tuple[list[VariantResult], dict[int, int]]:
    """Run every variant (`cfg.variants`, or `variants` given as objects); returns results
    and the FLOPs per step for each n. `after_variant(results, flops)` runs after each
    variant (the CLI rewrites its JSON there, so a process cut short keeps what ran)."""
    device = torch.device(cfg.device)
    model_cfg = getattr(AlphaFoldConfig, cfg.preset)()
    shapes = cfg.shapes or PRESET_SHAPES[cfg.preset]
    if variants is None:
        variants = [parse_variant(v) for v in cfg.variants]  # every spec checked first
    full = synthetic_batch(model_cfg, shapes.n_res, shapes.n_clust, shapes.n_extra,
                           shapes.n_templ, num_iterations=max(cfg.recycles) + 1, seed=cfg.seed,
                           device=device)
    flops: dict[int, int] = {}
    if cfg.count_flops:
        f_iter = count_iteration_flops(model_cfg, _slice(full, 0), device, cfg.seed)
        flops = {n: (n + 3) * f_iter for n in cfg.recycles}
        log(f"  one forward iteration: {f_iter / 1e12:.3f} TFLOP")
    results: list[VariantResult] = []
    saved_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    saved_blas = torch.backends.cuda.preferred_blas_library()
    try:
        for variant in variants:
            name = variant.name
            res = VariantResult(variant)
            results.append(res)
            t0 = time.perf_counter()
            runner = None
            ckpt = cfg.activation_checkpointing or variant.checkpointing
            res.checkpointing = ckpt
            try:
                if cfg.memory_report and name == cfg.variants[-1]:
                    # On a model of its own, built the same way: the report's eager step
                    # runs on the default stream, and nothing of it (autograd nodes of
                    # the parameters, compiled code's state) may reach a later capture.
                    report_runner = StepRunner(step_config(cfg.preset, variant, cfg.seed, ckpt),
                                               device)
                    log(saved_activation_report(report_runner, _slice(full, 0)))
                    del report_runner
                    gc.collect()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                runner = StepRunner(step_config(cfg.preset, variant, cfg.seed, ckpt), device)
                oom = False
                try:
                    res.per_n = _sweep(runner, full, cfg, name, log)
                except torch.OutOfMemoryError:
                    if ckpt:
                        raise
                    oom = True  # retried below, once the exception's frames are freed
                if oom:
                    # Too big without recomputation: rerun this variant with it on (the
                    # table says so) rather than losing the row.
                    log(f"  {name}: out of memory; again with activation checkpointing")
                    runner = None
                    gc.collect()
                    torch.cuda.empty_cache()
                    res.checkpointing = True
                    runner = StepRunner(step_config(cfg.preset, variant, cfg.seed, True),
                                        device)
                    res.per_n = _sweep(runner, full, cfg, name, log)
            except Exception as e:  # noqa: BLE001 - one failing variant must not stop the rest
                res.error = f"{type(e).__name__}: {e}"[:300]
                log(f"  {name}: FAILED {res.error}")
            res.setup_s = time.perf_counter() - t0
            log(f"  {name}: {res.setup_s:.1f} s (build, compile, capture, timing)")
            if cfg.profile and name == cfg.variants[-1] and runner is not None and not res.error:
                log(profile_step(runner, _slice(full, 0)))
                if device.type == "cuda" and 1 in cfg.recycles:
                    log(profile_recycle(runner, _slice(full, 0), _slice(full, 1)))
            if cfg.timeline and name == cfg.variants[-1] and runner is not None and not res.error:
                for n in sorted(cfg.recycles)[:2]:  # n=0, and one with a recycling forward
                    log(step_timeline(runner, _slice(full, n), f"{name} n={n} step as run"))

            del runner
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if after_variant is not None:
                after_variant(results, flops)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved_tf32
        torch.backends.cuda.preferred_blas_library(saved_blas)
    return results, flops


def format_table(results: list[VariantResult], flops: dict[int, int], recycles: tuple[int, ...],
                 peak_tflops: float | None) -> str:
    head = f"{'variant':28s}" + "".join(f"{'n=' + str(n):>9s}" for n in recycles)
    head += f"{'avg s':>9s}{'x first':>9s}{'samp/s':>8s}{'peakGiB':>9s}{'TFLOP/s':>9s}"
    if peak_tflops:
        head += f"{'MFU%':>7s}"
    lines = [head]
    base = next((r.avg_s for r in results if r.per_n and not r.error), None)
    avg_flops = statistics.fmean(flops[n] for n in recycles) if flops else None
    for r in results:
        if r.error or not r.per_n:
            lines.append(f"{r.variant.name:28s} FAILED: {r.error}")
            continue
        label = r.variant.name + ("+ckpt" if r.checkpointing and not r.variant.checkpointing
                                  else "")
        row = f"{label:28s}" + "".join(f"{x.median_s:9.4f}" for x in r.per_n)
        ratio = base / r.avg_s if base else float("nan")
        row += f"{r.avg_s:9.4f}{ratio:9.2f}{1.0 / r.avg_s:8.3f}{r.peak_mem_gb:9.1f}"
        if avg_flops:
            rate = avg_flops / r.avg_s / 1e12
            row += f"{rate:9.3f}"
            if peak_tflops:
                row += f"{100 * rate / peak_tflops:7.1f}"
        lines.append(row)
    if flops:
        lines.append("model FLOPs/step: " + ", ".join(
            f"n={n}: {flops[n] / 1e9:.2f} G" for n in recycles))
    return "\n".join(lines)


def results_json(cfg: BenchConfig, results: list[VariantResult], flops: dict[int, int]) -> str:
    env = {"torch": torch.__version__}
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    out = {
        "config": asdict(cfg), "env": env, "flops": flops,
        "results": [
            {"variant": asdict(r.variant), "name": r.variant.name, "error": r.error, "setup_s": r.setup_s,
             "checkpointing": r.checkpointing,
             "per_n": [asdict(x) | {"median_s": x.median_s} for x in r.per_n]}
            for r in results
        ],
    }
    return json.dumps(out, indent=1)


def main(cfg: BenchConfig, json_path: str | None = None) -> int:
    from scalefold.train.distributed import discover, init_process_group, shutdown_process_group

    device = torch.device(cfg.device)
    peak = cfg.peak_tflops or default_peak_tflops(device)
    # Under `torchrun --nproc-per-node 1` the process joins a group of one, as the trainer
    # does: a `grad_sync=flat` variant then runs its all-reduce between the graphs, so the
    # multi-rank step and the single-rank one are timed side by side in one process.
    denv = discover()
    if denv.world_size > 1:
        raise SystemExit("bench step times one rank: launch it with one process "
                         "(several ranks: scalefold bench dp / bench dap)")
    init_process_group(denv, device)
    group = (f" process_group={torch.distributed.get_backend()}x1"
             if torch.distributed.is_initialized() else "")
    print(f"bench step: preset={cfg.preset} device={device} torch={torch.__version__} "
          f"variants={','.join(cfg.variants)} recycles={cfg.recycles} "
          f"warmup={cfg.warmup} steps={cfg.steps}{group}")

    def write_json(results: list[VariantResult], flops: dict[int, int]) -> None:
        if json_path:  # after every variant: the last write holds them all
            Path(json_path).write_text(results_json(cfg, results, flops))

    try:
        results, flops = run_bench(cfg, after_variant=write_json)
    finally:
        shutdown_process_group()
    print(format_table(results, flops, cfg.recycles, peak))
    return 0 if all(r.error is None for r in results) else 1
