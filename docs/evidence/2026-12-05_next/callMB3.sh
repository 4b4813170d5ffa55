#!/bin/bash
# ~3 min, any card: the fused transition against today's path with a launch sweep
# (mb_transition.py; copy it into .devsnap/ too). Make the best launch DEFAULT_LAUNCH in
# scalefold/kernels/fused_transition.py; since the twenty-second session also the MSA
# transition (c = 256, over MAX_WIDTH): raise MAX_WIDTH to 256 if the kernel wins there.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 240 python3 .devsnap/mb_transition.py 2>&1 | grep -v -i warn | tee $OUT/callMB3.txt | tail -30
