"""The channels-first triangle multiplication's four input projections and their gating
as one Triton kernel, for forwards without gradients (`project_gate_forward`).

Without gradients the swapped module (`ChannelFirstTriangleMultiplication`) computes the
stacked projection proj = W_cat · zᵀ ([*, 4c, L], L = N·N; W_cat the four `Linear`
weights a_p, a_g, b_p, b_g stacked, [4c, c_z]) as a cuBLAS matmul, writes it, and reads it
back to gate: a = sigmoid(a_g + b_ag)·m·(a_p + b_ap), likewise b. With c_z = 128 the
matmul is memory-bound (each z row feeds 4c = 512 outputs that are written in full):
at 224 residues on an H100, 21 µs for the matmul and ~22 µs for a gating kernel (the
Triton one this kernel retired; docs/evidence/2026-12-05_h100_s4), moving 51 MB of
projections out and back. Here one program computes, for a block of channels and a block
of positions, the projection rows it gates (a_p and a_g, or b_p and b_g) as two products
of the same z tile with the whole K = c_z, adds the biases and gates in float32 and stores
a or b: z is read once per channel block, the projections never leave the chip, and the
output is a and b alone (26 MB at 224 residues).

With the input LayerNorm in front (`norm`: `ln_projection_forward_kernel` beside
`trimul_projection_forward_kernel`) the kernel reads the raw pair stream and normalises
each position's whole row in registers with the LayerNorm kernel's arithmetic and
rounding (`_ln_rows`): neither the normalised z nor the stacked projection is written.
The LayerNorm-projection path it replaces writes the stacked projection ([*, 4c, N·N]:
four times z) and the gating reads it back, 11 passes of z's size against 3 here.

Numbers: the products accumulate in float32 as cuBLAS's do, but are not rounded to the
compute dtype before the gating (the matmul's output rounding is gone): a and b differ
from the two-kernel path by at most that rounding, before their own one rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scalefold.kernels._triton import dot_precision, next_pow2, tl, triton

if triton is not None:
    from scalefold.kernels.layer_norm import _ln_rows  # a Triton function: with Triton only

    @triton.jit
    def _gate_group(zt, W, BIAS, OUT, m, row, half, pid_c, offs_l, valid_l, L, C, ROWS,
                    K: tl.constexpr, BC: tl.constexpr, PREC: tl.constexpr):
        # One block of channels of a (half 0: W rows a_p = j, a_g = C + j) or b (half 1:
        # b_p = 2C + j, b_g = 3C + j) for the positions of zt [K, BL], stored.
        offs_c = pid_c * BC + tl.arange(0, BC)
        offs_k = tl.arange(0, K)
        valid_c = offs_c < C
        p_rows = half * 2 * C + offs_c  # the projection's weight rows
        g_rows = p_rows + C  # its gate's
        w_p = tl.load(W + p_rows[:, None] * K + offs_k[None, :], mask=valid_c[:, None],
                      other=0.0)  # [BC, K]
        w_g = tl.load(W + g_rows[:, None] * K + offs_k[None, :], mask=valid_c[:, None],
                      other=0.0)
        p = tl.dot(w_p, zt, input_precision=PREC)  # [BC, BL], float32
        g = tl.dot(w_g, zt, input_precision=PREC)
        p += tl.load(BIAS + p_rows, mask=valid_c, other=0.0).to(tl.float32)[:, None]
        g += tl.load(BIAS + g_rows, mask=valid_c, other=0.0).to(tl.float32)[:, None]
        out = tl.sigmoid(g) * m[None, :] * p
        dst = OUT + ((half * ROWS + row) * C + offs_c[:, None]) * L + offs_l[None, :]
        tl.store(dst, out.to(OUT.dtype.element_ty), mask=valid_c[:, None] & valid_l[None, :])

    @triton.jit
    def _projection_gating_fwd(Z, LW, LB, W, BIAS, M, OUT, L, C, ROWS, eps, K: tl.constexpr,
                               BC: tl.constexpr, BL: tl.constexpr, NORM: tl.constexpr,
                               PREC: tl.constexpr, GROUPS_IN_LOOP: tl.constexpr = False):
        # GROUPS_IN_LOOP=False: program (half x block of channels, block of L, batch row);
        # the programs that read one z tile are neighbours on axis 0, launched together,
        # so the tile's later reads come from L2 (each normalises it again).
        # GROUPS_IN_LOOP: program (block of L, batch row), looping over both halves'
        # channel blocks: the z tile read and normalised once, the weight streamed through
        # it (`ProjectionGatingLaunch.groups_in_loop`).
        if GROUPS_IN_LOOP:
            pid_l = tl.program_id(0)
            row = tl.program_id(1).to(tl.int64)
        else:
            half = tl.program_id(0) % 2
            pid_c = tl.program_id(0) // 2
            pid_l = tl.program_id(1)
            row = tl.program_id(2).to(tl.int64)
        offs_l = pid_l * BL + tl.arange(0, BL)
        offs_k = tl.arange(0, K)
        valid_l = offs_l < L
        if NORM:
            # the raw stream's rows, normalised and rounded as the LayerNorm kernel's
            # output (K is the whole width: every channel is valid)
            rows_mask = valid_l[:, None] & (offs_k[None, :] < K)
            zr = tl.load(Z + row * L * K + offs_l[:, None] * K + offs_k[None, :],
                         mask=rows_mask, other=0.0).to(tl.float32)  # [BL, K]
            zn, _, _ = _ln_rows(zr, rows_mask, offs_k, offs_k < K, LW, LB, K, eps)
            zt = tl.trans(zn.to(W.dtype.element_ty))  # [K, BL]
        else:
            zt = tl.load(Z + row * L * K + offs_l[None, :] * K + offs_k[:, None],
                         mask=valid_l[None, :], other=0.0)  # [K, BL]: z's tile, transposed
        m = tl.load(M + row * L + offs_l, mask=valid_l, other=0.0).to(tl.float32)
        if GROUPS_IN_LOOP:
            n_c = tl.cdiv(C, BC)
            for grp in range(0, 2 * n_c):
                _gate_group(zt, W, BIAS, OUT, m, row, grp // n_c, grp % n_c, offs_l, valid_l,
                            L, C, ROWS, K, BC, PREC)
        else:
            _gate_group(zt, W, BIAS, OUT, m, row, half, pid_c, offs_l, valid_l, L, C, ROWS,
                        K, BC, PREC)


@dataclass(frozen=True)
class ProjectionGatingLaunch:
    """Positions a program takes, warps, pipeline stages, and whether a program loops
    over every block of output channels (`groups_in_loop`: z read and normalised once a
    block of positions) or takes one (four programs a z tile at c = 128, each reading the
    tile and 32 KiB of weights for 64 positions: ~5 TB/s of L2 traffic at 704 residues by
    estimate, docs/perf-log/2026-12-06.md section 7)."""

    block_l: int = 64
    warps: int = 4
    stages: int = 1
    groups_in_loop: bool = True


# The loop form, 64 positions, four warps, one stage: the best of seven launches on an
# H100 in CUDA graphs, 0.94x (224 residues) and 0.76x (704: 1.30 -> 1.71 TB/s) of one
# block of channels a program, the same bits (docs/evidence/2026-12-06_h100_s24,
# `mb_projection_gating.py`).
DEFAULT_LAUNCH = ProjectionGatingLaunch()


def _launch(zf: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, m: torch.Tensor,
            c: int, norm: torch.nn.Module | None, launch: ProjectionGatingLaunch
            ) -> tuple[torch.Tensor, torch.Tensor]:
    # zf: [R, L, K]  w: [4c, K]  bias: [4c]  m: [R, L] -> a, b: [R, c, L] in w's dtype
    rows, length, k = zf.shape
    out = torch.empty((2, rows, c, length), dtype=w.dtype, device=zf.device)
    bc = min(64, max(16, next_pow2(c)))
    bl = launch.block_l
    blocks_l = triton.cdiv(length, bl)
    if launch.groups_in_loop:
        grid = (blocks_l, rows)
    else:
        grid = (2 * triton.cdiv(c, bc), blocks_l, rows)
        if blocks_l > 65535:  # CUDA's limit on a grid's second axis
            raise ValueError(f"project_gate_forward: {length} positions (N·N) is more than "
                             f"the kernel's {65535 * bl}; N up to {int((65535 * bl) ** 0.5)} "
                             "residues")
    lw, lb, eps = (norm.weight, norm.bias, norm.eps) if norm is not None else (w, w, 0.0)
    _projection_gating_fwd[grid](zf, lw, lb, w, bias, m, out, length, c, rows, eps, K=k,
                                 BC=bc, BL=bl, NORM=norm is not None,
                                 PREC=dot_precision(w), GROUPS_IN_LOOP=launch.groups_in_loop,
                                 num_warps=launch.warps, num_stages=launch.stages)
    return out[0], out[1]


def _project_gate(z: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, m: torch.Tensor,
                  c: int, norm: torch.nn.Module | None = None,
                  launch: ProjectionGatingLaunch = DEFAULT_LAUNCH
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    lead, n1, n2, k = z.shape[:-3], z.shape[-3], z.shape[-2], z.shape[-1]
    zf = z.reshape(-1, n1 * n2, k).contiguous()  # [R, L, K]
    rows = zf.shape[0]
    mask = m.expand(*lead, 1, n1 * n2).reshape(rows, n1 * n2).contiguous()  # [R, L]
    a, b = _launch(zf, w.contiguous(), bias.contiguous(), mask, c, norm, launch)
    return a.reshape(*lead, c, n1, n2), b.reshape(*lead, c, n1, n2)


# Traced by torch.compile, the launch is a graph break: its grid depends on the length,
# and under the evaluation's CUDA graphs a break costs no host time.
_project_gate_untraced = torch.compiler.disable(_project_gate, recursive=True)


def fits(c_z: int) -> bool:
    """Whether the kernel takes this input width: the whole of K in one tile, a power of
    two of at least 16 (`tl.dot`) and at most 256."""
    return 16 <= c_z <= 256 and c_z == next_pow2(c_z)


def project_gate_forward(z: torch.Tensor, w: torch.Tensor, bias: torch.Tensor,
                         m: torch.Tensor, c: int, norm: torch.nn.Module | None = None,
                         launch: ProjectionGatingLaunch = DEFAULT_LAUNCH
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Without gradients: a = sigmoid(z·W_ag + b_ag)·m·(z·W_ap + b_ap) and b likewise
    ([*, c, N1, N2], channels first, in w's dtype) from z ([*, N1, N2, c_z], in the
    compute dtype), the stacked weights `w` ([4c, c_z]: a_p, a_g, b_p, b_g) and biases
    `bias` ([4c]) in that dtype, and the mask `m` ([*, 1, N1·N2], broadcastable over the
    lead dims), as one Triton kernel (the caller checks that Triton can run on z and that
    c_z `fits`). `norm`: a LayerNorm over c_z (with weight and bias) applied to z in the
    kernel first; z is then the raw stream, in any float dtype. `launch`: the kernel's
    tiling (`ProjectionGatingLaunch`)."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (z, w, bias, m)):
        raise RuntimeError("project_gate_forward has no backward: call it without gradients")
    if torch.compiler.is_compiling():
        return _project_gate_untraced(z, w, bias, m, c, norm, launch)
    return _project_gate(z, w, bias, m, c, norm, launch)
