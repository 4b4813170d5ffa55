#!/bin/bash
# call 27: the attention grid past 65535 (row, head) pairs (GPU test); the 180-chain
# evaluation with short chains batched up to 512 padded residues (today's h200 has the
# template pairs once; call 26 crashed on the grid); the step with and without the stacked
# projections now that q is scaled inside the kernels, and the h100 form with them
# (recycles 0 and 3: the step is linear in n, so their mean is the 0..3 mean)
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv | tee $OUT/call27_smi.csv
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py \
  -k "grid_past_65535" 2>&1 | tee $OUT/call27_pytest.txt | tail -2
timeout 250 python3 -m scalefold.cli bench eval --speed h200 --passes 1 \
  --variants h200+eval_batch_residues=512 --json $OUT/call27_eval.json > $OUT/call27_eval.txt 2>&1
grep -v "^\s" $OUT/call27_eval.txt | tail -12; grep -A9 "  length" $OUT/call27_eval.txt | head -10
timeout 270 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --recycles 0,3 \
  --variants h200,h200+attention_stacked_projections=0,h200+recompute_outer_product \
  --json $OUT/call27_step.json > $OUT/call27_step.txt 2>&1
tail -5 $OUT/call27_step.txt
