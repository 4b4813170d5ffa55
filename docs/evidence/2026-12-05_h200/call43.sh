#!/bin/bash
# call 43: 5 seeds of the embedded default with h200 and the adopted candidates (set FLAGS),
# five trainer processes in parallel; evaluation eager so initialisation fits (training
# arithmetic is the preset's plus the flags), then the compliance checker on every log
source scripts/gpu_env.sh
FLAGS=${FLAGS:---attention-fused-logits --attention-precomputed-delta --trimul-bias-in-gating --trimul-gating-kernel}
mkdir -p $OUT/seeds
for S in 20261129 1 2 3 4; do
  timeout 400 python3 -m scalefold.cli train --seed $S --speed h200 $FLAGS --no-eval-compile-glue \
    --no-eval-warm-up --output-dir /tmp/n$S --mlperf-log $OUT/seeds/new$S.log > $OUT/seeds/new$S.txt 2>&1 &
done
wait
for S in 20261129 1 2 3 4; do
  echo "seed $S: $(grep -o 'iterations=[0-9]* reached_target=[A-Za-z]*' $OUT/seeds/new$S.txt) $(PYTHONPATH=/tmp/site python3 -m mlperf_logging.compliance_checker --usage hpc --ruleset 3.0.0 $OUT/seeds/new$S.log 2>&1 | grep -E 'SUCCESS|FAIL|ERROR' | tail -1)"
done > $OUT/call43_seeds.txt
cat $OUT/call43_seeds.txt
(cd $OUT && tar czf call43_seed_logs.tgz seeds && rm -rf seeds)
