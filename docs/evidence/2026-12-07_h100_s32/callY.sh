#!/bin/bash
# Call Y (any card, ~4 min): lDDT-Ca of today's h200 evaluation against fp32 with trained
# weights, on the 4 mini chains (5pti_A, 3pwp_A, 3pwp_B, 3pwp_D), at the default features
# and at the features the embedded default trains with. Weights: the checkpoint in
# .devck (`scripts/device_prep.sh --checkpoint` trains seed 1 to its target on the CPU,
# ~7 min; the thirtieth session's call T), else seed 1 trained here with --speed h200
# (its compile takes over 120 s without a cache: the thirtieth session's callR2 lost its
# call to it). --check-lddt runs plain PyTorch at bf16 beside (`lddt_verdict`).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
CKPT=$(ls -t .devck/*.pt 2>/dev/null | head -1)
if [[ -z $CKPT ]]; then
  timeout -k 10 300 python3 -m scalefold.cli train --seed 1 --speed h200 --no-eval-compile-glue \
    --no-eval-compile-structure-module --no-eval-warm-up \
    --checkpoint-every-iters 20 --keep-last-checkpoints 1 --checkpoint-dir /tmp/ckY \
    --output-dir /tmp/cY --mlperf-log $OUT/callY_seed1.log > $OUT/callY_seed1.txt 2>&1
  grep -o 'iterations=[0-9]* reached_target=[A-Za-z]*' $OUT/callY_seed1.txt; tail -2 $OUT/callY_seed1.txt
  CKPT=$(ls -t /tmp/ckY/*.pt | head -1)
fi
echo "checkpoint $CKPT"
for features in default trained; do
  extra=(); [[ $features == trained ]] && extra=(--max-msa-clusters 16 --max-extra-msa 32 --num-recycling-iters 0)
  timeout -k 5 150 python3 -m scalefold.cli bench eval --check-lddt --speed h200 --data-dir .cache/mini \
    --preset small --checkpoint $CKPT --val-chain-ids 5pti_A,3pwp_A,3pwp_B,3pwp_D "${extra[@]}" \
    --json $OUT/callY_check_lddt_$features.json > $OUT/callY_check_lddt_$features.txt 2>&1
  grep -v "^\s" $OUT/callY_check_lddt_$features.txt | grep -v -i warn | tail -6
done
