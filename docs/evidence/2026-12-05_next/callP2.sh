#!/bin/bash
# A 224-residue chain's kernel profile (~4 min), with the table of matrix products against
# their roofline floor: h200 and h200 with the levers named in $1 (e.g.
# ln_projection_forward_kernel+attention_gate_epilogue). `--warm-up-max-length 224`: the
# preset's warm-up otherwise warms all 44 buckets up to 700 residues (~190 s), which
# ended the twentieth session's profile call before it began.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
X=${1:?usage: callP2.sh LEVERS}
timeout 300 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --lengths 224 \
  --warm-up-max-length 224 --profile-length 224 --variants h200,h200+$X \
  > $OUT/callP2_profile.txt 2>&1
grep -E "^==|TFLOP in|^GEMMs|LayerNorm|sigmoid gates|matmul|attention forward|ln_linear" $OUT/callP2_profile.txt | head -24
