cd /work/main && . .venv/bin/activate
for t in default 1; do
  d=/tmp/rt_$t; rm -rf $d; mkdir -p $d
  if [ $t = default ]; then unset OMP_NUM_THREADS; else export OMP_NUM_THREADS=$t; fi
  s=$(date +%s.%N)
  SCALEFOLD_NO_SETUP=1 SEED=20261129 LOGDIR=$d RUNDIR=$d/runs EXP_ID=1 bash run_and_time.sh > $d/out.txt 2>&1
  rc=$?; e=$(date +%s.%N)
  echo "$t rc=$rc wall=$(echo "$e - $s" | bc) $(grep '^RESULT' $d/out.txt)" >> /tmp/rt_threads.txt
done
