"""System descriptions, launch configs, launch scripts and the Dockerfile."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scalefold.mlperf import parse_log, run_compliance_checker
from scalefold.train.config import SpeedConfig

REPO = Path(__file__).resolve().parents[2]
SYSTEMS = REPO / "systems"
JSONS = sorted(SYSTEMS.glob("*.json"))
CONFIGS = sorted(SYSTEMS.glob("config_*.sh"))
SYSTEM_CONFIGS = [p for p in CONFIGS if p.name != "config_common.sh"]
SCRIPTS = [*CONFIGS, SYSTEMS / "run.sub", SYSTEMS / "run_torchrun.sh", SYSTEMS / "run_mpirun.sh",
           SYSTEMS / "launch_common.sh"]
CONFIG_VARS = (
    "DGXNNODES",
    "DGXNGPU",
    "DGXSYSTEM",
    "WALLTIME",
    "NEXP",
    "LOCAL_BATCH_SIZE",
    "DAP_SIZE",
    "NUM_ASYNC_VAL_RANKS",
    "BASE_LR",
    "WARMUP_LR_INIT",
    "WARMUP_LR_ITERS",
    "PRECISION",
    "INITIAL_TRAINING_DATALOADER_TYPE",
)


def load_config(path: Path) -> dict[str, str]:
    script = f'source "{path}" && ' + " && ".join(f'echo "{v}=${{{v}}}"' for v in CONFIG_VARS)
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    out = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True, env=env
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


# --- system descriptions -----------------------------------------------------------------


def test_every_system_json_passes_the_official_checker(tmp_path: Path) -> None:
    assert {p.stem for p in JSONS} >= {
        "dgxh100_n1",
        "dgxh100_n16",
        "dgxh100_n64",
        "dgxh100_n256",
        "dgxh100_n260",
        "h200_n1",
    }
    for path in JSONS:
        proc = subprocess.run(
            [sys.executable, "-m", "mlperf_logging.system_desc_checker", str(path), "hpc",
             "3.0.0", "--log_output", str(tmp_path / "sd.log")],
            capture_output=True, text=True, cwd=tmp_path, check=False,
        )  # fmt: skip
        assert "System description checker passed" in proc.stdout + proc.stderr, path.name


@pytest.mark.parametrize("path", JSONS, ids=lambda p: p.name)
def test_system_json_fields(path: Path) -> None:
    desc = json.loads(path.read_text())
    assert len(desc) == 33
    assert desc["division"] in ("closed", "open") and desc["status"] in (
        "onprem", "cloud", "preview", "research",
    )  # fmt: skip
    # the result summarizer multiplies these with int(): strings of integers
    for key in ("number_of_nodes", "host_processors_per_node", "accelerators_per_node"):
        assert isinstance(desc[key], str) and int(desc[key]) >= 0, key
    assert isinstance(desc["host_processor_core_count"], str)  # joined into a CSV row
    if path.stem.startswith("dgxh100_n"):
        nodes = int(path.stem.split("_n")[1])
        assert desc["number_of_nodes"] == str(nodes)
        assert desc["system_name"] == f"{nodes}xNVIDIA DGX H100"
        assert desc["accelerators_per_node"] == "8" and desc["host_processors_per_node"] == "2"
        assert desc["host_processor_model_name"] == "Intel(R) Xeon(R) Platinum 8480C"
        assert desc["host_memory_capacity"] == "2 TB"
        assert "400 Gb/s InfiniBand NDR" in desc["host_networking"]
        assert desc["accelerator_model_name"] == "NVIDIA H100-SXM5-80GB"
    if path.stem == "h200_n1":
        assert desc["accelerator_model_name"] == "NVIDIA H200"
        assert desc["host_processor_core_count"] == "16"
        assert desc["host_memory_capacity"] == "128 GiB"


# --- launch configs ----------------------------------------------------------------------


@pytest.mark.parametrize("path", SYSTEM_CONFIGS, ids=lambda p: p.name)
def test_config_exports_everything_and_matches_its_system(path: Path) -> None:
    cfg = load_config(path)
    assert all(cfg[v] != "" for v in CONFIG_VARS), cfg
    assert path.name == f"config_{cfg['DGXSYSTEM']}.sh"
    desc = json.loads((SYSTEMS / f"{cfg['DGXSYSTEM']}.json").read_text())
    assert desc["number_of_nodes"] == cfg["DGXNNODES"]
    assert cfg["PRECISION"] in ("fp32", "tf32", "bf16")
    assert cfg["INITIAL_TRAINING_DATALOADER_TYPE"] in (
        "InitialTrainingDataloaderPT", "InitialTrainingDataloaderPQ",
    )  # fmt: skip
    assert float(cfg["BASE_LR"]) > 0 and float(cfg["WARMUP_LR_INIT"]) >= 0
    assert int(cfg["WARMUP_LR_ITERS"]) >= 0
    nodes, gpus = int(cfg["DGXNNODES"]), int(cfg["DGXNGPU"])
    dap, evals = int(cfg["DAP_SIZE"]), int(cfg["NUM_ASYNC_VAL_RANKS"])
    trainers = nodes * gpus - evals
    assert trainers > 0 and trainers % dap == 0
    global_batch = trainers // dap * int(cfg["LOCAL_BATCH_SIZE"])
    if desc["division"] == "closed" and nodes > 1:
        # batches with a reference convergence point (rcps_openfold.json)
        assert global_batch in (128, 256), global_batch
    if cfg["DGXSYSTEM"] == "dgxh100_n260":
        assert (dap, evals, global_batch) == (8, 32, 256)  # NVIDIA's v3.0 shape
        assert cfg["NEXP"] == "10"


def test_config_values_can_be_overridden() -> None:
    env = {**os.environ, "DAP_SIZE": "4", "NEXP": "3"}
    out = subprocess.run(
        ["bash", "-c", f'source "{SYSTEMS / "config_dgxh100_n260.sh"}"; echo $DAP_SIZE $NEXP'],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    assert out.split() == ["4", "3"]


# --- scripts -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse_and_pass_shellcheck(path: Path) -> None:
    subprocess.run(["bash", "-n", str(path)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed")
    proc = subprocess.run(
        ["shellcheck", "-x", "-s", "bash", str(path)],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout


STUB = """#!/bin/bash
# stands in for the real run_and_time.sh: records its environment, prints a run's log
set -euo pipefail
rank=${RANK:-${OMPI_COMM_WORLD_RANK:-}}
echo "rank=${rank} world=${WORLD_SIZE:-${OMPI_COMM_WORLD_SIZE:-}} DATADIR=${DATADIR:-} \
LOGDIR=${LOGDIR} CHECKPOINT=${CHECKPOINT:-} SEED=${SEED} EXP_ID=${EXP_ID} \
CLEAR_CACHES=${CLEAR_CACHES}" >> "$STUB_RECORD"
if [[ -n "${STUB_DISCOVER:-}" ]]; then  # what the trainer would make of this environment
    "$STUB_PYTHON" -c 'from scalefold.train.distributed import discover as d; e = d(); \
print(f"discover: {e.launcher} {e.rank} {e.world_size} {e.local_rank} {e.master_addr}")' \
        >> "$STUB_RECORD"
fi
echo "unrelated output"
if [[ "${rank:-0}" == 0 ]]; then
    "$STUB_PYTHON" -m tests.mlperf.logbuild
fi
"""

FAKE_SRUN = """#!/bin/bash
# srun stand-in: drops the options, runs the command once as task 0
label=0
while [[ $# -gt 0 && "$1" == -* ]]; do
    case "$1" in
        -l) label=1 ;;
        --chdir=*) cd "${1#--chdir=}" ;;
        --container-*) echo "fake srun: no containers" >&2; exit 97 ;;
    esac
    shift
done
echo "$*" >> "$SRUN_RECORD"
if (( label )); then "$@" 2>&1 | sed 's/^/0: /'; exit "${PIPESTATUS[0]}"; fi
exec "$@"
"""


FAKE_MPIRUN = """#!/bin/bash
# mpirun stand-in: records its arguments and starts -np copies of the command with Open
# MPI's rank variables, each in the environment a rank on another node gets: only what -x
# passed, plus the variables of the Slurm allocation mpirun runs in
set -euo pipefail
echo "$*" >> "$MPIRUN_RECORD"
np=1
passed=()
while [[ $# -gt 0 && "$1" == -* ]]; do
    case "$1" in
        -np | -n) np=$2; shift ;;
        -x) [[ "$2" == *=* ]] || { echo "fake mpirun: give -x NAME=VALUE" >&2; exit 97; }
            passed+=("$2"); shift ;;
        --bind-to | --host | --hostfile | --map-by) shift ;;
        --mca) shift 2 ;;
        --allow-run-as-root | --oversubscribe) ;;
        *) echo "fake mpirun: unknown option $1" >&2; exit 97 ;;
    esac
    shift
done
inherited=()
while read -r name; do inherited+=("${name}=${!name}"); done < <(compgen -e | grep '^SLURM_' || true)
pids=()
for (( r = 0; r < np; r++ )); do
    env -i "${inherited[@]}" "${passed[@]}" OMPI_COMM_WORLD_RANK="$r" OMPI_COMM_WORLD_SIZE="$np" \
        OMPI_COMM_WORLD_LOCAL_RANK="$r" OMPI_COMM_WORLD_LOCAL_SIZE="$np" "$@" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit "$status"
"""


@pytest.fixture()
def fake_checkout(tmp_path: Path) -> dict:
    """A checkout with the real launch scripts and a stub run_and_time.sh."""
    root = tmp_path / "checkout"
    (root / "systems").mkdir(parents=True)
    for name in ("run.sub", "run_torchrun.sh", "run_mpirun.sh", "launch_common.sh"):
        shutil.copy2(SYSTEMS / name, root / "systems" / name)
    (root / "run_and_time.sh").write_text(STUB)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    (bin_dir / "mpirun").write_text(FAKE_MPIRUN)
    (bin_dir / "mpirun").chmod(0o755)
    env = {
        **{k: v for k, v in os.environ.items() if k not in CONFIG_VARS and k != "SEED"},
        "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "STUB_PYTHON": sys.executable,
        "PYTHON": sys.executable,
        "STUB_RECORD": str(tmp_path / "stub.txt"),
        "SRUN_RECORD": str(tmp_path / "srun.txt"),
        "MPIRUN_RECORD": str(tmp_path / "mpirun.txt"),
        "CLEAR_CACHES": "0",  # never drop the page cache of the machine running the tests
    }
    return {"root": root, "env": env, "tmp": tmp_path}


def _results(logdir: Path) -> list[Path]:
    return sorted(logdir.glob("result_*.txt"))


def test_run_sub_under_fake_slurm(fake_checkout: dict) -> None:
    root, tmp = fake_checkout["root"], fake_checkout["tmp"]
    data = tmp / "data"
    data.mkdir()
    (data / "mlperf_hpc_openfold_resumable_checkpoint.pt").write_bytes(b"x")
    logdir = tmp / "results" / "dgxh100_n1" / "strong" / "openfold"
    env = {
        **fake_checkout["env"],
        "DGXSYSTEM": "dgxh100_n1",
        "DGXNNODES": "1",
        "DGXNGPU": "1",
        "DATADIR": str(data),
        "LOGDIR": str(logdir),
        "NEXP": "2",
        "SEED": "41",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_JOB_ID": "77",
        "SLURM_SUBMIT_DIR": str(root),
        "CLEAR_CACHES": "1",
        "DROPCACHE_CMD": "true",
    }
    proc = subprocess.run(
        ["bash", str(root / "systems" / "run.sub")],
        capture_output=True, text=True, env=env, cwd=tmp, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = _results(logdir)
    assert len(results) == 2
    seeds = [next(ln.value for ln in parse_log(r) if ln.key == "seed") for r in results]
    assert seeds == [41, 42]
    for r in results:
        assert run_compliance_checker(r).ok
        assert r.read_text().startswith(":::MLLOG ")  # srun's task labels stripped
        assert next(ln.value for ln in parse_log(r) if ln.key == "cache_clear") is True
    raw = sorted((logdir / "raw").glob("slurm_*.log"))
    assert len(raw) == 2 and "0: :::MLLOG" in raw[0].read_text()
    assert len(list((logdir / "raw").glob("compliance_*.out"))) == 2
    record = (tmp / "stub.txt").read_text().splitlines()
    assert f"DATADIR={data} LOGDIR={logdir} " in record[0]
    assert f"CHECKPOINT={data}/mlperf_hpc_openfold_resumable_checkpoint.pt" in record[0]
    assert record[0].endswith("SEED=41 EXP_ID=1 CLEAR_CACHES=1")
    assert record[1].endswith("SEED=42 EXP_ID=2 CLEAR_CACHES=1")
    srun_calls = (tmp / "srun.txt").read_text()
    assert "mlperf_logging.compliance_checker --usage hpc --ruleset 3.0.0" in srun_calls


def test_run_sub_refuses_a_wrong_allocation(fake_checkout: dict) -> None:
    env = {
        **fake_checkout["env"],
        "DGXSYSTEM": "dgxh100_n16",
        "DGXNNODES": "16",
        "DGXNGPU": "8",
        "DATADIR": str(fake_checkout["tmp"]),
        "LOGDIR": str(fake_checkout["tmp"] / "logs"),
        "SLURM_JOB_NUM_NODES": "2",
    }
    proc = subprocess.run(
        ["bash", str(fake_checkout["root"] / "systems" / "run.sub")],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "wants 16" in proc.stderr
    del env["DATADIR"]
    proc = subprocess.run(
        ["bash", str(fake_checkout["root"] / "systems" / "run.sub")],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "DATADIR" in proc.stderr


def test_run_torchrun_single_process_and_torchrun(fake_checkout: dict) -> None:
    root, tmp = fake_checkout["root"], fake_checkout["tmp"]
    env = {**fake_checkout["env"], "NEXP": "2", "SEED": "7"}
    proc = subprocess.run(
        ["bash", str(root / "systems" / "run_torchrun.sh")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    logdir = root / "results" / "local" / "strong" / "openfold"
    results = _results(logdir)
    assert len(results) == 2 and all(run_compliance_checker(r).ok for r in results)
    record = (tmp / "stub.txt").read_text().splitlines()
    # no DATADIR given: run_and_time.sh is left to run its embedded default
    assert record[0].startswith("rank= world= DATADIR= ") and "SEED=7 EXP_ID=1" in record[0]

    # two processes through torchrun: ranks and world size reach run_and_time.sh
    config = tmp / "config_two.sh"
    config.write_text("export DGXSYSTEM=two DGXNGPU=2 NEXP=1 SEED=100\n")
    (tmp / "stub.txt").unlink()
    proc = subprocess.run(
        ["bash", str(root / "systems" / "run_torchrun.sh"), str(config)],
        capture_output=True, text=True, env=env, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = sorted((tmp / "stub.txt").read_text().splitlines())
    assert [r.split(" DATADIR")[0] for r in record] == ["rank=0 world=2", "rank=1 world=2"]
    (result,) = _results(root / "results" / "two" / "strong" / "openfold")
    assert next(ln.value for ln in parse_log(result) if ln.key == "seed") == 100


def test_run_mpirun_ranks_get_their_environment_and_mpi_ranks(fake_checkout: dict) -> None:
    """Two ranks through (a stand-in for) mpirun inside a Slurm allocation: each rank sees
    only what -x passes, and the trainer's rank discovery takes the MPI ranks, not the
    inherited SLURM_PROCID."""
    root, tmp = fake_checkout["root"], fake_checkout["tmp"]
    data = tmp / "data"
    data.mkdir()
    config = tmp / "config_two.sh"
    config.write_text("export DGXSYSTEM=two DGXNGPU=2 NEXP=2 SEED=100 SPEEDUPS='--a --b'\n"
                      "export NCCL_DEBUG=INFO\n")
    env = {
        **fake_checkout["env"],
        "DATADIR": str(data),
        "MPIRUN_EXPORT": "STUB_RECORD STUB_PYTHON STUB_DISCOVER",
        "STUB_DISCOVER": "1",
        # the batch step of an sbatch job: what every process started in it inherits
        "SLURM_JOB_ID": "77", "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0",
        "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "node001",
    }
    proc = subprocess.run(
        ["bash", str(root / "systems" / "run_mpirun.sh"), str(config)],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    logdir = root / "results" / "two" / "strong" / "openfold"
    results = _results(logdir)
    assert len(results) == 2 and all(run_compliance_checker(r).ok for r in results)
    seeds = [next(ln.value for ln in parse_log(r) if ln.key == "seed") for r in results]
    assert seeds == [100, 101]
    assert len(list((logdir / "raw").glob("mpirun_*.log"))) == 2
    record = (tmp / "stub.txt").read_text().splitlines()
    ranks = sorted(r for r in record if r.startswith("rank="))
    assert [r.split(" DATADIR")[0] for r in ranks] == ["rank=0 world=2"] * 2 + \
        ["rank=1 world=2"] * 2
    for r in ranks:
        assert f"DATADIR={data} LOGDIR={logdir} " in r
        assert f"CHECKPOINT={data}/mlperf_hpc_openfold_resumable_checkpoint.pt" in r
    assert sum("SEED=100 EXP_ID=1" in r for r in ranks) == 2
    assert sum("SEED=101 EXP_ID=2" in r for r in ranks) == 2
    # SLURM_PROCID=0 on every rank, yet each finds its own MPI rank (and, on one node,
    # the rendezvous on this host that the script passes)
    found = sorted(r for r in record if r.startswith("discover:"))
    assert found == ["discover: mpi 0 2 0 127.0.0.1"] * 2 + ["discover: mpi 1 2 1 127.0.0.1"] * 2
    calls = (tmp / "mpirun.txt").read_text().splitlines()
    assert len(calls) == 2
    for needed in ("-np 2 --bind-to none", "-x DGXSYSTEM=two", "-x SPEEDUPS=--a --b",
                   "-x NCCL_DEBUG=INFO", "-x MASTER_ADDR=127.0.0.1", "-x MASTER_PORT=29500",
                   f"-x PYTHONPATH={REPO}", f"bash {root}/run_and_time.sh"):
        assert needed in calls[0], needed


def test_run_mpirun_hosts_and_refusals(fake_checkout: dict) -> None:
    root, tmp = fake_checkout["root"], fake_checkout["tmp"]
    script = str(root / "systems" / "run_mpirun.sh")
    base = {**fake_checkout["env"], "CHECK_COMPLIANCE": "0", "NEXP": "1",
            "MPIRUN_EXPORT": "STUB_RECORD STUB_PYTHON"}
    base = {k: v for k, v in base.items() if not k.startswith("SLURM_")}
    # Several nodes need to know where: refused before anything runs.
    two_nodes = {**base, "DGXSYSTEM": "big", "DGXNNODES": "2", "DGXNGPU": "2"}
    proc = subprocess.run(["bash", script], capture_output=True, text=True, env=two_nodes,
                          check=False)
    assert proc.returncode == 2 and "MPI_HOSTS" in proc.stderr
    assert not (tmp / "mpirun.txt").exists()
    # A host file, or a --host list. On several nodes no MASTER_ADDR is made up: the ranks
    # learn rank 0's host over MPI (mpi4py), or the caller gives MASTER_ADDR.
    hostfile = tmp / "hosts"
    hostfile.write_text("node1 slots=2\nnode2 slots=2\n")
    for hosts, expected in ((str(hostfile), f"--hostfile {hostfile}"),
                            ("node1:2,node2:2", "--host node1:2,node2:2")):
        proc = subprocess.run(["bash", script], capture_output=True, text=True,
                              env={**two_nodes, "MPI_HOSTS": hosts}, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        call = (tmp / "mpirun.txt").read_text().splitlines()[-1]
        assert call.startswith("-np 4 --bind-to none") and expected in call
        assert "MASTER_ADDR" not in call
    proc = subprocess.run(["bash", script], capture_output=True, text=True,
                          env={**base, "MPIRUN": "no-such-mpirun"}, check=False)
    assert proc.returncode == 2 and "no-such-mpirun not found" in proc.stderr


# --- Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_has_what_the_image_needs() -> None:
    text = (REPO / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0].startswith("ARG FROM_IMAGE_NAME=nvcr.io/nvidia/pytorch:24.")
    assert lines[0].endswith("-py3") and lines[1] == "FROM ${FROM_IMAGE_NAME}"
    assert "ARG KALIGN_VERSION=3.3.5" in lines
    assert "TimoLassmann/kalign/archive/refs/tags/v${KALIGN_VERSION}.tar.gz" in text
    assert 'grep -q "${KALIGN_VERSION}"' in text  # the build fails on a wrong Kalign
    assert (
        '"mlperf-logging>=3.0"' in text
        and "pip install -c /etc/scalefold-constraints.txt -e ." in text
    )
    # every COPY source exists in the repository (run_and_time.sh arrives with the trainer)
    for ln in lines:
        if ln.startswith("COPY "):
            for src in ln.split()[1:-1]:
                if src != "run_and_time.sh":
                    assert (REPO / src).exists(), src


@pytest.mark.parametrize("path", SYSTEM_CONFIGS, ids=lambda p: p.name)
def test_config_speedups_are_valid_train_flags(path: Path) -> None:
    """SPEED names a preset and SPEEDUPS parses as `scalefold train` flags into a valid
    TrainConfig; CUDA graphs appear where no DAP splits a sample, and with several
    training ranks only with the flat gradient sync they need."""
    import shlex

    from scalefold.cli import build_parser, train_config_from_args

    out = subprocess.run(
        ["bash", "-c", f'source "{path}" && echo "$SPEED" && echo "$SPEEDUPS" && '
                       f'echo "$DGXNNODES $DGXNGPU $NUM_ASYNC_VAL_RANKS $DAP_SIZE"'],
        capture_output=True, text=True, check=True,
        env={k: v for k, v in os.environ.items() if k not in ("SPEED", "SPEEDUPS")},
    ).stdout.splitlines()  # fmt: skip
    preset, speedups, (nodes, gpus, evals, dap) = out[0], out[1], map(int, out[2].split())
    args = build_parser().parse_args(["train", "--data-dir", str(REPO), "--speed", preset,
                                      *shlex.split(speedups)])
    speed = train_config_from_args(args).speed
    if speed.cuda_graphs:
        assert dap == 1, path.name
        if nodes * gpus - evals > 1:
            assert speed.grad_sync == "flat", path.name
    if "cpu" in path.name:
        assert speed.attention == "eager" and not speed.cuda_graphs
    else:
        assert speed.attention == "triton" and speed.fused_optimizer
        # compile_glue pays inside CUDA graphs only (eager it measured slower: PERFORMANCE)
        assert speed.cuda_graphs or not speed.compile_glue, path.name
        # the structure-module layer's compile is measured inside CUDA graphs only
        assert speed.cuda_graphs or not speed.compile_structure_module, path.name
        # every GPU config runs a measured preset's kernels; 80 GB GPUs the recompute
        # unless DAP shares a sample's activations over several GPUs
        assert preset in ("h100", "h200"), path.name
        assert dataclasses.replace(speed, cuda_graphs=False, compile_glue=False,
                                   compile_structure_module=False, grad_sync="ddp") == \
            dataclasses.replace(SpeedConfig.preset(preset), cuda_graphs=False,
                                compile_glue=False, compile_structure_module=False), path.name
        assert speed.recompute_outer_product == ("h100" in path.name and dap == 1), path.name
        # evaluation graphs on ranks that also train only where their pool fits beside the
        # step; ranks that only evaluate hold no step and keep them everywhere
        fits = "h200" in path.name or dap > 1
        assert speed.for_evaluation(trains=True).eval_cuda_graphs == fits, path.name
        assert speed.eval_plain_beside_training == (not fits), path.name
        assert speed.for_evaluation(trains=False).eval_cuda_graphs, path.name
