#!/bin/bash
# Call RM (H200 preferred, <= 9.5 min): with little device time, the real 180-chain pass
# of today's h200 evaluation first (the 32-key blocks back after the rescale fix): it raises
# NonFiniteEvaluation naming any chain that is not finite (its 44 buckets include 288,
# 3pwp_A's), then the lDDT-Ca check against fp32 (random weights, 3pwp_A among the
# mini chains), then the screen on the same card (the thirtieth session's H100s differed by 8%).
# `bash .devsnap/callRM.sh h200+eval_chains_per_forward=4`: the real pass of that variant
# alone (grouping touches none of the mini chains or the screen's, one chain a bucket), for
# an H200 whose `h200` pass came out just over 60 s (thirty-third session: four a forward
# 0.963x on the chains up to 256 residues, ~-0.6 s of the pass).
variant=${1:-h200}
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,serial --format=csv,noheader | head -1
T0=$(date +%s)
timeout 500 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --variants "$variant" \
  --json $OUT/callRM_eval.json > $OUT/callRM_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callRM_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|GPU time|FLOPs|fit t|GPUs|Error|NonFinite" | tail -14
echo "pass done at $(( $(date +%s) - T0 )) s"
[[ $variant == h200 ]] || exit 0
timeout -k 5 $(( 585 - ($(date +%s) - T0) )) python3 -m scalefold.cli bench eval --check-lddt --speed h200 > $OUT/callRM_lddt.txt 2>&1
grep -v -i warn $OUT/callRM_lddt.txt | tail -6
echo "lddt done at $(( $(date +%s) - T0 )) s"
# The screen on the same card (pass 2 of 6 chains), to set this card beside the others
# (twenty-sixth session's H100 3.06 s, thirtieth's second H100 3.12 s; the thirtieth's
# first H100 ran the real pass 1.084x slower than the twenty-sixth's).
timeout -k 5 $(( 585 - ($(date +%s) - T0) )) python3 -m scalefold.cli bench eval --speed h200 \
  --passes 2 --no-eval-warm-up --lengths 96,160,224,288,352,704 \
  --json $OUT/callRM_screen.json > $OUT/callRM_screen.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callRM_screen.txt | grep -E "pass [12]|Error|^ +[0-9]+-[0-9]+ " | tail -8
echo "done at $(( $(date +%s) - T0 )) s"
