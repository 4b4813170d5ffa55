#!/bin/bash
# Call S (an H200 preferred, ~6 min; after B): the 5-seed training check of the step with
# the no-gradient kernels in its recycling iterations (call B's winners as flags, e.g.
# bash .devsnap/callS.sh "--transition-forward-kernel --ln-projection-forward-kernel";
# default: all of EVAL_NO_GRAD_KERNELS), seed 1 with checkpoints, then the lDDT-Ca check
# of today's h200 evaluation with trained weights (its last checkpoint).
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
# the fields as `scalefold train` flags: the first argument, else the evaluation's six
E=$(python3 -c "from scalefold.train.config import EVAL_NO_GRAD_KERNELS as e; print(' '.join(e))")
FLAGS=${1:-$(for f in $E; do printf -- "--%s " "${f//_/-}"; done)}
echo "flags: $FLAGS"
mkdir -p $OUT/seeds
for S in 20261129 1 2 3 4; do
  CK=""
  [ $S = 1 ] && CK="--checkpoint-every-iters 20 --keep-last-checkpoints 1 --checkpoint-dir /tmp/ckS"
  timeout 240 python3 -m scalefold.cli train --seed $S --speed h200 $FLAGS $CK \
    --no-eval-compile-glue --no-eval-warm-up --output-dir /tmp/n$S \
    --mlperf-log $OUT/seeds/new$S.log > $OUT/seeds/new$S.txt 2>&1 &
done
wait
for S in 20261129 1 2 3 4; do
  echo "seed $S: $(grep -o 'iterations=[0-9]* reached_target=[A-Za-z]*' $OUT/seeds/new$S.txt) $(PYTHONPATH=/tmp/site python3 -m mlperf_logging.compliance_checker --usage hpc --ruleset 3.0.0 $OUT/seeds/new$S.log 2>&1 | grep -E 'SUCCESS|FAIL|ERROR' | tail -1)"
done > $OUT/callS_seeds.txt
cat $OUT/callS_seeds.txt
(cd $OUT && tar czf callS_seed_logs.tgz seeds && rm -rf seeds)
CKPT=$(ls -t /tmp/ckS/*.pt | head -1); echo "checkpoint $CKPT"
timeout 120 python3 -m scalefold.cli bench eval --check-lddt --speed h200 --data-dir .cache/mini \
  --preset small --checkpoint $CKPT --val-chain-ids 5pti_A,3pwp_A,3pwp_B,3pwp_D \
  --json $OUT/callS_check_lddt.json > $OUT/callS_check_lddt.txt 2>&1
grep -v "^\s" $OUT/callS_check_lddt.txt | grep -v -i warn | tail -5
