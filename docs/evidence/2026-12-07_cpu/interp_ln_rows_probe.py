"""Triton interpreter: `_ln_rows` with the width as a runtime value (as `_ln_fwd` has it)
and as a constant (as the projection-gating kernel has it) gives equal bits.
Run with TRITON_INTERPRET=1."""
import torch
import triton
import triton.language as tl

from scalefold.kernels.layer_norm import _ln_rows


@triton.jit
def ln_runtime_width(X, W, B, Y, C, eps, BM: tl.constexpr, BC: tl.constexpr):
    rows = tl.arange(0, BM)
    cols = tl.arange(0, BC)
    mask = (rows[:, None] < BM) & (cols[None, :] < C)
    x = tl.load(X + rows[:, None] * C + cols[None, :], mask=mask, other=0.0)
    y, _, _ = _ln_rows(x, mask, cols, cols < C, W, B, C, eps)
    tl.store(Y + rows[:, None] * C + cols[None, :], y, mask=mask)


@triton.jit
def ln_constant_width(X, W, B, Y, eps, K: tl.constexpr, BM: tl.constexpr):
    rows = tl.arange(0, BM)
    cols = tl.arange(0, K)
    mask = (rows[:, None] < BM) & (cols[None, :] < K)
    x = tl.load(X + rows[:, None] * K + cols[None, :], mask=mask, other=0.0)
    y, _, _ = _ln_rows(x, mask, cols, cols < K, W, B, K, eps)
    tl.store(Y + rows[:, None] * K + cols[None, :], y, mask=mask)


torch.manual_seed(0)
x = 3 * torch.randn(64, 32) + 1
w = torch.randn(32) * 0.2 + 1
b = torch.randn(32) * 0.2
y1 = torch.empty_like(x)
y2 = torch.empty_like(x)
ln_runtime_width[(1,)](x, w, b, y1, 32, 1e-5, BM=64, BC=32)
ln_constant_width[(1,)](x, w, b, y2, 1e-5, K=32, BM=64)
print("runtime vs constant width: differing elements", int((y1 != y2).sum()))
ref = torch.nn.functional.layer_norm(x, (32,), w, b, 1e-5)
print(f"max |kernel - torch|: runtime {float((y1 - ref).abs().max()):.2e}, "
      f"constant {float((y2 - ref).abs().max()):.2e}")
