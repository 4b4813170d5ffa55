"""`scalefold bench layernorm`: the Triton LayerNorm kernels at the model's own shapes.

One forward of the model (bf16, Triton kernels, the preset's benchmark shapes) records
every LayerNorm call: rows, channels, input and output dtypes. Each distinct shape is
timed on its own, forward and backward, with the default launch and with candidate
launches (`LayerNormLaunch`: rows per program, warps, backward program count); times
are CUDA-graph replays (`scalefold.bench._kernel_bench.time_call`), so launch overhead stays out.
The summary weights by the call counts: what a training step would gain (the step
itself decides: `bench step`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from scalefold.bench._kernel_bench import print_and_dump, recorded_forward, time_call
from scalefold.kernels.layer_norm import (
    DEFAULT_LAUNCH,
    LayerNormLaunch,
    TritonLayerNorm,
    layer_norm,
)

FWD_CANDIDATES = tuple(LayerNormLaunch(block_elems=e, fwd_warps=w)
                       for e in (2048, 4096, 8192, 16384) for w in (4, 8))
BWD_CANDIDATES = tuple(LayerNormLaunch(bwd_block_elems=e, bwd_warps=w, bwd_programs=p)
                       for e in (4096, 8192, 16384) for w in (4, 8)
                       for p in (1024, 4096, 16384)) + tuple(
    # streaming: a few programs a multiprocessor (132 on an H100/H200), each over many
    # small blocks with the next block's loads in flight
    LayerNormLaunch(bwd_block_elems=e, bwd_warps=w, bwd_programs=p, bwd_stream=True)
    for e in (1024, 2048, 4096) for w in (4,) for p in (264, 528, 1056))


@dataclass(frozen=True)
class LNShape:
    rows: int
    c: int
    dtype: str  # input
    out_dtype: str

    @property
    def label(self) -> str:
        return f"{self.rows}x{self.c} {self.dtype}->{self.out_dtype}"

    def bytes_fwd(self) -> int:
        i, o = getattr(torch, self.dtype).itemsize, getattr(torch, self.out_dtype).itemsize
        return self.rows * self.c * (i + o)

    def bytes_bwd(self) -> int:
        # reads x and dy, writes dx
        i, o = getattr(torch, self.dtype).itemsize, getattr(torch, self.out_dtype).itemsize
        return self.rows * self.c * (2 * i + o)


def record_shapes(preset: str, device: torch.device, seed: int = 0) -> dict[LNShape, int]:
    """LayerNorm shapes of one training forward (n=0) and their counts."""
    seen: dict[LNShape, int] = {}

    def hook(module, args, out):
        x = args[0]
        key = LNShape(x.numel() // x.shape[-1], x.shape[-1],
                      str(x.dtype).replace("torch.", ""), str(out.dtype).replace("torch.", ""))
        seen[key] = seen.get(key, 0) + 1

    def instrument(model: torch.nn.Module) -> None:
        for m in model.modules():
            if isinstance(m, TritonLayerNorm):
                m.register_forward_hook(hook)

    recorded_forward(preset, device, seed, instrument)
    return seen


@dataclass
class ShapeResult:
    shape: LNShape
    calls: int
    fwd_s: dict[str, float] = field(default_factory=dict)  # launch name -> seconds
    bwd_s: dict[str, float] = field(default_factory=dict)

    def best(self, kind: str) -> tuple[str, float]:
        times = self.fwd_s if kind == "fwd" else self.bwd_s
        name = min(times, key=times.get)
        return name, times[name]


def time_shape(shape: LNShape, calls: int, device: torch.device, warmup: int, reps: int,
               sweep: bool) -> ShapeResult:
    gen = torch.Generator(device=device).manual_seed(0)
    dt, out_dt = getattr(torch, shape.dtype), getattr(torch, shape.out_dtype)
    x = torch.randn(shape.rows, shape.c, generator=gen, device=device).to(dt)
    x.requires_grad_(True)
    w = (1 + 0.1 * torch.randn(shape.c, generator=gen, device=device)).requires_grad_(True)
    b = (0.1 * torch.randn(shape.c, generator=gen, device=device)).requires_grad_(True)
    dy = torch.randn(shape.rows, shape.c, generator=gen, device=device).to(out_dt)
    # Under autocast the kernel returns `out_dtype`; outside it, x's dtype. Time it as
    # the model runs it.
    ac = torch.autocast(device.type, dtype=out_dt) if out_dt != dt else None

    def fwd(launch: LayerNormLaunch):
        def run():
            if ac is None:
                return layer_norm(x, w, b, 1e-5, "compute", launch)
            with ac:
                return layer_norm(x, w, b, 1e-5, "compute", launch)
        return run

    def bwd(launch: LayerNormLaunch):
        y = fwd(launch)()
        return lambda: torch.autograd.grad(y, (x, w, b), dy, retain_graph=True)

    res = ShapeResult(shape, calls)
    fwd_set = {DEFAULT_LAUNCH, *FWD_CANDIDATES} if sweep else {DEFAULT_LAUNCH}
    bwd_set = {DEFAULT_LAUNCH, *BWD_CANDIDATES} if sweep else {DEFAULT_LAUNCH}
    for kind, launches, make, times in (("fwd", fwd_set, fwd, res.fwd_s),
                                        ("bwd", bwd_set, bwd, res.bwd_s)):
        for launch in sorted(launches, key=lambda lc: lc.name):
            try:
                times[launch.name] = time_call(make(launch), warmup, reps, device)
            except Exception as e:  # noqa: BLE001 - a launch that does not fit (registers)
                if launch == DEFAULT_LAUNCH:
                    raise
                times[launch.name] = float("inf")
                print(f"    {shape.label} {kind} {launch.name}: {type(e).__name__}: "
                      f"{str(e)[:80]}")
    return res


@dataclass(frozen=True)
class LNBenchConfig:
    preset: str = "mlperf"
    device: str = "cuda"
    warmup: int = 2
    reps: int = 20
    seed: int = 0
    sweep: bool = True
    bandwidth_gbs: float = 4800.0  # for the byte bound (H200 HBM3e: 4.8 TB/s)


def run(cfg: LNBenchConfig, log=print) -> list[ShapeResult]:
    device = torch.device(cfg.device)
    seen = record_shapes(cfg.preset, device, cfg.seed)
    log(f"bench layernorm: preset={cfg.preset} device={device} torch={torch.__version__} "
        f"shapes={len(seen)} calls per forward={sum(seen.values())}")
    order = sorted(seen.items(), key=lambda kv: -kv[1] * kv[0].bytes_bwd())
    out = []
    t0 = time.perf_counter()
    for shape, calls in order:
        r = time_shape(shape, calls, device, cfg.warmup, cfg.reps, cfg.sweep)
        out.append(r)
        log(f"  {shape.label} x{calls}: fwd {r.fwd_s[DEFAULT_LAUNCH.name] * 1e3:.3f} ms, "
            f"bwd {r.bwd_s[DEFAULT_LAUNCH.name] * 1e3:.3f} ms ({time.perf_counter() - t0:.0f} s)")
    return out


def format_table(results: list[ShapeResult], bandwidth_gbs: float) -> str:
    d = DEFAULT_LAUNCH.name
    lines = [f"{'shape':30s}{'calls':>6s}{'fwd':>9s}{'GB/s':>7s}{'bwd':>9s}{'GB/s':>7s}  "
             f"{'best fwd':>26s}  {'best bwd':>26s}   (ms; default launch {d})"]
    tot = {"fwd": 0.0, "bwd": 0.0, "fwd_best": 0.0, "bwd_best": 0.0, "bound": 0.0}
    best_fwd: dict[str, float] = {}
    best_bwd: dict[str, float] = {}
    for r in results:
        f, bw = r.fwd_s[d], r.bwd_s[d]
        fn, fs = r.best("fwd")
        bn, bs = r.best("bwd")
        lines.append(f"{r.shape.label[:30]:30s}{r.calls:6d}{f * 1e3:9.3f}"
                     f"{r.shape.bytes_fwd() / f / 1e9:7.0f}{bw * 1e3:9.3f}"
                     f"{r.shape.bytes_bwd() / bw / 1e9:7.0f}  {fn:>17s} {fs * 1e3:8.3f}"
                     f"  {bn:>17s} {bs * 1e3:8.3f}")
        tot["fwd"] += r.calls * f
        tot["bwd"] += r.calls * bw
        tot["fwd_best"] += r.calls * fs
        tot["bwd_best"] += r.calls * bs
        tot["bound"] += r.calls * (r.shape.bytes_fwd() + r.shape.bytes_bwd()) / (
            bandwidth_gbs * 1e9)
        # One launch for all shapes: the weighted time each candidate would give.
        for name, s in r.fwd_s.items():
            best_fwd[name] = best_fwd.get(name, 0.0) + r.calls * s
        for name, s in r.bwd_s.items():
            best_bwd[name] = best_bwd.get(name, 0.0) + r.calls * s
    uf = min(best_fwd, key=best_fwd.get)
    ub = min(best_bwd, key=best_bwd.get)
    lines.append(
        f"per forward (calls x time): bound {tot['bound'] * 1e3:.1f} ms; default fwd "
        f"{tot['fwd'] * 1e3:.1f} ms, bwd {tot['bwd'] * 1e3:.1f} ms; per-shape best fwd "
        f"{tot['fwd_best'] * 1e3:.1f} ms, bwd {tot['bwd_best'] * 1e3:.1f} ms; one launch for "
        f"all: fwd {uf} {best_fwd[uf] * 1e3:.1f} ms, bwd {ub} {best_bwd[ub] * 1e3:.1f} ms")
    return "\n".join(lines)


def main(cfg: LNBenchConfig, json_path: str | None = None) -> int:
    results = run(cfg)
    print_and_dump(format_table(results, cfg.bandwidth_gbs), cfg, results, json_path)
    return 0
