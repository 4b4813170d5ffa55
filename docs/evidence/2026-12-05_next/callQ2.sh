#!/bin/bash
# Twenty-second session, call Q2 (any card, ~6 min): a quick screen, in one process, of
# the levers built and not yet measured against today's h200 evaluation (six chains of
# 96-704 residues, 64-residue buckets, no warm-up, two passes: the second compared):
# triangle_attention_folded_mask (the key mask folded into the triangle bias: the
# attention kernel's one-bias form), trimul_projection_forward_kernel (0.963x alone
# before; beside the LayerNorm-projection kernel, which the evaluation now has, it takes
# the input LayerNorm too: neither the normalised z nor the stacked projection written),
# and two evaluation lanes (0.967x on the
# nineteenth session's screen). Adopt what gains >= 1% (the first two into
# EVAL_NO_GRAD_KERNELS, scalefold/train/config.py).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
B=h200+eval_length_buckets=64
timeout 400 python3 -m scalefold.cli bench eval --speed h200 --passes 2 --no-eval-warm-up \
  --lengths 96,192,288,416,576,704 \
  --variants $B,$B+triangle_attention_folded_mask,$B+trimul_projection_forward_kernel,$B+eval_concurrent_chains=2 \
  --json $OUT/callQ2_eval.json > $OUT/callQ2_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callQ2_eval.txt | grep -E "^==|pass [12]|evaluation of|FAILED|Error" | tail -20
