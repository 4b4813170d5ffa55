#!/bin/bash
# Next session, call N (an H200, ~9.5 min), first: (1) the GPU tests of the two
# no-gradient kernels of the nineteenth session, `ln_projection_forward_kernel` (a
# LayerNorm and the projections it feeds as one Triton kernel) and
# `attention_gate_epilogue` (the attention's gate in the attention kernel's epilogue),
# CPU-tested in the interpreter in fp32 only; (2) the screen (45 chains, 64-residue
# buckets, one process) of today's h200 beside each and both; (3) the profile of a
# 224-residue chain without and with both, whose GEMM table (new) sets each matrix
# product's time beside its roofline floor.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_ln_linear.py \
  tests/kernels/test_gated_attention.py 2>&1 | tail -3
B=h200+eval_length_buckets=64
L=ln_projection_forward_kernel; G=attention_gate_epilogue
timeout 340 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --num-chains 45 \
  --variants $B,$B+$L,$B+$G,$B+$L+$G --json $OUT/callN_eval.json > $OUT/callN_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callN_eval.txt | grep -E "^==|warm-up|evaluation of|FAILED|^variant|^h200" | tail -14
timeout 120 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --lengths 224 \
  --profile-length 224 --variants h200,h200+$L+$G > $OUT/callN_profile.txt 2>&1
grep -E "^==|TFLOP in|^GEMMs|LayerNorm|sigmoid gates|matmul|attention forward" $OUT/callN_profile.txt | head -20
