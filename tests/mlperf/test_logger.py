"""The MLPerf logger against the official compliance checker and the published logs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from scalefold.mlperf import (
    DatasetFacts,
    MLPerfLogError,
    MLPerfLogger,
    RunFacts,
    count_parameters,
    parse_log,
    run_compliance_checker,
    sha256_of_file,
    validate_log,
)
from scalefold.mlperf import keys as K

from .logbuild import (
    OFFICIAL_CHECKPOINT_SHA256,
    OFFICIAL_EVAL_SAMPLES,
    OFFICIAL_PARAMETERS,
    OFFICIAL_TRAIN_SAMPLES,
    FakeClock,
    accuracy_curve,
    closed_facts,
    closed_submission,
    open_facts,
    open_submission,
    write_closed_run,
    write_open_run,
    write_run,
)

DATA = Path(__file__).parent / "data"
SAMPLE_LOGS = sorted(DATA.glob("*_result_*.txt"))
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def closed_log(tmp_path_factory) -> Path:
    return write_closed_run(tmp_path_factory.mktemp("closed") / "result_0.txt", 1234, 13, T0)


def _by_key(path: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    for line in parse_log(path):
        out.setdefault(line.key, []).append(line)
    return out


def _drop_lines(src: Path, dst: Path, key: str) -> Path:
    kept = [ln for ln in src.read_text().splitlines() if f'"key": "{key}"' not in ln]
    dst.write_text("\n".join(kept) + "\n")
    return dst


def _set_value(src: Path, dst: Path, key: str, value) -> Path:
    out = []
    for ln in src.read_text().splitlines():
        if f'"key": "{key}"' in ln:
            obj = json.loads(ln[len(":::MLLOG ") :])
            obj["value"] = value
            ln = ":::MLLOG " + json.dumps(obj)
        out.append(ln)
    dst.write_text("\n".join(out) + "\n")
    return dst


# --- the official checker accepts what the logger writes ---------------------------------


def test_closed_log_passes_official_checker(closed_log: Path) -> None:
    assert validate_log(closed_log) == []
    result = run_compliance_checker(closed_log)
    assert result.ok, result.output
    assert "closed_openfold.yaml" in result.output


def test_closed_log_holds_the_inputs_with_their_types(closed_log: Path) -> None:
    lines = _by_key(closed_log)
    value = {k: v[0].value for k, v in lines.items()}
    assert value["train_samples"] == OFFICIAL_TRAIN_SAMPLES
    assert value["eval_samples"] == OFFICIAL_EVAL_SAMPLES
    assert value["model_parameters_count"] == OFFICIAL_PARAMETERS
    assert value["init_checkpoint_sha256sum"] == OFFICIAL_CHECKPOINT_SHA256
    assert value["seed"] == 1234 and type(value["seed"]) is int
    assert value["templates_enabled"] is True and value["opt_amsgrad"] is False
    assert type(value["val_max_sequence_length"]) is int
    assert type(value["opt_weight_decay"]) is float
    # epoch_num = training samples seen = cycles x val_every_iters x global batch
    evals = lines["eval_accuracy"]
    assert [e.metadata["epoch_num"] for e in evals] == [c * 40 * 256 for c in range(1, 14)]
    assert evals[-1].value >= 0.8 > max(e.value for e in evals[:-1])
    assert lines["run_stop"][0].metadata["status"] == "success"
    # time to train is what the fake clock says: datasets + 13 x (40 steps + eval)
    ttt_s = (lines["run_stop"][0].time_ms - lines["run_start"][0].time_ms) / 1000
    assert ttt_s == pytest.approx(10 + 13 * (40 * 0.68 + 25), abs=0.01)
    stats = [ln for ln in lines["tracked_stats"] if "throughput" in ln.value]
    assert [s.metadata["step"] for s in stats] == list(range(1, 14))
    assert stats[0].value["throughput"] == pytest.approx(40 * 256 / (40 * 0.68))


def test_call_site_is_the_callers_line(closed_log: Path) -> None:
    files = {ln.metadata["file"] for ln in parse_log(closed_log)}
    assert files == {str(Path(__file__).parent / "logbuild.py")}


def test_open_division_log_passes(tmp_path: Path) -> None:
    log = write_open_run(tmp_path / "open.txt", 99, T0)
    assert validate_log(log) == []
    result = run_compliance_checker(log)
    assert result.ok, result.output
    assert "open_openfold.yaml" in result.output
    values = {ln.key: ln.value for ln in parse_log(log)}
    assert values["train_samples"] == 1000 and values["model_parameters_count"] == 1_234_567
    assert "init_checkpoint_sha256sum" not in values  # trained from scratch


def test_open_division_needs_only_the_common_keys(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    path = tmp_path / "minimal.txt"
    with MLPerfLogger(path, enabled=True, clock=clock) as log:
        log.init_start()
        log.cache_clear(False)
        log.log_submission(open_submission())
        log.event("global_batch_size_note", "see RunFacts")  # free-form keys are allowed
        assert "global_batch_size: logged 0 times, required exactly once" in log.problems()
        log.init_stop()
        log.run_start()
        log.log_dataset(DatasetFacts(train_samples=50, eval_samples=5))
        for i, acc in enumerate((0.5, 0.81), start=1):
            log.epoch_start(i * 8)
            log.epoch_stop(i * 8)
            log.eval_start(i * 8)
            log.eval_accuracy(acc, i * 8)
            log.eval_stop(i * 8)
        log.run_stop("success")
    assert run_compliance_checker(path).ok  # the checker does not ask for the batch ...
    assert validate_log(path) == [
        "global_batch_size: 0 lines, required exactly one"  # ... BENCHMARK_RULES.md does
    ]


# --- the structure of the published logs ------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLE_LOGS, ids=lambda p: p.name)
def test_same_structure_as_published_logs(closed_log: Path, sample: Path) -> None:
    ours, theirs = _by_key(closed_log), _by_key(sample)
    assert set(ours) == set(theirs)
    assert run_compliance_checker(sample).ok
    for key in theirs:
        a, b = ours[key][0], theirs[key][0]
        assert a.event_type == b.event_type, key
        drop = {"file", "lineno"}
        if key == "staging_stop" or key == "tracked_stats":
            drop |= {"staging_duration"}
        assert set(a.metadata) - drop == set(b.metadata) - drop, key
        if key == "seed":
            # published logs write the seed as a string; ours is the integer it stands for
            assert type(a.value) is int and int(b.value) >= 0
        elif key != "tracked_stats":
            assert type(a.value) is type(b.value), (key, a.value, b.value)
        if key in K.RUN_FACT_KINDS and key not in ("seed", "number_of_ranks", "precision"):
            # closed-division values: ours are the official ones, as are theirs, except
            # the free hyper-parameters each submitter chose
            free = {
                "global_batch_size",
                "gradient_accumulation_steps",
                "initial_training_dataloader_type",
            }
            if key not in free:
                assert a.value == b.value, key


def test_published_logs_pass_our_validator() -> None:
    for sample in SAMPLE_LOGS:
        problems = validate_log(sample)
        # the only deviation: their seed is a string
        assert problems and all("(seed)" in p for p in problems), problems


# --- negative: the checker (or our validator) rejects a broken log -----------------------


@pytest.mark.parametrize(
    "key",
    [
        "model_parameters_count",
        "init_checkpoint_sha256sum",
        "eval_samples",
        "submission_org",
        "run_stop",
        "templates_enabled",
    ],
)
def test_missing_required_key_fails(closed_log: Path, tmp_path: Path, key: str) -> None:
    broken = _drop_lines(closed_log, tmp_path / "broken.txt", key)
    assert not run_compliance_checker(broken).ok
    assert any(p.startswith(key) for p in validate_log(broken))


@pytest.mark.parametrize(
    "key, value",
    [("train_samples", 1000), ("model_parameters_count", 93229083), ("opt_name", "adam")],
)
def test_wrong_fixed_value_fails_checker(closed_log: Path, tmp_path: Path, key, value) -> None:
    broken = _set_value(closed_log, tmp_path / "broken.txt", key, value)
    assert not run_compliance_checker(broken).ok


@pytest.mark.parametrize(
    "key, value, checker_notices",
    [
        ("val_max_sequence_length", "700", True),
        ("opt_amsgrad", "false", True),
        # `1 == True` and `700.0 == 700` in Python: only our validator sees these
        ("templates_enabled", 1, False),
        ("max_templates", 4.0, False),
        ("eval_samples", 180.0, False),
        ("seed", "1234", False),
    ],
)
def test_wrong_type_is_rejected(
    closed_log: Path, tmp_path: Path, key: str, value, checker_notices: bool
) -> None:
    broken = _set_value(closed_log, tmp_path / "broken.txt", key, value)
    assert run_compliance_checker(broken).ok is not checker_notices
    problems = validate_log(broken)
    assert any(f"({key})" in p and "not of kind" in p for p in problems), problems


def test_run_that_never_reaches_target_fails(tmp_path: Path) -> None:
    path = write_run(
        tmp_path / "slow.txt",
        submission=closed_submission(),
        facts=closed_facts(5),
        dataset=DatasetFacts(train_samples=OFFICIAL_TRAIN_SAMPLES, eval_samples=180),
        accuracies=accuracy_curve(5, 10)[:-1],
        start_time=T0,
    )
    assert not run_compliance_checker(path).ok
    lines = _by_key(path)
    assert lines["run_stop"][0].metadata["status"] == "aborted"


def test_success_without_reaching_target_is_flagged(closed_log: Path, tmp_path: Path) -> None:
    broken = tmp_path / "lie.txt"
    text = closed_log.read_text()
    last = [ln for ln in text.splitlines() if '"eval_accuracy"' in ln][-1]
    obj = json.loads(last[len(":::MLLOG ") :])
    obj["value"] = 0.79
    broken.write_text(text.replace(last, ":::MLLOG " + json.dumps(obj)))
    assert not run_compliance_checker(broken).ok
    assert any("no eval_accuracy >= 0.8" in p for p in validate_log(broken))


# --- the logger refuses bad input early ----------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("templates_enabled", 1),
        ("val_max_sequence_length", "700"),
        ("val_max_sequence_length", 700.0),
        ("seed", True),
        ("opt_base_learning_rate", "1e-3"),
        ("opt_base_learning_rate", float("nan")),
        ("train_max_pdb_release_date", "16/09/2021"),
        ("init_checkpoint_sha256sum", "B518BE"),
        ("global_batch_size", 0),
        ("precision", ""),
    ],
)
def test_run_facts_reject_wrong_types(field: str, value) -> None:
    with pytest.raises(MLPerfLogError):
        replace(closed_facts(1), **{field: value})


def test_run_facts_accept_numpy_scalars_and_store_python_types() -> None:
    facts = replace(
        closed_facts(1),
        model_parameters_count=np.int64(OFFICIAL_PARAMETERS),
        opt_base_learning_rate=np.float32(0.5),
        templates_enabled=np.bool_(True),
        max_templates=np.int32(4),
    )
    assert type(facts.model_parameters_count) is int
    assert type(facts.opt_base_learning_rate) is float and facts.opt_base_learning_rate == 0.5
    assert facts.templates_enabled is True and type(facts.max_templates) is int


def test_submission_info_validation() -> None:
    with pytest.raises(MLPerfLogError):
        replace(closed_submission(), division="Closed")
    with pytest.raises(MLPerfLogError):
        replace(closed_submission(), status="on-prem")
    with pytest.raises(MLPerfLogError):
        replace(closed_submission(), number_of_nodes=0)


def test_order_and_duplicates_are_enforced(tmp_path: Path) -> None:
    log = MLPerfLogger(tmp_path / "x.txt", enabled=True)
    with pytest.raises(MLPerfLogError):
        log.run_start()  # before init
    with pytest.raises(MLPerfLogError):
        log.epoch_start(0)  # before run_start
    log.init_start()
    with pytest.raises(MLPerfLogError):
        log.init_start()
    log.log_submission(closed_submission())
    with pytest.raises(MLPerfLogError):
        log.log_submission(closed_submission())
    log.init_stop()
    log.run_start()
    with pytest.raises(MLPerfLogError):
        log.init_start()  # after run_start
    with pytest.raises(MLPerfLogError):
        log.eval_accuracy("0.8", 10)
    with pytest.raises(MLPerfLogError):
        log.eval_accuracy(80.1, 10)  # a percentage, not a fraction
    with pytest.raises(MLPerfLogError):
        log.run_stop("done")
    with pytest.raises(MLPerfLogError):
        log.event("train_samples", 5)  # typed keys go through their method
    with pytest.raises(MLPerfLogError):
        log.tracked_stats(1, {"throughput": "fast"})
    log.close()


def test_problems_lists_what_is_missing(tmp_path: Path) -> None:
    log = MLPerfLogger(None, enabled=True, clock=FakeClock(T0))
    assert log.problems() == ["submission info not logged (log_submission)"]
    log.init_start()
    log.log_submission(closed_submission())
    log.log_run_facts(closed_facts(3))
    missing = log.problems()
    assert "run_stop: logged 0 times, required exactly once" in missing
    assert "eval_accuracy: never logged, required at least once" in missing
    assert "no eval_accuracy reached the target 0.8" in missing
    assert not any(p.startswith("model_parameters_count") for p in missing)


def test_disabled_logger_writes_nothing_but_still_checks(tmp_path: Path, capsys) -> None:
    path = tmp_path / "rank7.txt"
    log = MLPerfLogger(path, enabled=False, stdout=True)
    log.init_start()
    log.log_submission(closed_submission())
    with pytest.raises(MLPerfLogError):
        log.init_start()
    with pytest.raises(MLPerfLogError):
        RunFacts(**{**closed_facts(1).__dict__, "seed": "x"})
    log.close()
    assert not path.exists()
    assert capsys.readouterr().out == ""
    assert log.count("submission_org") == 1


def test_stdout_echo(tmp_path: Path, capsys) -> None:
    path = tmp_path / "echo.txt"
    with MLPerfLogger(path, enabled=True, stdout=True) as log:
        log.init_start()
    out = capsys.readouterr().out
    assert out.startswith(":::MLLOG ") and '"init_start"' in out
    assert path.read_text() == out


def test_two_loggers_in_one_process_do_not_mix(tmp_path: Path) -> None:
    a = MLPerfLogger(tmp_path / "a.txt", enabled=True)
    b = MLPerfLogger(tmp_path / "b.txt", enabled=True)
    a.init_start()
    b.cache_clear(True)
    a.close()
    b.close()
    assert [ln.key for ln in parse_log(tmp_path / "a.txt")] == ["init_start"]
    assert [ln.key for ln in parse_log(tmp_path / "b.txt")] == ["cache_clear"]


def test_srun_prefixed_lines_parse(closed_log: Path, tmp_path: Path) -> None:
    prefixed = tmp_path / "slurm.log"
    text = "".join(f"0: {ln}\n" for ln in closed_log.read_text().splitlines())
    prefixed.write_text("Beginning trial 1 of 10\n" + text + "RESULT,OPENFOLD_HPC,,600,x,y\n")
    assert validate_log(prefixed) == []
    assert run_compliance_checker(prefixed).ok


def test_helpers_hash_and_count(tmp_path: Path) -> None:
    blob = tmp_path / "ckpt.pt"
    blob.write_bytes(b"abc")
    assert sha256_of_file(blob, chunk_bytes=2) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert count_parameters(torch.nn.Linear(3, 2)) == 8


def test_open_facts_are_valid_run_facts() -> None:
    assert open_facts(1).init_checkpoint_sha256sum is None
    assert open_submission().division == "open"
