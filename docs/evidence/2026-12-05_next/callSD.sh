#!/bin/bash
# ~2 min, any card, low priority: the SDPA probe again (mb_sdpa.py, copy it too), now with
# q, k, v contiguous, the per-head bias also expanded over the batch, and the reasons
# the backends give when they refuse (the twenty-first session's run filtered them out).
# If cuDNN takes the one-bias form (the folded mask) faster than ours, an AttentionCore
# for it is worth building.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 200 python3 .devsnap/mb_sdpa.py 224 704 2>&1 | tee $OUT/callSD_sdpa.txt | grep -v -E "^\s+return F|UserWarning" | tail -40
