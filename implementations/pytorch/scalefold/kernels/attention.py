"""Attention with additive biases, flash-attention style, as Triton kernels (fwd + bwd).

Computes softmax(q kᵀ + Σ biases) v for the model's `AttentionCore` contract: q is already
scaled; q/k/v are [*, H, L, c]; each bias broadcasts to [*, H, Q, K]. The full logits are
never written to memory: the forward keeps a running max and sum per query row (online
softmax) and stores only the output and the row log-sum-exp; the backward recomputes the
probabilities tile by tile.

Layout. All leading dims `*` are folded into two index dims (Z1, Z2) by stride arithmetic,
without copies: Z2 is the dim a gradient-needing bias is broadcast over (the MSA rows for
the pair bias of row attention, the row index i for triangle attention), Z1 the rest.
The bias gradient dS is then summed over Z2 inside the kernel, so neither the logits nor
their gradient is materialised at [*, H, Q, K] size. Every tensor is addressed through its
own strides, so q/k/v come straight from the projections (head-interleaved) and the
output is allocated so that the caller's transpose-and-flatten is a free view.

Kernels:
- `_attn_fwd`: grid (query blocks · Z1·Z2·H), one axis. Output o and lse.
- `_attn_bwd_kv`: grid (key blocks · Z1·Z2·H), loops over query blocks: dK, dV.
- `_attn_bwd_q_bias`: grid (query blocks × key blocks, Z1·H, chunks of Z2), loops over its
  Z2 rows: dQ (fp32 atomics across key blocks; few key blocks, so little contention) and a
  per-chunk partial dBias tile that PyTorch sums over chunks.
- `_attn_bwd_dq` (`FlashConfig.dq_kernel`): grid (query blocks · Z1·Z2·H), loops over key
  blocks: dQ in registers, stored once; `_attn_bwd_q_bias` then computes dBias only.
- `FlashConfig.store_ds`: where a bias needs a gradient, `_attn_bwd_kv` also stores dS
  ([Z1·Z2·H, Q, K], q's dtype) and neither of the two kernels above runs: dQ is one
  batched matmul and dBias an fp32 sum of the stored dS. This materialises dS after all,
  once, in the backward only; at the benchmark's shapes three passes over it cost less
  than the two recomputes they replace: −21.4 ms a step on the H200 (docs/PERFORMANCE.md,
  `attention_store_ds`).
- `FlashConfig.fused_logits`: fewer operations a score element, in every kernel. The
  forward runs at about 1e12 score elements a second on the H200 whatever the head
  dimension (8 or 32), so the work per element, not the matrix products, bounds it
  (docs/perf-log/2026-12-04.md, section 16): the biases start the MMA's accumulator
  instead of being added after it, exp(s - m) is exp2 of one fused multiply-add
  (s·log2 e - m·log2 e) instead of a subtraction and the multiply that tl.exp adds
  before ex2, and the forward's rescaled output is the P·V product's accumulator.
- `_attn_delta` (`FlashConfig.precomputed_delta`): delta = rowsum(dO·O) [Z1·Z2·H, Q]
  once per row, which the backward kernels then load instead of reading O again and
  reducing it for every block (the dk/dv kernel did so in each iteration of its loop).
  `scalefold bench sass` counts what both forms take off each kernel's loop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from scalefold.kernels._triton import (
    dot_precision,
    interpreting,
    next_pow2,
    tl,
    triton,
    triton_usable,
)

try:  # host tensor descriptors (`FlashConfig.bias_tma`): Triton 3.6 and 3.9 have them; the
    # project allows older Tritons, which then keep the other bias loads
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # pragma: no cover - depends on the environment
    TensorDescriptor = None

if triton is not None:
    _LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) = exp2(x · log2 e)

    @triton.jit
    def _load_bias(B, z1, z2, h, offs_q, offs_k, Q, K, s1, s2, sh, sq, sk,
                   ROW: tl.constexpr, MASKED: tl.constexpr, BQ: tl.constexpr,
                   BK: tl.constexpr):
        # One bias tile [BQ, BK] in fp32 (any of its strides may be 0: broadcast). ROW: the
        # bias is broadcast over queries (sq = 0, the masks), so one [BK] row is loaded
        # and broadcast instead of BQ copies of it: the same values, BQ times fewer loads.
        # MASKED=False: every offset is in bounds (the caller clamps rows past the end and
        # passes only full key blocks), so no bounds are computed or tested per element.
        ptr = B + z1.to(tl.int64) * s1 + h.to(tl.int64) * sh + z2 * s2
        if ROW:
            if MASKED:
                row = tl.load(ptr + offs_k * sk, mask=offs_k < K, other=0.0)  # [BK]
            else:
                row = tl.load(ptr + offs_k * sk)
            out = tl.broadcast_to(row.to(tl.float32)[None, :], (BQ, BK))
        else:
            ptr = ptr + offs_q[:, None] * sq + offs_k[None, :] * sk
            if MASKED:
                m = (offs_q[:, None] < Q) & (offs_k[None, :] < K)
                out = tl.load(ptr, mask=m, other=0.0).to(tl.float32)
            else:
                out = tl.load(ptr).to(tl.float32)
        return out

    @triton.jit
    def _bias_tile(eye, B, z1, z2, h, offs_q, offs_k, Q, K, s1, s2, sh, sq, sk,
                   ROW: tl.constexpr, MMA: tl.constexpr, MASKED: tl.constexpr,
                   BQ: tl.constexpr, BK: tl.constexpr, BD=None, b_row=0, k0=0,
                   TMA: tl.constexpr = False):
        # One bias tile [BQ, BK] in fp32, loaded (`_load_bias`) or, MMA, a 16-bit tile as
        # the product eye · tile: its exact values (one product of 1 and each value, the
        # rest zeros), but the tile is now a matrix operand, which the loop's pipeline
        # loads into shared memory stages ahead of their use like k and v, and the MMA
        # reads from there. Loaded as a plain tile, the L2 load's latency was exposed in
        # every iteration (the sm90 loop issued it, then stored it to shared memory and
        # synchronised to change its layout) and each value took a conversion to fp32:
        # `FlashConfig.bias_mma`. TMA: the tile [BQ, BK] from row b_row, column k0 of the
        # bias's tensor descriptor BD, which the loop's pipeline also loads stages ahead
        # (`FlashConfig.bias_tma`): no identity product, a conversion to fp32 instead.
        if TMA:
            out = BD.load([b_row, k0]).to(tl.float32)
        elif MMA:
            ptr = (B + z1.to(tl.int64) * s1 + h.to(tl.int64) * sh + z2 * s2
                   + offs_q[:, None] * sq + offs_k[None, :] * sk)
            if MASKED:
                t = tl.load(ptr, mask=(offs_q[:, None] < Q) & (offs_k[None, :] < K),
                            other=0.0)
            else:
                t = tl.load(ptr)
            out = tl.dot(eye, t)
        else:
            out = _load_bias(B, z1, z2, h, offs_q, offs_k, Q, K, s1, s2, sh, sq, sk, ROW,
                             MASKED, BQ, BK)
        return out

    @triton.jit
    def _scores(q, kt, B0, B1, z1, z2, h, offs_q, offs_k, Q, K,
                b0_1, b0_2, b0_h, b0_q, b0_k, b1_1, b1_2, b1_h, b1_q, b1_k,
                HAS_B0: tl.constexpr, HAS_B1: tl.constexpr,
                B0_ROW: tl.constexpr, B1_ROW: tl.constexpr, FUSED: tl.constexpr,
                BQ: tl.constexpr, BK: tl.constexpr, PREC: tl.constexpr,
                MASKED: tl.constexpr = True, eye=0, B0_MMA: tl.constexpr = False,
                B1_MMA: tl.constexpr = False, B0D=None, B1D=None, b0_row=0, b1_row=0,
                k0=0, B0_TMA: tl.constexpr = False, B1_TMA: tl.constexpr = False):
        # The logits [BQ, BK] (fp32): q kᵀ plus the biases. FUSED: the biases are summed
        # first and the product accumulates onto them inside the MMA (its accumulator
        # starts from them instead of zero), which saves one add a score element.
        # MASKED=False: the bias loads are unmasked (see `_load_bias`). B0_MMA/B1_MMA
        # (FUSED only): that bias, a 16-bit tile, enters as eye · tile (`_bias_tile`):
        # the same values, so the same sums in the same order. B0_TMA/B1_TMA (FUSED only):
        # that bias from its tensor descriptor (`_bias_tile`).
        if FUSED and (HAS_B0 or HAS_B1):
            if HAS_B0:
                acc = _bias_tile(eye, B0, z1, z2, h, offs_q, offs_k, Q, K,
                                 b0_1, b0_2, b0_h, b0_q, b0_k, B0_ROW, B0_MMA, MASKED, BQ, BK,
                                 B0D, b0_row, k0, B0_TMA)
                if HAS_B1:
                    acc += _bias_tile(eye, B1, z1, z2, h, offs_q, offs_k, Q, K, b1_1, b1_2,
                                      b1_h, b1_q, b1_k, B1_ROW, B1_MMA, MASKED, BQ, BK,
                                      B1D, b1_row, k0, B1_TMA)
            else:
                acc = _bias_tile(eye, B1, z1, z2, h, offs_q, offs_k, Q, K,
                                 b1_1, b1_2, b1_h, b1_q, b1_k, B1_ROW, B1_MMA, MASKED, BQ, BK,
                                 B1D, b1_row, k0, B1_TMA)
            s = tl.dot(q, kt, acc=acc, input_precision=PREC)
        else:
            s = tl.dot(q, kt, input_precision=PREC)
            if HAS_B0:
                s += _load_bias(B0, z1, z2, h, offs_q, offs_k, Q, K,
                                b0_1, b0_2, b0_h, b0_q, b0_k, B0_ROW, MASKED, BQ, BK)
            if HAS_B1:
                s += _load_bias(B1, z1, z2, h, offs_q, offs_k, Q, K,
                                b1_1, b1_2, b1_h, b1_q, b1_k, B1_ROW, MASKED, BQ, BK)
        return s

    @triton.jit
    def _exp_minus(s, m, FUSED: tl.constexpr):
        # exp(s - m) for logits s [BQ, BK] and row values m [BQ]. FUSED: as exp2 of one
        # fused multiply-add, with m·log2(e) once per row (tl.exp itself multiplies its
        # argument by log2(e) for ex2, after the subtraction: two operations an element).
        if FUSED:
            out = tl.exp2(s * _LOG2E - (m * _LOG2E)[:, None])
        else:
            out = tl.exp(s - m[:, None])
        return out

    @triton.jit
    def _load_kv(start, k_base, v_base, KL, D, DV, skl, skd, svl, svd,
                 LOAD_MASKS: tl.constexpr, EVEN_D: tl.constexpr, BK: tl.constexpr,
                 BD: tl.constexpr, BDV: tl.constexpr):
        # kᵀ [BD, BK] and v [BK, BDV] of the block of keys from `start` (see `_fwd_keys`)
        offs_k = start + tl.arange(0, BK)
        offs_d = tl.arange(0, BD)
        offs_dv = tl.arange(0, BDV)
        kt_ptr = k_base + offs_k[None, :] * skl + offs_d[:, None] * skd
        v_ptr = v_base + offs_k[:, None] * svl + offs_dv[None, :] * svd
        if LOAD_MASKS:
            kt = tl.load(kt_ptr, mask=(offs_k[None, :] < KL) & (offs_d[:, None] < D), other=0.0)
            v = tl.load(v_ptr, mask=(offs_k[:, None] < KL) & (offs_dv[None, :] < DV),
                        other=0.0)
        elif EVEN_D:
            kt = tl.load(kt_ptr)
            v = tl.load(v_ptr)
        else:
            kt = tl.load(kt_ptr, mask=offs_d[:, None] < D, other=0.0)
            v = tl.load(v_ptr, mask=offs_dv[None, :] < DV, other=0.0)
        return kt, v

    @triton.jit
    def _softmax_step(s, v, m_i, ml_i, l_i, acc, FUSED: tl.constexpr, PREC: tl.constexpr):
        # The online softmax's step with the logits s [BQ, BK] of a block of keys and its
        # values v [BK, BDV]: (m_i, ml_i, l_i, acc) updated. FUSED: ml_i is m_i · log2 e
        # as rounded, the reference every p = exp2(s · log2 e - ml) of the row is taken
        # from (one fma: s · log2 e exact in it), so the old terms are re-referenced by
        # exp2(ml_i - ml_new), exactly 1 while the max holds. Not m_i · log2 e -
        # m_new · log2 e: FP fusion makes that one fma too, whose exponent is the rounding
        # error of m · log2 e instead of 0 (~18 where the -1e9 masks hide every key of a
        # row), compounding once a block of keys until the row's sum overflows past six
        # blocks (docs/perf-log/2026-12-07.md section 6).
        row_max = tl.max(s, axis=1)
        m_new = tl.maximum(m_i, row_max)
        if FUSED:
            # rounding is monotonic, so this is m_new · log2 e rounded; as the max of a
            # product (not the product itself) no fma can take it into the subtraction
            ml_new = tl.maximum(ml_i, row_max * _LOG2E)
            alpha = tl.exp2(ml_i - ml_new)
            p = tl.exp2(s * _LOG2E - ml_new[:, None])
        else:
            ml_new = ml_i
            alpha = tl.exp(m_i - m_new)
            p = _exp_minus(s, m_new, FUSED)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        if FUSED:  # the rescaled output as the product's accumulator: one add less
            acc = tl.dot(p.to(v.dtype), v, acc=acc * alpha[:, None], input_precision=PREC)
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
        return m_new, ml_new, l_i, acc

    @triton.jit
    def _fwd_keys(
        q, m_i, ml_i, l_i, acc, start, k_base, v_base, B0, B1, z1, z2, h, offs_q,
        QL, KL, D, DV, skl, skd, svl, svd,
        b0_1, b0_2, b0_h, b0_q, b0_k,
        b1_1, b1_2, b1_h, b1_q, b1_k,
        HAS_B0: tl.constexpr, HAS_B1: tl.constexpr,
        B0_ROW: tl.constexpr, B1_ROW: tl.constexpr, FUSED: tl.constexpr,
        LOAD_MASKS: tl.constexpr, KEY_MASK: tl.constexpr, EVEN_D: tl.constexpr,
        BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
        PREC: tl.constexpr, eye, B0_MMA: tl.constexpr, B1_MMA: tl.constexpr,
        B0D, B1D, b0_row, b1_row, B0_TMA: tl.constexpr, B1_TMA: tl.constexpr,
    ):
        # The online softmax over one block of keys from `start`: (m_i, ml_i, l_i, acc)
        # updated (`_softmax_step`).
        # LOAD_MASKS: loads test their bounds (else the block is full and the query rows
        # in bounds); KEY_MASK: keys past the end get -inf; EVEN_D: the head dimensions
        # fill their blocks.
        offs_k = start + tl.arange(0, BK)
        kt, v = _load_kv(start, k_base, v_base, KL, D, DV, skl, skd, svl, svd, LOAD_MASKS,
                         EVEN_D, BK, BD, BDV)
        s = _scores(q, kt, B0, B1, z1, z2, h, offs_q, offs_k, QL, KL,
                    b0_1, b0_2, b0_h, b0_q, b0_k, b1_1, b1_2, b1_h, b1_q, b1_k,
                    HAS_B0, HAS_B1, B0_ROW, B1_ROW, FUSED, BQ, BK, PREC,
                    LOAD_MASKS, eye, B0_MMA, B1_MMA, B0D, B1D, b0_row, b1_row, start,
                    B0_TMA, B1_TMA)  # [BQ, BK]
        if KEY_MASK:  # keys past the end of the last block
            s = tl.where(offs_k[None, :] < KL, s, float("-inf"))
        return _softmax_step(s, v, m_i, ml_i, l_i, acc, FUSED, PREC)

    @triton.jit
    def _attn_fwd(
        Qp, Kp, Vp, B0, B1, Op, LSE, Gp,
        sq1, sq2, sqh, sql, sqd,
        sk1, sk2, skh, skl, skd,
        sv1, sv2, svh, svl, svd,
        so1, so2, soh, sol, sod,
        sg1, sg2, sgh, sgl, sgd,
        b0_1, b0_2, b0_h, b0_q, b0_k,
        b1_1, b1_2, b1_h, b1_q, b1_k,
        Z2, H, QL, KL, D, DV, q_scale,
        HAS_B0: tl.constexpr, HAS_B1: tl.constexpr,
        B0_ROW: tl.constexpr, B1_ROW: tl.constexpr, FUSED: tl.constexpr,
        EVEN_K: tl.constexpr, STORE_LSE: tl.constexpr, SCALE_Q: tl.constexpr,
        UNMASKED: tl.constexpr, EVEN_D: tl.constexpr,
        BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
        PREC: tl.constexpr, GATED: tl.constexpr = False, B0_MMA: tl.constexpr = False,
        B1_MMA: tl.constexpr = False, B0D=None, B1D=None, B0_TMA: tl.constexpr = False,
        B1_TMA: tl.constexpr = False, LOOP_STAGES: tl.constexpr = None,
    ):
        # One axis of query blocks × Z1·Z2·H (query blocks fastest: programs sharing k and v
        # run together): CUDA limits a grid's second axis to 65535 programs, fewer than the
        # (row, head) pairs of a few chains' extra-MSA row attention in one launch.
        # UNMASKED: the loop runs over the full blocks of keys without bounds on its loads
        # (query rows past the end read the last row's values, never stored) and the last,
        # partial block of keys runs after it with them: the same values in the same order.
        # LOOP_STAGES (`FlashConfig.pipelined_bias_loads`): the loop's stages given
        # explicitly, so that Triton's pipeliner also loads the bias tile (plain or by its
        # descriptor) stages ahead; by default it pipelines only the matrix operands' loads.
        n_qb = tl.cdiv(QL, BQ)
        pid_q = tl.program_id(0) % n_qb
        pid_zh = tl.program_id(0) // n_qb
        h = pid_zh % H
        z = pid_zh // H
        z2 = z % Z2
        z1 = z // Z2
        offs_q = pid_q * BQ + tl.arange(0, BQ)
        offs_d = tl.arange(0, BD)
        offs_dv = tl.arange(0, BDV)
        q_base = Qp + z1.to(tl.int64) * sq1 + z2.to(tl.int64) * sq2 + h.to(tl.int64) * sqh
        k_base = Kp + z1.to(tl.int64) * sk1 + z2.to(tl.int64) * sk2 + h.to(tl.int64) * skh
        v_base = Vp + z1.to(tl.int64) * sv1 + z2.to(tl.int64) * sv2 + h.to(tl.int64) * svh
        if UNMASKED:
            offs_ql = tl.minimum(offs_q, QL - 1)  # rows the loads read
        else:
            offs_ql = offs_q
        qmask = (offs_ql[:, None] < QL) & (offs_d[None, :] < D)
        q = tl.load(q_base + offs_ql[:, None] * sql + offs_d[None, :] * sqd, mask=qmask,
                    other=0.0)  # [BQ, BD]
        if SCALE_Q:  # q · scale rounded to q's dtype: the bits of the plain core's multiply
            q = (q.to(tl.float32) * q_scale).to(q.dtype)
        m_i = tl.full([BQ], float("-inf"), dtype=tl.float32)
        ml_i = tl.full([BQ], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BQ], dtype=tl.float32)
        acc = tl.zeros([BQ, BDV], dtype=tl.float32)
        if B0_MMA or B1_MMA:  # [BQ, BQ] identity in the tile's dtype (`_bias_tile`)
            rows = tl.arange(0, BQ)
            if B0_MMA:
                eye = (rows[:, None] == rows[None, :]).to(B0.dtype.element_ty)
            else:
                eye = (rows[:, None] == rows[None, :]).to(B1.dtype.element_ty)
        else:
            eye = 0
        # A descriptor's rows are the bias's query rows (row stride K, `_bias_descriptor`):
        # this program's first one. Rows past the end of Q read the next head's rows or
        # zeros, only for query rows that are never stored.
        if B0_TMA:
            b0_row = ((z1.to(tl.int64) * b0_1 + z2.to(tl.int64) * b0_2
                       + h.to(tl.int64) * b0_h) // KL).to(tl.int32) + pid_q * BQ
        else:
            b0_row = 0
        if B1_TMA:
            b1_row = ((z1.to(tl.int64) * b1_1 + z2.to(tl.int64) * b1_2
                       + h.to(tl.int64) * b1_h) // KL).to(tl.int32) + pid_q * BQ
        else:
            b1_row = 0
        if UNMASKED:
            k_full = (KL // BK) * BK
            for start in tl.range(0, k_full, BK, num_stages=LOOP_STAGES):
                m_i, ml_i, l_i, acc = _fwd_keys(
                    q, m_i, ml_i, l_i, acc, start, k_base, v_base, B0, B1, z1, z2, h, offs_ql,
                    QL, KL, D, DV, skl, skd, svl, svd,
                    b0_1, b0_2, b0_h, b0_q, b0_k, b1_1, b1_2, b1_h, b1_q, b1_k,
                    HAS_B0, HAS_B1, B0_ROW, B1_ROW, FUSED, False, False, EVEN_D,
                    BQ, BK, BD, BDV, PREC, eye, B0_MMA, B1_MMA, B0D, B1D, b0_row, b1_row,
                    B0_TMA, B1_TMA)
            if k_full < KL:
                m_i, ml_i, l_i, acc = _fwd_keys(
                    q, m_i, ml_i, l_i, acc, k_full, k_base, v_base, B0, B1, z1, z2, h, offs_ql,
                    QL, KL, D, DV, skl, skd, svl, svd,
                    b0_1, b0_2, b0_h, b0_q, b0_k, b1_1, b1_2, b1_h, b1_q, b1_k,
                    HAS_B0, HAS_B1, B0_ROW, B1_ROW, FUSED, True, True, EVEN_D,
                    BQ, BK, BD, BDV, PREC, eye, B0_MMA, B1_MMA, B0D, B1D, b0_row, b1_row,
                    B0_TMA, B1_TMA)
        else:
            for start in tl.range(0, KL, BK, num_stages=LOOP_STAGES):
                m_i, ml_i, l_i, acc = _fwd_keys(
                    q, m_i, ml_i, l_i, acc, start, k_base, v_base, B0, B1, z1, z2, h, offs_q,
                    QL, KL, D, DV, skl, skd, svl, svd,
                    b0_1, b0_2, b0_h, b0_q, b0_k, b1_1, b1_2, b1_h, b1_q, b1_k,
                    HAS_B0, HAS_B1, B0_ROW, B1_ROW, FUSED, True, not EVEN_K, EVEN_D,
                    BQ, BK, BD, BDV, PREC, eye, B0_MMA, B1_MMA, B0D, B1D, b0_row, b1_row,
                    B0_TMA, B1_TMA)
        acc = acc / l_i[:, None]
        omask = (offs_q[:, None] < QL) & (offs_dv[None, :] < DV)
        if GATED:  # o · sigmoid(g) before the one rounding (no gradients: evaluation)
            g_base = Gp + z1.to(tl.int64) * sg1 + z2.to(tl.int64) * sg2 + h.to(tl.int64) * sgh
            g = tl.load(g_base + offs_q[:, None] * sgl + offs_dv[None, :] * sgd, mask=omask,
                        other=0.0).to(tl.float32)
            acc = acc * tl.sigmoid(g)
        o_base = Op + z1.to(tl.int64) * so1 + z2.to(tl.int64) * so2 + h.to(tl.int64) * soh
        tl.store(o_base + offs_q[:, None] * sol + offs_dv[None, :] * sod,
                 acc.to(Op.dtype.element_ty), mask=omask)
        if STORE_LSE:  # for the backward (natural log); laid out [Z1, Z2, H, Q] (internal)
            lse = m_i + tl.log(l_i)
            tl.store(LSE + pid_zh.to(tl.int64) * QL + offs_q, lse, mask=offs_q < QL)

    @triton.jit
    def _bwd_kv_queries(
        dk, dv, k, v, start, q_base, o_base, do_base, pid_zh, LSE, DELTA, DSp, B0, B1,
        z1, z2, h, offs_k, QL, KL, D, DV, q_scale,
        sql, sqd, sol, sod, sdol, sdod,
        b0_1, b0_2, b0_h, b0_q, b0_k,
        b1_1, b1_2, b1_h, b1_q, b1_k,
        HAS_B0: tl.constexpr, HAS_B1: tl.constexpr,
        B0_ROW: tl.constexpr, B1_ROW: tl.constexpr, FUSED: tl.constexpr,
        PRE_DELTA: tl.constexpr, STORE_DS: tl.constexpr, SCALE_Q: tl.constexpr,
        MASKED: tl.constexpr, EVEN_D: tl.constexpr,
        BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
        PREC: tl.constexpr,
    ):
        # One block of queries from `start`: its terms of dk and dv (and its dS stored).
        # MASKED=False: the blocks of queries and keys are full, so no load or store tests
        # bounds and no probability is zeroed.
        offs_q = start + tl.arange(0, BQ)
        offs_d = tl.arange(0, BD)
        offs_dv = tl.arange(0, BDV)
        qvalid = offs_q < QL
        q_ptr = q_base + offs_q[:, None] * sql + offs_d[None, :] * sqd
        do_ptr = do_base + offs_q[:, None] * sdol + offs_dv[None, :] * sdod
        o_ptr = o_base + offs_q[:, None] * sol + offs_dv[None, :] * sod
        row = pid_zh.to(tl.int64) * QL + offs_q
        if MASKED:
            dvm = qvalid[:, None] & (offs_dv[None, :] < DV)
            q = tl.load(q_ptr, mask=qvalid[:, None] & (offs_d[None, :] < D), other=0.0)
            do = tl.load(do_ptr, mask=dvm, other=0.0)  # [BQ, BDV]
            lse = tl.load(LSE + row, mask=qvalid, other=0.0)
        elif EVEN_D:
            dvm = offs_dv[None, :] < BDV
            q = tl.load(q_ptr)
            do = tl.load(do_ptr)
            lse = tl.load(LSE + row)
        else:
            dvm = offs_dv[None, :] < DV
            q = tl.load(q_ptr, mask=offs_d[None, :] < D, other=0.0)
            do = tl.load(do_ptr, mask=dvm, other=0.0)
            lse = tl.load(LSE + row)
        if SCALE_Q:  # the forward's rounded q · scale
            q = (q.to(tl.float32) * q_scale).to(q.dtype)
        if PRE_DELTA:  # rowsum(dO·O) [BQ], computed once per row by `_attn_delta`
            if MASKED:
                delta = tl.load(DELTA + row, mask=qvalid, other=0.0)
            else:
                delta = tl.load(DELTA + row)
        else:
            if MASKED or not EVEN_D:
                o = tl.load(o_ptr, mask=dvm, other=0.0)
            else:
                o = tl.load(o_ptr)
            delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)  # [BQ]
        s = _scores(q, tl.trans(k), B0, B1, z1, z2, h, offs_q, offs_k, QL, KL,
                    b0_1, b0_2, b0_h, b0_q, b0_k, b1_1, b1_2, b1_h, b1_q, b1_k,
                    HAS_B0, HAS_B1, B0_ROW, B1_ROW, FUSED, BQ, BK, PREC, MASKED)  # [BQ, BK]
        p = _exp_minus(s, lse, FUSED)
        if MASKED:
            p = tl.where(qvalid[:, None] & (offs_k[None, :] < KL), p, 0.0)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PREC)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)  # [BQ, BK]
        ds = p * (dp - delta[:, None])
        if STORE_DS:
            # dS [Z1, Z2, H, Q, K] in q's dtype, for dq and the bias gradient
            ds_ptr = DSp + pid_zh.to(tl.int64) * QL * KL + offs_q[:, None] * KL + offs_k[None, :]
            if MASKED:
                tl.store(ds_ptr, ds.to(DSp.dtype.element_ty),
                         mask=qvalid[:, None] & (offs_k[None, :] < KL))
            else:
                tl.store(ds_ptr, ds.to(DSp.dtype.element_ty))
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PREC)
        return dk, dv

    @triton.jit
    def _attn_bwd_kv(
        Qp, Kp, Vp, B0, B1, Op, DOp, LSE, DELTA, DKp, DVp, DSp,
        sq1, sq2, sqh, sql, sqd,
        sk1, sk2, skh, skl, skd,
        sv1, sv2, svh, svl, svd,
        so1, so2, soh, sol, sod,
        sdo1, sdo2, sdoh, sdol, sdod,
        sdk1, sdk2, sdkh, sdkl, sdkd,
        sdv1, sdv2, sdvh, sdvl, sdvd,
        b0_1, b0_2, b0_h, b0_q, b0_k,
        b1_1, b1_2, b1_h, b1_q, b1_k,
        Z2, H, QL, KL, D, DV, q_scale,
        HAS_B0: tl.constexpr, HAS_B1: tl.constexpr,
        B0_ROW: tl.constexpr, B1_ROW: tl.constexpr, FUSED: tl.constexpr,
        PRE_DELTA: tl.constexpr, STORE_DS: tl.constexpr,
        SCALE_Q: tl.constexpr, UNMASKED: tl.constexpr, EVEN_K: tl.constexpr,
        EVEN_D: tl.constexpr,
        BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
        PREC: tl.constexpr, Q_LOOP_STAGES: tl.constexpr = None,
    ):
        # UNMASKED: in programs whose block of keys is full, the loop runs over the full
        # blocks of queries without bounds and the last, partial block of queries runs
        # after it with them: the same values in the same order. (Clamping the keys of a
        # partial block instead would cost the bias loads their vector width.)
        # Q_LOOP_STAGES (`FlashConfig.bwd_pipelined_loads`): the loop's stages given
        # explicitly, so that Triton's pipeliner also loads the bias tile and the
        # log-sum-exp and delta rows ahead, not only q and dO (the matrix operands).
        n_kb = tl.cdiv(KL, BK)  # one grid axis, key blocks fastest (as in `_attn_fwd`)
        pid_k = tl.program_id(0) % n_kb
        pid_zh = tl.program_id(0) // n_kb
        h = pid_zh % H
        z = pid_zh // H
        z2 = z % Z2
        z1 = z // Z2
        offs_k = pid_k * BK + tl.arange(0, BK)
        offs_d = tl.arange(0, BD)
        offs_dv = tl.arange(0, BDV)
        z1l, z2l, hl = z1.to(tl.int64), z2.to(tl.int64), h.to(tl.int64)
        k = tl.load(Kp + z1l * sk1 + z2l * sk2 + hl * skh
                    + offs_k[:, None] * skl + offs_d[None, :] * skd,
                    mask=(offs_k[:, None] < KL) & (offs_d[None, :] < D), other=0.0)  # [BK, BD]
        v = tl.load(Vp + z1l * sv1 + z2l * sv2 + hl * svh
                    + offs_k[:, None] * svl + offs_dv[None, :] * svd,
                    mask=(offs_k[:, None] < KL) & (offs_dv[None, :] < DV), other=0.0)
        dk = tl.zeros([BK, BD], dtype=tl.float32)
        dv = tl.zeros([BK, BDV], dtype=tl.float32)
        q_base = Qp + z1l * sq1 + z2l * sq2 + hl * sqh
        o_base = Op + z1l * so1 + z2l * so2 + hl * soh
        do_base = DOp + z1l * sdo1 + z2l * sdo2 + hl * sdoh
        if UNMASKED and (EVEN_K or (pid_k + 1) * BK <= KL):
            q_full = (QL // BQ) * BQ
            for start in tl.range(0, q_full, BQ, num_stages=Q_LOOP_STAGES):
                dk, dv = _bwd_kv_queries(
                    dk, dv, k, v, start, q_base, o_base, do_base, pid_zh, LSE, DELTA, DSp,
                    B0, B1, z1, z2, h, offs_k, QL, KL, D, DV, q_scale,
                    sql, sqd, sol, sod, sdol, sdod,
                    b0_1, b0_2, b0_h, b0_q, b0_k, b1_1, b1_2, b1_h, b1_q, b1_k,
                    HAS_B0, HAS_B1, B0_ROW, B1_ROW, FUSED, PRE_DELTA, STORE_DS, SCALE_Q,
                    False, EVEN_D, BQ, BK, BD, BDV, PREC)
            if q_full < QL:
                dk, dv = _bwd_kv_queries(
                    dk, dv, k, v, q_full, q_base, o_base, do_base, pid_zh, LSE, DELTA, DSp,
                    B0, B1, z1, z2, h, offs_k, QL, KL, D, DV, q_scale,
                    sql, sqd, sol, sod, sdol, sdod,
                    b0_1, b0_2, b0_h, b0_q, b0_k, b1_1, b1_2, b1_h, b1_q, b1_k,
                    HAS_B0, HAS_B1, B0_ROW, B1_ROW, FUSED, PRE_DELTA, STORE_DS, SCALE_Q,
                    True, EVEN_D, BQ, BK, BD, BDV, PREC)
        else:
            for start in tl.range(0, QL, BQ, num_stages=Q_LOOP_STAGES):
                dk, dv = _bwd_kv_queries(
                    dk, dv, k, v, start, q_base, o_base, do_base, pid_zh, LSE, DELTA, DSp,
                    B0, B1, z1, z2, h, offs_k, QL, KL, D, DV, q_scale,
                    sql, sqd, sol, sod, sdol, sdod,
                    b0_1, b0_2, b0_h, b0_q, b0_k, b1_1, b1_2, b1_h, b1_q, b1_k,
                    HAS_B0, HAS_B1, B0_ROW, B1_ROW, FUSED, PRE_DELTA, STORE_DS, SCALE_Q,
                    True, EVEN_D, BQ, BK, BD, BDV, PREC)
        tl.store(DKp + z1l * sdk1 + z2l * sdk2 + hl * sdkh
                 + offs_k[:, None] * sdkl + offs_d[None, :] * sdkd,
                 dk.to(DKp.dtype.element_ty),
                 mask=(offs_k[:, None] < KL) & (offs_d[None, :] < D))
        tl.store(DVp + z1l * sdv1 + z2l * sdv2 + hl * sdvh
                 + offs_k[:, None] * sdvl + offs_dv[None, :] * sdvd,
                 dv.to(DVp.dtype.element_ty),
                 mask=(offs_k[:, None] < KL) & (offs_dv[None, :] < DV))

    @triton.jit
    def _attn_bwd_q_bias(
        Qp, Kp, Vp, B0, B1, Op, DOp, LSE, DELTA, DQp, DBp,
        sq1, sq2, sqh, sql, sqd,
        sk1, sk2, skh, skl, skd,
        sv1, sv2, svh, svl, svd,
        so1, so2, soh, sol, sod,
        sdo1, sdo2, sdoh, sdol, sdod,
        sdq1, sdq2, sdqh, sdql, sdqd,
        b0_1, b0_2, b0_h, b0_q, b0_k,
        b1_1, b1_2, b1_h, b1_q, b1_k,
        Z2, H, QL, KL, D, DV, z2_per_prog, db_chunk_stride, db_zh_stride, q_scale,
        HAS_B0: tl.constexpr, HAS_B1: tl.constexpr,
        B0_ROW: tl.constexpr, B1_ROW: tl.constexpr, FUSED: tl.constexpr,
        PRE_DELTA: tl.constexpr, HAS_DB: tl.constexpr,
        DB_PER_Z2: tl.constexpr, HAS_DQ: tl.constexpr, SCALE_Q: tl.constexpr,
        BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
        PREC: tl.constexpr,
    ):
        n_kb = tl.cdiv(KL, BK)
        pid_qk = tl.program_id(0)
        pid_q = pid_qk // n_kb
        pid_k = pid_qk % n_kb
        pid_zh = tl.program_id(1)  # z1 * H + h
        chunk = tl.program_id(2)
        h = pid_zh % H
        z1 = pid_zh // H
        offs_q = pid_q * BQ + tl.arange(0, BQ)
        offs_k = pid_k * BK + tl.arange(0, BK)
        offs_d = tl.arange(0, BD)
        offs_dv = tl.arange(0, BDV)
        qvalid = offs_q < QL
        kvalid = offs_k < KL
        z1l, hl = z1.to(tl.int64), h.to(tl.int64)
        db = tl.zeros([BQ, BK], dtype=tl.float32)
        db_tile = (offs_q[:, None] * KL + offs_k[None, :])
        # dbias buffer [chunks, Z1, H, Z2 or 1, Q, K]
        db_base = DBp + chunk.to(tl.int64) * db_chunk_stride + pid_zh.to(tl.int64) * db_zh_stride
        z2_start = chunk * z2_per_prog
        for z2 in range(z2_start, tl.minimum(z2_start + z2_per_prog, Z2)):
            z2l = z2  # int32 is enough: offsets stay below 2**31 at these shapes
            q = tl.load(Qp + z1l * sq1 + z2l * sq2 + hl * sqh
                        + offs_q[:, None] * sql + offs_d[None, :] * sqd,
                        mask=qvalid[:, None] & (offs_d[None, :] < D), other=0.0)
            if SCALE_Q:
                q = (q.to(tl.float32) * q_scale).to(q.dtype)
            k = tl.load(Kp + z1l * sk1 + z2l * sk2 + hl * skh
                        + offs_k[:, None] * skl + offs_d[None, :] * skd,
                        mask=kvalid[:, None] & (offs_d[None, :] < D), other=0.0)
            v = tl.load(Vp + z1l * sv1 + z2l * sv2 + hl * svh
                        + offs_k[:, None] * svl + offs_dv[None, :] * svd,
                        mask=kvalid[:, None] & (offs_dv[None, :] < DV), other=0.0)
            dvm = qvalid[:, None] & (offs_dv[None, :] < DV)
            do = tl.load(DOp + z1l * sdo1 + z2l * sdo2 + hl * sdoh
                         + offs_q[:, None] * sdol + offs_dv[None, :] * sdod, mask=dvm, other=0.0)
            zh = (z1l * Z2 + z2l) * H + hl
            if PRE_DELTA:
                delta = tl.load(DELTA + zh * QL + offs_q, mask=qvalid, other=0.0)
            else:
                o = tl.load(Op + z1l * so1 + z2l * so2 + hl * soh
                            + offs_q[:, None] * sol + offs_dv[None, :] * sod, mask=dvm,
                            other=0.0)
                delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)
            lse = tl.load(LSE + zh * QL + offs_q, mask=qvalid, other=0.0)
            s = _scores(q, tl.trans(k), B0, B1, z1, z2, h, offs_q, offs_k, QL, KL,
                        b0_1, b0_2, b0_h, b0_q, b0_k, b1_1, b1_2, b1_h, b1_q, b1_k,
                        HAS_B0, HAS_B1, B0_ROW, B1_ROW, FUSED, BQ, BK, PREC)  # [BQ, BK]
            p = _exp_minus(s, lse, FUSED)
            p = tl.where(qvalid[:, None] & kvalid[None, :], p, 0.0)
            dp = tl.dot(do, tl.trans(v), input_precision=PREC)
            ds = p * (dp - delta[:, None])  # [BQ, BK] = dLoss/dlogits
            if HAS_DQ:
                dq = tl.dot(ds.to(k.dtype), k, input_precision=PREC)  # [BQ, BD]
                tl.atomic_add(DQp + z1l * sdq1 + z2l * sdq2 + hl * sdqh
                              + offs_q[:, None] * sdql + offs_d[None, :] * sdqd, dq,
                              mask=qvalid[:, None] & (offs_d[None, :] < D))
            if HAS_DB:
                if DB_PER_Z2:
                    tl.store(db_base + z2l * QL * KL + db_tile, ds,
                             mask=qvalid[:, None] & kvalid[None, :])
                else:
                    db += ds
        if HAS_DB:
            if not DB_PER_Z2:
                tl.store(db_base + db_tile, db, mask=qvalid[:, None] & kvalid[None, :])


    @triton.jit
    def _bwd_dq_keys(
        dq, q, do, lse, delta, start, k_base, v_base, B0, B1, z1, z2, h, offs_q,
        QL, KL, D, DV, skl, skd, svl, svd,
        b0_1, b0_2, b0_h, b0_q, b0_k,
        b1_1, b1_2, b1_h, b1_q, b1_k,
        HAS_B0: tl.constexpr, HAS_B1: tl.constexpr,
        B0_ROW: tl.constexpr, B1_ROW: tl.constexpr, FUSED: tl.constexpr,
        MASKED: tl.constexpr, EVEN_D: tl.constexpr,
        BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
        PREC: tl.constexpr,
    ):
        # One block of keys from `start`: its term of dq. MASKED=False: the block of keys
        # is full and the query rows are in bounds (clamped by the caller; rows past the
        # end are never stored), so no load tests bounds and no probability is zeroed.
        offs_k = start + tl.arange(0, BK)
        offs_d = tl.arange(0, BD)
        offs_dv = tl.arange(0, BDV)
        k_ptr = k_base + offs_k[:, None] * skl + offs_d[None, :] * skd
        v_ptr = v_base + offs_k[:, None] * svl + offs_dv[None, :] * svd
        if MASKED:
            kvalid = offs_k < KL
            k = tl.load(k_ptr, mask=kvalid[:, None] & (offs_d[None, :] < D), other=0.0)
            v = tl.load(v_ptr, mask=kvalid[:, None] & (offs_dv[None, :] < DV), other=0.0)
        elif EVEN_D:
            k = tl.load(k_ptr)  # [BK, BD]
            v = tl.load(v_ptr)
        else:
            k = tl.load(k_ptr, mask=offs_d[None, :] < D, other=0.0)
            v = tl.load(v_ptr, mask=offs_dv[None, :] < DV, other=0.0)
        s = _scores(q, tl.trans(k), B0, B1, z1, z2, h, offs_q, offs_k, QL, KL,
                    b0_1, b0_2, b0_h, b0_q, b0_k, b1_1, b1_2, b1_h, b1_q, b1_k,
                    HAS_B0, HAS_B1, B0_ROW, B1_ROW, FUSED, BQ, BK, PREC, MASKED)  # [BQ, BK]
        p = _exp_minus(s, lse, FUSED)
        if MASKED:
            p = tl.where((offs_q[:, None] < QL) & (offs_k[None, :] < KL), p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
        return dq

    @triton.jit
    def _attn_bwd_dq(
        Qp, Kp, Vp, B0, B1, Op, DOp, LSE, DELTA, DQp,
        sq1, sq2, sqh, sql, sqd,
        sk1, sk2, skh, skl, skd,
        sv1, sv2, svh, svl, svd,
        so1, so2, soh, sol, sod,
        sdo1, sdo2, sdoh, sdol, sdod,
        sdq1, sdq2, sdqh, sdql, sdqd,
        b0_1, b0_2, b0_h, b0_q, b0_k,
        b1_1, b1_2, b1_h, b1_q, b1_k,
        Z2, H, QL, KL, D, DV, q_scale,
        HAS_B0: tl.constexpr, HAS_B1: tl.constexpr,
        B0_ROW: tl.constexpr, B1_ROW: tl.constexpr, FUSED: tl.constexpr,
        PRE_DELTA: tl.constexpr, SCALE_Q: tl.constexpr, UNMASKED: tl.constexpr,
        EVEN_D: tl.constexpr,
        BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr, BDV: tl.constexpr,
        PREC: tl.constexpr,
    ):
        # One query block, all key blocks: dq in registers, written once (no atomics).
        # UNMASKED: as in `_attn_fwd` (full key blocks without bounds, then the last one).
        n_qb = tl.cdiv(QL, BQ)  # one grid axis, query blocks fastest (as in `_attn_fwd`)
        pid_q = tl.program_id(0) % n_qb
        pid_zh = tl.program_id(0) // n_qb
        h = pid_zh % H
        z = pid_zh // H
        z2 = z % Z2
        z1 = z // Z2
        z1l, z2l, hl = z1.to(tl.int64), z2.to(tl.int64), h.to(tl.int64)
        offs_q = pid_q * BQ + tl.arange(0, BQ)
        if UNMASKED:
            offs_ql = tl.minimum(offs_q, QL - 1)  # rows the loads read
        else:
            offs_ql = offs_q
        offs_d = tl.arange(0, BD)
        offs_dv = tl.arange(0, BDV)
        qvalid = offs_ql < QL
        q = tl.load(Qp + z1l * sq1 + z2l * sq2 + hl * sqh
                    + offs_ql[:, None] * sql + offs_d[None, :] * sqd,
                    mask=qvalid[:, None] & (offs_d[None, :] < D), other=0.0)  # [BQ, BD]
        if SCALE_Q:
            q = (q.to(tl.float32) * q_scale).to(q.dtype)
        dvm = qvalid[:, None] & (offs_dv[None, :] < DV)
        do = tl.load(DOp + z1l * sdo1 + z2l * sdo2 + hl * sdoh
                     + offs_ql[:, None] * sdol + offs_dv[None, :] * sdod, mask=dvm, other=0.0)
        if PRE_DELTA:
            delta = tl.load(DELTA + pid_zh.to(tl.int64) * QL + offs_ql, mask=qvalid, other=0.0)
        else:
            o = tl.load(Op + z1l * so1 + z2l * so2 + hl * soh
                        + offs_ql[:, None] * sol + offs_dv[None, :] * sod, mask=dvm, other=0.0)
            delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)  # [BQ]
        lse = tl.load(LSE + pid_zh.to(tl.int64) * QL + offs_ql, mask=qvalid, other=0.0)
        dq = tl.zeros([BQ, BD], dtype=tl.float32)
        k_base = Kp + z1l * sk1 + z2l * sk2 + hl * skh
        v_base = Vp + z1l * sv1 + z2l * sv2 + hl * svh
        if UNMASKED:
            k_full = (KL // BK) * BK
            for start in range(0, k_full, BK):
                dq = _bwd_dq_keys(
                    dq, q, do, lse, delta, start, k_base, v_base, B0, B1, z1, z2, h, offs_ql,
                    QL, KL, D, DV, skl, skd, svl, svd,
                    b0_1, b0_2, b0_h, b0_q, b0_k, b1_1, b1_2, b1_h, b1_q, b1_k,
                    HAS_B0, HAS_B1, B0_ROW, B1_ROW, FUSED, False, EVEN_D,
                    BQ, BK, BD, BDV, PREC)
            if k_full < KL:
                dq = _bwd_dq_keys(
                    dq, q, do, lse, delta, k_full, k_base, v_base, B0, B1, z1, z2, h,
                    offs_ql, QL, KL, D, DV, skl, skd, svl, svd,
                    b0_1, b0_2, b0_h, b0_q, b0_k, b1_1, b1_2, b1_h, b1_q, b1_k,
                    HAS_B0, HAS_B1, B0_ROW, B1_ROW, FUSED, True, EVEN_D,
                    BQ, BK, BD, BDV, PREC)
        else:
            for start in range(0, KL, BK):
                dq = _bwd_dq_keys(
                    dq, q, do, lse, delta, start, k_base, v_base, B0, B1, z1, z2, h, offs_q,
                    QL, KL, D, DV, skl, skd, svl, svd,
                    b0_1, b0_2, b0_h, b0_q, b0_k, b1_1, b1_2, b1_h, b1_q, b1_k,
                    HAS_B0, HAS_B1, B0_ROW, B1_ROW, FUSED, True, EVEN_D,
                    BQ, BK, BD, BDV, PREC)
        dq_out = dq.to(DQp.dtype.element_ty)  # the gradient of the scaled q, rounded
        if SCALE_Q:  # then the multiply's backward, rounded again as autograd's
            dq_out = (dq_out.to(tl.float32) * q_scale).to(DQp.dtype.element_ty)
        tl.store(DQp + z1l * sdq1 + z2l * sdq2 + hl * sdqh
                 + offs_q[:, None] * sdql + offs_d[None, :] * sdqd,
                 dq_out, mask=(offs_q[:, None] < QL) & (offs_d[None, :] < D))


    @triton.jit
    def _attn_dq_from_ds(
        DSp, Kp, DQp,
        sk1, sk2, skh, skl, skd,
        sdq1, sdq2, sdqh, sdql, sdqd,
        Z2, H, QL, KL, D, q_scale,
        SCALE_Q: tl.constexpr, BQ: tl.constexpr, BK: tl.constexpr, BD: tl.constexpr,
        PREC: tl.constexpr,
    ):
        # dq = dS k from the stored dS [Z1·Z2·H, Q, K] (q's dtype), k and dq each read and
        # written through their own strides (head-interleaved views of the projections),
        # rounded to q's dtype, then multiplied by the query scale and rounded again (the
        # gradient of the scaled q, then the multiply's backward, as autograd rounds them).
        n_qb = tl.cdiv(QL, BQ)  # one grid axis, query blocks fastest
        pid_q = tl.program_id(0) % n_qb
        pid_zh = tl.program_id(0) // n_qb
        h = pid_zh % H
        z = pid_zh // H
        z1l, z2l, hl = (z // Z2).to(tl.int64), (z % Z2).to(tl.int64), h.to(tl.int64)
        offs_q = pid_q * BQ + tl.arange(0, BQ)
        offs_d = tl.arange(0, BD)
        ds_base = DSp + pid_zh.to(tl.int64) * QL * KL
        k_base = Kp + z1l * sk1 + z2l * sk2 + hl * skh
        acc = tl.zeros([BQ, BD], dtype=tl.float32)
        for start in range(0, KL, BK):
            offs_k = start + tl.arange(0, BK)
            ds = tl.load(ds_base + offs_q[:, None] * KL + offs_k[None, :],
                         mask=(offs_q[:, None] < QL) & (offs_k[None, :] < KL), other=0.0)
            k = tl.load(k_base + offs_k[:, None] * skl + offs_d[None, :] * skd,
                        mask=(offs_k[:, None] < KL) & (offs_d[None, :] < D), other=0.0)
            acc = tl.dot(ds, k, acc=acc, input_precision=PREC)  # [BQ, BD]
        dq = acc.to(DQp.dtype.element_ty)
        if SCALE_Q:
            dq = (dq.to(tl.float32) * q_scale).to(DQp.dtype.element_ty)
        tl.store(DQp + z1l * sdq1 + z2l * sdq2 + hl * sdqh
                 + offs_q[:, None] * sdql + offs_d[None, :] * sdqd, dq,
                 mask=(offs_q[:, None] < QL) & (offs_d[None, :] < D))

    @triton.jit
    def _attn_delta(
        Op, DOp, DELTA,
        so1, so2, soh, sol, sod,
        sdo1, sdo2, sdoh, sdol, sdod,
        Z2, H, QL, DV,
        BQ: tl.constexpr, BDV: tl.constexpr,
    ):
        # delta = rowsum(dO · O) [Z1·Z2·H, Q] (float32), laid out as LSE: what every
        # backward kernel otherwise recomputes for each of its blocks of rows.
        n_qb = tl.cdiv(QL, BQ)
        pid_q = tl.program_id(0) % n_qb
        pid_zh = tl.program_id(0) // n_qb
        h = pid_zh % H
        z = pid_zh // H
        z1l, z2l, hl = (z // Z2).to(tl.int64), (z % Z2).to(tl.int64), h.to(tl.int64)
        offs_q = pid_q * BQ + tl.arange(0, BQ)
        offs_dv = tl.arange(0, BDV)
        qvalid = offs_q < QL
        dvm = qvalid[:, None] & (offs_dv[None, :] < DV)
        do = tl.load(DOp + z1l * sdo1 + z2l * sdo2 + hl * sdoh
                     + offs_q[:, None] * sdol + offs_dv[None, :] * sdod, mask=dvm, other=0.0)
        o = tl.load(Op + z1l * so1 + z2l * so2 + hl * soh
                    + offs_q[:, None] * sol + offs_dv[None, :] * sod, mask=dvm, other=0.0)
        delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=1)  # [BQ]
        tl.store(DELTA + pid_zh.to(tl.int64) * QL + offs_q, delta, mask=qvalid)


# ----------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class _Layout:
    """How the leading dims of [*, H, L, c] tensors fold into (Z1, Z2).

    g1/g2 are runs of consecutive leading dims (size-1 dims dropped); Z2 = prod(g2) is
    the dim the kernels loop over when reducing the bias gradient.
    """

    lead: tuple[int, ...]
    g1: tuple[int, ...]
    g2: tuple[int, ...]

    @property
    def z1(self) -> int:
        return _prod(self.lead[d] for d in self.g1)

    @property
    def z2(self) -> int:
        return _prod(self.lead[d] for d in self.g2)

    def strides(self, t: torch.Tensor) -> tuple[int, int] | None:
        """(stride of Z1, stride of Z2) of t (shape lead + tail), or None if not foldable."""
        out = []
        for g in (self.g1, self.g2):
            if not g:
                out.append(0)
                continue
            for a, b in zip(g[:-1], g[1:]):
                if t.stride(a) != t.stride(b) * t.shape[b]:
                    return None
            out.append(t.stride(g[-1]))
        return out[0], out[1]

    def unfold(self, buf: torch.Tensor, per_z2: bool) -> torch.Tensor:
        """[Z1, Z2 or 1, *tail] -> [*lead (1 where reduced), *tail]."""
        tail = buf.shape[2:]
        sizes = [self.lead[d] for d in self.g1] + [
            self.lead[d] if per_z2 else 1 for d in self.g2
        ]
        t = buf.reshape(*sizes, *tail)
        order = list(self.g1) + list(self.g2)
        perm = sorted(range(len(order)), key=lambda i: order[i])
        t = t.permute(*perm, *range(len(order), t.dim()))
        full = [1] * len(self.lead)
        for d in order:
            full[d] = self.lead[d] if (d in self.g1 or per_z2) else 1
        return t.reshape(*full, *tail)


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _mergeable(ts: list[torch.Tensor], a: int, b: int) -> bool:
    return all(t.stride(a) == t.stride(b) * t.shape[b] for t in ts)


def _plan(lead: tuple[int, ...], tensors: list[torch.Tensor],
          grad_biases: list[torch.Tensor]) -> _Layout | None:
    """Fold the leading dims into at most two runs, choosing Z2 for the bias gradient."""
    dims = [d for d, n in enumerate(lead) if n > 1]
    runs: list[list[int]] = []
    for d in dims:
        if runs and _mergeable(tensors, runs[-1][-1], d):
            runs[-1].append(d)
        else:
            runs.append([d])
    if len(runs) > 2:
        return None

    def broadcast_in(run: list[int]) -> bool:
        return bool(grad_biases) and all(all(b.stride(d) == 0 for d in run) for b in grad_biases)

    if not runs:
        return _Layout(lead, (), ())
    if len(runs) == 1:
        r = tuple(runs[0])
        return _Layout(lead, (), r) if broadcast_in(runs[0]) else _Layout(lead, r, ())
    first, second = runs
    if broadcast_in(first) and not broadcast_in(second):
        first, second = second, first
    return _Layout(lead, tuple(first), tuple(second))


def _s5(t: torch.Tensor, layout: _Layout) -> tuple[int, int, int, int, int]:
    z = layout.strides(t)
    assert z is not None
    n = t.dim()
    return (z[0], z[1], t.stride(n - 3), t.stride(n - 2), t.stride(n - 1))


@dataclass(frozen=True)
class Launch:
    """Tile sizes and launch parameters of one kernel."""

    block_q: int = 64
    block_k: int = 64
    warps: int = 4
    stages: int = 1

    def blocks(self, ql: int, kl: int, d: int, dv: int) -> tuple[int, int, int, int]:
        """(BQ, BK, BD, BDV) for these lengths: a block never exceeds the padded length."""
        bd, bdv = max(16, next_pow2(d)), max(16, next_pow2(dv))
        bq = min(self.block_q, max(16, next_pow2(ql)))
        bk = min(self.block_k, max(16, next_pow2(kl)))
        return bq, bk, bd, bdv

    @property
    def name(self) -> str:
        return f"{self.block_q}x{self.block_k}w{self.warps}s{self.stages}"


@dataclass(frozen=True)
class FlashConfig:
    """Launches of the three kernels (`scalefold bench attention` sweeps them)."""

    fwd: Launch = Launch(64, 64, 4, 3)
    bwd_kv: Launch = Launch(64, 64, 4, 1)
    bwd_q: Launch = Launch(64, 64, 4, 1)
    # dq from its own kernel (a query block loops over all key blocks, no atomics, dq
    # written once in q's dtype and layout) instead of fp32 atomics in `_attn_bwd_q_bias`,
    # which then computes only the bias gradient (and is skipped without one).
    dq_kernel: bool = False
    bwd_dq: Launch = Launch(64, 64, 4, 1)
    # Where a bias needs a gradient: `_attn_bwd_kv` also writes dS ([*, H, Q, K] in q's
    # dtype), and dq = dS k (a batched matmul) and the bias gradient (dS summed over the
    # rows the bias is broadcast over, in fp32) read it, instead of two more kernels that
    # each recompute the probabilities. Trades ~3 passes over dS for two recomputes.
    store_ds: bool = False
    # A bias broadcast over queries (the masks, [*, 1, K]) read as one [BK] row per key
    # block and broadcast in registers, not as a [BQ, BK] tile of repeated values.
    row_bias: bool = True
    # Fewer operations a score element in every kernel: the biases are summed first and
    # q kᵀ accumulates onto them inside the MMA (not added after it), the exponentials
    # are exp2 of one fused multiply-add, and the forward's rescaled output is the P·V
    # product's accumulator. The same math; the sums round in another order.
    fused_logits: bool = False
    # delta = rowsum(dO · O), which every backward kernel recomputes for each block of
    # query rows it visits (the dk/dv kernel once per block of keys: O read again and a
    # row reduction in each iteration of its loop), computed once per row by a kernel of
    # its own and loaded instead.
    precomputed_delta: bool = False
    # The forward's loop over full blocks of keys loads without bounds (no per-element
    # offsets compared or selected; query rows past the end read the last row), and the
    # last, partial block of keys runs after the loop with them. The same operations in
    # the same order (bit-identical in Triton's interpreter); compiled for sm90 the two
    # forms contract and schedule differently, and a few values round differently.
    unmasked_loads: bool = False
    # With the stored dS: dq = dS k (× the query scale) from one kernel that reads k and
    # writes dq through their strides, instead of a batched matmul (which first copies the
    # head-interleaved k contiguous), a scale pass and a copy into q's layout. The same
    # roundings; the fp32 sum over keys in another order.
    ds_dq_kernel: bool = False
    ds_dq: Launch = Launch(64, 64, 4, 2)
    # With fused_logits, the forward takes a 16-bit bias tile (not a row) as the product
    # of an identity with it, accumulated by the MMA (`_bias_tile`): its loads become
    # matrix-operand loads, which the loop pipelines into shared memory like k and v and
    # the MMA reads from there. As a plain tile the sm90 loop waited in every iteration
    # for the tile's L2 load, stored it to shared memory and synchronised to change its
    # layout, and converted each value to fp32 (one bias tile: 344 -> 311 instructions an
    # iteration, no global load left waiting in the loop; `scalefold bench sass`). One
    # more 64 x 64 x 64 MMA an iteration. The tile's values are exact (1 · value); a row
    # added to it may be folded into the MMA's fp32 accumulator by the compiler.
    bias_mma: bool = False
    # With fused_logits, the forward loads a 16-bit bias tile whose keys are contiguous
    # and rows K apart (the folded triangle bias) through a TMA tensor descriptor, which
    # the loop pipelines into shared memory stages ahead like k and v, without bias_mma's
    # identity product (at BQ = 64 and head dim 32 that product is twice q kᵀ's MMA work);
    # each value takes a conversion to fp32 instead. Where it applies it takes precedence
    # over bias_mma. sm90 or later (or Triton's interpreter).
    bias_tma: bool = False
    # The forward's loop loads its bias rows and tiles stages ahead (the loop's stages
    # given to Triton explicitly; without them its pipeliner takes only loads that feed a
    # matrix product), the 16-bit tile as a plain load instead of bias_mma's identity
    # product (it takes precedence over bias_mma), or by its descriptor (bias_tma implies
    # it). sm90: the loop keeps no global load and no shared-memory store (`scalefold
    # bench sass`) and half the MMA work, for a conversion to fp32 a value.
    pipelined_bias_loads: bool = False
    # The dk/dv kernel's loop over blocks of queries with (at least) 2 stages given to
    # Triton explicitly: its pipeliner then loads the bias tile and the log-sum-exp and
    # delta rows a block ahead, not only q and dO. sm90, the kernel with a pair bias and
    # stored dS: no global load left in the loop (12 with 2 plain stages, 20 with 1;
    # `scalefold bench sass`).
    bwd_pipelined_loads: bool = False
    # Keys an odd multiple of 32, up to HALF_KEY_BLOCK_MAX_KEYS: the forward's key block 32
    # instead of 64, so that every block of keys is full (with 64 the last block is half
    # empty and takes the bounded path). Graph-replayed forwards with bias_mma on an H100
    # at 96-352 keys: triangle attention 0.82-0.92x, MSA row attention 0.84-0.97x; from
    # 416 keys on it loses or draws (docs/evidence/2026-12-06_h100_s23, callBK2_keys.txt).
    fwd_half_key_block: bool = False


# The launches used unless a caller passes its own. A per-shape sm90 table chosen by
# host-timed calls measured no faster in the whole step (0.862 s against 0.860 s with
# these defaults; docs/perf-log/2026-11-29_s3.md, item 3): at ~0.1-0.3 ms per call, host
# timing measures launch overhead as much as the kernels. `bench attention` replays each
# call as a CUDA graph; a per-shape choice belongs here once that sweep and the step time
# show a gain. The forward's 3 pipeline stages: faster than 2 at every call of the
# graph-replayed sweep, at the training crop and at 704 residues (perf-log/2026-12-04.md).
DEFAULT_CONFIG = FlashConfig()


def _forward(layout: _Layout, cfg: FlashConfig, q, k, v, b0o, b1o, store_lse: bool,
             scale: float = 1.0, gate: torch.Tensor | None = None):
    """(o, lse): the forward kernel's output and, for the backward, the row log-sum-exp
    (None unless `store_lse`). b0o/b1o: the biases as given; q is multiplied by `scale`
    where it is loaded; `gate` (o's shape, its leading dims foldable as q's): the output
    is o · sigmoid(gate)."""
    *lead, h, ql, d = q.shape
    kl, dv = k.shape[-2], v.shape[-1]
    full = (*lead, h, ql, kl)
    b0 = b0o.expand(full) if b0o is not None else None  # [*, H, Q, K] views
    b1 = b1o.expand(full) if b1o is not None else None
    # The output takes q's memory layout (q is a head-split view of a projection
    # [*, Q, H*c], or of [Q, *, H*c] for column-wise attention), so the caller's
    # transpose + flatten back to the projection's layout is a view, not a copy.
    o = _dense_like(q, q.dtype, last=dv)
    if layout.strides(o) is None:
        o = torch.empty((*lead, ql, h, dv), dtype=q.dtype, device=q.device).transpose(-2, -3)
    z1, z2 = layout.z1, layout.z2
    lse = (torch.empty((z1 * z2 * h * ql,), dtype=torch.float32, device=q.device)
           if store_lse else None)
    launch = _forward_launch(cfg, kl)
    bq, bk, bd, bdv = launch.blocks(ql, kl, d, dv)
    bs0, bs1, row0, row1 = _bias_args(cfg, layout, b0, b1)
    desc0, desc1 = (_bias_descriptor(cfg, layout, b, row, bq, bk)
                    for b, row in ((b0, row0), (b1, row1)))
    mma0, mma1 = (_bias_as_mma_operand(cfg, b, row, d) and desc is None
                  and not cfg.pipelined_bias_loads
                  for b, row, desc in ((b0, row0, desc0), (b1, row1, desc1)))
    grid = (triton.cdiv(ql, bq) * z1 * z2 * h,)
    _attn_fwd[grid](
        q, k, v, b0 if b0 is not None else q, b1 if b1 is not None else q, o,
        lse if lse is not None else o,  # an unused pointer without STORE_LSE
        gate if gate is not None else o,  # unused without GATED
        *_s5(q, layout), *_s5(k, layout), *_s5(v, layout), *_s5(o, layout),
        *(_s5(gate, layout) if gate is not None else (0, 0, 0, 0, 0)), *bs0, *bs1,
        z2, h, ql, kl, d, dv, float(scale),
        HAS_B0=b0 is not None, HAS_B1=b1 is not None,
        B0_ROW=row0, B1_ROW=row1, FUSED=cfg.fused_logits, EVEN_K=kl % bk == 0,
        STORE_LSE=store_lse, SCALE_Q=scale != 1.0,
        UNMASKED=cfg.unmasked_loads, EVEN_D=d == bd and dv == bdv,
        BQ=bq, BK=bk, BD=bd, BDV=bdv, PREC=dot_precision(q), GATED=gate is not None,
        B0_MMA=mma0, B1_MMA=mma1, B0D=desc0, B1D=desc1, B0_TMA=desc0 is not None,
        B1_TMA=desc1 is not None,
        LOOP_STAGES=(launch.stages if cfg.pipelined_bias_loads or desc0 is not None
                     or desc1 is not None else None),
        num_warps=launch.warps, num_stages=launch.stages,
    )
    return o, lse


class _FlashAttentionFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, layout: _Layout, cfg: FlashConfig, q, k, v, b0o, b1o, scale: float):
        # q is saved unscaled: every kernel scales it where it loads it, so no scaled copy
        # is written, and a q that is a slice of stacked projections stays a view
        o, lse = _forward(layout, cfg, q, k, v, b0o, b1o, store_lse=True, scale=scale)
        ctx.layout, ctx.cfg, ctx.scale = layout, cfg, scale
        ctx.save_for_backward(q, k, v, b0o, b1o, o, lse)
        return o

    @staticmethod
    def backward(ctx, do):
        layout: _Layout = ctx.layout
        cfg: FlashConfig = ctx.cfg
        q, k, v, b0o, b1o, o, lse = ctx.saved_tensors
        scale = ctx.scale
        *lead, h, ql, d = q.shape
        kl, dv_ = k.shape[-2], v.shape[-1]
        full_shape = (*lead, h, ql, kl)
        b0 = b0o.expand(full_shape) if b0o is not None else None
        b1 = b1o.expand(full_shape) if b1o is not None else None
        if layout.strides(do) is None:
            do = do.contiguous()
        z1, z2 = layout.z1, layout.z2
        bs0, bs1, row0, row1 = _bias_args(cfg, layout, b0, b1)
        prec = dot_precision(q)
        dk = _dense_like(k, k.dtype)
        dv = _dense_like(v, v.dtype)
        if layout.strides(dk) is None or layout.strides(dv) is None:
            dk, dv = torch.empty(k.shape, dtype=k.dtype, device=k.device), torch.empty(
                v.shape, dtype=v.dtype, device=v.device)
        bp0 = b0 if b0 is not None else q
        bp1 = b1 if b1 is not None else q
        need = ctx.needs_input_grad  # (layout, cfg, q, k, v, b0, b1)
        grad_b = [b for b, n in ((b0, need[5]), (b1, need[6])) if n and b is not None]
        # The bias gradient is dS summed over Z2 when every such bias is broadcast there.
        per_z2 = any(layout.strides(b)[1] != 0 for b in grad_b) if grad_b else False
        store_ds = cfg.store_ds and bool(grad_b)
        kv_loop_stages = max(2, cfg.bwd_kv.stages) if cfg.bwd_pipelined_loads else None
        # ds: [Z1·Z2·H, Q, K]
        ds = (torch.empty((z1 * z2 * h, ql, kl), dtype=q.dtype, device=q.device) if store_ds
              else lse)  # else an unused pointer
        # delta = rowsum(dO · O) [Z1·Z2·H, Q], once, where the kernels would recompute it
        delta = _delta(o, do, layout, cfg) if cfg.precomputed_delta else lse
        pre = cfg.precomputed_delta
        bq, bk, bd, bdv = cfg.bwd_kv.blocks(ql, kl, d, dv_)
        _attn_bwd_kv[(triton.cdiv(kl, bk) * z1 * z2 * h,)](
            q, k, v, bp0, bp1, o, do, lse, delta, dk, dv, ds,
            *_s5(q, layout), *_s5(k, layout), *_s5(v, layout), *_s5(o, layout),
            *_s5(do, layout), *_s5(dk, layout), *_s5(dv, layout), *bs0, *bs1,
            z2, h, ql, kl, d, dv_, float(scale),
            HAS_B0=b0 is not None, HAS_B1=b1 is not None,
            B0_ROW=row0, B1_ROW=row1, FUSED=cfg.fused_logits, PRE_DELTA=pre,
            STORE_DS=store_ds, SCALE_Q=scale != 1.0, UNMASKED=cfg.unmasked_loads,
            EVEN_K=kl % bk == 0, EVEN_D=d == bd and dv_ == bdv,
            BQ=bq, BK=bk, BD=bd, BDV=bdv, PREC=prec, Q_LOOP_STAGES=kv_loop_stages,
            num_warps=cfg.bwd_kv.warps, num_stages=kv_loop_stages or cfg.bwd_kv.stages,
        )
        if store_ds:
            dq, g0, g1 = _from_stored_ds(ds, q, k, layout, per_z2,
                                         ((b0o, need[5]), (b1o, need[6])), scale, cfg)
            return None, None, dq, dk, dv, g0, g1, None

        bq, bk, bd, bdv = cfg.bwd_q.blocks(ql, kl, d, dv_)
        n_qk = triton.cdiv(ql, bq) * triton.cdiv(kl, bk)
        # Split Z2 into chunks so that the grid has several programs per multiprocessor.
        want = max(1, 1024 // max(1, n_qk * z1 * h))
        z2_per_prog = 1 if per_z2 else max(1, triton.cdiv(z2, want))
        chunks = triton.cdiv(z2, z2_per_prog)
        # dq in q's layout, so that it flows back into the projection without a copy.
        sep = cfg.dq_kernel
        if sep:
            dq = _in_layout_of(q, layout, q.dtype, zero=False)
            qb, kb, _, _ = cfg.bwd_dq.blocks(ql, kl, d, dv_)
            _attn_bwd_dq[(triton.cdiv(ql, qb) * z1 * z2 * h,)](
                q, k, v, bp0, bp1, o, do, lse, delta, dq,
                *_s5(q, layout), *_s5(k, layout), *_s5(v, layout), *_s5(o, layout),
                *_s5(do, layout), *_s5(dq, layout), *bs0, *bs1,
                z2, h, ql, kl, d, dv_, float(scale),
                HAS_B0=b0 is not None, HAS_B1=b1 is not None,
                B0_ROW=row0, B1_ROW=row1, FUSED=cfg.fused_logits, PRE_DELTA=pre,
                SCALE_Q=scale != 1.0, UNMASKED=cfg.unmasked_loads,
                EVEN_D=d == bd and dv_ == bdv, BQ=qb, BK=kb, BD=bd, BDV=bdv, PREC=prec,
                num_warps=cfg.bwd_dq.warps, num_stages=cfg.bwd_dq.stages,
            )
            dq_buf = lse  # unused pointer
        else:
            dq_buf = _in_layout_of(q, layout, torch.float32, zero=True)
        if grad_b:
            n_db = 1 if per_z2 else chunks
            rows = z2 if per_z2 else 1
            db = torch.empty((n_db, z1, h, rows, ql, kl), dtype=torch.float32, device=q.device)
            db_chunk_stride = 0 if per_z2 else db.stride(0)
            db_zh_stride = db.stride(2)
        else:
            db = lse  # unused pointer
            db_chunk_stride = db_zh_stride = 0
        if grad_b or not sep:
            dq_strides = (0, 0, 0, 0, 0) if sep else _s5(dq_buf, layout)
            _attn_bwd_q_bias[(n_qk, z1 * h, chunks)](
                q, k, v, bp0, bp1, o, do, lse, delta, dq_buf, db,
                *_s5(q, layout), *_s5(k, layout), *_s5(v, layout), *_s5(o, layout),
                *_s5(do, layout), *dq_strides, *bs0, *bs1,
                z2, h, ql, kl, d, dv_, z2_per_prog, db_chunk_stride, db_zh_stride,
                float(scale),
                HAS_B0=b0 is not None, HAS_B1=b1 is not None,
                B0_ROW=row0, B1_ROW=row1, FUSED=cfg.fused_logits, PRE_DELTA=pre,
                HAS_DB=bool(grad_b),
                DB_PER_Z2=per_z2, HAS_DQ=not sep, SCALE_Q=scale != 1.0,
                BQ=bq, BK=bk, BD=bd, BDV=bdv, PREC=prec,
                num_warps=cfg.bwd_q.warps, num_stages=cfg.bwd_q.stages,
            )
        grads = [None, None]
        if grad_b:
            full = db.sum(0).permute(0, 2, 1, 3, 4)  # [Z1, Z2 or 1, H, Q, K]
            full = layout.unfold(full, per_z2)  # [*lead (1 where summed), H, Q, K]
            for i, (b, n) in enumerate(((b0o, need[5]), (b1o, need[6]))):
                if n and b is not None:
                    grads[i] = full.sum_to_size(b.shape).to(b.dtype)
        if not sep:
            dq = dq_buf.to(q.dtype)  # the gradient of the scaled q
            if scale != 1.0:
                dq.mul_(scale)  # the multiply's backward, as autograd rounds it
        return None, None, dq, dk, dv, grads[0], grads[1], None


def _delta(o: torch.Tensor, do: torch.Tensor, layout: _Layout, cfg: FlashConfig) -> torch.Tensor:
    """rowsum(dO · O) in float32, [Z1·Z2·H·Q] laid out as the log-sum-exp."""
    *_, h, ql, dv = o.shape
    bq, _, _, bdv = cfg.bwd_kv.blocks(ql, ql, dv, dv)
    delta = torch.empty((layout.z1 * layout.z2 * h * ql,), dtype=torch.float32, device=o.device)
    _attn_delta[(triton.cdiv(ql, bq) * layout.z1 * layout.z2 * h,)](
        o, do, delta, *_s5(o, layout), *_s5(do, layout), layout.z2, h, ql, dv,
        BQ=bq, BDV=bdv, num_warps=4)
    return delta


def _row_bias(cfg: FlashConfig, b: torch.Tensor | None, strides5: tuple[int, ...]) -> bool:
    """Whether the kernels load bias b as one row per key block (broadcast over queries)."""
    return cfg.row_bias and b is not None and strides5[3] == 0


HALF_KEY_BLOCK_MAX_KEYS = 352


def _forward_launch(cfg: FlashConfig, kl: int) -> Launch:
    """The forward's launch for `kl` keys (`FlashConfig.fwd_half_key_block`)."""
    if (cfg.fwd_half_key_block and cfg.fwd.block_k == 64 and kl % 64 == 32
            and kl <= HALF_KEY_BLOCK_MAX_KEYS):
        return replace(cfg.fwd, block_k=32)
    return cfg.fwd


def _bias_as_mma_operand(cfg: FlashConfig, b: torch.Tensor | None, row: bool,
                         head_dim: int) -> bool:
    """Whether the forward takes bias b as an MMA operand (`FlashConfig.bias_mma`): a
    16-bit tile, whose values 1 · value reproduces exactly, with the fused logits (the
    bias starts the logits' accumulator there), at head dimensions of at least
    `BIAS_MMA_MIN_HEAD_DIM`."""
    return (cfg.bias_mma and cfg.fused_logits and b is not None and not row
            and b.dtype in (torch.bfloat16, torch.float16) and head_dim >= BIAS_MMA_MIN_HEAD_DIM)


def _bias_descriptor(cfg: FlashConfig, layout: _Layout, b: torch.Tensor | None, row: bool,
                     bq: int, bk: int):
    """A TMA tensor descriptor of bias b's rows for the forward (`FlashConfig.bias_tma`),
    or None where it does not apply: b ([*, H, Q, K] view) 16-bit, read as tiles, its keys
    contiguous and its rows K apart, every other stride a multiple of K (so each (z1, z2,
    h) starts at a row of the descriptor [rows, K]), 16-byte aligned, on sm90 or later,
    with a Triton that has host descriptors."""
    if not (cfg.bias_tma and TensorDescriptor is not None and cfg.fused_logits
            and b is not None and not row
            and b.dtype in (torch.bfloat16, torch.float16)):
        return None
    if b.is_cuda:
        if torch.cuda.get_device_capability(b.device)[0] < 9:
            return None
    elif not interpreting():
        return None
    kl, ql = b.shape[-1], b.shape[-2]
    s1, s2, sh, sq, sk = _s5(b, layout)
    if (sk != 1 or sq != kl or any(x % kl for x in (s1, s2, sh))
            or (kl * b.element_size()) % 16 or b.data_ptr() % 16):
        return None
    extent = (layout.z1 - 1) * s1 + (layout.z2 - 1) * s2 + (b.shape[-3] - 1) * sh
    rows = extent // kl + ql
    flat = b.as_strided((rows, kl), (kl, 1))  # from b's storage offset
    return TensorDescriptor.from_tensor(flat, block_shape=[bq, bk])


# The identity's MMA is BQ / c times the q kᵀ product's: at c = 32 the triangle attention's
# forward ran 0.86x at 704 residues, at c = 8 the extra-MSA row attention's 1.08x (an
# H100, docs/evidence/2026-12-06_h100_s23).
BIAS_MMA_MIN_HEAD_DIM = 32


def _bias_args(cfg: FlashConfig, layout: _Layout, b0: torch.Tensor | None,
               b1: torch.Tensor | None) -> tuple[tuple[int, ...], tuple[int, ...], bool, bool]:
    """The kernels' bias operands: the two [*, H, Q, K] views' five strides (zeros for a
    missing bias) and whether each is read as rows."""
    zero5 = (0, 0, 0, 0, 0)
    bs0 = _s5(b0, layout) if b0 is not None else zero5
    bs1 = _s5(b1, layout) if b1 is not None else zero5
    return bs0, bs1, _row_bias(cfg, b0, bs0), _row_bias(cfg, b1, bs1)


def _as5(t: torch.Tensor, layout: _Layout) -> torch.Tensor:
    """t [*lead, H, L, c] as a [Z1, Z2, H, L, c] view (the kernels' indexing)."""
    z1s, z2s, sh, sl, sc = _s5(t, layout)
    return t.as_strided((layout.z1, layout.z2, *t.shape[-3:]), (z1s, z2s, sh, sl, sc))


def _from_stored_ds(ds: torch.Tensor, q: torch.Tensor, k: torch.Tensor, layout: _Layout,
                    per_z2: bool, biases, scale: float, cfg: FlashConfig) -> tuple:
    """dq and the two bias gradients from dS as `_attn_bwd_kv` stored it: [Z1·Z2·H, Q, K].

    `biases`: ((bias as given or None, needs a gradient), ...) for the two bias operands.
    `scale`: the forward multiplied the saved q by it; dq is the gradient of q itself.
    """
    h, ql, kl = q.shape[-3], q.shape[-2], k.shape[-2]
    ds5 = ds.view(layout.z1, layout.z2, h, ql, kl)  # [Z1, Z2, H, Q, K]
    # dq = dS k in q's layout, so that it flows back into q's projection without a copy
    dq = _in_layout_of(q, layout, q.dtype, zero=False)
    if cfg.ds_dq_kernel:
        d = q.shape[-1]
        bq, bk, bd, _ = cfg.ds_dq.blocks(ql, kl, d, d)
        _attn_dq_from_ds[(triton.cdiv(ql, bq) * layout.z1 * layout.z2 * h,)](
            ds, k, dq, *_s5(k, layout), *_s5(dq, layout), layout.z2, h, ql, kl, d,
            float(scale), SCALE_Q=scale != 1.0, BQ=bq, BK=bk, BD=bd, PREC=dot_precision(q),
            num_warps=cfg.ds_dq.warps, num_stages=cfg.ds_dq.stages)
    else:
        dq_scaled = torch.matmul(ds5, _as5(k, layout))  # the gradient of the scaled q
        if scale != 1.0:
            dq_scaled.mul_(scale)  # the multiply's backward, as autograd rounds it
        _as5(dq, layout).copy_(dq_scaled)
    # The bias gradient: dS summed (in fp32) over Z2 where the biases broadcast over it.
    full = (ds5.float() if per_z2 else ds5.sum(1, keepdim=True, dtype=torch.float32))
    full = layout.unfold(full, per_z2)  # [*lead (1 where summed), H, Q, K]
    grads = [full.sum_to_size(b.shape).to(b.dtype) if n and b is not None else None
             for b, n in biases]
    return dq, grads[0], grads[1]


def _dense_like(t: torch.Tensor, dtype: torch.dtype, zero: bool = False,
                last: int | None = None) -> torch.Tensor:
    """A dense buffer of t's shape (its last dim `last` if given) whose dims are laid out
    in t's stride order, also where t has gaps (a slice of stacked projections, where
    `empty_like` would fall back to the logical order and the caller's flatten back to
    the projection's layout would copy)."""
    shape = (*t.shape[:-1], t.shape[-1] if last is None else last)
    order = sorted(range(t.dim()), key=lambda i: -t.stride(i))  # outermost first
    make = torch.zeros if zero else torch.empty
    buf = make([shape[i] for i in order], dtype=dtype, device=t.device)
    return buf.permute([order.index(i) for i in range(t.dim())])


def _in_layout_of(q: torch.Tensor, layout: _Layout, dtype: torch.dtype,
                  zero: bool) -> torch.Tensor:
    """A buffer shaped and laid out like q (so dq flows back into q's projection without a
    copy), or contiguous where q's layout does not fold."""
    t = _dense_like(q, dtype, zero)
    if layout.strides(t) is None:
        t = (torch.zeros if zero else torch.empty)(q.shape, dtype=dtype, device=q.device)
    return t


def _eager(q, k, v, biases):
    logits = torch.matmul(q, k.transpose(-1, -2))
    for b in biases:
        logits = logits + b
    # An fp32 bias (a mask) promotes the logits; the weights go back to v's dtype, as the
    # kernels and autocast do, so the fallback also runs outside autocast with bf16 inputs.
    return torch.matmul(torch.softmax(logits, dim=-1).to(v.dtype), v)


def _rows_contiguous(b: torch.Tensor, budget: int) -> torch.Tensor:
    """b laid out row-major when that is cheap (b no larger than q).

    The model's biases are views with the heads innermost (a projection of z, permuted)
    or transposed masks; the kernels read them tile by tile along K, so a K stride of H
    wastes most of every memory transaction. Measured on the H200 (`bench attention`):
    forward 0.70 -> 0.25 ms, backward 1.48 -> 0.77 ms for MSA row attention. The copy
    (1 MiB for a [H, 256, 256] bf16 bias) is negligible beside that; autograd passes the
    bias gradient through it unchanged.
    """
    if b.is_contiguous() or b.numel() > budget:
        return b
    return b.contiguous()


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    biases: list[torch.Tensor], config: FlashConfig | None = None,
                    scale: float = 1.0) -> torch.Tensor:
    """softmax((scale · q) kᵀ + Σ biases) v; Triton where it applies, else PyTorch.
    See `_flash_attention`; traced by torch.compile, the call is a graph break."""
    if torch.compiler.is_compiling():
        return _flash_attention_untraced(q, k, v, biases, config, scale)
    return _flash_attention(q, k, v, biases, config, scale)


def _flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     biases: list[torch.Tensor], config: FlashConfig | None = None,
                     scale: float = 1.0) -> torch.Tensor:
    """softmax((scale · q) kᵀ + Σ biases) v; Triton where it applies, else PyTorch.

    q: [*, H, Q, c]  k: [*, H, K, c]  v: [*, H, K, c_v]  biases: broadcastable to
    [*, H, Q, K]. Falls back to the PyTorch math for tiny attention (template pointwise:
    Q = 1, K = 4), where a tiled kernel cannot win, and for shapes it does not fold.
    `config`: the kernels' launches and variants (default `DEFAULT_CONFIG`). q · scale
    is rounded to q's dtype, as the plain core's multiply rounds it, by every kernel
    where it loads q: no pass over q of its own, no scaled copy saved for backward, and
    dq is rounded as the multiply's backward rounds it (the bits of the plain core).
    """
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, *biases))
    planned = _planned(q, k, v, biases)
    if planned is None:
        return _eager(q * scale if scale != 1.0 else q, k, v, biases)
    layout, q, k, v, b0, b1 = planned
    cfg = config if config is not None else DEFAULT_CONFIG
    if not grad:
        # Nothing to differentiate (recycling iterations, evaluation): no row statistics
        # for a backward, no autograd node.
        return _forward(layout, cfg, q, k, v, b0, b1, store_lse=False, scale=scale)[0]
    return _FlashAttentionFn.apply(layout, cfg, q, k, v, b0, b1, float(scale))


def _planned(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, biases: list[torch.Tensor]):
    """(layout, q, k, v, b0, b1) for the kernels (operands made contiguous where their
    leading dims would not fold otherwise, the biases folded into two), or None where the
    PyTorch math must run (no Triton here, tiny or unfoldable attention)."""
    if not triton_usable(q) or q.shape[-2] < 16 or k.shape[-2] < 16:
        return None
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-1] != v.shape[:-1]:
        return None
    *lead, h, ql, _ = q.shape
    kl = k.shape[-2]
    full = (*lead, h, ql, kl)
    bs = list(biases)
    if len(bs) > 2:
        # The kernels take two bias operands: fold the rest into the second.
        extra = bs[1]
        for b in bs[2:]:
            extra = extra + b
        bs = [bs[0], extra]
    if any(b.dim() > len(full) for b in bs):
        return None
    bs = [_rows_contiguous(b, q.numel()) for b in bs]
    views = [b.expand(full) for b in bs]
    grad_views = [bv for b, bv in zip(bs, views) if b.requires_grad]
    layout = _plan(tuple(lead), [q, k, v, *views], grad_views)
    if layout is None:
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        bs = [b.contiguous() for b in bs]
        views = [b.expand(full) for b in bs]
        grad_views = [bv for b, bv in zip(bs, views) if b.requires_grad]
        layout = _plan(tuple(lead), [q, k, v, *views], grad_views)
        if layout is None:
            return None
    b0 = bs[0] if len(bs) > 0 else None
    b1 = bs[1] if len(bs) > 1 else None
    return layout, q, k, v, b0, b1


def _gated_flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           biases: list[torch.Tensor], gate: torch.Tensor,
                           config: FlashConfig | None = None,
                           scale: float = 1.0) -> torch.Tensor | None:
    """Without gradients: `_flash_attention`'s output times sigmoid(gate), the gate
    applied in the forward kernel's epilogue before its one rounding (the output is not
    rounded, read and written again by a gate kernel). gate: [*, H, Q, c_v], its leading
    dims folding as q's. None where the kernel cannot take the call (the PyTorch path, or
    a gate whose layout does not fold): the caller then gates on its own."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, gate, *biases)):
        raise RuntimeError("the gated attention forward has no backward: call it without "
                           "gradients")
    planned = _planned(q, k, v, biases)
    if planned is None or gate.shape != (*q.shape[:-1], v.shape[-1]):
        return None
    layout, q, k, v, b0, b1 = planned
    if layout.strides(gate) is None:
        return None
    cfg = config if config is not None else DEFAULT_CONFIG
    return _forward(layout, cfg, q, k, v, b0, b1, store_lse=False, scale=scale, gate=gate)[0]


# A compiled region that calls the attention (a whole block under torch.compile) breaks
# its graph around it and runs it as eager code. Dynamo cannot trace the launch under
# dynamic shapes: the kernel's constexprs (tile sizes, whether the key length divides the
# tile) are functions of the chain length (it raised on the launch: perf-log 2026-12-05
# section 10). Inductor could fuse nothing into a Triton kernel of ours anyway, so the
# break costs host time only, which CUDA graphs do not replay.
_flash_attention_untraced = torch.compiler.disable(_flash_attention, recursive=True)
_gated_flash_attention_untraced = torch.compiler.disable(_gated_flash_attention,
                                                         recursive=True)


def gated_flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          biases: list[torch.Tensor], gate: torch.Tensor,
                          config: FlashConfig | None = None,
                          scale: float = 1.0) -> torch.Tensor | None:
    """softmax((scale · q) kᵀ + Σ biases) v · sigmoid(gate) as one kernel without
    gradients, or None (see `_gated_flash_attention`); a graph break when compiled."""
    if torch.compiler.is_compiling():
        return _gated_flash_attention_untraced(q, k, v, biases, gate, config, scale)
    return _gated_flash_attention(q, k, v, biases, gate, config, scale)
