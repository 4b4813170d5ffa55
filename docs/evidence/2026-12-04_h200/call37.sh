#!/bin/bash
# call 37: 5 seeds of the embedded default with today's h200 (the structure-module layer
# compiled), 5 trainer processes in parallel; the evaluation eager (no glue compile, no
# warm-up) so that initialisation fits the call: the training arithmetic is the preset's
source scripts/gpu_env.sh
mkdir -p $OUT/seeds
for S in 20261129 1 2 3 4; do
  timeout 195 python3 -m scalefold.cli train --seed $S --speed h200 --no-eval-compile-glue \
    --no-eval-warm-up --output-dir /tmp/n$S --mlperf-log $OUT/seeds/new$S.log > $OUT/seeds/new$S.txt 2>&1 &
done
wait
for S in 20261129 1 2 3 4; do
  echo "new seed $S: $(grep -o 'iterations=[0-9]* reached_target=[A-Za-z]*' $OUT/seeds/new$S.txt) $(PYTHONPATH=/tmp/site python3 -m mlperf_logging.compliance_checker --usage hpc --ruleset 3.0.0 $OUT/seeds/new$S.log 2>&1 | grep -E 'SUCCESS|FAIL|ERROR' | tail -1)"
done > $OUT/call37_seeds.txt
cat $OUT/call37_seeds.txt
(cd $OUT && tar czf call37_seed_logs.tgz seeds && rm -rf seeds)
