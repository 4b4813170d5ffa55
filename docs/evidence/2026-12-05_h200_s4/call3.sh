#!/bin/bash
# The two no-gradient levers together at the real evaluation (180 chains, 16-residue
# buckets), after the lDDT-Ca check (fp32 against them, mini dataset's validation chains).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
V=h200+trimul_gating_forward_kernel+transition_relu_epilogue
timeout 150 python3 -m scalefold.cli bench eval --check-lddt --speed h200 \
  --trimul-gating-forward-kernel --transition-relu-epilogue \
  --json $OUT/call3_lddt.json > $OUT/call3_lddt.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/call3_lddt.txt | tail -6
timeout 400 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --variants $V \
  --json $OUT/call3_eval.json > $OUT/call3_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/call3_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|model FLOPs|FAILED" | tail -8
