"""CPU census (meta device) of the evaluation forward's matrix products at N residues (the
plain model, eval MSA sizes), each with its roofline floor on an H200 in bf16. Run from
the repository root with the venv: python docs/evidence/2026-12-06_cpu/gemm_census.py 224"""
import collections, torch
from torch.utils._python_dispatch import TorchDispatchMode
from scalefold.model.alphafold import AlphaFold
from scalefold.model.config import AlphaFoldConfig
from scalefold.train.evaluate import synthetic_chains, model_inputs
from scalefold.bench.roofline import Gemm, GemmRow, Card
import sys
N = int(sys.argv[1])
feats = synthetic_chains([N], 124, 1024, 4, 4)[0]
inputs = {k: v.to("meta") for k, v in model_inputs(feats).items()}
with torch.device("meta"):
    model = AlphaFold(AlphaFoldConfig.mlperf()).eval()
aten = torch.ops.aten
seen = collections.Counter()
bw = collections.Counter()
class M(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in (aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default):
            sh = [list(a.shape) for a in args if isinstance(a, torch.Tensor)]
            if func == aten.mm.default: (m,k),(_,n) = sh; g=Gemm(1,m,n,k)
            elif func == aten.addmm.default: (m,k),(_,n) = sh[1],sh[2]; g=Gemm(1,m,n,k)
            elif func == aten.bmm.default: (b,m,k),(_,_,n) = sh; g=Gemm(b,m,n,k)
            else: (b,m,k),(_,_,n) = sh[1],sh[2]; g=Gemm(b,m,n,k)
            seen[(g, args[0].dtype if func in (aten.mm.default, aten.bmm.default) else args[1].dtype)] += 1
        elif isinstance(out, torch.Tensor):
            # every other op: bytes of its tensor inputs and output
            b = sum(a.numel()*a.element_size() for a in args if isinstance(a, torch.Tensor)) + out.numel()*out.element_size()
            bw[str(func.overloadpacket.__name__)] += b
        return out
with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16), M():
    model(inputs)
card = Card("H200", 989.0, 4.8, 67.0)
tot = 0; rows=[]
for (g, dt), c in seen.items():
    r = GemmRow("mm", g, "bf16", 2, c)
    f = r.floor_us(card) * c
    tot += f; rows.append((f, g, dt, c, r.floor_us(card), g.flops/ (card.tflops*1e6)))
attn = [r for r in rows if r[1].batch > 1 and 32 in (r[1].n, r[1].k) or r[1].batch > 1 and 8 in (r[1].n, r[1].k) or r[1].batch>1 and 16 in (r[1].n, r[1].k)]
print("attention-like bmm floor ms", sum(r[0] for r in attn)/1e3)
rows.sort(key=lambda x: -x[0])
print(f"N={N}: GEMM floor total {tot/1e3:.1f} ms on H200; calls {sum(seen.values())}")
for f,g,dt,c,each,comp in rows[:22]:
    print(f"{f/1e3:7.2f} ms  {c:5d} x {g.batch}x{g.m}x{g.n}x{g.k} {dt}  floor {each:.1f} us (compute {comp:.1f})")
print("non-GEMM op bytes (GB) top:", [(k, round(v/1e9,2)) for k,v in bw.most_common(12)])
print("non-GEMM traffic floor ms at 4.8TB/s:", sum(bw.values())/4.8e9)
