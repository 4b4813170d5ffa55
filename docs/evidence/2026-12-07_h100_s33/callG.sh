#!/bin/bash
# Call G (any card, <= 9.5 min; thirtieth session's build): batched evaluation of a
# bucket's short chains (`eval_chains_per_forward`). First its GPU test (the h200
# evaluation copy at the benchmark widths: chains stacked two to a forward score as
# alone), then, in one process, the pass over the assumed CAMEO lengths up to 256
# residues (the chains grouping touches; ~100 of the 180) with 1, 2 and 4 chains a
# forward, warm-up to 256 residues. Adopt into h200 if the grouped pass gains >= 1% of the
# full pass (the longer chains are unchanged), then the real pass (callRM) confirms.
# Run in the thirty-first session (H100): two a forward 0.887x, adopted (h200 is 2 since);
# four's warm-up did not finish in the call. Thirty-second session (another H100): the
# [four] GPU test passed and four's pass 2 took 17.86 s, but h200 (two) ran out of the
# call, so the two are not yet side by side. Now: both in one process, no test first.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
T0=$(date +%s)
L=$(python3 -c "from scalefold.bench.eval import assumed_cameo_lengths as a; print(','.join(str(n) for n in a() if n <= 256))")
echo "lengths: $(echo $L | tr ',' '\n' | wc -l) chains up to 256 residues; start"
timeout -k 10 $(( 585 - ($(date +%s) - T0) )) python3 -m scalefold.cli bench eval --speed h200 \
  --passes 2 --lengths $L --warm-up-max-length 256 \
  --variants h200+eval_chains_per_forward=4,h200 \
  --json $OUT/callG_eval.json > $OUT/callG_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callG_eval.txt | grep -E "^==|warm-up|pass [12]|Error|NonFinite|^variant|^h200" | tail -16
echo "done at $(( $(date +%s) - T0 )) s"
