"""The matrix products of a profile by shape, each against its roofline.

A kernel-family table says that cuBLAS took a third of a chain's time; it does not say
which products run far from what the GPU allows. Here every GEMM operator of a profile
(recorded with `record_shapes=True`) is grouped by operator, shapes and dtypes, and its
device time is set beside its floor: the larger of its arithmetic at the card's dense
peak and its operands' bytes (read once, the output written once) at the card's memory
bandwidth. A product at 90% of its floor is done; one at 40% is a lever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Dense bf16/fp16 tensor-core peak (TFLOP/s), HBM bandwidth (TB/s) and the float32 rates
# without and with TF32, from NVIDIA's datasheets for the SXM parts (H100 SXM5, H200 SXM).
_CARDS = {"H200": (989.0, 4.8, 67.0, 494.0), "H100": (989.0, 3.35, 67.0, 494.0)}

# Leaf operators that run one matrix product (or a batch of them) each.
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_addmm_activation")


@dataclass(frozen=True)
class Gemm:
    """One product's size: `batch` products of [m, k] × [k, n]; `accumulates`: it also
    reads an [m, n] input (addmm/baddbmm with a full matrix, not a broadcast bias)."""

    batch: int
    m: int
    n: int
    k: int
    accumulates: bool = False

    @property
    def flops(self) -> int:
        return 2 * self.batch * self.m * self.n * self.k

    def bytes(self, itemsize: int) -> int:
        elems = self.batch * (self.m * self.k + self.k * self.n + self.m * self.n)
        if self.accumulates:
            elems += self.batch * self.m * self.n
        return elems * itemsize


def gemm_of(op: str, shapes: list[list[int]]) -> Gemm | None:
    """The product an operator event with these input shapes ran (None: not a GEMM or
    shapes not recorded)."""
    try:
        if op == "aten::mm":
            (m, k), (_, n) = shapes[0], shapes[1]
            return Gemm(1, m, n, k)
        if op in ("aten::addmm", "aten::_addmm_activation"):
            c, (m, k), (_, n) = shapes[0], shapes[1], shapes[2]
            return Gemm(1, m, n, k, accumulates=len(c) == 2 and c[0] == m)
        if op == "aten::bmm":
            (b, m, k), (_, _, n) = shapes[0], shapes[1]
            return Gemm(b, m, n, k)
        if op == "aten::baddbmm":
            c, (b, m, k), (_, _, n) = shapes[0], shapes[1], shapes[2]
            return Gemm(b, m, n, k, accumulates=len(c) == 3 and c[-2] == m)
    except (ValueError, IndexError, TypeError):
        return None
    return None


_ITEMSIZE = {"c10::BFloat16": 2, "c10::Half": 2, "float": 4, "double": 8}


def _itemsize(dtypes: list[str] | None) -> tuple[int, str]:
    """Bytes an element of the product's first matrix operand, and its name."""
    names = [d for d in (dtypes or []) if d]
    for d in names:
        if d in _ITEMSIZE:
            return _ITEMSIZE[d], d
    return 2, "?"


@dataclass(frozen=True)
class Card:
    name: str
    tflops: float  # dense bf16/fp16
    tbs: float
    fp32_tflops: float  # float32 operands: TF32's rate where PyTorch allows it


def card_roofline(device: torch.device) -> Card | None:
    """The roofline of a CUDA device this table knows (None: another device)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for card, (tflops, tbs, fp32, tf32) in _CARDS.items():
        if card in name:
            return Card(card, tflops, tbs,
                        tf32 if torch.backends.cuda.matmul.allow_tf32 else fp32)
    return None


@dataclass
class GemmRow:
    op: str
    gemm: Gemm
    dtype: str
    itemsize: int
    count: int = 0
    us: float = 0.0  # total time of the group's kernels (CPU time without a GPU)

    def floor_us(self, card: Card) -> float:
        """The fastest one call can run on `card`: arithmetic at its peak or bytes at its
        bandwidth, whichever takes longer."""
        peak = card.tflops if self.itemsize <= 2 else card.fp32_tflops
        return max(self.gemm.flops / (peak * 1e6), self.gemm.bytes(self.itemsize) / (card.tbs * 1e6))


def _is_nested(evt) -> bool:
    parent = evt.cpu_parent
    while parent is not None:
        if parent.name in GEMM_OPS:
            return True
        parent = parent.cpu_parent
    return False


def gemm_rows(prof, on_device: bool) -> list[GemmRow]:
    """The profile's GEMM operator events grouped by (operator, shapes, dtype), largest
    total time first. `on_device`: time = the kernels the event launched (CUDA), else
    the event's CPU time."""
    rows: dict[tuple, GemmRow] = {}
    for evt in prof.events():
        if evt.name not in GEMM_OPS or _is_nested(evt):
            continue
        g = gemm_of(evt.name, evt.input_shapes)
        if g is None:
            continue
        itemsize, dtype = _itemsize(getattr(evt, "input_dtypes", None))
        key = (evt.name, g, dtype)
        row = rows.setdefault(key, GemmRow(evt.name, g, dtype, itemsize))
        row.count += 1
        if on_device:
            us = getattr(evt, "device_time_total", None)
            row.us += us if us is not None else evt.cuda_time_total
        else:
            row.us += evt.cpu_time_total
    return sorted(rows.values(), key=lambda r: -r.us)


def format_gemm_rows(rows: list[GemmRow], card: Card | None,
                     limit: int = 25) -> str:
    """The table: each group's count, total and mean time, achieved TFLOP/s and TB/s,
    and (on a known card) its floor and the fraction of it reached."""
    total_us = sum(r.us for r in rows)
    head = (f"{'operator':22s}{'batch x m x n x k':>26s}{'dtype':>7s}{'calls':>7s}"
            f"{'ms':>9s}{'us each':>9s}{'TFLOP/s':>9s}{'TB/s':>7s}")
    if card:
        head += f"{'floor us':>10s}{'of floor':>10s}"
    lines = [head]
    floor_total = 0.0
    for i, r in enumerate(rows):
        each = r.us / r.count
        tflops = r.gemm.flops / each / 1e6 if each > 0 else math.nan
        tbs = r.gemm.bytes(r.itemsize) / each / 1e6 if each > 0 else math.nan
        floor = r.floor_us(card) if card else 0.0
        floor_total += floor * r.count
        if i >= limit:
            continue
        g = r.gemm
        shape = f"{g.batch}x{g.m}x{g.n}x{g.k}" + ("+C" if g.accumulates else "")
        dtype = {"c10::BFloat16": "bf16", "c10::Half": "fp16", "float": "fp32"}.get(r.dtype,
                                                                                  r.dtype)
        line = (f"{r.op.removeprefix('aten::'):22s}{shape:>26s}{dtype:>7s}{r.count:7d}"
                f"{r.us / 1e3:9.2f}{each:9.1f}{tflops:9.1f}{tbs:7.2f}")
        if card:
            line += f"{floor:10.1f}{100 * floor / each if each > 0 else math.nan:9.0f}%"
        lines.append(line)
    if len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more shapes")
    summary = f"GEMMs: {len(rows)} shapes, {sum(r.count for r in rows)} calls, {total_us / 1e3:.2f} ms"
    if card:
        summary += (f"; their floor on the {card.name} ({card.tflops:.0f} TFLOP/s bf16, "
                    f"{card.tbs} TB/s) {floor_total / 1e3:.2f} ms ({100 * floor_total / total_us:.0f}% "
                    "of the time)" if total_us > 0 else "")
    lines.append(summary)
    return "\n".join(lines)
