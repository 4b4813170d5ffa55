"""`scalefold bench dap` on the CPU with the tiny preset: two processes over gloo."""

from __future__ import annotations

import json

import pytest

from scalefold.bench.dap import DapBenchConfig, check_config
from scalefold.bench.step import Shapes
from scalefold.cli import main


def test_bench_dap_cli_tiny_cpu(tmp_path, capsys):
    out = tmp_path / "dap.json"
    # One thread per rank: the CI machine has two cores, and each spawn re-imports torch.
    rc = main(["bench", "dap", "--preset", "tiny", "--device", "cpu", "--dap-sizes", "1,2",
               "--warmup", "0", "--steps", "2", "--threads", "1", "--json", str(out)])
    assert rc == 0
    table = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(table) if line.split()[:3] == ["P", "N/P", "median"])
    rows = [line.split() for line in table[head + 1:]]
    assert [r[:2] for r in rows] == [["1", "16"], ["2", "8"]]
    assert all(float(r[2]) > 0 for r in rows)

    data = json.loads(out.read_text())
    one, two = data["results"]
    assert one["error"] is None and two["error"] is None
    assert len(one["times_s"]) == len(two["times_s"]) == 2
    # The plain model talks to nobody; DAP-2 moves data in every kind of collective.
    assert one["comm_mb"] == 0
    assert set(two["comm_calls"]) == {"all_gather", "reduce_scatter", "all_to_all", "all_reduce"}
    assert two["comm_mb"] > 0
    # The first step comes before any update: DAP-2 computes the one-process loss. After
    # three updates the loss still agrees: the partial gradients were combined exactly.
    assert two["first_loss"] == pytest.approx(one["first_loss"], rel=1e-5)
    assert two["last_loss"] == pytest.approx(one["last_loss"], rel=1e-4)
    assert two["last_loss"] != pytest.approx(two["first_loss"], rel=1e-4)  # it trained
    # The trainer's gradient sync: one flat all-reduce per step.
    assert two["comm_calls"]["all_reduce"] == 1


def test_graph_variant_on_the_cpu_is_refused_before_spawning():
    cfg = DapBenchConfig(preset="tiny", device="cpu", dap_sizes=(1, 2),
                         variant="eager@fp32+fused_optimizer+cuda_graphs")
    with pytest.raises(ValueError, match="CUDA graphs"):
        check_config(cfg)


def test_n_res_not_divisible_names_n():
    cfg = DapBenchConfig(preset="tiny", device="cpu", dap_sizes=(1, 2, 4),
                         shapes=Shapes(n_res=18, n_clust=8, n_extra=16, n_templ=2))
    with pytest.raises(ValueError, match="N=18"):
        check_config(cfg)

