#!/bin/bash
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_transition.py \
  tests/kernels/test_kernels.py -k "transition or untraced_in_a_compiled_region" 2>&1 | tail -3
timeout 300 python3 .devsnap/trimul_gating_probe.py 224 448 > $OUT/callE_probe.txt 2>&1
grep -v -i -E "warn" $OUT/callE_probe.txt | tail -80
