#!/bin/bash
# ~3 min, any card: the LayerNorm-projection micro-benchmark with a launch sweep at 1,024
# columns and the triangle multiplication's gated output (mb_ln2.py; copy it into
# .devsnap/ too). If a launch beats LayerNorm+cuBLAS at 1,024 columns, make it
# LnLinearLaunch.for_width's choice there and raise MAX_COLUMNS (scalefold/kernels/ln_linear.py).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 240 python3 .devsnap/mb_ln2.py 2>&1 | grep -v -i warn | tee $OUT/callMB.txt | tail -30
