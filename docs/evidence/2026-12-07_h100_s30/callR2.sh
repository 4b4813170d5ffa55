#!/bin/bash
# Call R2 (any card, <= 9.5 min): call R made adaptive for a short device budget. GPU
# tests of the attention forward (the 32-key blocks at the evaluation's shapes; rows of
# masked keys over 7-11 blocks, the rescale fixed in the twenty-ninth session) and of the
# h200 evaluation copy at the benchmark widths; then 3pwp_A in today's evaluation
# (`none`, the 32-key blocks back in it). If it is finite, the trained-weights check
# (callY.sh) follows in the same call; else the suspects are bisected.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
T0=$(date +%s)
timeout 180 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py \
  -k "evaluation_shapes_bf16 or fully_masked_row" > $OUT/callR_tests.txt 2>&1
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/train/test_evaluate.py \
  -k "benchmark_widths_is_finite" >> $OUT/callR_tests.txt 2>&1
grep -E "passed|failed|rror|assert" $OUT/callR_tests.txt | tail -12
echo "tests done at $(( $(date +%s) - T0 )) s"
timeout 150 python3 .devsnap/bisect_lddt.py none > $OUT/callR.txt 2>&1
grep -E "^===" $OUT/callR.txt
if grep -q "^=== none: 3pwp_A lDDT" $OUT/callR.txt; then
  echo "none finite: callY at $(( $(date +%s) - T0 )) s"
  bash .devsnap/callY.sh
else
  timeout $(( 570 - ($(date +%s) - T0) )) python3 .devsnap/bisect_lddt.py \
    ${1:--attention_half_key_blocks,-opm_residual_epilogue,pg_loop,ln_launches} >> $OUT/callR.txt 2>&1
  grep -E "^===" $OUT/callR.txt
fi
echo "done at $(( $(date +%s) - T0 )) s"
