"""The forward's main loop with each combination of biases, aligned and unaligned
(`scalefold.bench.sass`), in the plain and the fused form of the logits."""
from scalefold.bench.sass import Case, format_table, run

tiles = dict(SCALE_Q=True, BQ=64, BK=64, BD=32, BDV=32, PREC="tf32", EVEN_K=True, STORE_LSE=False)
forms = {"mask row + pair tile": (True, True, True), "mask tile + pair tile": (True, True, False),
         "pair tile only": (False, True, False), "mask row only": (True, False, True),
         "no bias": (False, False, False)}
cases = [Case(name, "_attn_fwd", dict(HAS_B0=b0, HAS_B1=b1, B0_ROW=row, B1_ROW=False, **tiles),
              stages=3) for name, (b0, b1, row) in forms.items()]
for aligned in (True, False):
    print(format_table(run(90, cases, log=print, aligned=aligned)))
