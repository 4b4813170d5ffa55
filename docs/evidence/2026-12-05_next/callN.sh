#!/bin/bash
# Next session, call N (an H200, ~9.5 min), first: (1) the GPU tests of
# `ln_projection_forward_kernel` (a LayerNorm and the projections it feeds as one Triton
# kernel without gradients; CPU-tested in the interpreter in fp32 only); (2) the screen
# (45 chains, 64-residue buckets, one process) of today's h200 beside that field and the
# structure module's dynamic compile with and without the aligned lengths (call K of the
# nineteenth session: A+csm -2.6% against A; A alone +1.0% against h200 in another
# process); (3) the profile of a 224-residue chain with and without the field, whose GEMM
# table (new) sets each matrix product's time beside its roofline floor.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_ln_linear.py 2>&1 | tail -2
B=h200+eval_length_buckets=64
timeout 360 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --num-chains 45 \
  --variants $B,$B+ln_projection_forward_kernel,$B+eval_compile_structure_module,$B+eval_aligned_lengths+eval_compile_structure_module \
  --json $OUT/callN_eval.json > $OUT/callN_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callN_eval.txt | grep -E "^==|warm-up|evaluation of|FAILED|^variant|^h200" | tail -14
timeout 120 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --lengths 224 \
  --profile-length 224 --variants h200,h200+ln_projection_forward_kernel \
  > $OUT/callN_profile.txt 2>&1
grep -E "^==|TFLOP in|^GEMMs|LayerNorm|^kernel family|matmul" $OUT/callN_profile.txt | head -20
