#!/bin/bash
# ~5 min, any card: the attention forward against PyTorch's SDPA backends at the
# evaluation's signatures (mb_sdpa.py: is a cuDNN or memory-efficient core worth
# building?), then the LayerNorm-projection micro-benchmark (mb_ln2.py). Copy both .py
# files into .devsnap/ too.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 200 python3 .devsnap/mb_sdpa.py 224 448 704 2>&1 | grep -v -i warn | tee $OUT/callMB2_sdpa.txt | grep -v "^    " | tail -40
timeout 200 python3 .devsnap/mb_ln2.py 2>&1 | grep -v -i warn | tee $OUT/callMB2_ln.txt | tail -30
