"""`scalefold bench eval` on the CPU: the trainer's evaluation path, timed, at the tiny
preset; its length assumption, the cadence arithmetic and the lDDT check."""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest
import torch

from scalefold.bench.eval import (
    EvalBenchConfig,
    assumed_cameo_lengths,
    evaluation_gpus,
    lddt_verdict,
    synthetic_eval_chains,
)
from scalefold.cli import ensure_mini_dataset, main
from scalefold.train.evaluate import RESIDUE_AXIS, TRUTH_FEATURES

SMALL_FEATURES = ["--max-msa-clusters", "4", "--max-extra-msa", "8", "--max-templates", "2"]


def test_bench_eval_tiny_cpu_writes_the_documented_json(tmp_path, capsys):
    out = tmp_path / "eval.json"
    rc = main(["bench", "eval", "--preset", "tiny", "--device", "cpu", "--lengths", "12,20,12",
               *SMALL_FEATURES, "--num-recycling-iters", "1", "--eval-length-buckets", "32",
               "--eval-warm-up", "--warm-up-max-length", "32", "--step-time", "10",
               "--profile-length", "12", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "evaluation of 3 chains" in text and "evaluation GPU(s) keep up" in text
    res = json.loads(out.read_text())
    assert {"device", "torch", "preset", "precision", "speed", "chains", "eval_seconds",
            "eval_seconds_first", "peak_memory_gib", "evaluation_gpus_for_cadence"} <= set(res)
    assert res["device"] == "cpu" and res["preset"] == "tiny" and res["precision"] == "fp32"
    assert res["speed"]["eval_length_buckets"] == "32"
    assert [c["length"] for c in res["chains"]] == [12, 20, 12]
    assert all(c["seconds"] > 0 for c in res["chains"])
    assert res["eval_seconds"] >= sum(c["seconds"] for c in res["chains"])
    assert res["eval_seconds_first"] > 0 and res["peak_memory_gib"] == 0.0
    # the host's time queueing each chain (on a CPU the whole chain) and no GPU to outrun
    assert [q >= c["seconds"] for q, c in zip(res["host_queue_seconds"], res["chains"],
                                               strict=True)] == [True] * 3
    assert res["host_late_chains"] == 0 and "host time queueing a chain" in text
    # ... by part: the copies and the forward (eager here) take time of their own
    parts = res["host_parts_seconds"]
    assert set(parts) == {"copies", "forward", "other"} and parts["forward"] > 0
    assert parts["copies"] > 0 and "by part (median): copies" in text
    # (medians of each part over the chains: each at most the longest chain's queueing,
    # their sum at most the pass's; the sum of the medians may exceed any one chain's)
    queue = res["host_queue_seconds"]
    assert all(v <= max(queue) + 1e-6 for v in parts.values())
    assert sum(parts.values()) <= sum(queue) + 1e-6
    # no GPU events on a CPU
    assert res["forward_device_seconds"] == 0.0 and "GPU time inside" not in text
    assert res["warm_up_seconds"] > 0 and "warm-up:" in text and "(1 shapes; first (32)" in text
    [(length, seconds)] = res["warm_up_shapes"]
    assert length == 32 and 0 < seconds <= res["warm_up_seconds"]
    # The profile of one chain (no CUDA kernels on a CPU: an empty family table).
    assert "one evaluation of a 12-residue chain" in res["profile"]
    assert "total device time" in res["profile"] and "kernel family" in text
    # its matrix products by shape (CPU times here, no card to compare with)
    assert "matrix products by shape" in res["profile"] and "GEMMs: " in res["profile"]
    # 40 steps of 10 s leave 400 s: one rank evaluates three tiny chains in time (0.45 s
    # left 18 s, which a loaded CI machine once overran).
    assert res["evaluation_gpus_for_cadence"] == 1
    assert res["sync_overhead_fraction"] == pytest.approx(res["eval_seconds"] / 400.0)
    # the model FLOPs of the pass: the padded lengths (32) count more than the own ones
    assert res["model_tflop"] > res["model_tflop_own_lengths"] > 0
    assert "TFLOP a pass at the padded lengths" in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_bench_eval_graphs_measure_the_gpu_inside_the_forwards(tmp_path, capsys):
    """With graphs on a GPU: the GPU's time inside the graph replays, measured by events
    around them, is part of the pass and reported beside it."""
    out = tmp_path / "eval.json"
    rc = main(["bench", "eval", "--preset", "tiny", "--device", "cuda", "--lengths",
               "12,20,12", *SMALL_FEATURES, "--num-recycling-iters", "1",
               "--eval-length-buckets", "32", "--eval-cuda-graphs", "--passes", "2",
               "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert 0.0 < res["forward_device_seconds"] <= res["eval_seconds"]
    assert "GPU time inside the forwards" in capsys.readouterr().out


def test_variants_are_evaluated_side_by_side_in_one_process(tmp_path, capsys):
    """`--variants`: each variant as bench step names it, its own report, then one table
    with every variant's pass against the first's; the JSON holds each variant's result."""
    out = tmp_path / "cmp.json"
    rc = main(["bench", "eval", "--preset", "tiny", "--device", "cpu", "--lengths", "12,20,40",
               *SMALL_FEATURES, "--num-recycling-iters", "1", "--passes", "1",
               "--variants", "eager,eager+eval_length_buckets=32+eval_template_pairs_once",
               "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "== eager\n" in text and text.count("evaluation of 3 chains") == 2
    table = text[text.index("variant "):].splitlines()
    assert table[1].split()[0] == "eager" and table[1].split()[3] == "1.000"
    assert table[2].startswith("eager+eval_length_buckets=32+eval_template_pairs_once")
    res = json.loads(out.read_text())["variants"]
    assert list(res) == ["eager", "eager+eval_length_buckets=32+eval_template_pairs_once"]
    assert not res["eager"]["speed"]["eval_template_pairs_once"]
    other = res["eager+eval_length_buckets=32+eval_template_pairs_once"]
    assert other["speed"]["eval_template_pairs_once"]
    assert other["speed"]["eval_length_buckets"] == "32"
    assert len(other["chains"]) == 3


def test_field_flags_hold_for_every_variant(tmp_path, capsys):
    """A field flag beside --variants (here --eval-length-buckets 32 --no-eval-warm-up)
    sets that field in every variant; a variant naming the field keeps its own value."""
    out = tmp_path / "cmp.json"
    rc = main(["bench", "eval", "--preset", "tiny", "--device", "cpu", "--lengths", "12",
               *SMALL_FEATURES, "--num-recycling-iters", "1", "--passes", "1",
               "--eval-length-buckets", "32", "--no-eval-warm-up",
               "--variants", "eager,eager+eval_length_buckets=16", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())["variants"]
    assert res["eager"]["speed"]["eval_length_buckets"] == "32"
    assert res["eager+eval_length_buckets=16"]["speed"]["eval_length_buckets"] == "16"
    assert not any(r["speed"]["eval_warm_up"] for r in res.values())


def test_a_failing_variant_keeps_the_others_and_their_json(tmp_path, capsys, monkeypatch):
    """A variant that raises (call 26: a launch error in the second variant lost the first
    one's finished pass) is reported with its error; the others still run, the JSON holds
    every finished result, and the exit status says that one failed."""
    import scalefold.bench.eval as bench_eval

    def fake_run(cfg):
        if cfg.passes == 2:
            raise RuntimeError("Triton Error [CUDA]: invalid argument")
        return {"eval_seconds": 2.0 * cfg.passes, "warm_up_seconds": 1.0,
                "peak_memory_gib": 0.5, "peak_reserved_gib": 0.6, "chains": []}

    monkeypatch.setattr(bench_eval, "run_bench", fake_run)
    monkeypatch.setattr(bench_eval, "format_report", lambda res: "report")
    base = bench_eval.EvalBenchConfig(preset="tiny", device="cpu")
    out = tmp_path / "cmp.json"
    rc = bench_eval.compare_variants(
        [("a", dataclasses.replace(base, passes=1)), ("b", dataclasses.replace(base, passes=2)),
         ("c", dataclasses.replace(base, passes=3))], json_path=str(out))
    assert rc == 1
    table = capsys.readouterr().out
    table = table[table.index("variant "):].splitlines()
    assert table[1].split()[:4] == ["a", "1.0", "2.00", "1.000"]
    assert table[2].startswith("b") and "FAILED: RuntimeError: Triton Error" in table[2]
    assert table[3].split()[:4] == ["c", "1.0", "6.00", "3.000"]
    res = json.loads(out.read_text())["variants"]
    assert res["a"]["eval_seconds"] == 2.0 and "invalid argument" in res["b"]["error"]


def test_assumed_lengths_are_the_documented_distribution():
    lengths = assumed_cameo_lengths()
    assert len(lengths) == 180
    assert (min(lengths), statistics.median(lengths), max(lengths)) == (50, 230, 700)
    assert sum(n == 700 for n in lengths) == 4
    assert assumed_cameo_lengths() == lengths  # seeded
    assert lengths != sorted(lengths) and sorted(assumed_cameo_lengths(seed=1)) == sorted(lengths)
    with pytest.raises(ValueError, match="num_chains"):
        assumed_cameo_lengths(0)


def test_synthetic_chains_are_prefixes_of_one_chain_with_the_eval_sizes():
    cfg = EvalBenchConfig(preset="tiny", device="cpu", max_msa_clusters=4, max_extra_msa=8,
                          max_templates=2, num_recycling_iters=1)
    short, long = synthetic_eval_chains(cfg, [5, 9])
    assert set(short) == set(RESIDUE_AXIS) | set(TRUTH_FEATURES)
    assert short["msa_feat"].shape == (1, 4, 5, 49, 2)
    assert long["extra_msa"].shape == (1, 8, 9, 2)
    assert long["all_atom_positions"].shape == (1, 9, 37, 3, 2)
    assert (long["aatype"][:, :5] == short["aatype"]).all()
    assert short["msa_feat"].is_contiguous()


def test_evaluation_gpus_for_a_cadence():
    # Ranks take chains i::k, as the trainer's validation loader deals them.
    assert evaluation_gpus([3.0, 3.0, 3.0, 3.0], window_s=12.0) == 1
    assert evaluation_gpus([3.0, 3.0, 3.0, 3.0], window_s=6.0) == 2
    # Dealt round-robin, the long chain 0 shares rank 0 with chain k until k = 4.
    assert evaluation_gpus([5.0, 1.0, 1.0, 1.0], window_s=5.5) == 4
    assert evaluation_gpus([5.0, 1.0, 1.0, 1.0], window_s=6.0) == 2
    assert evaluation_gpus([3.0, 7.0], window_s=6.0) is None  # one chain is longer
    assert evaluation_gpus([], window_s=1.0) == 1


def test_evaluation_beside_the_training_step(tmp_path, capsys):
    """`--beside-training`: one training step of every recycling count runs first (the
    trainer's step at the preset's shapes), then the evaluation; the JSON says so. A
    memory cap needs a GPU."""
    from scalefold.bench.eval import run_bench

    out = tmp_path / "eval.json"
    rc = main(["bench", "eval", "--preset", "tiny", "--device", "cpu", "--lengths", "12",
               *SMALL_FEATURES, "--num-recycling-iters", "1", "--passes", "1",
               "--beside-training", "--json", str(out)])
    assert rc == 0 and "training beside: 2 steps" in capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["beside_training"]["steps"] == 2 and res["gpu_memory_gib"] is None
    assert len(res["chains"]) == 1
    with pytest.raises(ValueError, match="CUDA"):
        run_bench(EvalBenchConfig(preset="tiny", device="cpu", lengths=(12,),
                                  gpu_memory_gib=74.5), log=lambda *_: None)


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="gpu_memory_gib"):
        EvalBenchConfig(gpu_memory_gib=0)
    with pytest.raises(ValueError, match="passes"):
        EvalBenchConfig(passes=0)
    with pytest.raises(ValueError, match="lengths"):
        EvalBenchConfig(lengths=(10, 0))


def test_check_lddt_compares_fp32_with_the_fast_path(tmp_path, capsys):
    data = ensure_mini_dataset(tmp_path / "mini")
    out = tmp_path / "check.json"
    # On a CPU the "fast" path differs from fp32 only by its length buckets: the
    # difference must be within float noise. 3pwp_B: the shortest validation chain.
    rc = main(["bench", "eval", "--check-lddt", "--data-dir", str(data), "--preset", "tiny",
               "--device", "cpu", "--speed", "eager", "--precision", "fp32",
               "--eval-length-buckets", "128", *SMALL_FEATURES, "--num-recycling-iters", "0",
               "--val-chain-ids", "3pwp_B", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "all-zero matrices re-drawn" in text
    assert "fp32  (fp32): mean lDDT-Ca" in text and "difference (fast - fp32)" in text
    res = json.loads(out.read_text())
    assert res["ok"] and abs(res["difference"]) <= 1e-3 and res["chains"] == ["3pwp_B"]
    fp32, fast = res["runs"]["fp32"], res["runs"]["fast"]
    assert fp32["speed"]["eval_length_buckets"] == "off"
    assert fast["speed"]["eval_length_buckets"] == "128"
    assert list(fp32["per_chain"]) == ["3pwp_B"]
    # Real structures (re-drawn weights), not every atom at the origin.
    assert 0.02 < fp32["mean_lddt_ca"] < 1.0


def test_check_lddt_below_fp32_adds_the_plain_run_at_that_precision(tmp_path, capsys):
    data = ensure_mini_dataset(tmp_path / "mini")
    out = tmp_path / "check.json"
    main(["bench", "eval", "--check-lddt", "--data-dir", str(data), "--preset", "tiny",
          "--device", "cpu", "--speed", "eager", "--precision", "bf16",
          "--eval-length-buckets", "128", *SMALL_FEATURES, "--num-recycling-iters", "0",
          "--val-chain-ids", "3pwp_B", "--json", str(out)])
    text = capsys.readouterr().out
    assert "plain (bf16): mean lDDT-Ca" in text and "difference (plain - fp32)" in text
    res = json.loads(out.read_text())
    plain, fast = res["runs"]["plain"], res["runs"]["fast"]
    assert plain["precision"] == fast["precision"] == "bf16"
    assert plain["speed"]["eval_length_buckets"] == "off"
    assert fast["speed"]["eval_length_buckets"] == "128"
    means = {k: r["mean_lddt_ca"] for k, r in res["runs"].items()}
    assert (res["ok"], res["verdict"]) == lddt_verdict(means["fp32"], means["fast"],
                                                       means["plain"], 1e-3)
    assert res["within_tolerance_of_fp32"] == (abs(means["fast"] - means["fp32"]) <= 1e-3)


def test_lddt_verdict_lets_the_precision_account_for_a_gap_only_when_plain_has_it():
    # within the tolerance of fp32: passes whatever plain did
    assert lddt_verdict(0.30, 0.3009, 0.33, 1e-3) == (True, "|fast - fp32| <= 0.001")
    # beyond it, and plain at the same precision is close to fp32: the kernels' fault
    assert not lddt_verdict(0.30, 0.3015, 0.3001, 1e-3)[0]
    assert not lddt_verdict(0.30, 0.3015, None, 1e-3)[0]
    # plain is as far from fp32 as the fast path: the precision's own rounding
    ok, reason = lddt_verdict(0.2934, 0.2944, 0.2945, 1e-3)
    assert ok and "|fast - plain| <= 0.001" in reason
    # a chain scored 0 (a non-finite forward) is far from both
    assert not lddt_verdict(0.2934, 0.2380, 0.2945, 1e-3)[0]
    assert not lddt_verdict(0.2934, float("nan"), 0.2945, 1e-3)[0]
    assert not lddt_verdict(0.2934, 0.2944, float("nan"), 1e-4)[0]


def test_bucket_fit_recovers_a_cubic_cost_and_predicts_other_buckets():
    """Chain times drawn from a known a + bL + cL² + dL³ at their padded lengths: the fit
    returns the coefficients and the passes other bucket sizes would take; the report
    prints them; too few padded lengths or no buckets give no fit."""
    from scalefold.bench.eval import BUCKET_FIT_SIZES, bucket_fit, format_report
    from scalefold.train.evaluate import bucket_length

    true = [0.09, 2e-4, 5e-6, 8e-10]

    def t(x):
        return true[0] + true[1] * x + true[2] * x**2 + true[3] * x**3

    lengths = assumed_cameo_lengths()
    chains = [{"length": n, "seconds": t(bucket_length(n, 64))} for n in lengths]
    coeffs, predicted = bucket_fit(chains, 64)
    for got, want in zip(coeffs, true, strict=True):
        assert got == pytest.approx(want, rel=1e-3, abs=1e-9)
    assert set(predicted) == set(BUCKET_FIT_SIZES)
    assert predicted[64] == pytest.approx(sum(c["seconds"] for c in chains), rel=1e-6)
    assert predicted[16] < predicted[32] < predicted[64] < predicted[128]
    assert bucket_fit(chains, 0) is None
    assert bucket_fit([{"length": n, "seconds": 1.0} for n in (10, 70, 130)], 64) is None
    res = {"chains": chains, "speed": {"eval_length_buckets": "64"}, "eval_seconds": 1.0,
           "eval_seconds_first": 1.0, "peak_memory_gib": 0.0, "peak_reserved_gib": 0.0,
           "memory_before_gib": 0.0, "evaluation_gpus_for_cadence": 1, "cadence_steps": 40,
           "step_time_s": 0.45, "sync_overhead_fraction": 0.1}
    assert "a = 0.0900 s a chain" in format_report(res)
    # a rank that only evaluates: the synchronous overhead does not apply to it
    assert "synchronous evaluation adds 10%" in format_report(res)
    assert "synchronous evaluation" not in format_report({**res, "async_rank": True})
    # two lanes: chains overlap, so no fit; the host only hands chains to the lanes
    lanes = format_report({**res, "speed": {"eval_length_buckets": "64",
                                            "eval_concurrent_chains": "2"},
                           "host_queue_seconds": [1e-3, 2e-3], "host_late_chains": 0})
    assert "with 2 lanes the chains' spans overlap" in lanes and "fit t(L)" not in lanes
    assert "handing a chain to its lane's thread: median 1.5 ms" in lanes


def test_the_flop_polynomial_equals_direct_counts_and_the_step_benchs_count():
    """The cubic from four meta-device counts gives an iteration's FLOPs at any length:
    equal to a count at that length (tiny model), and at the benchmark's shapes to the
    ~11.8 TFLOP a forward that `bench step` counts at 256 residues; a pass sums it over
    the padded lengths."""
    from scalefold.bench.eval import iteration_flops_polynomial, pass_flops
    from scalefold.bench.step import count_iteration_flops
    from scalefold.model.config import AlphaFoldConfig
    from scalefold.train.evaluate import model_inputs
    from scalefold.utils.synthetic import synthetic_batch

    tiny = AlphaFoldConfig.tiny()
    coeffs = iteration_flops_polynomial(tiny, 4, 8, 2)
    assert all(isinstance(c, int) for c in coeffs) and coeffs[3] > 0
    for n in (5, 61):
        feats = model_inputs(synthetic_batch(tiny, n, 4, 8, 2, num_iterations=1))
        direct = count_iteration_flops(tiny, feats, torch.device("cpu"), seed=0)
        assert coeffs[0] + coeffs[1] * n + coeffs[2] * n**2 + coeffs[3] * n**3 == direct
    one = coeffs[0] + 64 * (coeffs[1] + 64 * (coeffs[2] + 64 * coeffs[3]))
    # 50 and 64 residues both pad to 64 with 32-residue buckets; 4 iterations each
    assert pass_flops(coeffs, [50, 64], 32, 4) == 8 * one
    assert pass_flops(coeffs, [50, 64], 0, 4) < 8 * one
    full = iteration_flops_polynomial(AlphaFoldConfig.mlperf(), 124, 1024, 4)
    at_256 = full[0] + 256 * (full[1] + 256 * (full[2] + 256 * full[3]))
    assert 11.7e12 < at_256 < 11.9e12


def test_warm_up_breakdown_separates_the_first_shape():
    from scalefold.bench.eval import warm_up_breakdown

    assert warm_up_breakdown([]) == ""
    assert warm_up_breakdown([(64, 40.0)]) == "; first (64) 40.0 s"
    text = warm_up_breakdown([(64, 40.0), (128, 3.0), (704, 9.0), (192, 4.0)])
    assert text == "; first (64) 40.0 s, the other 3: median 4.0 s, longest (704) 9.0 s"


def test_bench_eval_groups_chains_as_the_trainer_does(tmp_path, capsys):
    """`--eval-chains-per-forward 2`: the pass runs the trainer's forwards
    (`Evaluator.groups`): the first two 32-residue-bucket chains in one, the third alone;
    a group's time is shared evenly by its chains; the warm-up captures the stacked shape."""
    out = tmp_path / "eval.json"
    rc = main(["bench", "eval", "--preset", "tiny", "--device", "cpu", "--lengths", "12,20,12",
               *SMALL_FEATURES, "--num-recycling-iters", "1", "--eval-length-buckets", "32",
               "--eval-chains-per-forward", "2", "--eval-warm-up", "--warm-up-max-length",
               "32", "--json", str(out)])
    assert rc == 0, capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["speed"]["eval_chains_per_forward"] == "2"
    seconds = [c["seconds"] for c in res["chains"]]
    assert seconds[0] == seconds[1] > 0 and seconds[2] > 0
    assert res["forwards"] == 2  # three chains, two of them in one forward
    assert "of 2 forwards" in capsys.readouterr().out
    assert [n for n, _ in res["warm_up_shapes"]] == [32, 32]  # batch 1, then 2
