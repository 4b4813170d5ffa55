"""The attention forward's main loop in each form of `scalefold.bench.sass` (sm90, no GPU):
the bias tile loaded plainly, as the identity's MMA operand (bias_mma), loaded stages
ahead by the loop's pipeline (pipelined_bias_loads, alone or with bias_mma) or through a
TMA descriptor (bias_tma). Run with the Triton of the GPU machine ahead on PYTHONPATH."""
from scalefold.bench.sass import attention_cases, format_table, run

cases = [c for c in attention_cases() if c.kernel == "_attn_fwd"]
print(format_table(run(90, cases, log=print)))
