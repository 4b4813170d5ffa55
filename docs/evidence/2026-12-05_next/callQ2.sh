#!/bin/bash
# Twenty-second session, call Q2 (any card, ~9.5 min): a quick screen, in one process, of
# the levers built in the twenty-first session against today's h200 evaluation (six
# chains of 96-704 residues, 64-residue buckets, no warm-up, two passes: the second
# compared), most wanted first (a variant cut by the limit is the least wanted):
#   F = triangle_attention_folded_mask (the key mask folded into the triangle bias: the
#       attention kernel's one-bias form, 370 against 419 instructions a loop iteration)
#   J = trimul_projection_forward_kernel (0.963x alone before; beside the
#       LayerNorm-projection kernel, which the evaluation now has, it takes the input
#       LayerNorm too: neither the normalised z nor the stacked projection written)
#   T = transition_forward_kernel (pair, extra-MSA and template transitions with their
#       residual add as one kernel: 2 passes over the stream instead of 13)
#   and two evaluation lanes (0.967x on the nineteenth session's screen).
# Adopt what gains >= 1% (F, J, T into EVAL_NO_GRAD_KERNELS, scalefold/train/config.py;
# F also for training: real positions are the same bits), then the real pass (callH).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
B=h200+eval_length_buckets=64
F=triangle_attention_folded_mask; J=trimul_projection_forward_kernel; T=transition_forward_kernel
timeout 560 python3 -m scalefold.cli bench eval --speed h200 --passes 2 --no-eval-warm-up \
  --lengths 96,192,288,416,576,704 \
  --variants $B,$B+$F+$J+$T,$B+$T,$B+$J,$B+$F,$B+eval_concurrent_chains=2 \
  --json $OUT/callQ2_eval.json > $OUT/callQ2_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callQ2_eval.txt | grep -E "^==|pass [12]|evaluation of|FAILED|Error" | tail -24
