"""CPU, Triton interpreter (TRITON_INTERPRET=1), twenty-sixth session: the attention forward
in fp16 at head dimension 32 with a folded bias tile whose padded keys are masked (-3e4),
64-key blocks, the bias as an MMA operand, and 32-key blocks, against fp32 PyTorch at 96,
288 and 160 keys (relative error, all finite). Run from implementations/pytorch."""
import torch
from scalefold.kernels.attention import flash_attention, FlashConfig
g = torch.Generator().manual_seed(0)
dt = torch.float16
for kl, real in ((96, 90), (288, 275), (160, 150)):
    q, k, v = (torch.randn(1, 3, 4, kl, 32, generator=g).to(dt) for _ in range(3))
    tri = torch.randn(1, 1, 4, kl, kl, generator=g)
    keymask = torch.zeros(kl); keymask[real:] = -3e4
    b = (tri + keymask).to(dt).contiguous()
    want = torch.softmax(q.float() @ k.float().transpose(-1, -2) + b.float(), -1) @ v.float()
    for name, cfg in {"base": FlashConfig(fused_logits=True, unmasked_loads=True),
                      "mma": FlashConfig(fused_logits=True, unmasked_loads=True, bias_mma=True),
                      "mma+half": FlashConfig(fused_logits=True, unmasked_loads=True, bias_mma=True, fwd_half_key_block=True)}.items():
        with torch.no_grad():
            got = flash_attention(q, k, v, [b], cfg).float()
        print(kl, name, f"{((got - want).norm() / want.norm()).item():.2e}", torch.isfinite(got).all().item(), flush=True)
