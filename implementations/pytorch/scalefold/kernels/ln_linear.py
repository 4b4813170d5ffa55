"""A LayerNorm and the projection it feeds as one Triton kernel, without gradients.

Every Evoformer module starts with a LayerNorm whose output only feeds matmuls: the
LayerNorm kernel reads the residual stream and writes its normalised copy, and the matmul
reads that copy back. Both are passes over the widest activations of the module
([*, N, N, c_z] for the pair modules): on the H100's 224-residue evaluation chain the
LayerNorm kernels took 28.4 of 341 ms (docs/evidence/2026-12-05_h100_s3/callB_eval.txt),
and the matmuls behind them are memory-bound at K = c_z = 128. Here a program normalises
a block of whole rows (K <= 256 channels, held in registers), rounds them to the compute
dtype as the LayerNorm's output is rounded, and multiplies them by the weight one block of
output columns at a time, the bias and an optional ReLU added in float32 before the one
rounding of the output, as cuBLAS's bias (and ReLU) epilogue does: the normalised copy is
never written.

The LayerNorm arithmetic is `_ln_fwd`'s (two-pass mean and variance in float32), so the
matmul's inputs are the LayerNorm kernel's bits; the products accumulate in another order
than cuBLAS's, so outputs differ from the two-kernel path within the output's rounding.
With gradients nothing here runs (the callers fall back to the plain modules).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scalefold.kernels._autocast import WeightCasts, autocast_dtype
from scalefold.kernels._triton import dot_precision, next_pow2, tl, triton, triton_usable
from scalefold.kernels.linear import pad_bias
from scalefold.kernels.projections import StackedProjectionAttention, stack_cast
from scalefold.kernels.swap import swap
from scalefold.kernels.trimul import ChannelFirstTriangleMultiplication
from scalefold.kernels.trimul_projection import fits as projection_fits
from scalefold.kernels.trimul_projection import project_gate_forward
from scalefold.model.attention import Attention
from scalefold.model.msa import MSAColumnAttention, MSARowAttentionWithPairBias, Transition
from scalefold.model.pair import OuterProductMean, TriangleAttention, TriangleMultiplication

if triton is not None:
    from scalefold.kernels.layer_norm import _ln_rows  # a Triton function: with Triton only

    @triton.jit
    def _ln_linear_fwd(X, LW, LB, W, BIAS, G, R, Y, M, K, N, sxm, sxk, sgm, sgn, srm, srn,
                       sym, syn, eps,
                       HAS_BIAS: tl.constexpr, RELU: tl.constexpr, GATE: tl.constexpr,
                       RESIDUAL: tl.constexpr, NORM: tl.constexpr, BM: tl.constexpr,
                       BK: tl.constexpr, BN: tl.constexpr, PREC: tl.constexpr):
        # X: [M, K] (rows sxm apart, channels sxk: 1 for rows of channels, the positions'
        # count for a channels-first input); W: [N, K] (a Linear's weight); G: [M, N] gate
        # logits (rows sgm apart, columns sgn); R: [M, N] a residual stream the result is
        # added to (srm, srn); Y: [M, N] (rows sym apart, columns syn: 1, or the rows' count
        # for a channels-first output)
        rows = tl.program_id(0) * BM + tl.arange(0, BM)  # [BM]
        ks = tl.arange(0, BK)  # [BK]
        rmask = rows < M
        kmask = ks < K
        mask = rmask[:, None] & kmask[None, :]
        x = tl.load(X + rows[:, None].to(tl.int64) * sxm + ks[None, :].to(tl.int64) * sxk,
                    mask=mask, other=0.0).to(tl.float32)  # [BM, BK]
        if NORM:
            # the LayerNorm kernel's arithmetic; padded channels come out 0 (x, w and b
            # are 0 there), so they add nothing to the products
            h, _, _ = _ln_rows(x, mask, ks, kmask, LW, LB, K, eps)
        else:  # a plain projection (its epilogue is the point: `linear_epilogue`)
            h = x
        h = h.to(W.dtype.element_ty)
        for n0 in range(0, N, BN):
            ns = n0 + tl.arange(0, BN)  # [BN]
            nmask = ns < N
            wt = tl.load(W + ns[None, :].to(tl.int64) * K + ks[:, None],
                         mask=kmask[:, None] & nmask[None, :], other=0.0)  # [BK, BN]
            acc = tl.dot(h, wt, input_precision=PREC)  # [BM, BN] float32
            if HAS_BIAS:
                acc += tl.load(BIAS + ns, mask=nmask, other=0.0).to(tl.float32)[None, :]
            if RELU:
                acc = tl.maximum(acc, 0.0)
            omask = rmask[:, None] & nmask[None, :]
            if GATE:  # x · sigmoid(g), SigmoidGate's arithmetic on the unrounded x
                g = tl.load(G + rows[:, None].to(tl.int64) * sgm
                            + ns[None, :].to(tl.int64) * sgn, mask=omask, other=0.0)
                acc = acc * tl.sigmoid(g.to(tl.float32))
            if RESIDUAL:  # r + update in float32, one rounding to Y's dtype (r's or wider)
                acc += tl.load(R + rows[:, None].to(tl.int64) * srm
                               + ns[None, :].to(tl.int64) * srn, mask=omask,
                               other=0.0).to(tl.float32)
            tl.store(Y + rows[:, None].to(tl.int64) * sym + ns[None, :].to(tl.int64) * syn,
                     acc.to(Y.dtype.element_ty), mask=omask)


@dataclass(frozen=True)
class LnLinearLaunch:
    """Rows a program normalises, output columns a step of its loop, warps, stages."""

    block_m: int = 64
    block_n: int = 128
    warps: int = 4
    stages: int = 2

    def for_width(self, k: int) -> LnLinearLaunch:
        """At 256 channels the weight's block [256, block_n] doubles: half as many columns
        a step keep a program's shared memory as at 128."""
        if k > 128 and self.block_n > 64:
            return LnLinearLaunch(self.block_m, self.block_n // 2, self.warps, self.stages)
        return self


DEFAULT_LAUNCH = LnLinearLaunch()
# The launches the calls take unless given one, by the call's epilogue and output width:
# the best of 24 (rows a program, columns a step, warps, stages) at the evaluation's five
# kinds of call, 224 and 704 residues, on an H100 in CUDA graphs, bf16, against
# DEFAULT_LAUNCH (docs/evidence/2026-12-06_h100_s24, `mb_ln3.py`; outputs unchanged: a
# launch splits rows and columns, never a row's sum): 64-column steps in three stages for
# the wide projections (the triangle attentions' q, k, v and gate, 512 columns:
# 0.89-0.90x); one stage and eight warps with a residual in the epilogue (the attention
# output projections, pair and MSA: 0.91-0.96x), four warps once a gate joins it (the
# triangle multiplication's output: 0.96-0.98x). Narrower outputs keep the default (the
# 4-column triangle bias: 0.78x at 224 residues but 1.00x at 704, a few us a block).
# WIDE_COLUMNS also sends the 256-column outputs (the extra-MSA transition's hidden layer,
# K = 64) to the wide launch, which the sweep did not time.
WIDE_LAUNCH = LnLinearLaunch(block_m=64, block_n=64, warps=4, stages=3)
EPILOGUE_LAUNCH = LnLinearLaunch(block_m=64, block_n=64, warps=8, stages=1)
GATED_EPILOGUE_LAUNCH = LnLinearLaunch(block_m=64, block_n=64, warps=4, stages=1)
WIDE_COLUMNS = 256


def launch_for(columns: int, gate: bool, residual: bool) -> LnLinearLaunch:
    """The measured launch for a call with `columns` outputs and these epilogues."""
    if residual:
        return GATED_EPILOGUE_LAUNCH if gate else EPILOGUE_LAUNCH
    if columns >= WIDE_COLUMNS:
        return WIDE_LAUNCH
    return DEFAULT_LAUNCH


MAX_WIDTH = 256  # channels a program holds as whole rows (c_m; c_z = 128, c_e = 64)
# Output columns up to which the fused kernel takes a projection. Timed on an H100 in CUDA
# graphs against the Triton LayerNorm then cuBLAS (docs/evidence/2026-12-06_h100_s20,
# bf16): 0.3-0.7x for the narrow outputs (biases, 64-256 columns), 1.0x at 512 columns,
# 1.29x (K = 128) and 1.65x (K = 256) at 1024, where the weight a program streams once per
# block of 64 rows costs more than the normalised copy saves: the MSA transition and
# attention projections (1,024 columns) stay LayerNorm then matmul.
MAX_COLUMNS = 512


def fusable(x: torch.Tensor, norm: torch.nn.Module, columns: int, dim: int = -1) -> bool:
    """Whether `layer_norm_linear` should take x, the LayerNorm module `norm` and a
    projection to `columns` outputs here: no gradients, Triton able to run, a width (x's
    size along `dim`, the normalised dim) the kernel holds, an output no wider than
    `MAX_COLUMNS`, norm a plain LayerNorm (elementwise affine, with weight, bias and
    eps)."""
    return (not torch.is_grad_enabled() and triton_usable(x)
            and x.shape[dim] <= MAX_WIDTH and x.shape[dim] == getattr(norm, "c", -1)
            and columns <= MAX_COLUMNS
            and norm.weight is not None and norm.bias is not None)


def _stacked_width(mha: StackedProjectionAttention) -> int:
    # q, k, v (and g): each num_heads * c_hidden columns
    return mha.num_heads * mha.c_hidden * (3 if mha.linear_g is None else 4)


def _launch(x2: torch.Tensor, ln_weight: torch.Tensor | None, ln_bias: torch.Tensor | None,
            eps: float,
            weight: torch.Tensor, bias: torch.Tensor | None, relu: bool,
            launch: LnLinearLaunch | None, y2: torch.Tensor, g2: torch.Tensor | None,
            r2: torch.Tensor | None) -> None:
    # x2: [M, K], y2, g2 (gate logits or None) and r2 (residual or None): [M, N] (any
    # strides)
    m, k = x2.shape
    if m == 0:
        return
    n = weight.shape[0]
    if launch is None:
        launch = launch_for(n, g2 is not None, r2 is not None)
    lc = launch.for_width(k)
    # a narrow output (the triangle and pair biases: one column a head) takes a narrow
    # block, not 128 columns of products that are never stored
    bn = min(lc.block_n, max(16, next_pow2(n)))
    if r2 is not None:
        # the residual's float32 tile beside the gate's: at 128 columns a step the sm90
        # compile spills (254 registers, 13 spill stores); at 64, 165 registers, no spills
        # (docs/evidence/2026-12-06_cpu/sass_kernels.txt)
        bn = min(bn, 64)
    gate = g2 if g2 is not None else y2
    res = r2 if r2 is not None else y2
    norm = ln_weight is not None
    _ln_linear_fwd[(triton.cdiv(m, lc.block_m),)](
        x2, ln_weight if norm else x2, ln_bias if norm else x2, weight,
        bias if bias is not None else y2, gate, res, y2,
        m, k, n, x2.stride(0), x2.stride(1), gate.stride(0), gate.stride(1),
        res.stride(0), res.stride(1), y2.stride(0), y2.stride(1), eps,
        HAS_BIAS=bias is not None, RELU=relu, GATE=g2 is not None,
        RESIDUAL=r2 is not None, NORM=norm, BM=lc.block_m,
        # tl.dot needs at least 16 along the reduction (the GPU compile refuses fewer);
        # the channels past k load as 0 and add nothing
        BK=max(16, next_pow2(k)),
        BN=bn, PREC=dot_precision(weight), num_warps=lc.warps,
        num_stages=lc.stages)


def _ln_linear(x: torch.Tensor, ln_weight: torch.Tensor | None, ln_bias: torch.Tensor | None,
               eps: float,
               weight: torch.Tensor, bias: torch.Tensor | None, relu: bool,
               launch: LnLinearLaunch | None, channels_first: bool,
               out_channels_first: bool, gate: torch.Tensor | None,
               residual: torch.Tensor | None) -> torch.Tensor:
    weight = weight.contiguous()
    n = weight.shape[0]
    # r + update takes the wider dtype, as the eager add does
    out_dt = weight.dtype if residual is None else torch.promote_types(residual.dtype,
                                                                        weight.dtype)
    if not (channels_first or out_channels_first):
        k = x.shape[-1]
        x2 = x.reshape(-1, k).contiguous()  # [M, K]
        y = torch.empty((x2.shape[0], n), dtype=out_dt, device=x.device)
        g2 = None if gate is None else gate.reshape(-1, n)  # [M, N]
        r2 = None if residual is None else residual.reshape(-1, n)  # [M, N]
        _launch(x2, ln_weight, ln_bias, eps, weight, bias, relu, launch, y, g2, r2)
        return y.view(*x.shape[:-1], n)
    # One launch per leading index, each on [L, K] and [L, N] views whose channels may lie
    # L apart (channels first): loads and stores stay coalesced along positions.
    if channels_first:  # x: [*, K, L]
        k, length = x.shape[-2:]
        x3 = x.reshape(-1, k, length).contiguous()
        xs = [x3[r].t() for r in range(x3.shape[0])]
    else:  # x: [*, L, K]
        length, k = x.shape[-2:]
        x3 = x.reshape(-1, length, k).contiguous()
        xs = list(x3)
    lead = x.shape[:-2]
    if out_channels_first:  # y: [*, N, L]
        y = torch.empty((x3.shape[0], n, length), dtype=out_dt, device=x.device)
        ys, shape = [y[r].t() for r in range(y.shape[0])], (*lead, n, length)
    else:  # y: [*, L, N]
        y = torch.empty((x3.shape[0], length, n), dtype=out_dt, device=x.device)
        ys, shape = list(y), (*lead, length, n)
    gs = [None] * len(ys) if gate is None else list(gate.reshape(-1, length, n))
    rs = [None] * len(ys) if residual is None else list(residual.reshape(-1, length, n))
    for xr, yr, gr, rr in zip(xs, ys, gs, rs, strict=True):
        _launch(xr, ln_weight, ln_bias, eps, weight, bias, relu, launch, yr, gr, rr)
    return y.view(shape)


# Traced by torch.compile (a compiled transition), the launch is a graph break: with
# dynamic shapes its grid depends on the length, and inductor would fuse nothing into it.
_ln_linear_untraced = torch.compiler.disable(_ln_linear, recursive=True)


def _check_call(name: str, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None) -> None:
    if torch.is_grad_enabled():
        raise RuntimeError(f"{name} has no backward: call it without gradients")
    dt = autocast_dtype(x) or x.dtype
    if weight.dtype != dt or (bias is not None and bias.dtype != dt):
        raise ValueError(f"{name}: weight and bias must be in the compute dtype {dt}, got "
                         f"{weight.dtype} and {None if bias is None else bias.dtype}")


def layer_norm_linear(x: torch.Tensor, norm: torch.nn.Module, weight: torch.Tensor,
                      bias: torch.Tensor | None = None, relu: bool = False,
                      launch: LnLinearLaunch | None = None,
                      channels_first: bool = False,
                      out_channels_first: bool = False,
                      gate: torch.Tensor | None = None,
                      residual: torch.Tensor | None = None) -> torch.Tensor:
    """Without gradients: `F.linear(norm(x), weight, bias)` ([*, K] -> [*, N]), ReLU'd if
    `relu`, as one Triton kernel; `channels_first`: x is [*, K, L] (the LayerNorm over
    dim -2) and the result [*, L, N]; `out_channels_first`: x is [*, L, K] and the result
    [*, N, L]; `gate` (logits shaped as the result, not with `out_channels_first`): the
    result times sigmoid(gate); `residual` (shaped as the result, likewise): residual +
    the result, in the wider of their dtypes; rounded once. Under autocast the normalised
    rows, weight and bias are in the autocast dtype (pass the weight and bias cast: the
    output takes their dtype, or the residual's if wider), as autocast runs a Linear;
    outside it they are x's dtype. The caller checks `fusable` (with the width
    x.shape[-2] when channels first). `launch` None: the measured one for the call's
    width and epilogue (`launch_for`)."""
    _check_call("layer_norm_linear", x, weight, bias)
    if (gate is not None or residual is not None) and out_channels_first:
        raise ValueError("layer_norm_linear: a gate or residual needs the output rows of "
                         "channels")
    run = _ln_linear_untraced if torch.compiler.is_compiling() else _ln_linear
    return run(x, norm.weight, norm.bias, norm.eps, weight, bias, relu, launch, channels_first,
               out_channels_first, gate, residual)


def linear_epilogue(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                    residual: torch.Tensor | None = None,
                    launch: LnLinearLaunch | None = None) -> torch.Tensor:
    """Without gradients: `residual + F.linear(x, weight, bias)` ([*, K] -> [*, N], K at
    most MAX_WIDTH) as `layer_norm_linear`'s kernel without its LayerNorm: the add in the
    projection's epilogue, in the wider dtype of the two, rounded once; `launch` as in
    `layer_norm_linear`."""
    _check_call("linear_epilogue", x, weight, bias)
    run = _ln_linear_untraced if torch.compiler.is_compiling() else _ln_linear
    return run(x, None, None, 0.0, weight, bias, False, launch, False, False, None, residual)


# --------------------------------------------------------------- the modules' seams
# Mixins (`swap` puts them in front of whatever class a module has by then) overriding
# the plain modules' LayerNorm-then-projection methods where `fusable`; elsewhere (with
# gradients, on a device Triton cannot run on) the class behind them runs.

def _cast(casts: WeightCasts | None, p: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return casts.cast(p, dtype) if casts is not None else p.to(dtype)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return autocast_dtype(x) or x.dtype


def _stacked_projections(mha: StackedProjectionAttention, x: torch.Tensor,
                         norm: torch.nn.Module) -> tuple:
    """q, k, v and g of `mha` from the LayerNorm of x, as one fused kernel."""
    w, b = mha.stacked_weight(_compute_dtype(x))
    if b is not None and b.shape[0] != w.shape[0]:
        b = pad_bias(b, w.shape[0])
    return mha.split_stacked(layer_norm_linear(x, norm, w, b))


class NormFusedTransition:
    """`Transition` mixin: its hidden activations relu(linear_1(LayerNorm(x))) as one
    kernel without gradients."""

    weight_casts: WeightCasts | None = None

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        if not fusable(x, self.layer_norm, self.linear_1.out_features):
            return super().hidden(x)
        dt = _compute_dtype(x)
        lin = self.linear_1
        return layer_norm_linear(x, self.layer_norm, _cast(self.weight_casts, lin.weight, dt),
                                 _cast(self.weight_casts, lin.bias, dt), relu=True)


class NormFusedMSAAttention:
    """`MSARowAttentionWithPairBias` / `MSAColumnAttention` mixin: the stacked q, k, v, g
    projections of LayerNorm(m) (and the row attention's pair bias of LayerNorm(z)) as
    fused kernels without gradients. Needs the stacked projections
    (`swap_attention_projections`); without them the class behind runs."""

    weight_casts: WeightCasts | None = None

    def normalized_projections(self, m: torch.Tensor) -> tuple:
        if not (isinstance(self.mha, StackedProjectionAttention)
                and fusable(m, self.layer_norm_m, _stacked_width(self.mha))):
            return super().normalized_projections(m)
        return _stacked_projections(self.mha, m, self.layer_norm_m)

    def normalized_pair_bias(self, z: torch.Tensor) -> torch.Tensor:
        if not fusable(z, self.layer_norm_z, self.linear_z.out_features):
            return super().normalized_pair_bias(z)
        w = _cast(self.weight_casts, self.linear_z.weight, _compute_dtype(z))
        # written heads first, as the attention core reads the bias (it would copy the
        # row-major one in every block): [*, H, N1·N2] seen as [*, N1, N2, H]
        y = layer_norm_linear(z.flatten(-3, -2), self.layer_norm_z, w,
                              out_channels_first=True)
        return y.unflatten(-1, z.shape[-3:-1]).movedim(-3, -1)


class NormFusedTriangleAttention:
    """`TriangleAttention` mixin: the triangle bias and the stacked q, k, v, g
    projections of LayerNorm(z) as two fused kernels without gradients (each reads z; the
    normalised z is never written)."""

    weight_casts: WeightCasts | None = None

    def normalized_projections(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        if not (isinstance(self.mha, StackedProjectionAttention)
                and fusable(z, self.layer_norm, _stacked_width(self.mha))):
            return super().normalized_projections(z)
        w = _cast(self.weight_casts, self.linear.weight, _compute_dtype(z))
        tri_bias = layer_norm_linear(z, self.layer_norm, w)  # [*, I, J, H]
        return tri_bias, _stacked_projections(self.mha, z, self.layer_norm)


class NormFusedOuterProductMean:
    """`OuterProductMean` mixin: its two projections a, b of LayerNorm(m) as one fused
    kernel (their weights stacked) without gradients, masked after it as the plain
    module masks them; and the residual update (`added_to`) made inside the forward."""

    weight_casts: WeightCasts | None = None

    def normalized_project(self, m: torch.Tensor, mask: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        if not fusable(m, self.layer_norm, 2 * self.linear_1.out_features):
            return super().normalized_project(m, mask)
        dt = _compute_dtype(m)
        l1, l2 = self.linear_1, self.linear_2

        def make() -> tuple[torch.Tensor, torch.Tensor]:
            return (stack_cast([l1.weight, l2.weight], dt),
                    stack_cast([l1.bias, l2.bias], dt))

        casts = self.weight_casts
        # caching() first: compiled code must not read the module's id (a guard on it
        # would recompile the module for every instance)
        w, b = (casts.cached(("opm_ab", id(self), dt), make)
                if casts is not None and casts.caching() else make())
        ab = layer_norm_linear(m, self.layer_norm, w, b)  # [*, S, N, 2c]
        a, b = ab.split(l1.out_features, dim=-1)
        mask = mask.unsqueeze(-1)  # [*, S, N, 1]
        return a * mask, b * mask

    def forward(self, m: torch.Tensor, mask: torch.Tensor,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        # residual (from `added_to`): inside the forward, so that the evaluation's
        # compiled glue fuses the add with the normalisation's division
        out = super().forward(m, mask)
        return out if residual is None else residual + out

    def added_to(self, r: torch.Tensor, m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return super().added_to(r, m, mask)
        return self(m, mask, r)


class NormFusedTriangleMultiplication:
    """`TriangleMultiplication` mixin, without gradients: the output LayerNorm of the
    triangle product, linear_z, the output gate and (from `added_to`, the residual update
    without dropout) the add to the pair stream as one kernel, reading the channels-first
    product in place; and, on the channels-first form, the input LayerNorm inside both of its
    consumers, the stacked projections (written channels first for the gating) and the
    output gate's projection. Then `project` hands `combine` the raw z, which
    `gate_logits` normalises in its kernel: the normalised z is never written. With the
    module's `forward_projection_kernel` too (`trimul_projection_forward_kernel`), the
    input LayerNorm, the four projections and their gating are one kernel
    (`project_gate_forward` with `norm`): the stacked projection is not written either."""

    weight_casts: WeightCasts | None = None

    def _fuses_input(self, z: torch.Tensor) -> bool:
        # the same answer for the raw z in `project` and what it hands to `combine`: both
        # consumers (the four stacked projections, the output gate's) must take it
        return (isinstance(self, ChannelFirstTriangleMultiplication)
                and fusable(z, self.layer_norm_in, 4 * self.linear_a_p.out_features)
                and fusable(z, self.layer_norm_in, self.linear_g.out_features))

    def project(self, z: torch.Tensor, mask: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # z: [*, N1, N2, c_z]  mask: [*, N1, N2] -> z (raw), a, b: [*, c, N1, N2]
        if not self._fuses_input(z):
            return super().project(z, mask)
        w, bias = self._stacked(_compute_dtype(z))  # [4c, c_z], [4c]
        if self.forward_projection_kernel and projection_fits(z.shape[-1]):
            m = mask.flatten(-2).unsqueeze(-2)  # [*, 1, N1*N2]
            a, b = project_gate_forward(z, w, bias, m, self.linear_a_p.out_features,
                                        norm=self.layer_norm_in)  # each [*, c, N1, N2]
            return z, a, b
        proj = layer_norm_linear(z.flatten(-3, -2), self.layer_norm_in, w, bias,
                                 out_channels_first=True)  # [*, 4c, N1*N2]
        a, b = self.gated(proj, bias, True, mask)
        return z, a, b

    def gate_logits(self, z: torch.Tensor) -> torch.Tensor:
        if not self._fuses_input(z):
            return super().gate_logits(z)
        dt = _compute_dtype(z)
        lin = self.linear_g
        return layer_norm_linear(z, self.layer_norm_in, _cast(self.weight_casts, lin.weight, dt),
                                 _cast(self.weight_casts, lin.bias, dt))

    def _fuses_output(self, a: torch.Tensor) -> bool:
        return fusable(a, self.layer_norm_out, self.linear_z.out_features, dim=-3)

    def _product_projection(self, a: torch.Tensor, b: torch.Tensor, gate: torch.Tensor,
                            residual: torch.Tensor | None = None) -> torch.Tensor:
        # a, b: [*, c, N1, N2], gate (logits), residual (or None): [*, N1, N2, c_z]
        # -> [*, N1, N2, c_z]
        x = self.triangle_product(a, b)  # [*, c, N1, N2], contiguous
        n1, n2 = x.shape[-2:]
        dt = _compute_dtype(x)
        lin = self.linear_z
        y = layer_norm_linear(x.flatten(-2), self.layer_norm_out,
                              _cast(self.weight_casts, lin.weight, dt),
                              _cast(self.weight_casts, lin.bias, dt), channels_first=True,
                              gate=gate.flatten(-3, -2),
                              residual=None if residual is None else residual.flatten(-3, -2))
        return y.unflatten(-2, (n1, n2))

    def combine(self, a: torch.Tensor, b: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # the output gate sigmoid(g) in the output projection's epilogue: the ungated
        # update is never written and read back by a gate kernel
        if not self._fuses_output(a):
            return super().combine(a, b, z)
        return self._product_projection(a, b, self.gate_logits(z))

    def forward(self, z: torch.Tensor, mask: torch.Tensor,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        # residual (from `added_to`): residual + the update, the add in the same epilogue;
        # through forward so that a compiled module (the evaluation's compiled glue) runs
        # its compiled code for it too
        if residual is None:
            return super().forward(z, mask)
        z, a, b = self.project(z, mask)
        if not self._fuses_output(a):
            return residual + self.combine(a, b, z)
        return self._product_projection(a, b, self.gate_logits(z), residual)

    def added_to(self, r: torch.Tensor, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return super().added_to(r, z, mask)
        return self(z, mask, r)


class FusedOutputAttention:
    """`Attention` mixin: without gradients, the output projection with the residual
    stream added in its epilogue (`output` given a residual: the attention modules'
    `added_to`), the update never written and read back by an add."""

    weight_casts: WeightCasts | None = None

    def output(self, o: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        lin = self.linear_o
        if (residual is None or torch.is_grad_enabled() or not triton_usable(o)
                or o.shape[-1] > MAX_WIDTH or lin.out_features > MAX_COLUMNS):
            return super().output(o, residual)
        dt = _compute_dtype(o)
        return linear_epilogue(o, _cast(self.weight_casts, lin.weight, dt),
                               _cast(self.weight_casts, lin.bias, dt), residual)


def swap_norm_projections(model: torch.nn.Module,
                          weight_casts: WeightCasts | None = None) -> torch.nn.Module:
    """The transitions, MSA attentions, triangle attentions, outer product means and
    triangle multiplications of `model` get their LayerNorm-and-projection kernels, and
    every attention its output projection with the residual add in the epilogue (the
    mixins above), in place, sharing `weight_casts` if given. Apply after
    `swap_attention_projections` and `swap_triangle_multiplication`. Returns `model`."""
    swap(model, Transition, NormFusedTransition, weight_casts=weight_casts)
    swap(model, OuterProductMean, NormFusedOuterProductMean, weight_casts=weight_casts)
    for cls in (MSARowAttentionWithPairBias, MSAColumnAttention):
        swap(model, cls, NormFusedMSAAttention, weight_casts=weight_casts)
    swap(model, TriangleAttention, NormFusedTriangleAttention, weight_casts=weight_casts)
    swap(model, TriangleMultiplication, NormFusedTriangleMultiplication,
         weight_casts=weight_casts)
    swap(model, Attention, FusedOutputAttention, weight_casts=weight_casts)
    return model
