"""The dk/dv kernel's main loop (sm90, no GPU) at 1, 2 and 3 pipeline stages, with and
without the stages given to Triton explicitly (`FlashConfig.bwd_pipelined_loads`), for its
two cases: a pair bias with stored dS, and the mask only."""
import dataclasses

from scalefold.bench.sass import attention_cases, format_table, measure

rows = []
for base in (c for c in attention_cases() if c.kernel == "_attn_bwd_kv"):
    for stages in (1, 2, 3):
        case = dataclasses.replace(base, name=f"{base.name[:30]} s{stages}", stages=stages)
        rows.append(measure(case, "fused+delta+unmasked"))
        if stages > 1:  # the pipelined form's count is at least the case's stages
            rows.append(measure(case, "fused+delta+unmasked+pipelined"))
print(format_table(rows))
