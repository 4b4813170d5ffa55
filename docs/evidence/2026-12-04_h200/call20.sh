#!/bin/bash
# call 20: GPU tests of the stacked projections / q scale / strided gate; bench step h200
# against h200 + attention_stacked_projections + cached_weight_casts (one process); then
# 5 seeds of each (10 trainer processes in parallel on the GPU)
source scripts/gpu_env.sh
timeout 80 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_kernels.py tests/kernels/test_projections.py \
  tests/kernels/test_linear.py -k "scales_q or strided_gate or stacked_projection or sigmoid_gate or forward_only or bf16_benchmark_shapes or projections or cached" 2>&1 | tee $OUT/call20_pytest.txt | tail -2
timeout 300 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 \
  --steps 2 --variants h200,h200+attention_stacked_projections+cached_weight_casts \
  --json $OUT/call20_step.json > $OUT/call20_step.txt 2>&1
tail -3 $OUT/call20_step.txt
mkdir -p $OUT/seeds
for S in 20261129 1 2 3 4; do
  timeout 230 python3 -m scalefold.cli train --seed $S --speed h200 --output-dir /tmp/b$S \
    --mlperf-log $OUT/seeds/base$S.log > $OUT/seeds/base$S.txt 2>&1 &
  timeout 230 python3 -m scalefold.cli train --seed $S --speed h200 --attention-stacked-projections \
    --cached-weight-casts --output-dir /tmp/o$S --mlperf-log $OUT/seeds/new$S.log > $OUT/seeds/new$S.txt 2>&1 &
done
wait
for V in base new; do for S in 20261129 1 2 3 4; do
  echo "$V seed $S: $(grep -o 'iterations=[0-9]*' $OUT/seeds/$V$S.txt) $(PYTHONPATH=/tmp/site python3 -m mlperf_logging.compliance_checker --usage hpc --ruleset 3.0.0 $OUT/seeds/$V$S.log 2>&1 | tail -1)"
done; done > $OUT/call20_seeds.txt
cat $OUT/call20_seeds.txt
(cd $OUT && tar czf seeds.tgz seeds && rm -rf seeds)
