#!/bin/bash
# Call R4 (any card, <= 2.5 min): 3pwp_A in today's h200 evaluation (with the 32-key
# blocks, back since the rescale fix) only; then, with time left, without them.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
T0=$(date +%s)
timeout ${1:-140} python3 .devsnap/bisect_lddt.py none,-attention_half_key_blocks > $OUT/callR.txt 2>&1
grep -E "^===" $OUT/callR.txt; tail -3 $OUT/callR.txt | cut -c1-300
echo "done at $(( $(date +%s) - T0 )) s"
