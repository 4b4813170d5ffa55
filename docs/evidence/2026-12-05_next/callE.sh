#!/bin/bash
# Next session, call E (any Hopper; ~2 min): the evaluation's compiled triangle
# multiplication gating, dynamic against static shapes, and the dynamic kernel's index
# arithmetic (97 us a call at 224 residues on the H100 where its traffic takes ~23 us).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 300 python3 docs/evidence/2026-12-05_next/trimul_gating_probe.py 224 448 \
  > $OUT/callE_probe.txt 2>&1
grep -v -i -E "warn" $OUT/callE_probe.txt | tail -60
