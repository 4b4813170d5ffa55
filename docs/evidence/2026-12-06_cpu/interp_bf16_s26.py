"""CPU, Triton interpreter (TRITON_INTERPRET=1), twenty-sixth session: one attention call
in fp32, fp16 and bf16 against PyTorch (relative error, largest value): bf16 comes back
wrong in the interpreter. Run from implementations/pytorch with the checkout's venv."""
import torch
from scalefold.kernels.attention import flash_attention, FlashConfig
g = torch.Generator().manual_seed(0)
for dt in (torch.float32, torch.float16, torch.bfloat16):
    q, k, v = (torch.randn(1, 2, 4, 64, 32, generator=g).to(dt) for _ in range(3))
    b = torch.randn(1, 1, 4, 64, 64, generator=g).to(dt)
    with torch.no_grad():
        got = flash_attention(q, k, v, [b]).float()
        want = torch.softmax(q.float() @ k.float().transpose(-1, -2) + b.float(), -1) @ v.float()
    print(dt, ((got - want).norm() / want.norm()).item(), got.abs().max().item())
