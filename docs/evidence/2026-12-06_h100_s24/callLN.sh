#!/bin/bash
# Call LN (any card, ~6 min): the LayerNorm-projection kernel's launch sweep at the
# evaluation's calls (mb_ln3.py), 224 and 704 residues: bandwidth reached and the best
# launch per call, for a per-call launch table in scalefold/kernels/ln_linear.py; then the
# projection-gating kernel's loop form against its launch today (mb_projection_gating.py).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 420 python3 .devsnap/mb_ln3.py 224 704 2>&1 | grep -v -i warn | tee $OUT/callLN.txt
timeout 120 python3 .devsnap/mb_projection_gating.py 2>&1 | grep -v -i warn | tee $OUT/callLN_gating.txt
