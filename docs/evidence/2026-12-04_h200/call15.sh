#!/bin/bash
# call 15: GPU tests not yet run (bucketed capture over NCCL, OPM kernel on row blocks, eval),
# profiles of today's h200: evaluation of a 700-residue chain, the step (n=0 and one recycle)
source scripts/gpu_env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
timeout 230 python3 -m pytest -q -p no:cacheprovider tests/train/test_graphs.py tests/train/test_evaluate.py \
  tests/kernels/test_kernels.py -k "graph or eval or opm or bucket" 2>&1 | tee $OUT/call15_pytest.txt | tail -8
timeout 150 python3 -m scalefold.cli bench eval --speed h200 --no-eval-warm-up --passes 1 --lengths 700 \
  --profile-length 700 > $OUT/call15_eval_profile700.txt 2>&1
tail -45 $OUT/call15_eval_profile700.txt
timeout 200 python3 -m scalefold.cli bench step --preset mlperf --device cuda --no-flops --warmup 1 --steps 2 \
  --recycles 0,1 --variants h200+cuda_graphs=0 --profile > $OUT/call15_step_profile.txt 2>&1
tail -60 $OUT/call15_step_profile.txt
