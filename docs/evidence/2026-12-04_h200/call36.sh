#!/bin/bash
# call 36: today's h200 (with the structure-module layer compiled) against it without, 5 seeds
# each of the embedded default (10 trainer processes in parallel); the lDDT check on seed 1's
# last checkpoint (fp32 against today's h200 evaluation); bench train through the trainer
source scripts/gpu_env.sh
mkdir -p $OUT/seeds
for S in 20261129 1 2 3 4; do
  timeout 260 python3 -m scalefold.cli train --seed $S --speed h200 --no-compile-structure-module \
    --output-dir /tmp/b$S --mlperf-log $OUT/seeds/base$S.log > $OUT/seeds/base$S.txt 2>&1 &
  CK=""; [ $S = 1 ] && CK="--checkpoint-every-iters 20 --keep-last-checkpoints 1 --checkpoint-dir /tmp/ck"
  timeout 260 python3 -m scalefold.cli train --seed $S --speed h200 $CK \
    --output-dir /tmp/n$S --mlperf-log $OUT/seeds/new$S.log > $OUT/seeds/new$S.txt 2>&1 &
done
wait
for V in base new; do for S in 20261129 1 2 3 4; do
  echo "$V seed $S: $(grep -o 'iterations=[0-9]*' $OUT/seeds/$V$S.txt) $(PYTHONPATH=/tmp/site python3 -m mlperf_logging.compliance_checker --usage hpc --ruleset 3.0.0 $OUT/seeds/$V$S.log 2>&1 | tail -1)"
done; done > $OUT/call36_seeds.txt
cat $OUT/call36_seeds.txt
(cd $OUT && tar czf call36_seed_logs.tgz seeds && rm -rf seeds)
CKPT=$(ls -t /tmp/ck/*.pt | head -1); echo "checkpoint $CKPT"
timeout 120 python3 -m scalefold.cli bench eval --check-lddt --speed h200 --data-dir .cache/mini --preset small \
  --checkpoint $CKPT --val-chain-ids 5pti_A,3pwp_A,3pwp_B,3pwp_D --json $OUT/call36_check_lddt.json \
  > $OUT/call36_check_lddt.txt 2>&1
grep -v "^\s" $OUT/call36_check_lddt.txt | grep -v -i warn | tail -5
timeout 200 python3 -m scalefold.cli bench train --data-dir .cache/mini --speed h200 --num-workers 2 \
  --num-train-iters 50 --val-every-iters 30 --warmup 5 --no-eval-warm-up \
  --json $OUT/call36_train.json > $OUT/call36_train.txt 2>&1
grep -v "^\s" $OUT/call36_train.txt | grep -v -i warn | tail -22
