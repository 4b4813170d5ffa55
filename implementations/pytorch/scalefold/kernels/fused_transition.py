"""A narrow transition and its residual add as one Triton kernel, without gradients.

A `Transition` (Algorithms 9 and 15) is LayerNorm, linear_1 to n·c hidden channels, ReLU,
linear_2 back to c, and the block adds it to the stream it read: r + transition(r). Even
with the LayerNorm and the ReLU fused into the first matmul (`ln_projection_forward_kernel`,
`transition_relu_epilogue`), the hidden activations ([*, n·c], four times the stream) are
written and read back, the update is written and read again by the add: 13 passes of
the stream's size for the pair transition (c_z = 128, n = 4). Here a program normalises a
block of whole rows in registers (the LayerNorm kernel's arithmetic and rounding,
`_ln_rows`), and for each block of hidden channels computes relu(x·W1ᵀ + b1), rounded to
the compute dtype as the first matmul's output is, and accumulates its product with W2
in float32; b2 and the residual are added before the one rounding of the result. The
stream is read once and written once: 2 passes. The weights (2·n·c² values: 256 KiB in
bf16 for the pair transition) are read by every program from L2, once per block of rows.
`fits` takes c ≤ `MAX_WIDTH` = 128 (the pair, extra-MSA and template transitions). The
kernel also runs the MSA transition's width (c_m = 256, its own launch: `for_width`),
where a block of 64 rows streams 1 MiB of weights for 64 MFLOP, about as long at an
H100 multiprocessor's L2 bandwidth as at its tensor cores; `mb_transition.py` times it
against LayerNorm, cuBLAS and the add before `MAX_WIDTH` takes it.

The products accumulate in another order than cuBLAS's and the update is not rounded
before the add: the result differs from the plain module's within the output's rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scalefold.kernels._autocast import WeightCasts, autocast_dtype
from scalefold.kernels._triton import dot_precision, next_pow2, tl, triton, triton_usable
from scalefold.kernels.swap import swap
from scalefold.model.msa import Transition

if triton is not None:
    from scalefold.kernels.layer_norm import _ln_rows  # a Triton function: with Triton only

    @triton.jit
    def _transition_fwd(X, LW, LB, W1, B1, W2, B2, R, Y, M, H, eps, C: tl.constexpr,
                        BM: tl.constexpr, BH: tl.constexpr, PREC: tl.constexpr):
        # X, R, Y: [M, C] rows (R may be X); W1: [H, C], B1: [H]; W2: [C, H], B2: [C]
        # (Linear layouts)
        rows = tl.program_id(0) * BM + tl.arange(0, BM)  # [BM]
        cs = tl.arange(0, C)  # [C]: the whole width
        rmask = rows < M
        mask = rmask[:, None] & (cs[None, :] < C)
        offs = rows[:, None].to(tl.int64) * C + cs[None, :]
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)  # [BM, C]
        xn, _, _ = _ln_rows(x, mask, cs, cs < C, LW, LB, C, eps)
        xn = xn.to(W1.dtype.element_ty)
        acc = tl.zeros([BM, C], dtype=tl.float32)
        for h0 in range(0, H, BH):
            hs = h0 + tl.arange(0, BH)  # [BH]
            w1t = tl.load(W1 + hs[None, :].to(tl.int64) * C + cs[:, None])  # [C, BH]
            hid = tl.dot(xn, w1t, input_precision=PREC)  # [BM, BH] float32
            hid += tl.load(B1 + hs).to(tl.float32)[None, :]
            # ReLU, then the first matmul's output rounding (they commute)
            hid = tl.maximum(hid, 0.0).to(W2.dtype.element_ty)
            w2t = tl.load(W2 + cs[None, :].to(tl.int64) * H + hs[:, None])  # [BH, C]
            acc += tl.dot(hid, w2t, input_precision=PREC)  # [BM, C]
        acc += tl.load(B2 + cs).to(tl.float32)[None, :]
        # loaded again, not kept from the start (where R is X, from L2): holding x's
        # float32 tile through the loop took 246 registers a thread at 128 rows and 8
        # warps, 183 without (sm90 compile, docs/evidence/2026-12-06_cpu)
        acc += tl.load(R + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(Y + offs, acc.to(Y.dtype.element_ty), mask=mask)


@dataclass(frozen=True)
class TransitionLaunch:
    """Rows a program, hidden channels a step of its loop, warps, stages. The default is
    the fastest of `mb_transition.py`'s sweep on an H100 at every shape it timed (pair at
    224 and 704 residues, extra MSA, template pair: 0.39-0.50x of LayerNorm-projection,
    cuBLAS and the add; docs/evidence/2026-12-06_h100_s22), or within 4% of it."""

    block_rows: int = 64
    block_hidden: int = 64
    warps: int = 4
    stages: int = 3

    def for_width(self, c: int) -> TransitionLaunch:
        """Over 128 channels the float32 accumulator [block_rows, c] needs twice the warps:
        at c = 256 and 64 rows, 4 warps spill (255 registers, 57 spill stores; sm90
        compile with Triton 3.9 on the CPU, docs/evidence/2026-12-06_cpu), 8 warps take
        210 registers and 160 KiB of shared memory at 2 stages (3 take 224 KiB, nearly
        all a program may have)."""
        if c > 128 and self.warps < 8:
            return TransitionLaunch(self.block_rows, self.block_hidden, 8, 2)
        return self


DEFAULT_LAUNCH = TransitionLaunch()
MAX_WIDTH = 128


def fits(x: torch.Tensor, norm: torch.nn.Module, hidden: int) -> bool:
    """Whether `transition_forward` takes x ([*, c]) with this LayerNorm and hidden width:
    no gradients, Triton able to run, c a power of two from 16 to `MAX_WIDTH` equal to the
    LayerNorm's, the hidden width a multiple of the launch's hidden step, an affine
    LayerNorm."""
    c = x.shape[-1]
    return (not torch.is_grad_enabled() and triton_usable(x) and 16 <= c <= MAX_WIDTH
            and c == next_pow2(c) and c == getattr(norm, "c", -1)
            and hidden % DEFAULT_LAUNCH.for_width(c).block_hidden == 0
            and norm.weight is not None and norm.bias is not None)


def _transition(x: torch.Tensor, norm: torch.nn.Module, w1: torch.Tensor, b1: torch.Tensor,
                w2: torch.Tensor, b2: torch.Tensor, r: torch.Tensor,
                launch: TransitionLaunch = DEFAULT_LAUNCH) -> torch.Tensor:
    c, h = x.shape[-1], w1.shape[0]
    launch = launch.for_width(c)
    if h % launch.block_hidden:
        raise ValueError(f"transition_forward: {h} hidden channels, not a multiple of "
                         f"{launch.block_hidden}")
    x2 = x.reshape(-1, c).contiguous()  # [M, C]
    r2 = x2 if r is x else r.reshape(-1, c).contiguous()
    # r + update takes the wider dtype, as the eager add does
    y = torch.empty(x2.shape, dtype=torch.promote_types(r.dtype, w2.dtype), device=x.device)
    m = x2.shape[0]
    if m:
        _transition_fwd[(triton.cdiv(m, launch.block_rows),)](
            x2, norm.weight, norm.bias, w1.contiguous(), b1, w2.contiguous(), b2, r2, y, m, h,
            norm.eps, C=c, BM=launch.block_rows, BH=launch.block_hidden,
            PREC=dot_precision(w1), num_warps=launch.warps, num_stages=launch.stages)
    return y.view(x.shape)


# Traced by torch.compile, the launch is a graph break (its grid depends on the length).
_transition_untraced = torch.compiler.disable(_transition, recursive=True)


def transition_forward(x: torch.Tensor, norm: torch.nn.Module, w1: torch.Tensor,
                       b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                       r: torch.Tensor, launch: TransitionLaunch = DEFAULT_LAUNCH
                       ) -> torch.Tensor:
    """Without gradients: r + linear_2(relu(linear_1(norm(x)))) with the weights w1 ([H, c]),
    b1, w2 ([c, H]), b2 in the compute dtype, as one kernel (the caller checks `fits`).
    r: the stream the update is added to ([*, c]; x itself in the blocks)."""
    if torch.is_grad_enabled():
        raise RuntimeError("transition_forward has no backward: call it without gradients")
    dt = autocast_dtype(x) or x.dtype
    if any(t.dtype != dt for t in (w1, b1, w2, b2)):
        raise ValueError(f"transition_forward: weights and biases must be in the compute "
                         f"dtype {dt}")
    if torch.compiler.is_compiling():
        return _transition_untraced(x, norm, w1, b1, w2, b2, r, launch)
    return _transition(x, norm, w1, b1, w2, b2, r, launch)


class FusedTransition:
    """`Transition` mixin: without gradients its residual update (`added_to`, which the
    blocks call) as one kernel where it `fits`; otherwise the module's own."""

    weight_casts: WeightCasts | None = None

    def added_to(self, r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if r.shape != x.shape or not fits(x, self.layer_norm, self.linear_1.out_features):
            return super().added_to(r, x)
        dt = autocast_dtype(x) or x.dtype
        casts = self.weight_casts

        def cast(p: torch.Tensor) -> torch.Tensor:
            return casts.cast(p, dt) if casts is not None else p.to(dt)

        l1, l2 = self.linear_1, self.linear_2
        return transition_forward(x, self.layer_norm, cast(l1.weight), cast(l1.bias),
                                  cast(l2.weight), cast(l2.bias), r)


def swap_fused_transitions(model: torch.nn.Module,
                           weight_casts: WeightCasts | None = None) -> torch.nn.Module:
    """Give every `Transition` of `model` the fused residual update, sharing
    `weight_casts` if given. Returns `model`."""
    swap(model, Transition, FusedTransition, weight_casts=weight_casts)
    return model
