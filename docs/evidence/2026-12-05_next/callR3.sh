#!/bin/bash
# Call R3 (any card, <= 5.5 min): call R cut to the device time one session had left.
# 3pwp_A in today's evaluation (`none`, the 32-key blocks withheld) and with the 32-key
# blocks back; the GPU tests of the 32-key forward and of the evaluation copy at the
# benchmark widths with what time is left.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
T0=$(date +%s)
left() { echo $(( ${1:-330} - ($(date +%s) - T0) )); }
timeout 150 python3 .devsnap/bisect_lddt.py none,+attention_half_key_blocks > $OUT/callR.txt 2>&1
grep -E "^===" $OUT/callR.txt; echo "bisect done at $(( $(date +%s) - T0 )) s"
timeout $(left) python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py \
  -k "evaluation_shapes_bf16" > $OUT/callR_tests.txt 2>&1
timeout $(left) python3 -m pytest -q -p no:cacheprovider tests/train/test_evaluate.py \
  -k "benchmark_widths_is_finite" >> $OUT/callR_tests.txt 2>&1
grep -E "passed|failed|rror|assert" $OUT/callR_tests.txt | tail -12
echo "done at $(( $(date +%s) - T0 )) s"
