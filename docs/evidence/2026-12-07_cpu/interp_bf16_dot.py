"""CPU, Triton interpreter (TRITON_INTERPRET=1): a bare 16 x 16 tl.dot and a bare load in
fp16 and bf16 against PyTorch. Run from the repository root with the checkout's venv."""
import torch, triton, triton.language as tl
@triton.jit
def k(A, B, C, N: tl.constexpr):
    r = tl.arange(0, N)
    a = tl.load(A + r[:, None] * N + r[None, :])
    b = tl.load(B + r[:, None] * N + r[None, :])
    c = tl.dot(a, b)
    tl.store(C + r[:, None] * N + r[None, :], c)
@triton.jit
def k2(A, C, N: tl.constexpr):
    r = tl.arange(0, N)
    a = tl.load(A + r[:, None] * N + r[None, :])
    tl.store(C + r[:, None] * N + r[None, :], a.to(tl.float32) * 2)
for dt in (torch.float16, torch.bfloat16):
    a = torch.randn(16, 16).to(dt); b = torch.randn(16, 16).to(dt)
    c = torch.empty(16, 16)
    k[(1,)](a, b, c, N=16)
    print(dt, "dot rel", float((c - a.float() @ b.float()).norm() / (a.float() @ b.float()).norm()))
    k2[(1,)](a, c, N=16)
    print(dt, "load rel", float((c - 2 * a.float()).norm() / a.float().norm()))
