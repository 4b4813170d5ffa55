"""The step, evaluation and loader models, and predictions on the shipped profile."""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from scalefold.plan import RunShape, load_cluster, load_profile, predict
from scalefold.plan.evaluation import (
    assumed_validation_lengths,
    chain_seconds,
    evaluation_seconds,
    relative_cost,
    seconds_per_unit,
)
from scalefold.plan.loader import loader_stall_s
from scalefold.plan.model import PlanOptions
from scalefold.plan.pretrain import predict_pretraining, pretrain_steps
from scalefold.plan.profile import load_profile as load
from scalefold.plan.profile import merge_bench, profile_from_dict, shipped_profiles
from scalefold.plan.stepmodel import (
    dap_bytes_per_step,
    dap_collectives_per_step,
    step_breakdown,
)
from scalefold.train.config import SpeedConfig

EVIDENCE = Path(__file__).resolve().parents[2] / "docs" / "evidence" / "2026-12-03_h200"
EVIDENCE_1204 = EVIDENCE.parent / "2026-12-04_h200"
EVIDENCE_1205 = EVIDENCE.parent / "2026-12-05_h200"
EVIDENCE_1205_S2 = EVIDENCE.parent / "2026-12-05_h200_s2"
EVIDENCE_1205_S4 = EVIDENCE.parent / "2026-12-05_h200_s4"

OPTS = PlanOptions(trials=200)


def test_dap_cost_model_reproduces_docs_dap_table():
    # docs/DAP.md, "Per step": 8.88 / 9.63 / 9.07 GB, 2255 collectives.
    for p, gb in ((2, 8.88), (4, 9.63), (8, 9.07)):
        assert dap_bytes_per_step(p) / 1e9 == pytest.approx(gb, abs=0.01)
    assert dap_collectives_per_step() == 2255


# Fields that change only the evaluation: a training step measured before they changed is
# still today's.
EVAL_ONLY = tuple(f.name for f in dataclasses.fields(SpeedConfig) if f.name.startswith("eval_"))


def _is_todays_h200(measured: dict, ignore: tuple[str, ...] = ()) -> bool:
    """A measured variant's speed fields are today's `h200` preset (but `ignore`); a field
    added since the measurement (absent from its record) must still be at its default in
    the preset."""
    defaults = dataclasses.asdict(SpeedConfig())
    return all(measured.get(f, defaults[f]) == v
               for f, v in dataclasses.asdict(SpeedConfig.preset("h200")).items()
               if f not in ignore)


def _is_todays_h200_evaluation(measured: dict, ignore: tuple[str, ...] = ()) -> bool:
    """A measured evaluation's speed fields build today's `h200` evaluation copy (but
    `ignore`): compared through `for_evaluation_model`, so fields the evaluation copy
    takes from `eval_no_grad_kernels` may have been given by their own names."""
    names = {f.name for f in dataclasses.fields(SpeedConfig)}
    then = SpeedConfig(**{k: v for k, v in measured.items() if k in names})
    now = SpeedConfig.preset("h200")
    a = dataclasses.asdict(then.for_evaluation_model())
    b = dataclasses.asdict(now.for_evaluation_model())
    skip = {"eval_no_grad_kernels", *ignore}
    return all(a[f] == b[f] for f in b if f not in skip)


def test_shipped_profile_names_sources_and_assumptions():
    assert shipped_profiles()
    prof = load()
    assert prof.gpu == "h200" and set(prof.steps) >= {"h100", "h200"}
    # h200: the second variant of the fourteenth session's call 2 (today's preset), n = 0
    # and 3 measured and n = 1, 2 on the line between them, so the mean is the mean of the
    # two measured ends
    bench = json.loads((EVIDENCE_1205_S2 / "call2_step.json").read_text())["results"][1]
    assert bench["name"] == "h200+single_pass_update+layer_norm_bwd_stream"
    assert _is_todays_h200(bench["variant"]["speed"], ignore=EVAL_ONLY)
    med = {r["n"]: r["median_s"] for r in bench["per_n"]}
    h200 = prof.steps["h200"].per_n_s
    assert (h200[0], h200[3]) == pytest.approx((med[0], med[3]), abs=1e-4)
    assert h200[1] - h200[0] == pytest.approx(h200[3] - h200[2], abs=1e-4)
    assert prof.steps["h200"].avg_s == pytest.approx((med[0] + med[3]) / 2, abs=1e-4)
    # h100: composed from h200, call 25's cost of the recompute and the single-pass
    # update's gain (h100 runs PyTorch's fused Adam), named an assumption
    c25 = json.loads((EVIDENCE_1204 / "call25_step.json").read_text())["results"]
    cost = [b["median_s"] - a["median_s"] for a, b in
            zip(c25[0]["per_n"], c25[1]["per_n"], strict=True)]
    assert c25[1]["name"] == "h200+recompute_outer_product"
    c1 = json.loads((EVIDENCE_1205_S2 / "call1_step.json").read_text())["results"]
    assert c1[1]["name"] == "h200+single_pass_update"
    gain = {r["n"]: a["median_s"] - r["median_s"] for a, r in
            zip(c1[0]["per_n"], c1[1]["per_n"], strict=True)}
    gain = [gain[0] + (gain[3] - gain[0]) * n / 3 for n in range(4)]
    assert not SpeedConfig.preset("h100").single_pass_update
    assert prof.steps["h100"].per_n_s == pytest.approx(
        [a + b + c for a, b, c in zip(h200, cost, gain, strict=True)], abs=2e-4)
    assert all(prof.sources[k] for k in ("step.h200", "trainer", "dp", "dap", "eval", "data"))
    assert "startup" in prof.assumed
    assert "step.h200" not in prof.assumed and "step.h100" in prof.assumed
    assert prof.dp_overhead_s == pytest.approx(0.0100, abs=1e-4)
    assert 0 < prof.dap_replicated_memory_share < 0.2


def test_profile_errors_name_the_field():
    raw = json.loads(open(load().path).read())
    del raw["step"]["h200"]["per_n_s"]
    with pytest.raises(ValueError, match="per_n_s"):
        profile_from_dict(raw)
    with pytest.raises(ValueError, match="schema"):
        profile_from_dict({"schema": "other"})


def test_bench_outputs_replace_profile_sections(tmp_path):
    raw = json.loads(open(load().path).read())
    dp = {"config": {"variant": "h200", "recycles": 0},
          "results": [{"world_size": 1, "median_s": 0.5}, {"world_size": 2, "median_s": 0.53}]}
    (tmp_path / "dp.json").write_text(json.dumps(dp))
    out = profile_from_dict(merge_bench(raw, "dp", tmp_path / "dp.json"))
    assert out.dp_overhead_s == pytest.approx(0.03)
    ev = {"schema": "scalefold-plan-eval/1", "ranks": 1, "seconds_per_evaluation": [4.0],
          "chains": [{"chain": "a", "length": 256, "seconds": 2.0},
                     {"chain": "b", "length": 512, "seconds": 2.0 * relative_cost(512)}]}
    (tmp_path / "eval.json").write_text(json.dumps(ev))
    out = profile_from_dict(merge_bench(raw, "eval", tmp_path / "eval.json"))
    assert seconds_per_unit(out.eval) == pytest.approx(2.0)
    # `bench eval --json`'s own layout is read too.
    bench_eval = {"device": "NVIDIA H200", "eval_seconds": 3.0, "eval_seconds_first": 9.0,
                  "chains": [{"length": 256, "seconds": 3.0}], "peak_memory_gib": 20.0}
    (tmp_path / "be.json").write_text(json.dumps(bench_eval))
    out = profile_from_dict(merge_bench(raw, "eval", tmp_path / "be.json"))
    assert out.eval.first_extra_s == pytest.approx(6.0)
    assert seconds_per_unit(out.eval) == pytest.approx(3.0)
    # Chains in flight together (eval_concurrent_chains) overlap: their spans sum to
    # more than the pass, and each counts its share of it.
    overlapping = {"device": "NVIDIA H200", "eval_seconds": 3.0,
                   "chains": [{"length": 256, "seconds": 2.0},
                              {"length": 256, "seconds": 4.0}]}
    (tmp_path / "lanes.json").write_text(json.dumps(overlapping))
    out = profile_from_dict(merge_bench(raw, "eval", tmp_path / "lanes.json"))
    assert out.eval.chain_seconds == pytest.approx((1.0, 2.0))
    assert seconds_per_unit(out.eval) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="unknown bench kind"):
        merge_bench(raw, "nope", tmp_path / "eval.json")


def test_evaluation_makespan_and_lengths():
    lengths = assumed_validation_lengths()
    assert len(lengths) == 180 and 30 <= min(lengths) and max(lengths) <= 700
    one = evaluation_seconds(lengths, 1, relative_cost)
    assert one == pytest.approx(sum(relative_cost(n) for n in lengths))
    # More ranks help until the longest chain alone sets the time.
    assert evaluation_seconds(lengths, 32, relative_cost) < one / 10
    assert evaluation_seconds(lengths, 1000, relative_cost) == pytest.approx(
        relative_cost(max(lengths)))
    # Chain i goes to rank i mod k, as the trainer shards: order matters.
    assert evaluation_seconds([700, 100, 700, 100], 2, float) == 1400
    assert evaluation_seconds([700, 700, 100, 100], 2, float) == 800


def test_plan_assumes_the_lengths_bench_eval_assumes():
    from scalefold.bench.eval import assumed_cameo_lengths
    assert sorted(assumed_cameo_lengths()) == list(assumed_validation_lengths())


def test_an_evaluation_variant_is_named_after_the_file(tmp_path):
    """`bench eval --variants` output: FILE#VARIANT picks one result; a single variant
    needs no name; a failed or unknown one is refused, by name."""
    raw = json.loads(open(load().path).read())
    one = json.loads((EVIDENCE_1204 / "call24_eval_b32.json").read_text())
    cmp = tmp_path / "cmp.json"
    cmp.write_text(json.dumps({"variants": {"h200": one, "h200+x": {"error": "OOM"}}}))
    merged = merge_bench(raw, "eval", f"{cmp}#h200")
    assert profile_from_dict(merged).eval_for("h200").steady_s == pytest.approx(
        one["eval_seconds"], abs=0.01)
    assert "#h200" in json.dumps(merged["eval"])  # the source names the variant
    with pytest.raises(ValueError, match="failed"):
        merge_bench(raw, "eval", f"{cmp}#h200+x")
    with pytest.raises(ValueError, match="#VARIANT"):
        merge_bench(raw, "eval", str(cmp))
    single = tmp_path / "one.json"
    single.write_text(json.dumps({"variants": {"h200": one}}))
    alone = merge_bench(raw, "eval", single)["eval"]
    assert {k: v for k, v in alone.items() if k != "source"} == {
        k: v for k, v in merged["eval"].items() if k != "source"}


def test_measured_per_chain_curve_interpolates_and_extrapolates():
    ev = profile_from_dict({**json.loads(open(load().path).read()), "eval": {
        "seconds_per_evaluation": [5.0], "chains": [
            {"length": 100, "seconds": 1.0}, {"length": 300, "seconds": 2.0},
            {"length": 300, "seconds": 4.0}, {"length": 300, "seconds": 3.0}]}}).eval
    at = chain_seconds(ev)
    assert at(50) == 1.0 and at(200) == pytest.approx(2.0) and at(300) == 3.0
    assert at(600) == pytest.approx(3.0 * relative_cost(600) / relative_cost(300))


def test_shipped_evaluation_is_the_measured_180_chain_pass():
    prof = load()
    # the fifteenth session's call 3, one variant: today's h200 evaluation but the fields
    # adopted after screens on an H100 (twenty-first to thirty-first sessions; the
    # profile's source says so): the profile's pass is the slower evaluation until the
    # H200 measures it
    variants = json.loads((EVIDENCE_1205_S4 / "call3_eval.json").read_text())["variants"]
    (bench,) = variants.values()
    assert _is_todays_h200_evaluation(bench["speed"], ignore=(
        "ln_projection_forward_kernel", "attention_gate_epilogue",
        "eval_compile_structure_module", "trimul_projection_forward_kernel",
        "triangle_attention_folded_mask", "transition_forward_kernel", "attention_bias_mma",
        "attention_half_key_blocks", "opm_residual_epilogue", "eval_chains_per_forward"))
    assert "not yet measured on an H200" in json.loads(open(load().path).read())["eval"]["source"]
    # the two kernels by their own names there; today the evaluation copy's field
    assert not _is_todays_h200(bench["speed"])
    assert bench["speed"]["eval_warm_up"]  # the first pass without first-time work
    ev = prof.eval_for("h200")
    assert ev.validation_set and ev.lengths_assumed and len(ev.lengths) == 180
    assert ev.steady_s == pytest.approx(bench["eval_seconds"], abs=0.01)
    assert ev.first_extra_s == pytest.approx(
        bench["eval_seconds_first"] - bench["eval_seconds"], abs=0.02)
    assert prof.validation_lengths() == tuple(c["length"] for c in bench["chains"])
    at = chain_seconds(ev)
    longest = [c["seconds"] for c in bench["chains"] if c["length"] == 700]
    assert at(700) == pytest.approx(statistics.median(longest), abs=1e-3)
    # One rank sums the chains: the steady pass.
    assert evaluation_seconds(prof.validation_lengths(), 1, at) == pytest.approx(
        bench["eval_seconds"], rel=1e-3)
    # The h100 preset evaluates without buckets and graphs on ranks that also train: its
    # own, slower curve; on ranks that only evaluate with all of h200's evaluation levers.
    plain = prof.eval_for("h100")
    assert plain is not ev and plain.preset == "h100" and not plain.validation_set
    assert chain_seconds(plain)(700) > 2 * at(700)
    assert prof.eval_for("h100", asynchronous=True) is ev
    assert prof.eval_for("h200", asynchronous=True) is ev


def test_multi_rank_trainer_ratio_only_with_several_training_ranks():
    prof = load_profile()
    assert prof.multi_rank_ratio > prof.trainer_ratio
    node = load_cluster("dgxh200", nodes=1)
    one = step_breakdown(node, RunShape(128, dap_size=1, eval_ranks=7), prof, "h200", 1.0)
    many = step_breakdown(node, RunShape(128, dap_size=1, eval_ranks=0), prof, "h200", 1.0)
    assert one.training_ranks == 1 and many.training_ranks == 8
    assert many.one_gpu_s / one.one_gpu_s == pytest.approx(
        prof.multi_rank_ratio / prof.trainer_ratio)
    # Composed of two one-process ratios: call2's trainer over its bench step, times
    # call11's split-graph flat-sync step over the one-graph step (torchrun, W = 1).
    call2 = json.loads((EVIDENCE / "call2_bench_train.json").read_text())
    avg = {line.split()[0]: float(line.split()[5]) for line in
           (EVIDENCE / "call11_step.txt").read_text().splitlines()
           if line.startswith("h200")}
    assert prof.trainer_ratio == pytest.approx(
        call2["train"]["avg_s"] / call2["bench_step_avg_s"], rel=1e-4)
    assert prof.multi_rank_ratio == pytest.approx(
        prof.trainer_ratio * avg["h200+grad_sync=flat"] / avg["h200"], rel=1e-4)


def test_loader_stalls_pt_tail_over_many_ranks_pq_only_throughput():
    kw = dict(step_s=0.25, median_s=0.3, p95_s=1.2, workers=2, local_batch=1)
    pt_one = loader_stall_s(streams=1, in_order=True, **kw)
    pt_many = loader_stall_s(streams=256, in_order=True, **kw)
    pq_many = loader_stall_s(streams=256, in_order=False, **kw)
    assert pt_many > pt_one > 0
    assert pq_many < pt_many
    slow = loader_stall_s(step_s=0.1, median_s=1.0, p95_s=1.0, workers=2, local_batch=1,
                          streams=1, in_order=False)
    assert slow == pytest.approx(0.4)


def test_prediction_on_nvidias_shape_breaks_down_and_adds_up():
    c = load_cluster("dgxh100", nodes=260)
    p = predict(c, RunShape(256, dap_size=8, eval_ranks=32), load_profile(), OPTS)
    assert p.step.groups == 256 and p.step.local_batch == 1 and p.step.idle_gpus == 0
    assert p.step.step_s == pytest.approx(sum(p.step_parts().values()))
    assert p.step.dap_comm_s > 0 and p.step.allreduce_s > 0
    assert p.step.fits
    run = p.stats.runs[0]
    assert run.total_s == pytest.approx(sum(run.parts().values()))
    assert p.stats.olympic_p05_s <= p.stats.olympic_mean_s <= p.stats.olympic_p95_s
    assert any("ratio" not in a and "startup" in a for a in p.assumptions)


def test_memory_warning_and_preset_choice():
    prof = load_profile()
    one = load_cluster("dgxh100", nodes=16)  # 128 GPUs: batch 128 at local batch 1
    p = predict(one, RunShape(128, dap_size=1, eval_ranks=0), prof, OPTS)
    # h200's step (77.3 GiB) and its evaluation (6.2 GiB) together do not fit 80 GB
    assert p.step.preset == "h100" and p.step.fits
    # the evaluation's memory counts on training ranks only where they evaluate
    sync, not_sync = (step_breakdown(load_cluster("dgxh100", nodes=n), RunShape(
        128, dap_size=1, eval_ranks=e, preset="h200"), prof, "h200", 1.26)
        for n, e in ((16, 0), (17, 8)))  # 128 training ranks, one sample each
    assert sync.local_batch == not_sync.local_batch == 1
    # a fit within MEMORY_MARGIN_GIB of the limit is flagged; a roomy one is not (h200's
    # peak set 0.3 GiB under the usable 76.6 GiB: on training ranks without evaluation)
    tight = replace(prof, steps={**prof.steps, "h200": replace(prof.steps["h200"],
                                                                peak_mem_gib=76.3)})
    near = predict(load_cluster("dgxh100", nodes=17),
                   RunShape(128, dap_size=1, eval_ranks=8, preset="h200"), tight, OPTS)
    assert near.step.fits and near.step.memory_limit_gib - near.step.memory_gib < 1.0
    assert any("within" in w for w in near.warnings)
    assert not any("within" in w for w in p.warnings)
    assert sync.memory_gib - not_sync.memory_gib == pytest.approx(
        prof.eval_for("h200").peak_mem_gib)
    node = load_cluster("dgxh100", nodes=1)
    p = predict(node, RunShape(128, dap_size=1, eval_ranks=0), prof, OPTS)
    assert p.step.local_batch == 16 and not p.step.fits
    assert any("memory" in w for w in p.warnings)
    p = predict(node, RunShape(128, dap_size=1, eval_ranks=0), prof,
                replace(OPTS, accumulate=True))
    assert p.step.fits


def test_faster_evaluation_and_more_gpus_do_not_slow_a_run():
    prof = load_profile()
    c = load_cluster("dgxh200", nodes=260)
    shape = RunShape(256, dap_size=8, eval_ranks=32)
    base = predict(c, shape, prof, OPTS)
    fast = predict(c, shape, prof, replace(OPTS, eval_speedup=4))
    assert fast.stats.olympic_mean_s < base.stats.olympic_mean_s
    small = predict(load_cluster("dgxh200", nodes=32), RunShape(256, dap_size=8,
                    eval_ranks=32), prof, OPTS)
    # 224 training GPUs: 28 DAP groups, of which 16 divide the batch: 16 samples each.
    assert (small.step.groups, small.step.local_batch, small.step.idle_gpus) == (16, 16, 96)
    assert small.step.step_s > base.step.step_s


def test_gpu_kind_without_a_ratio_is_refused():
    prof = replace(load_profile(), gpu="a100")
    with pytest.raises(ValueError, match="no ratio"):
        predict(load_cluster("dgxh100", nodes=260), RunShape(256, 8, 32), prof, OPTS)


def test_pretraining_scenario_steps_and_hours():
    assert pretrain_steps() == 78_125
    prof = load_profile()
    big = predict_pretraining(load_cluster("dgxh100", nodes=260), RunShape(128, dap_size=8),
                              prof, OPTS)
    node = predict_pretraining(load_cluster("dgxh100", nodes=1), RunShape(128, dap_size=1),
                               prof, replace(OPTS, accumulate=True))
    assert big.steps == node.steps == 78_125
    assert big.hours == pytest.approx(78_125 * big.step.step_s / 3600, abs=0.01)
    assert node.hours > 10 * big.hours


def test_bucketed_sync_exposes_only_what_backward_cannot_hide():
    """grad_sync='bucketed': the last 25 MiB bucket's all-reduce stays on the critical
    path (or the part of the whole that outlasts backward); one rank has none; the flat
    sync exposes the whole all-reduce."""
    from scalefold.plan.stepmodel import GRAD_BYTES, allreduce_s, exposed_allreduce_s
    from scalefold.train.config import GRAD_BUCKET_BYTES

    cluster = load_cluster("dgxh100", nodes=16)
    whole = allreduce_s(cluster, 128, 0.01)
    last = allreduce_s(cluster, 128, 0.0, GRAD_BUCKET_BYTES)
    assert 0 < last < whole
    assert exposed_allreduce_s(cluster, 128, 0.01, "flat", 0.3) == whole
    assert exposed_allreduce_s(cluster, 128, 0.01, "bucketed", 0.3) == last
    assert exposed_allreduce_s(cluster, 128, 0.01, "bucketed", 0.001) == pytest.approx(
        whole - 0.001)  # a backward too short to hide it
    assert exposed_allreduce_s(cluster, 1, 0.01, "bucketed", 0.3) == 0.0
    assert GRAD_BUCKET_BYTES < GRAD_BYTES
    with pytest.raises(ValueError, match="grad_sync"):
        exposed_allreduce_s(cluster, 128, 0.01, "ddp", 0.3)
    prof = load_profile()
    shape = RunShape(global_batch=128, dap_size=1, eval_ranks=0)
    flat = predict(cluster, shape, prof, PlanOptions(trials=50))
    bucketed = predict(cluster, shape, prof, PlanOptions(trials=50, grad_sync="bucketed"))
    assert bucketed.step.allreduce_s == pytest.approx(last)
    assert bucketed.step.step_s < flat.step.step_s
    assert any("bucketed" in a for a in bucketed.assumptions)
