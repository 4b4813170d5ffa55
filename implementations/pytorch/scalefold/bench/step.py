"""`scalefold bench step`: time complete training steps of named variants side by side.

A step is what the trainer does per batch: forward with n recycling iterations (the
gradient flows through the last only), the MLPerf loss, backward, gradient clipping to a
global norm of 0.1, Adam, and the SWA (EMA) update. Each variant builds the same model
(same seed), applies its speed-ups from outside (`scalefold.kernels`), warms up and then
times `steps` steps for every n in `recycles` with CUDA events (perf_counter on CPU).

Reported per variant: the median step time per n, their uniform average (the benchmark
draws n uniformly from 0..3), the ratio to the first variant, samples/s (batch 1), peak
memory, and the FLOP rate from a `FlopCounterMode` count of the eager model (the step's
model FLOPs, which do not depend on how a variant computes them).
"""

from __future__ import annotations

import contextlib
import gc
import json
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from scalefold.losses import AlphaFoldLoss, LossConfig
from scalefold.model import AlphaFold, AlphaFoldConfig
from scalefold.train.config import SpeedConfig
from scalefold.train.flat_params import FlatParameters
from scalefold.train.graphs import GraphedTrainStep
from scalefold.train.step import FlatGradSync, TrainStep, apply_speedups, make_adam
from scalefold.train.swa import WeightEMA
from scalefold.utils.synthetic import synthetic_batch

GRAD_CLIP = 0.1  # MLPerf reference's gradient_clip_norm
SWA_DECAY = 0.9


@dataclass(frozen=True)
class Variant:
    """One way of running the step. Fields are cumulative switches."""

    name: str
    precision: str = "fp32"  # fp32 | tf32 | bf16 (autocast, fp32 master weights)
    attention: str = "eager"  # eager | sdpa | triton
    layer_norm: str = "eager"  # eager | triton
    layer_norm_output: str = "fp32"  # fp32 | compute (bf16 under autocast)
    fp32_islands: bool = True  # bf16 only: structure module + heads in fp32
    fused_optimizer: bool = False  # Adam(fused=True) with the clip folded into its scale
    compile: bool = False  # torch.compile of the elementwise glue blocks
    compile_attn: bool = False  # ...and of the attention blocks
    cuda_graphs: bool = False  # the whole step captured per recycling count
    recompute_opm: bool = False  # OuterProductMean recomputed in backward (memory)
    opm_kernel: bool = False  # its projection without layout copies (Triton)
    matvec_bias_grad: bool = False  # Linear bias gradients as a matvec
    trimul_cf: bool = False  # triangle multiplication channels-first
    trimul_ln: bool = False  # ...with its output LayerNorm reading channels-first
    dq_kernel: bool = False  # Triton attention's dq from its own kernel
    store_ds: bool = False  # Triton attention's backward stores dS (bias-gradient calls)
    trimul_bias: str = "baddbmm"  # how the trimul projection's bias is applied
    fused_gate: bool = False  # sigmoid gates as one Triton kernel each way
    flat_params: bool = False  # parameters and gradients in two flat buffers
    # Activation checkpointing from the start: the eager baselines do not fit without it
    # at the benchmark's shapes, and one process can then time them beside the fast rows.
    checkpointing: bool = False

    def speed(self) -> SpeedConfig:
        return SpeedConfig(attention=self.attention, layer_norm=self.layer_norm,
                           layer_norm_output=self.layer_norm_output,
                           fused_optimizer=self.fused_optimizer, compile_glue=self.compile,
                           compile_attention=self.compile_attn,
                           cuda_graphs=self.cuda_graphs,
                           recompute_outer_product=self.recompute_opm,
                           opm_projection_kernel=self.opm_kernel,
                           matvec_bias_grad=self.matvec_bias_grad,
                           trimul_channel_first=self.trimul_cf,
                           trimul_norm_kernel=self.trimul_ln,
                           attention_dq_kernel=self.dq_kernel,
                           attention_store_ds=self.store_ds,
                           trimul_projection_bias=self.trimul_bias,
                           fused_gate=self.fused_gate, flat_params=self.flat_params)


_TRI = dict(precision="bf16", attention="triton", layer_norm="triton")
# Session 4's `fast`, the base the session-5 switches were measured against
_FAST_S4 = dict(**_TRI, layer_norm_output="compute", fused_optimizer=True, cuda_graphs=True,
                matvec_bias_grad=True, trimul_cf=True, dq_kernel=True, fused_gate=True,
                compile=True)
# Session 5's `fast`, the base of session 6's measurements
_FAST_S5 = dict(**_FAST_S4, trimul_ln=True, opm_kernel=True)
_FAST = dict(**_FAST_S5, store_ds=True)
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("fp32"),
        Variant("tf32", precision="tf32"),
        Variant("fp32+ckpt", checkpointing=True),
        Variant("tf32+ckpt", precision="tf32", checkpointing=True),
        Variant("bf16", precision="bf16"),
        Variant("bf16+sdpa", precision="bf16", attention="sdpa"),
        Variant("bf16+tri_attn", precision="bf16", attention="triton"),
        Variant("bf16+tri_attn+tri_ln", **_TRI),
        Variant("bf16+tri+fused_opt", **_TRI, fused_optimizer=True),
        Variant("bf16+tri+fused_opt+compile", **_TRI, fused_optimizer=True, compile=True),
        Variant("bf16+tri+fused_opt+bf16_ln", **_TRI, fused_optimizer=True,
                layer_norm_output="compute"),
        # fp32 in graphs: exact comparisons of graphed steps (DAP against one process)
        Variant("fp32+fused_opt+graphs", fused_optimizer=True, cuda_graphs=True),
        Variant("bf16+tri+fused_opt+bf16_ln+graphs", **_TRI, fused_optimizer=True,
                layer_norm_output="compute", cuda_graphs=True),
        Variant("bf16+tri+fused_opt+bf16_ln+graphs+opm_recompute", **_TRI,
                fused_optimizer=True, layer_norm_output="compute", cuda_graphs=True,
                recompute_opm=True),
        Variant("bf16+tri+fused_opt+bf16_ln+graphs+opm_recompute+mvbias", **_TRI,
                fused_optimizer=True, layer_norm_output="compute", cuda_graphs=True,
                recompute_opm=True, matvec_bias_grad=True),
        Variant("bf16+tri+fused_opt+bf16_ln+graphs+opm_recompute+mvbias+trimul_cf", **_TRI,
                fused_optimizer=True, layer_norm_output="compute", cuda_graphs=True,
                recompute_opm=True, matvec_bias_grad=True, trimul_cf=True),
        Variant("bf16+tri+fused_opt+bf16_ln+graphs+opm_recompute+mvbias+dq_kernel", **_TRI,
                fused_optimizer=True, layer_norm_output="compute", cuda_graphs=True,
                recompute_opm=True, matvec_bias_grad=True, dq_kernel=True),
        Variant("bf16+tri+fused_opt+bf16_ln+graphs+opm_recompute+mvbias+gate", **_TRI,
                fused_optimizer=True, layer_norm_output="compute", cuda_graphs=True,
                recompute_opm=True, matvec_bias_grad=True, fused_gate=True),
        Variant("bf16+tri+fused_opt+bf16_ln+graphs+opm_recompute+mvbias+all_new", **_TRI,
                fused_optimizer=True, layer_norm_output="compute", cuda_graphs=True,
                recompute_opm=True, matvec_bias_grad=True, trimul_cf=True, dq_kernel=True,
                fused_gate=True),
        Variant("bf16+tri+fused_opt+bf16_ln+graphs+opm_recompute+mvbias+all_new+compile",
                **_TRI, fused_optimizer=True, layer_norm_output="compute", cuda_graphs=True,
                recompute_opm=True, matvec_bias_grad=True, trimul_cf=True, dq_kernel=True,
                fused_gate=True, compile=True),
        Variant("bf16+tri+fused_opt+bf16_ln+graphs+mvbias+all_new+compile",
                **_TRI, fused_optimizer=True, layer_norm_output="compute", cuda_graphs=True,
                matvec_bias_grad=True, trimul_cf=True, dq_kernel=True, fused_gate=True,
                compile=True),
        # What `scalefold train --fast` runs (the H200 config), the same plus the outer
        # product mean's recompute (the H100 configs' memory), and the kernels of `fast`
        # without the graph, for --profile.
        Variant("fast", **_FAST),
        Variant("fast+opm_recompute", **_FAST, recompute_opm=True),
        Variant("fast_eager", **{**_FAST, "cuda_graphs": False}),
        Variant("fast+compile_attn", **_FAST, compile_attn=True),
        Variant("fast+flat", **_FAST, flat_params=True),
        Variant("fast+opm_recompute+flat", **_FAST, recompute_opm=True, flat_params=True),
        Variant("fast+trimul_gate", **_FAST, trimul_bias="gate"),
        Variant("fast+opm_recompute+trimul_gate", **_FAST, recompute_opm=True,
                trimul_bias="gate"),
        Variant("fast+trimul_mv", **_FAST, trimul_bias="gate_matvec"),
        Variant("fast+opm_recompute+trimul_mv", **_FAST, recompute_opm=True,
                trimul_bias="gate_matvec"),
        # Session 6's rows: session 5's `fast` without and with the stored dS
        Variant("fast_s5", **_FAST_S5),
        Variant("fast_s5+opm_recompute", **_FAST_S5, recompute_opm=True),
        Variant("fast_s5+opm_recompute+flat", **_FAST_S5, recompute_opm=True,
                flat_params=True),
        Variant("fast+opm_recompute+compile_attn", **_FAST, recompute_opm=True,
                compile_attn=True),
        # Session 5's measurements of the switches beside session 4's `fast`
        Variant("fast_s4+opm_recompute", **_FAST_S4, recompute_opm=True),
        Variant("fast_s4+opm_recompute+trimul_ln", **_FAST_S4, recompute_opm=True,
                trimul_ln=True),
        Variant("fast_s4+opm_recompute+opm_kernel", **_FAST_S4, recompute_opm=True,
                opm_kernel=True),
        Variant("fast_s4+opm_recompute+compile_attn", **_FAST_S4, recompute_opm=True,
                compile_attn=True),
        Variant("fast_s4+opm_recompute+new3", **_FAST_S4, recompute_opm=True,
                trimul_ln=True, opm_kernel=True, compile_attn=True),
        # Session 4's `all_new` kernels eager, without graphs or compile: the profile of
        # docs/PERFORMANCE.md "Where the remaining time goes" (session 4).
        Variant("bf16+tri+fused_opt+bf16_ln+mvbias+all_new", **_TRI, fused_optimizer=True,
                layer_norm_output="compute", matvec_bias_grad=True, trimul_cf=True,
                dq_kernel=True, fused_gate=True),
        Variant("bf16+tri+fused_opt+bf16_ln+compile+graphs", **_TRI, fused_optimizer=True,
                layer_norm_output="compute", compile=True, cuda_graphs=True),
        # Ablations (not cumulative)
        Variant("tf32+fused_opt+graphs", precision="tf32", fused_optimizer=True,
                cuda_graphs=True),
        Variant("bf16+tri+fused_opt+graphs", **_TRI, fused_optimizer=True, cuda_graphs=True),
        Variant("bf16+tri+fused_opt+flat", **_TRI, fused_optimizer=True, flat_params=True),
        Variant("bf16_no_fp32_islands", precision="bf16", fp32_islands=False),
        Variant("bf16+compile", precision="bf16", compile=True),
    )
}
DEFAULT_VARIANTS = (
    "fp32", "tf32", "bf16", "bf16+sdpa", "bf16+tri_attn", "bf16+tri_attn+tri_ln",
    "bf16+tri+fused_opt",
)


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


class StepRunner:
    """Model, loss, optimizer and EMA of one variant; `step()` runs one training step."""

    def __init__(self, model_cfg: AlphaFoldConfig, variant: Variant, device: torch.device,
                 seed: int, activation_checkpointing: bool = False) -> None:
        self.variant = variant
        self.device = device
        speed = variant.speed()
        if speed.cuda_graphs and device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        torch.manual_seed(seed)
        model = AlphaFold(model_cfg).to(device)
        model.train()
        model.set_activation_checkpointing(activation_checkpointing)
        apply_speedups(model, speed, variant.precision, device.type, variant.fp32_islands)
        self.model = model
        self.flat = FlatParameters(list(model.parameters())) if speed.flat_params else None
        self.params = ([self.flat.param] if self.flat else
                       [p for p in model.parameters() if p.requires_grad])
        self.optimizer = make_adam(self.params, 1e-3, device, fused=speed.fused_optimizer,
                                   capturable=speed.cuda_graphs)
        self.loss_fn = AlphaFoldLoss(LossConfig.mlperf()).to(device)  # has table buffers
        self.ema = WeightEMA(model, decay=SWA_DECAY, flat=self.flat)
        self.use_clamped = torch.ones(1, device=device)
        grad_sync = (FlatGradSync(flat=self.flat.grad, between_graphs=False) if self.flat
                     else None)
        self.train_step = TrainStep(model, self.params, self.optimizer, self.loss_fn,
                                    self.ema, model, GRAD_CLIP, fused=speed.fused_optimizer,
                                    autocast=self.autocast, grad_sync=grad_sync)
        self.graphed = GraphedTrainStep(self.train_step) if speed.cuda_graphs else None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.variant.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

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


def _set_matmul_precision(precision: str) -> None:
    # tf32 for the tf32 variant and for the fp32 islands of bf16 variants.
    allow = precision in ("tf32", "bf16")
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow


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


def profile_step(runner: StepRunner, batch, rows: int = 25) -> str:
    """Operator table (self device time) of one training step."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU]
    if runner.device.type == "cuda":
        acts.append(ProfilerActivity.CUDA)
    runner.prepare(batch)
    runner.step(batch)
    _sync(runner.device)
    with profile(activities=acts, record_shapes=True) as prof:
        runner.step(batch)
        _sync(runner.device)
    key = "self_cuda_time_total" if runner.device.type == "cuda" else "self_cpu_time_total"
    kernels = prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)
    # The same step by operator and input shapes: which op (and which tensor) launches
    # the kernels above.
    ops = prof.key_averages(group_by_input_shape=True).table(
        sort_by=key, row_limit=2 * rows, max_name_column_width=40, max_shapes_column_width=90)
    return kernels + "\n" + ops


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


def run_bench(cfg: BenchConfig, log=print) -> tuple[list[VariantResult], dict[int, int]]:
    """Run every variant; returns results and the FLOPs per step for each n."""
    device = torch.device(cfg.device)
    model_cfg = getattr(AlphaFoldConfig, cfg.preset)()
    shapes = cfg.shapes or PRESET_SHAPES[cfg.preset]
    unknown = [v for v in cfg.variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
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
    try:
        for name in cfg.variants:
            variant = VARIANTS[name]
            res = VariantResult(variant)
            results.append(res)
            t0 = time.perf_counter()
            runner = None
            ckpt = cfg.activation_checkpointing or variant.checkpointing
            res.checkpointing = ckpt
            try:
                _set_matmul_precision(variant.precision)
                if cfg.memory_report and name == cfg.variants[-1]:
                    # On a model of its own, built the same way: the report's eager step
                    # runs on the default stream, and nothing of it (autograd nodes of
                    # the parameters, compiled code's state) may reach a later capture.
                    report_runner = StepRunner(model_cfg, variant, device, cfg.seed, ckpt)
                    log(saved_activation_report(report_runner, _slice(full, 0)))
                    del report_runner
                    gc.collect()
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                runner = StepRunner(model_cfg, variant, device, cfg.seed, ckpt)
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
                    runner = StepRunner(model_cfg, variant, device, cfg.seed, True)
                    res.per_n = _sweep(runner, full, cfg, name, log)
            except Exception as e:  # noqa: BLE001 - one failing variant must not stop the rest
                res.error = f"{type(e).__name__}: {e}"[:300]
                log(f"  {name}: FAILED {res.error}")
            res.setup_s = time.perf_counter() - t0
            if cfg.profile and name == cfg.variants[-1] and runner is not None and not res.error:
                log(profile_step(runner, _slice(full, 0)))

            del runner
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved_tf32
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
            {"variant": asdict(r.variant), "error": r.error, "setup_s": r.setup_s,
             "checkpointing": r.checkpointing,
             "per_n": [asdict(x) | {"median_s": x.median_s} for x in r.per_n]}
            for r in results
        ],
    }
    return json.dumps(out, indent=1)


def main(cfg: BenchConfig, json_path: str | None = None) -> int:
    device = torch.device(cfg.device)
    peak = cfg.peak_tflops or default_peak_tflops(device)
    print(f"bench step: preset={cfg.preset} device={device} torch={torch.__version__} "
          f"variants={','.join(cfg.variants)} recycles={cfg.recycles} "
          f"warmup={cfg.warmup} steps={cfg.steps}")
    results, flops = run_bench(cfg)
    print(format_table(results, flops, cfg.recycles, peak))
    if json_path:
        with open(json_path, "w") as f:
            f.write(results_json(cfg, results, flops))
    return 0 if all(r.error is None for r in results) else 1
