# The forward's main-loop opcodes per score element: python fwd_loop_opcodes.py BQ BK WARPS STAGES FORM [SASS_OUT]
# (FORM: a key of scalefold.bench.sass.FORMS), with Triton 3.6 as in the README.
import sys
from scalefold.bench import sass
both = dict(HAS_B0=True, HAS_B1=True, B0_ROW=True, B1_ROW=False)
bq,bk,w,st = map(int, sys.argv[1:5]); form = sys.argv[5]
tiles = dict(SCALE_Q=True, BQ=bq, BK=bk, BD=32, BDV=32, PREC="tf32")
case = sass.Case("fwd", "_attn_fwd", dict(**both, EVEN_K=True, EVEN_D=True, STORE_LSE=False, **tiles), warps=w, stages=st)
text = sass.disassemble(sass.compile_case(case, form))
main = max(sass.mma_loops(text), key=lambda c: sum(c.values()))
el = bq*bk/(w*32)
print(sum(main.values()), "elements/thread", el)
for k,v in main.most_common(): print(f"  {k:10s} {v:5d}  {v/el:5.2f}/el")
if len(sys.argv) > 6: open(sys.argv[6],"w").write(text)
