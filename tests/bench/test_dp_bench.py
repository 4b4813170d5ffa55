"""`scalefold bench dp` on the CPU over gloo (the multi-GPU runs are issue 8's)."""

from __future__ import annotations

import json

import pytest

from scalefold.bench.dp import DpBenchConfig, check_config
from scalefold.cli import main


def test_bench_dp_cli_tiny_cpu(tmp_path, capsys):
    """Both gradient-averaging modes at W = 1, 2; one thread per rank (two CPU cores)."""
    out = tmp_path / "dp.json"
    rc = main(["bench", "dp", "--preset", "tiny", "--device", "cpu", "--world-sizes", "1,2",
               "--modes", "ddp,flat", "--variant", "eager@fp32", "--warmup", "1", "--steps", "2",
               "--threads", "1", "--json", str(out)])
    assert rc == 0
    assert "samples/s" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert [(r["mode"], r["world_size"]) for r in data["results"]] == [
        ("ddp", 1), ("ddp", 2), ("flat", 1), ("flat", 2)]
    assert all(r["error"] is None and len(r["times_s"]) == 2 for r in data["results"])


def test_bench_dp_config_errors():
    with pytest.raises(ValueError, match="--modes flat"):
        check_config(DpBenchConfig(device="cpu", world_sizes=(1,),
                                   variant="h100+compile_glue=0"))
    with pytest.raises(ValueError, match="unknown modes"):
        check_config(DpBenchConfig(device="cpu", world_sizes=(1,), modes=("fsdp",)))
