#!/bin/bash
# Call Y (any card, ~5 min; twenty-fifth session, a second check added in the twenty-sixth): lDDT-Ca of today's h200 evaluation
# (the outer product mean's epilogue adopted) against fp32 with trained weights: seed 1
# of the embedded default trained with --speed h200 to its target (checkpoints every 20
# steps), then the check on its last checkpoint's SWA weights, 4 mini chains.
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
timeout 120 python3 -m scalefold.cli train --seed 1 --speed h200 --no-eval-compile-glue \
  --no-eval-compile-structure-module --no-eval-warm-up \
  --checkpoint-every-iters 20 --keep-last-checkpoints 1 --checkpoint-dir /tmp/ckY \
  --output-dir /tmp/cY --mlperf-log $OUT/callY_seed1.log > $OUT/callY_seed1.txt 2>&1
grep -o 'iterations=[0-9]* reached_target=[A-Za-z]*' $OUT/callY_seed1.txt; tail -2 $OUT/callY_seed1.txt
CKPT=$(ls -t /tmp/ckY/*.pt | head -1); echo "checkpoint $CKPT"
timeout 100 python3 -m scalefold.cli bench eval --check-lddt --speed h200 --data-dir .cache/mini \
  --preset small --checkpoint $CKPT --val-chain-ids 5pti_A,3pwp_A,3pwp_B,3pwp_D \
  --json $OUT/callY_check_lddt.json > $OUT/callY_check_lddt.txt 2>&1
grep -v "^\s" $OUT/callY_check_lddt.txt | grep -v -i warn | tail -5
# The same check at the features the model was trained with (the embedded default: 16
# clusters, 32 extra sequences, no recycling): its structures there are real (training's
# evaluation reached lDDT-Ca 0.80 on 5pti_A), so the comparison means more.
timeout 100 python3 -m scalefold.cli bench eval --check-lddt --speed h200 --data-dir .cache/mini \
  --preset small --checkpoint $CKPT --val-chain-ids 5pti_A,3pwp_A,3pwp_B,3pwp_D \
  --max-msa-clusters 16 --max-extra-msa 32 --num-recycling-iters 0 \
  --json $OUT/callY_check_lddt_trained_features.json > $OUT/callY_check_lddt_trained_features.txt 2>&1
grep -v "^\s" $OUT/callY_check_lddt_trained_features.txt | grep -v -i warn | tail -5
