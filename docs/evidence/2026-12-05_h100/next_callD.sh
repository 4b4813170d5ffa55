#!/bin/bash
# call D (cache from call A): the single-pass update after its fixes (a gradient table
# reserved before each capture and kept; round-to-nearest math and PyTorch's powers): its
# GPU tests, bench step beside the preset, then (if the tests pass) 5 seeds with it
source scripts/gpu_env.sh
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "GPU: $GPU"
P=h200; case "$GPU" in *H100*) P=h100;; esac
timeout 60 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_optimizer.py tests/train/test_graphs.py \
  -k "single_pass or multi_tensor" > $OUT/callD_pytest.txt 2>&1
ok=$?
timeout 45 python3 -m pytest -q -p no:cacheprovider tests/bench/test_bench_eval.py -k graphs_measure 2>&1 | tail -1
grep -E "passed|failed|rror|^FAILED" $OUT/callD_pytest.txt | tail -8
timeout 300 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --recycles 0,3 --variants $P,$P+single_pass_update \
  --json $OUT/callD_step.json > $OUT/callD_step.txt 2>&1
grep -v -i -E "warn|softmax|split the|important use" $OUT/callD_step.txt | grep -v "^$" | tail -8
[ $ok -eq 0 ] || exit 0
mkdir -p $OUT/seeds
for S in 20261129 1 2 3 4; do
  timeout 215 python3 -m scalefold.cli train --seed $S --speed $P --single-pass-update --no-eval-compile-glue \
    --no-eval-warm-up --output-dir /tmp/n$S --mlperf-log $OUT/seeds/new$S.log > $OUT/seeds/new$S.txt 2>&1 &
done
wait
for S in 20261129 1 2 3 4; do
  echo "seed $S: $(grep -o 'iterations=[0-9]* reached_target=[A-Za-z]*' $OUT/seeds/new$S.txt) $(PYTHONPATH=/tmp/site python3 -m mlperf_logging.compliance_checker --usage hpc --ruleset 3.0.0 $OUT/seeds/new$S.log 2>&1 | grep -E 'SUCCESS|FAIL|ERROR' | tail -1)"
done > $OUT/callD_seeds.txt
cat $OUT/callD_seeds.txt
(cd $OUT && tar czf callD_seed_logs.tgz seeds && rm -rf seeds)
