"""Plain-text and JSON renderings of predictions."""

from __future__ import annotations

from scalefold.plan.model import TARGET_TO_BEAT_MIN, Prediction
from scalefold.plan.pretrain import (
    AF2_DAYS,
    SCALEFOLD_GPUS,
    SCALEFOLD_HOURS,
    PretrainPrediction,
)
from scalefold.plan.published import PublishedRun
from scalefold.plan.timeline import run_time


def format_prediction(p: Prediction) -> str:
    s, c = p.shape, p.cluster
    st = p.step
    mode = (f"asynchronous on {s.eval_ranks} ranks" if s.eval_ranks else "synchronous")
    lines = [
        f"PREDICTION (a model, not a measurement) for {c.name}: {c.nodes} nodes x "
        f"{c.gpus_per_node} GPUs = {c.gpus} GPUs",
        f"  run shape: global batch {s.global_batch}, DAP {s.dap_size}, "
        f"{st.groups} data-parallel groups x local batch {st.local_batch}, evaluation "
        f"{mode}, {s.loader} with {s.workers_per_gpu} workers per GPU, preset {st.preset}",
        f"  steps to target: {p.target.source}; steps "
        f"{min(p.target.steps)}..{max(p.target.steps)}, mean "
        f"{sum(p.target.steps) / len(p.target.steps):.0f}",
        f"  step: {st.step_s:.4f} s = " + " + ".join(
            f"{k} {v:.4f}" for k, v in p.step_parts().items())
        + f" (one GPU: {st.one_gpu_s:.4f} s, {st.trainer_path}; DAP: {st.dap_source})",
        f"  evaluation: {p.eval_steady_s:.1f} s each ({p.figures.eval_s[0]:.1f} s the first); "
        f"{p.figures.cadence} steps of training take {p.figures.cadence * st.step_s:.1f} s",
        f"  memory per GPU: {st.memory_gib:.1f} GiB of {st.memory_limit_gib:.1f} GiB usable",
        f"  one run: mean {p.stats.run_mean_s / 60:.2f} min, spread (std) {p.stats.run_std_s / 60:.2f} min, "
        f"{min(r.total_s for r in p.stats.runs) / 60:.2f}..{max(r.total_s for r in p.stats.runs) / 60:.2f}"
        f" min over the reference runs' convergence",
        f"  result (olympic mean of 10 runs): {p.stats.olympic_mean_s / 60:.2f} min expected, "
        f"90% of results in {p.stats.olympic_p05_s / 60:.2f}..{p.stats.olympic_p95_s / 60:.2f} min "
        f"(RCP scaling applied to {100 * p.stats.normalised_share:.0f}% of drawn results); "
        f"{'beats' if p.stats.olympic_mean_s / 60 < TARGET_TO_BEAT_MIN else 'does not beat'} "
        f"{TARGET_TO_BEAT_MIN} min",
        "  where a mean run's time goes (s): " + ", ".join(
            f"{k} {v:.1f}" for k, v in p.mean_parts().items()),
    ]
    lines += [f"  WARNING: {w}" for w in p.warnings]
    lines += [f"  assumed: {a}" for a in p.assumptions]
    return "\n".join(lines)


def prediction_json(p: Prediction) -> dict:
    return {
        "prediction": True,
        "cluster": {"name": p.cluster.name, "nodes": p.cluster.nodes,
                    "gpus_per_node": p.cluster.gpus_per_node, "gpu": p.cluster.gpu},
        "shape": {"global_batch": p.shape.global_batch, "dap_size": p.shape.dap_size,
                  "eval_ranks": p.shape.eval_ranks, "loader": p.shape.loader,
                  "workers_per_gpu": p.shape.workers_per_gpu, "preset": p.step.preset,
                  "local_batch": p.step.local_batch, "groups": p.step.groups},
        "steps_to_target": {"source": p.target.source, "steps": list(p.target.steps)},
        "step_s": p.step.step_s, "step_parts_s": p.step_parts(),
        "eval_s": p.eval_steady_s, "memory_gib": p.step.memory_gib,
        "memory_limit_gib": p.step.memory_limit_gib,
        "run_mean_min": p.stats.run_mean_s / 60, "run_std_min": p.stats.run_std_s / 60,
        "olympic_mean_min": p.stats.olympic_mean_s / 60,
        "olympic_p05_min": p.stats.olympic_p05_s / 60, "olympic_p95_min": p.stats.olympic_p95_s / 60,
        "mean_run_parts_s": p.mean_parts(), "warnings": list(p.warnings),
        "assumptions": list(p.assumptions),
    }


def format_replay(run: PublishedRun) -> str:
    f = run.figures
    model = run_time(run.steps, f)
    err = 100 * (model.total_s / run.time_to_train_s - 1)
    return "\n".join([
        f"published log {run.path}: {run.nodes} nodes, {run.gpus} ranks, global batch "
        f"{run.global_batch}, {run.steps} steps, time to train "
        f"{run.time_to_train_s / 60:.2f} min",
        f"  its figures: startup {f.startup_s:.1f} s, step {f.step_s:.4f} s, first-block "
        f"warm-up {f.warmup_s:.1f} s, evaluations {f.eval_s[0]:.1f} s then "
        f"{f.eval_s[-1]:.1f} s, {'asynchronous' if f.asynchronous else 'synchronous'}",
        f"  the time line from those figures: {model.total_s / 60:.2f} min ({err:+.1f}%): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in model.parts().items()),
    ])


def format_pretraining(p: PretrainPrediction) -> str:
    st = p.step
    sch = p.schedule
    return "\n".join([
        f"PREDICTION (a model, not a measurement): AlphaFold2 initial training from "
        f"scratch on {p.cluster.name}, {p.cluster.nodes} nodes x {p.cluster.gpus_per_node} "
        f"GPUs",
        f"  schedule: {p.steps} steps at global batch {p.shape.global_batch} (about 10 "
        f"million samples, AlphaFold2 supplement 1.11 / Table 4); learning rate "
        f"{sch.warmup_lr_init:g} -> {sch.base_lr:g} over {sch.warmup_iters} steps, "
        f"{sch.final_lr:g} after {sch.decay_after_iters} (LRSchedule.alphafold_pretraining)",
        f"  shape: DAP {p.shape.dap_size}, {st.groups} groups x local batch {st.local_batch}, "
        f"preset {st.preset}, {st.idle_gpus} GPUs idle; step {st.step_s:.4f} s; memory "
        f"{st.memory_gib:.1f} GiB per GPU",
        f"  predicted: {p.hours:.1f} hours ({p.hours / 24:.2f} days); AlphaFold2: about "
        f"{AF2_DAYS:g} days on 128 TPU v3 cores; ScaleFold: about {SCALEFOLD_HOURS:g} hours "
        f"on {SCALEFOLD_GPUS} H100s",
    ] + ([f"  assumed: local batch {st.local_batch} as sequential micro-batches (gradient "
          f"accumulation, which the trainer does not implement yet)"] if p.accumulated else [])
      + ([f"  WARNING: memory {st.memory_gib:.1f} GiB per GPU exceeds the "
          f"{st.memory_limit_gib:.1f} GiB usable"] if not st.fits else []))
