"""The triangle attention's forward (tile only) with the bias tile in fp32 beside bf16, in
the unmasked forms of `scalefold.bench.sass` (sm90, no GPU). Only the pipelined and the
plainly loaded rows mean anything in fp32: the real code takes no fp32 tile as an MMA
operand or by descriptor (`_bias_as_mma_operand`, `_bias_descriptor`)."""
import scalefold.bench.sass as sass
from scalefold.bench.sass import attention_cases, format_table, run

case = next(c for c in attention_cases() if c.name.startswith("fwd, tile only"))
rows = [r for r in run(90, [case], log=print) if r["form"] in (
    "fused+unmasked", "fused+unmasked+pipelined", "fused+unmasked+bias_mma")]
sass._POINTERS = dict(sass._POINTERS, B1="fp32")
rows += [dict(r, form=r["form"] + " fp32") for r in run(90, [case], log=lambda *a: None)
         if r["form"] in ("fused+unmasked", "fused+unmasked+pipelined")]
print(format_table(rows))
