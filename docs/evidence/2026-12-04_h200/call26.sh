#!/bin/bash
# call 26: the 180-chain evaluation with the template pair stack once per chain, against the
# same with short chains batched up to 512 padded residues (one process, each its own warm-up)
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv | tee $OUT/call26_smi.csv
timeout 570 python3 -m scalefold.cli bench eval --speed h200 --passes 1 \
  --variants h200+eval_template_pairs_once,h200+eval_template_pairs_once+eval_batch_residues=512 \
  --json $OUT/call26_eval.json > $OUT/call26_eval.txt 2>&1
tail -40 $OUT/call26_eval.txt
