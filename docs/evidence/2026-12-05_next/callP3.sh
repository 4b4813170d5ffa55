#!/bin/bash
# Twenty-second session, call P3 (any card, ~6 min): where today's h200 evaluation spends
# a 224- and a 704-residue chain (kernel families, the largest kernels, by module, the
# matrix products against their roofline), for the next lever. No warm-up (one chain,
# one graph each); the profile runs without graphs.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
for L in 224 704; do
  timeout 270 python3 -m scalefold.cli bench eval --speed h200 --passes 1 --no-eval-warm-up \
    --lengths $L --profile-length $L > $OUT/callP3_profile$L.txt 2>&1
  grep -E "^one evaluation|TFLOP in|^ +(attention|matmul|LayerNorm|compiled|elementwise|copy|ln_linear|triton)" $OUT/callP3_profile$L.txt | head -16
done
