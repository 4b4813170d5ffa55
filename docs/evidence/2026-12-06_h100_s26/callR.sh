#!/bin/bash
# Bisect the zero lDDT-Ca of 3pwp_A (275 residues) in today's h200 evaluation.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 540 python3 .devsnap/bisect_lddt.py ${1:-none,+attention_half_key_blocks,pg_loop,-opm_residual_epilogue,ln_launches} > $OUT/callR.txt 2>&1
grep -E "^===|mean lDDT|difference|Error|error" $OUT/callR.txt
