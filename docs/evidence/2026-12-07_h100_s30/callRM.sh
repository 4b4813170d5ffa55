#!/bin/bash
# Call RM (H200 preferred, <= 9.5 min): with little device time, the real 180-chain pass
# of today's h200 evaluation first (the 32-key blocks back after the rescale fix): it raises
# NonFiniteEvaluation naming any chain that is not finite (its 44 buckets include 288,
# 3pwp_A's), then the lDDT-Ca check against fp32 (random weights, 3pwp_A among the
# mini chains), then the GPU test of the evaluation copy at the benchmark widths.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
T0=$(date +%s)
timeout 440 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --variants h200 \
  --json $OUT/callRM_eval.json > $OUT/callRM_eval.txt 2>&1
grep -v -i -E "warn|softmax" $OUT/callRM_eval.txt | grep -E "^==|warm-up|pass 1|evaluation of|GPU time|FLOPs|fit t|GPUs|Error|NonFinite" | tail -14
echo "pass done at $(( $(date +%s) - T0 )) s"
timeout 100 python3 -m scalefold.cli bench eval --check-lddt --speed h200 > $OUT/callRM_lddt.txt 2>&1
grep -v -i warn $OUT/callRM_lddt.txt | tail -6
echo "lddt done at $(( $(date +%s) - T0 )) s"
timeout $(( 585 - ($(date +%s) - T0) )) python3 -m pytest -q -p no:cacheprovider tests/train/test_evaluate.py \
  -k "benchmark_widths_is_finite" > $OUT/callRM_tests.txt 2>&1
grep -E "passed|failed|rror|assert" $OUT/callRM_tests.txt | tail -8
echo "done at $(( $(date +%s) - T0 )) s"
