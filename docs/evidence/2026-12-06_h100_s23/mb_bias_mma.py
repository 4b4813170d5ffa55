"""Twenty-third session: the attention forward with the bias tile as an MMA operand
(FlashConfig.bias_mma) against today's load, at the evaluation's calls (bf16, no
gradients, fused logits, unmasked loads): triangle attention with the folded mask (one
tile, 4 heads, c 32) at 224/704 residues, MSA row attention (mask row + pair tile, 8
heads, c 32, 128 rows) and extra-MSA row attention (1024 rows, c 8). Each call replayed
as a CUDA graph, 20 replays x 5 repeats, median ms."""
import statistics

import torch

import scalefold.kernels.attention as a

dev = "cuda"
torch.manual_seed(0)


def case(rows, h, n, c, row_mask):
    q = torch.randn(1, rows, n, h, c, device=dev, dtype=torch.bfloat16).transpose(-2, -3)
    k = torch.randn_like(q)
    v = torch.randn_like(q)
    tile = torch.randn(1, 1, h, n, n, device=dev, dtype=torch.bfloat16)
    bs = [tile]
    if row_mask:
        mask = torch.zeros(1, rows, 1, 1, n, device=dev)
        mask[..., -3:] = -1e9
        bs = [mask, tile]
    return q, k, v, bs


def timed(fn, reps=20, repeats=5):
    fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    out = []
    for _ in range(repeats):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        g.replay()
        e1.record()
        torch.cuda.synchronize()
        out.append(e0.elapsed_time(e1) / reps)
    return statistics.median(out)


base = a.FlashConfig(fused_logits=True, unmasked_loads=True)
cases = [("triangle 224 (folded)", (224, 4, 224, 32, False)),
         ("triangle 704 (folded)", (704, 4, 704, 32, False)),
         ("MSA row 704 (mask+tile)", (128, 8, 704, 32, True)),
         ("extra-MSA row 704 (mask+tile, c 8)", (1024, 8, 704, 8, True))]
print(f"{'call':38s} {'load ms':>9s} {'mma ms':>9s} {'ratio':>7s} {'max diff':>9s}")
for name, args in cases:
    q, k, v, bs = case(*args)
    outs, times = [], []
    for on in (False, True):
        cfg = a.FlashConfig(fused_logits=True, unmasked_loads=True, bias_mma=on)
        with torch.no_grad():
            outs.append(a.flash_attention(q, k, v, bs, cfg).float())
            times.append(timed(lambda: a.flash_attention(q, k, v, bs, cfg)))
    diff = (outs[0] - outs[1]).abs().max().item()
    print(f"{name:38s} {times[0]:9.3f} {times[1]:9.3f} {times[1] / times[0]:7.3f} {diff:9.2e}")
