#!/bin/bash
source scripts/gpu_env.sh
P=h200
mkdir -p $OUT/seeds
for S in 20261129 1 2 3 4; do
  timeout 220 python3 -m scalefold.cli train --seed $S --speed $P --single-pass-update --layer-norm-bwd-stream \
    --no-eval-compile-glue --no-eval-warm-up --output-dir /tmp/n$S \
    --mlperf-log $OUT/seeds/new$S.log > $OUT/seeds/new$S.txt 2>&1 &
done
wait
for S in 20261129 1 2 3 4; do
  echo "seed $S: $(grep -o 'iterations=[0-9]* reached_target=[A-Za-z]*' $OUT/seeds/new$S.txt) $(PYTHONPATH=/tmp/site python3 -m mlperf_logging.compliance_checker --usage hpc --ruleset 3.0.0 $OUT/seeds/new$S.log 2>&1 | grep -E 'SUCCESS|FAIL|ERROR' | tail -1)"
done > $OUT/call2_seeds.txt
cat $OUT/call2_seeds.txt
(cd $OUT && tar czf call2_seed_logs.tgz seeds && rm -rf seeds)
timeout 330 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops \
  --warmup 1 --steps 2 --recycles 0,3 \
  --variants h200,h200+single_pass_update+layer_norm_bwd_stream \
  --json $OUT/call2_step.json > $OUT/call2_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/call2_step.txt | grep -v "^$" | tail -6
