"""bf16 arithmetic for Triton's CPU interpreter.

The interpreter (Triton 3.9) keeps bf16 values as their raw 16 bits in uint16 arrays and
hands those integers to numpy: `tl.dot` multiplies the bit patterns as integers (a bare
16 x 16 bf16 dot is off by a relative 4e9, docs/evidence/2026-12-07_cpu/interp_bf16_dot.txt;
a bf16 attention call returns values ~8e8), and so do
the elementwise operations and the casts from integers and booleans. `patch_bf16()`
routes every such operation through float32 and rounds bf16 results to nearest even, as
the GPU's conversions do, so that the kernels' bf16 paths can be run on a CPU. Products
of bf16 values are exact in float32 and tensor cores accumulate in float32, so `tl.dot`
differs from the GPU's only in its order of summation.
"""

from __future__ import annotations

import numpy as np
import triton.language as tl
from triton.runtime import interpreter

_PATCHED = "_scalefold_bf16"


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 → bf16 bits, rounded to nearest even (NaN stays a quiet NaN)."""
    x = np.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32).astype(np.uint64)
    out = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    out[np.isnan(x)] = 0x7FC0
    return out


def _is_bf16(handle) -> bool:
    return handle.dtype.scalar == tl.bfloat16


def _f32(handle) -> np.ndarray:
    return bf16_to_f32(handle.data) if _is_bf16(handle) else handle.data


def patch_bf16() -> None:
    """Patch the interpreter's builder in this process (idempotent)."""
    builder = interpreter.InterpreterBuilder
    if getattr(builder, _PATCHED, False):
        return
    handle_t = interpreter.TensorHandle
    dot, binary, unary, cast, fma = (builder.create_dot, builder.binary_op,
                                     builder.unary_op, builder.cast_impl, builder.create_fma)

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        if not (_is_bf16(a) or _is_bf16(b)):
            return dot(self, a, b, d, input_precision, max_num_imprecise_acc)
        out = np.matmul(_f32(a), _f32(b), dtype=np.float32) + _f32(d)
        if _is_bf16(d):
            return handle_t(f32_to_bf16(out), tl.bfloat16)
        return handle_t(out.astype(d.data.dtype), d.dtype.scalar)

    def binary_op(self, lhs, rhs, op):
        if not (_is_bf16(lhs) or _is_bf16(rhs)) or op in (np.bitwise_and, np.bitwise_or,
                                                          np.bitwise_xor):
            return binary(self, lhs, rhs, op)
        out = op(_f32(lhs), _f32(rhs))
        if out.dtype == np.bool_:
            return handle_t(out, lhs.dtype.scalar)
        return handle_t(f32_to_bf16(out), tl.bfloat16)

    def unary_op(self, arg, op):
        if not _is_bf16(arg):
            return unary(self, arg, op)
        return handle_t(f32_to_bf16(op(_f32(arg))), tl.bfloat16)

    def cast_impl(self, src, dst_type):
        to_bf16 = dst_type.scalar == tl.bfloat16
        if _is_bf16(src) == to_bf16:
            return cast(self, src, dst_type)
        if to_bf16:
            return handle_t(f32_to_bf16(src.data.astype(np.float32)), tl.bfloat16)
        out = bf16_to_f32(src.data).astype(interpreter._get_np_dtype(dst_type))
        return handle_t(out, dst_type.scalar)

    def create_fma(self, x, y, z):
        if not _is_bf16(z):
            return fma(self, x, y, z)
        out = np.multiply(_f32(x), _f32(y), dtype=np.float64) + _f32(z)
        return handle_t(f32_to_bf16(out.astype(np.float32)), tl.bfloat16)

    builder.create_dot = create_dot
    builder.binary_op = binary_op
    builder.unary_op = unary_op
    builder.cast_impl = cast_impl
    builder.create_fma = create_fma
    setattr(builder, _PATCHED, True)
