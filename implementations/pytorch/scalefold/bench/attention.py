"""`scalefold bench attention`: the flash-attention kernels at the model's own call sites.

One forward of the model (bf16, Triton kernels, the preset's benchmark shapes) records
every attention call: the shapes, strides, dtypes and storage extents of q, k, v and the
biases, and which biases need a gradient. Each distinct call signature is then rebuilt
(same strides, random values) and timed on its own, forward and backward, for the
default launch configuration and for a set of candidate launches of each kernel (tile
sizes, warps, pipeline stages), one kernel at a time with the others at their default.
The table gives, per signature, how often a forward calls it, the default times, the
best candidate per kernel, and a lower bound from the bytes every call must move; the
summary weights by the call counts, which is what a training step would gain.

`--n-res` records the calls at another length (an evaluation chain: 704 is the longest
bucket), `--forward-only` times forwards without gradients (the recycling iterations and
evaluation run so), `--kinds` limits the sweep to some kernels. Each signature's forward is
also timed with biases broadcast over queries read as full tiles (`row_bias=False`), and
forward and backward with the other form of the logits (`fused_logits` toggled) and
with the other loads (`unmasked_loads` toggled), and the backward with the other delta
(`precomputed_delta` toggled) and, where dS is stored, the other dq from it
(`ds_dq_kernel` toggled), side by side in the same process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch

from scalefold.bench._kernel_bench import print_and_dump, recorded_forward, time_call
from scalefold.kernels.attention import DEFAULT_CONFIG, FlashConfig, Launch, flash_attention
from scalefold.kernels.cores import TritonAttentionCore

KINDS = ("fwd", "bwd_kv", "bwd_q", "bwd_dq")

CANDIDATES: dict[str, tuple[Launch, ...]] = {
    "fwd": tuple(Launch(bq, bk, w, s) for bq, bk in ((64, 64), (128, 64), (128, 128), (64, 32))
                 for w in (4, 8) for s in (2, 3)),
    "bwd_kv": tuple(Launch(bq, bk, w, s) for bq, bk in ((64, 64), (32, 64), (64, 128), (32, 128))
                    for w in (4, 8) for s in (1, 2)),
    "bwd_q": tuple(Launch(bq, bk, w, s) for bq, bk in ((64, 64), (128, 64), (64, 128), (32, 64))
                   for w in (4, 8) for s in (1, 2)),
    "bwd_dq": tuple(Launch(bq, bk, w, s) for bq, bk in ((64, 64), (128, 64), (64, 128), (32, 64))
                    for w in (4, 8) for s in (1, 2)),
}


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int
    storage_numel: int
    dtype: str
    requires_grad: bool

    @classmethod
    def of(cls, t: torch.Tensor) -> TensorSpec:
        return cls(tuple(t.shape), tuple(t.stride()), t.storage_offset(),
                   t.untyped_storage().nbytes() // t.element_size(),
                   str(t.dtype).replace("torch.", ""), t.requires_grad)

    def make(self, device: torch.device, gen: torch.Generator) -> torch.Tensor:
        dtype = getattr(torch, self.dtype)
        base = torch.randn(self.storage_numel, generator=gen, device=device, dtype=torch.float32)
        t = base.to(dtype).as_strided(self.shape, self.stride, self.offset)
        return t.requires_grad_(True) if self.requires_grad else t

    @property
    def nbytes(self) -> int:
        n = getattr(torch, self.dtype).itemsize
        for s, st in zip(self.shape, self.stride):
            if st == 0:
                continue
            n *= s
        return n


@dataclass(frozen=True)
class Signature:
    q: TensorSpec
    k: TensorSpec
    v: TensorSpec
    biases: tuple[TensorSpec, ...]
    scale: float = 1.0  # the query scale the core applies (the model's 1/sqrt(c))

    def label(self) -> str:
        *lead, h, ql, d = self.q.shape
        kl = self.k.shape[-2]
        nb = "".join("g" if b.requires_grad else "m" for b in self.biases)
        return f"lead={'x'.join(map(str, lead))} H={h} Q={ql} K={kl} c={d} b={nb or '-'}"

    def min_bytes(self) -> int:
        """q, k, v, o once and each bias once (broadcast dims counted once)."""
        o = self.q.nbytes * self.v.shape[-1] // self.q.shape[-1]
        return self.q.nbytes + self.k.nbytes + self.v.nbytes + o + sum(
            b.nbytes for b in self.biases)


class _RecordingCore(TritonAttentionCore):
    def __init__(self, seen: dict[Signature, int]) -> None:
        super().__init__()
        self.seen = seen

    def forward(self, q, k, v, biases, scale=1.0):
        sig = Signature(TensorSpec.of(q), TensorSpec.of(k), TensorSpec.of(v),
                        tuple(TensorSpec.of(b) for b in biases), scale)
        self.seen[sig] = self.seen.get(sig, 0) + 1
        return super().forward(q, k, v, biases, scale)


def record_signatures(preset: str, device: torch.device, seed: int = 0,
                      n_res: int | None = None) -> dict[Signature, int]:
    """Attention call signatures of one training forward (n=0) and their counts."""
    seen: dict[Signature, int] = {}

    def instrument(model: torch.nn.Module) -> None:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, TritonAttentionCore):
                    setattr(parent, name, _RecordingCore(seen))

    recorded_forward(preset, device, seed, instrument, n_res)
    return seen


@dataclass
class SignatureResult:
    label: str
    calls: int
    min_bytes: int
    default_s: dict[str, float] = field(default_factory=dict)  # fwd, bwd
    sweep_s: dict[str, dict[str, float]] = field(default_factory=dict)  # kind -> launch -> s

    def best(self, kind: str) -> tuple[str, float]:
        name, s = min(self.sweep_s[kind].items(), key=lambda x: x[1])
        return name, s


def backward_kernels(cfg: FlashConfig, bias_grad: bool) -> tuple[str, ...]:
    """The backward kernels `cfg` runs for a call (with or without a bias gradient)."""
    if cfg.store_ds and bias_grad:
        # dq and the bias gradient come from the stored dS (dq by its own kernel with
        # ds_dq_kernel, whose launch is not swept)
        return ("bwd_kv", "ds_dq") if cfg.ds_dq_kernel else ("bwd_kv",)
    if cfg.dq_kernel:
        return ("bwd_kv", "bwd_dq", "bwd_q") if bias_grad else ("bwd_kv", "bwd_dq")
    return ("bwd_kv", "bwd_q")


def time_signature(sig: Signature, device: torch.device, warmup: int, reps: int,
                   candidates: dict[str, tuple[Launch, ...]], calls: int = 1,
                   base: FlashConfig = DEFAULT_CONFIG,
                   forward_only: bool = False) -> SignatureResult:
    gen = torch.Generator(device=device).manual_seed(0)
    q, k, v = (s.make(device, gen) for s in (sig.q, sig.k, sig.v))
    biases = [b.make(device, gen) for b in sig.biases]
    # forward_only: no backward timed (its kernels are not swept either)
    inputs = [] if forward_only else [t for t in (q, k, v, *biases) if t.requires_grad]
    res = SignatureResult(sig.label(), calls, sig.min_bytes())

    def fwd(cfg: FlashConfig):
        if forward_only:
            def call():
                with torch.no_grad():
                    return flash_attention(q, k, v, biases, cfg, scale=sig.scale)
            return call
        return lambda: flash_attention(q, k, v, biases, cfg, scale=sig.scale)

    def bwd(cfg: FlashConfig):
        o = flash_attention(q, k, v, biases, cfg, scale=sig.scale)
        # The bench's own generator: the default one refuses offsets once a graph replay
        # has registered it ("Offset increment outside graph capture").
        do = torch.randn(o.shape, generator=gen, device=o.device).to(o.dtype)
        return lambda: torch.autograd.grad(o, inputs, do, retain_graph=True)

    res.default_s["fwd"] = time_call(fwd(base), warmup, reps, device)
    res.default_s["fwd_tile_bias"] = (
        time_call(fwd(replace(base, row_bias=False)), warmup, reps, device)
        if any(b.shape[-2] == 1 or b.stride[-2] == 0 for b in sig.biases)
        else res.default_s["fwd"])
    res.default_s["bwd"] = time_call(bwd(base), warmup, reps, device) if inputs else 0.0
    other_logits = replace(base, fused_logits=not base.fused_logits)
    res.default_s["fwd_other_logits"] = time_call(fwd(other_logits), warmup, reps, device)
    res.default_s["bwd_other_logits"] = (time_call(bwd(other_logits), warmup, reps, device)
                                         if inputs else 0.0)
    other_loads = replace(base, unmasked_loads=not base.unmasked_loads)
    res.default_s["fwd_other_loads"] = time_call(fwd(other_loads), warmup, reps, device)
    res.default_s["bwd_other_loads"] = (time_call(bwd(other_loads), warmup, reps, device)
                                        if inputs else 0.0)
    other_delta = replace(base, precomputed_delta=not base.precomputed_delta)
    res.default_s["bwd_other_delta"] = (time_call(bwd(other_delta), warmup, reps, device)
                                        if inputs else 0.0)
    # The other backward forms, for comparison (timed only where they run other kernels:
    # the stored dS replaces the dq form where a bias needs a gradient, and is unused
    # where none does)
    bias_grad = any(b.requires_grad for b in biases)
    running = backward_kernels(base, bias_grad) if inputs else ()
    for key, other in (("bwd_other_dq", replace(base, dq_kernel=not base.dq_kernel)),
                       ("bwd_other_ds", replace(base, store_ds=not base.store_ds)),
                       ("bwd_other_ds_dq", replace(base, ds_dq_kernel=not base.ds_dq_kernel))):
        same = backward_kernels(other, bias_grad) == running
        res.default_s[key] = (0.0 if not inputs else res.default_s["bwd"] if same
                              else time_call(bwd(other), warmup, reps, device))
    for kind in KINDS:
        if kind != "fwd" and kind not in running:
            continue
        times: dict[str, float] = {}
        for launch in candidates.get(kind, ()):
            cfg = replace(base, **{kind: launch})
            try:
                times[launch.name] = time_call(fwd(cfg) if kind == "fwd" else bwd(cfg),
                                           warmup, reps, device)
            except Exception as e:  # a launch that does not fit (shared memory, registers)
                times[launch.name] = float("inf")
                print(f"    {kind} {launch.name}: {type(e).__name__}: {str(e)[:80]}")
        if times:
            res.sweep_s[kind] = times
    return res


@dataclass(frozen=True)
class AttnBenchConfig:
    preset: str = "mlperf"
    device: str = "cuda"
    warmup: int = 2
    reps: int = 10
    seed: int = 0
    sweep: bool = True
    max_seconds: float = 600.0  # stop sweeping further signatures after this long
    # Sweep around the backward the h200 and h100 presets run: dS stored where a bias
    # needs a gradient (only the dk/dv kernel runs there), the dq kernel elsewhere. Each
    # signature sweeps the kernels its backward runs (`backward_kernels`).
    dq_kernel: bool = True
    store_ds: bool = True
    fused_logits: bool = False  # the base's form of the logits (the other is timed beside)
    precomputed_delta: bool = False  # the base's backward (the other is timed beside)
    unmasked_loads: bool = False  # the base's loads (the other is timed beside)
    ds_dq_kernel: bool = False  # the base's dq from the stored dS (the other timed beside)
    bandwidth_gbs: float = 4800.0  # for the byte bound (H200 HBM3e: 4.8 TB/s)
    n_res: int | None = None  # record at this many residues (None: the preset's crop)
    forward_only: bool = False  # time forwards without gradients
    kinds: tuple[str, ...] = KINDS  # the kernels to sweep

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kernels {sorted(unknown)}; known: {KINDS}")


def run(cfg: AttnBenchConfig, log=print) -> list[SignatureResult]:
    device = torch.device(cfg.device)
    seen = record_signatures(cfg.preset, device, cfg.seed, cfg.n_res)
    log(f"bench attention: preset={cfg.preset} n_res={cfg.n_res or 'crop'} device={device} "
        f"torch={torch.__version__} signatures={len(seen)} "
        f"calls per forward={sum(seen.values())} forward_only={cfg.forward_only}")
    candidates = {k: v for k, v in CANDIDATES.items() if k in cfg.kinds}
    # Heaviest first (calls x bytes), so a time limit cuts the least important.
    order = sorted(seen.items(), key=lambda x: -x[1] * x[0].min_bytes())
    t0 = time.perf_counter()
    out = []
    for sig, calls in order:
        sweep = cfg.sweep and time.perf_counter() - t0 < cfg.max_seconds
        r = time_signature(sig, device, cfg.warmup, cfg.reps, candidates if sweep else {}, calls,
                           base=replace(DEFAULT_CONFIG, dq_kernel=cfg.dq_kernel,
                                        store_ds=cfg.store_ds,
                                        fused_logits=cfg.fused_logits,
                                        precomputed_delta=cfg.precomputed_delta,
                                        unmasked_loads=cfg.unmasked_loads,
                                        ds_dq_kernel=cfg.ds_dq_kernel),
                           forward_only=cfg.forward_only)
        out.append(r)
        d = r.default_s
        log(f"  {r.label}  x{calls}  fwd {d['fwd'] * 1e3:.3f} ms (tile-read biases "
            f"{d['fwd_tile_bias'] * 1e3:.3f})  "
            f"bwd {d['bwd'] * 1e3:.3f} ms"
            f"  | dq {'atomics' if cfg.dq_kernel else 'kernel'}: bwd "
            f"{d['bwd_other_dq'] * 1e3:.3f} ms, {'no ' if cfg.store_ds else ''}stored dS: bwd "
            f"{d['bwd_other_ds'] * 1e3:.3f} ms, dq from dS by "
            f"{'matmul' if cfg.ds_dq_kernel else 'kernel'}: bwd {d['bwd_other_ds_dq'] * 1e3:.3f}"
            f" ms, {'plain' if cfg.fused_logits else 'fused'} "
            f"logits: fwd {d['fwd_other_logits'] * 1e3:.3f} bwd "
            f"{d['bwd_other_logits'] * 1e3:.3f} ms, "
            f"{'bounded' if cfg.unmasked_loads else 'unmasked'} loads: fwd "
            f"{d['fwd_other_loads'] * 1e3:.3f} bwd {d['bwd_other_loads'] * 1e3:.3f} ms, "
            f"{'recomputed' if cfg.precomputed_delta else 'precomputed'} delta: bwd "
            f"{d['bwd_other_delta'] * 1e3:.3f} ms  "
            f"({time.perf_counter() - t0:.0f} s)")
    return out


def format_table(results: list[SignatureResult], bandwidth_gbs: float) -> str:
    lines = [f"{'signature':58s}{'calls':>6s}{'bound':>9s}{'fwd':>9s}{'bwd':>9s}  "
             f"{'best fwd':>19s}{'best bwd_kv':>20s}{'best bwd_q':>20s}{'best bwd_dq':>20s}   (ms; bwd_* are the "
             "whole backward with that kernel's launch)"]
    tot = {"bound": 0.0, "fwd": 0.0, "bwd": 0.0, "fwd_best": 0.0, "bwd_best": 0.0,
           "fwd_tile_bias": 0.0, "fwd_other_logits": 0.0, "bwd_other_logits": 0.0,
           "fwd_other_loads": 0.0, "bwd_other_loads": 0.0, "bwd_other_delta": 0.0,
           "bwd_other_ds_dq": 0.0}
    for r in results:
        bound = r.min_bytes / (bandwidth_gbs * 1e9)
        cells = []
        gains = {}
        for kind in KINDS:
            if kind in r.sweep_s:
                name, s = r.best(kind)
                ref = r.default_s["fwd" if kind == "fwd" else "bwd"]
                gains[kind] = ref - s
                cells.append(f"{name:>11s} {s * 1e3:7.3f}")
            else:
                cells.append(f"{'-':>19s}")
        lines.append(f"{r.label[:58]:58s}{r.calls:6d}{bound * 1e3:9.3f}"
                     f"{r.default_s['fwd'] * 1e3:9.3f}{r.default_s['bwd'] * 1e3:9.3f}  "
                     + " ".join(cells))
        tot["bound"] += r.calls * bound
        tot["fwd"] += r.calls * r.default_s["fwd"]
        for key in ("fwd_tile_bias", "fwd_other_logits", "bwd_other_logits", "fwd_other_loads",
                    "bwd_other_loads", "bwd_other_delta", "bwd_other_ds_dq"):
            tot[key] += r.calls * r.default_s.get(key, 0.0)
        tot["bwd"] += r.calls * r.default_s["bwd"]
        tot["fwd_best"] += r.calls * (r.default_s["fwd"] - max(0.0, gains.get("fwd", 0.0)))
        tot["bwd_best"] += r.calls * (r.default_s["bwd"] - sum(
            max(0.0, gains.get(k, 0.0)) for k in ("bwd_kv", "bwd_q", "bwd_dq")))
    lines.append(
        f"per forward (calls x time): bound {tot['bound'] * 1e3:.1f} ms; default fwd "
        f"{tot['fwd'] * 1e3:.1f} ms (tile-read biases {tot['fwd_tile_bias'] * 1e3:.1f}), "
        f"bwd {tot['bwd'] * 1e3:.1f} ms; best launches fwd "
        f"{tot['fwd_best'] * 1e3:.1f} ms, bwd {tot['bwd_best'] * 1e3:.1f} ms (gains of the two "
        "backward kernels added); the other logits (fused_logits toggled): fwd "
        f"{tot['fwd_other_logits'] * 1e3:.1f} ms, bwd {tot['bwd_other_logits'] * 1e3:.1f} ms; "
        f"the other loads (unmasked_loads toggled): fwd {tot['fwd_other_loads'] * 1e3:.1f} ms, "
        f"bwd {tot['bwd_other_loads'] * 1e3:.1f} ms; the other delta (precomputed_delta toggled): bwd "
        f"{tot['bwd_other_delta'] * 1e3:.1f} ms; the other dq from dS (ds_dq_kernel toggled): "
        f"bwd {tot['bwd_other_ds_dq'] * 1e3:.1f} ms")
    return "\n".join(lines)


def main(cfg: AttnBenchConfig, json_path: str | None = None) -> int:
    results = run(cfg)
    print_and_dump(format_table(results, cfg.bandwidth_gbs), cfg, results, json_path)
    return 0
