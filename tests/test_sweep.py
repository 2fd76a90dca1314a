"""`genlab sweep`: trials are ordinary runs, several workers share one journal, excluded trials are never best, bad
input is one line, and an interrupted sweep leaves its study consistent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest

from genlab.errors import GenlabError
from genlab.sweep.command import TrialRunner, finish, open_study, optimize, parse
from genlab.sweep.outcome import exclusion
from genlab.sweep.space import parse_dimension, read_space
from tests.helpers import EXPERIMENTS

TOY = str(EXPERIMENTS / "toy_quadratic.yaml")
SPACE = "model.init_args.generator_optimizer.init_args.lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n"


def sweep_command(tmp_path: Path, *extra: str) -> list[str]:
    (tmp_path / "space.yaml").write_text(SPACE)
    return [sys.executable, "-m", "genlab.launch", "sweep", "--config", TOY, "--space", str(tmp_path / "space.yaml"),
            "--objective", "toy/sliced_wasserstein", "--direction", "minimize", "--root", str(tmp_path / "sweeps"),
            *extra]


def journal_trials(tmp_path: Path, study: str = "toy_quadratic") -> list:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "sweeps" / f"{study}.journal")))
    return optuna.load_study(study_name=study, storage=storage).trials


@pytest.mark.slow
def test_two_workers_share_one_journal_and_every_trial_is_an_ordinary_run(tmp_path):
    command = sweep_command(tmp_path, "--trials", "3", "--trainer.max_steps=40")
    workers = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), outputs
    trials = journal_trials(tmp_path)
    numbers = [trial.number for trial in trials]
    assert len(numbers) == len(set(numbers)) and 3 <= len(numbers) <= 4  # a race may start one extra, never a dup
    assert all(trial.state.name == "COMPLETE" for trial in trials)
    for trial in trials:
        folder = tmp_path / "sweeps" / "toy_quadratic" / f"trial_{trial.number:04d}"
        record = json.loads((folder / "trial.json").read_text())
        lr = record["values"]["model.init_args.generator_optimizer.init_args.lr"]
        assert lr == trial.params["model.init_args.generator_optimizer.init_args.lr"]
        assert f"lr: {lr}" in (folder / "seed0" / "config.yaml").read_text()  # the drawn value trained the run
        assert record["mean"] == pytest.approx(trial.value)
    table = (tmp_path / "sweeps" / "toy_quadratic" / "trials.md").read_text()
    assert table.count("| COMPLETE |") == len(trials) and "**best**" in table


def test_an_interrupted_sweep_stops_its_run_and_marks_the_trial_failed(tmp_path):
    command = sweep_command(tmp_path, "--trials", "2", "--trainer.max_steps=100000")
    sweep = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    run = tmp_path / "sweeps" / "toy_quadratic" / "trial_0000" / "seed0"
    try:
        deadline = time.time() + 120
        while not (run / "checkpoints").is_dir() and not list(run.glob("events.*")) and time.time() < deadline:
            time.sleep(0.5)
        time.sleep(3)  # training under way
        sweep.send_signal(signal.SIGTERM)
        output = sweep.communicate(timeout=120)[0]
    finally:  # a failing test leaves no sweep (and no trial's run) behind
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
    assert sweep.returncode == 143, output
    (trial,) = journal_trials(tmp_path)
    assert trial.state.name == "FAIL" and trial.user_attrs["excluded"].startswith("interrupted")
    assert (run / "checkpoints" / "last.ckpt").is_file()  # the run stopped as genlab stops any run


class FakeRun:
    """Stands in for `genlab fit` as a child process: writes the records a run would, by the drawn lr."""

    outcomes: ClassVar[dict[float, dict]] = {}

    def __init__(self, command: list[str], stdout=None, stderr=None, start_new_session=False) -> None:
        options = dict(item[2:].split("=", 1) for item in command if item.startswith("--") and "=" in item)
        run = Path(options["trainer.logger.init_args.save_dir"]) / options["trainer.logger.init_args.name"]
        run = run / options["trainer.logger.init_args.version"]
        lr = float(options["model.init_args.generator_optimizer.init_args.lr"])
        outcome = FakeRun.outcomes[lr]
        (run / "checkpoints").mkdir(parents=True)
        if outcome.get("diverged"):
            (run / "checkpoints" / "diverged-iteration_0000007.ckpt").write_bytes(b"")
        records = [{"stage": "fit", "iteration": iteration, "scores": outcome.get("scores", {}),
                    "alarms": outcome.get("alarms")} for iteration in (5, 10)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
        self.code, self.polls, self.signalled = outcome.get("code", 0), 0, None

    def wait(self) -> int:
        return self.code

    def poll(self) -> int | None:
        self.polls += 1
        return None if self.polls == 1 else self.code  # running at the first look, then done

    def send_signal(self, signum: int) -> None:
        self.signalled = signum


def fake_sweep(tmp_path: Path, monkeypatch, outcomes: dict[float, dict], objective: str = "classifier/fd",
               *options: str):
    """A sweep whose trials draw the given lrs in order, against the FakeRun."""
    FakeRun.outcomes = outcomes
    monkeypatch.setattr("genlab.sweep.command.subprocess.Popen", FakeRun)
    arguments, settings = parse(["--config", TOY, "--space", "unused.yaml", "--trials", str(len(outcomes)),
                                 "--objective", objective, "--direction", "minimize", "--root", str(tmp_path),
                                 *options])
    dimension = parse_dimension("model.init_args.generator_optimizer.init_args.lr",
                                {"choices": list(outcomes)}, "space.yaml")
    study = open_study(arguments)
    for lr in outcomes:  # the trials draw these, in this order
        study.enqueue_trial({dimension.key: lr})
    optimize(study, TrialRunner(arguments, settings, [dimension]), arguments.trials)
    return study, arguments, [dimension]


def test_a_collapsed_diverged_or_failed_trial_is_recorded_as_such_and_never_best(tmp_path, monkeypatch):
    monkeypatch.setattr("genlab.sweep.command.POLL_SECONDS", 0.0)
    outcomes = {
        0.1: {"scores": {"classifier/fd": 5.0, "classifier/label_tv": 0.95}},  # best FD, but collapsed
        0.2: {"scores": {"classifier/fd": 6.0}, "alarms": ["classifier/recall = 0.01 below 0.2"]},
        0.3: {"scores": {"classifier/fd": 7.0}, "diverged": True},
        0.4: {"scores": {"classifier/fd": 8.0}, "code": 1},
        0.5: {"scores": {"classifier/fd": 50.0, "classifier/label_tv": 0.1}},
    }
    study, arguments, dimensions = fake_sweep(tmp_path, monkeypatch, outcomes)
    states = {trial.params[dimensions[0].key]: (trial.state.name, trial.user_attrs.get("excluded", ""))
              for trial in study.trials}
    assert states[0.1][0] == "FAIL" and "collapsed (classifier/label_tv = 0.950 >= 0.9)" in states[0.1][1]
    assert states[0.2][0] == "FAIL" and "collapse alarm at iteration 5" in states[0.2][1]
    assert states[0.3][0] == "FAIL" and "diverged (diverged-iteration_0000007)" in states[0.3][1]
    assert states[0.4][0] == "FAIL" and "exit status 1" in states[0.4][1]
    assert study.best_trial.params[dimensions[0].key] == 0.5 and study.best_value == 50.0
    finish(study, arguments, dimensions)
    table = (tmp_path / "toy_quadratic" / "trials.md").read_text()
    assert "| 4 | COMPLETE | 50 | 0.5 | **best** |" in table and table.count("| FAIL |") == 4


def test_with_pruning_a_trial_behind_the_median_of_earlier_trials_is_stopped_and_pruned(tmp_path, monkeypatch):
    monkeypatch.setattr("genlab.sweep.command.POLL_SECONDS", 0.0)
    outcomes = {lr: {"scores": {"classifier/fd": 10.0 + lr}} for lr in (0.1, 0.2, 0.3, 0.4)}
    outcomes[0.5] = {"scores": {"classifier/fd": 100.0}}
    study, _, dimensions = fake_sweep(tmp_path, monkeypatch, outcomes, "classifier/fd", "--prune")
    states = {trial.params[dimensions[0].key]: trial.state.name for trial in study.trials}
    assert states == {0.1: "COMPLETE", 0.2: "COMPLETE", 0.3: "COMPLETE", 0.4: "COMPLETE", 0.5: "PRUNED"}
    assert study.trials[-1].user_attrs["excluded"] == "pruned at iteration 10"  # both evaluations read at once
    assert study.trials[0].intermediate_values == {5: 10.1, 10: 10.1}  # each evaluation reported as it came


def test_an_objective_no_trial_records_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr("genlab.sweep.command.POLL_SECONDS", 0.0)
    study, arguments, dimensions = fake_sweep(tmp_path, monkeypatch, {0.1: {"scores": {"classifier/is": 5.0}}})
    with pytest.raises(GenlabError, match=r"no trial recorded classifier/fd: choose a score the runs record"):
        finish(study, arguments, dimensions)
    assert "no score classifier/fd in the run's records (they hold classifier/is)" in \
        study.trials[0].user_attrs["excluded"]


@pytest.mark.parametrize("space, message", [
    ("model.init_args.n_critic: {low: 5, high: 1}", "has an empty or reversed range (low 5, high 1)"),
    ("model.init_args.n_critic: {low: 2, high: 2}", "has an empty or reversed range"),
    ("model.init_args.lr: {low: 0.1, high: 1}", ("model.init_args.lr is not a setting of this configuration (keys"
                                                " ending in 'lr': model.init_args.discriminator_optimizer")),
    ("model.init_args.loss: {choices: []}", "needs a non-empty list of choices"),
    ("model.init_args.n_critic: {low: 0, high: 3, log: true}", "log-uniform, so low must be above 0"),
    ("model.init_args.n_critic: {lo: 1, hi: 3}", "has hi, lo; use low, high and log, or choices"),
])
def test_a_bad_search_space_is_one_line(tmp_path, space, message):
    (tmp_path / "space.yaml").write_text(space)
    keys = {"model.init_args.n_critic", "model.init_args.loss",
            "model.init_args.discriminator_optimizer.init_args.lr", "model.init_args.generator_optimizer.init_args.lr"}
    with pytest.raises(GenlabError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        read_space(tmp_path / "space.yaml", keys)
    assert "\n" not in str(error.value)


def test_a_storage_that_cannot_be_opened_and_unknown_options_are_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    arguments, _ = parse(["--config", TOY, "--space", "s.yaml", "--trials", "1", "--objective", "x", "--direction",
                          "minimize", "--storage", str(blocker / "study.journal")])
    with pytest.raises(GenlabError, match="cannot open the study's storage .*give a writable journal file path"):
        open_study(arguments)
    with pytest.raises(GenlabError, match="genlab sweep does not know --learning_rate: settings for the trials start"):
        parse(["--config", TOY, "--space", "s.yaml", "--trials", "1", "--objective", "x", "--direction", "minimize",
               "--learning_rate=3"])


def test_the_exit_code_alone_never_hides_a_finished_good_run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.jsonl").write_text(json.dumps({"stage": "fit", "iteration": 5, "scores": {"classifier/fd": 3.0}})
                                       + "\n" + '{"stage": "fit", "scor')  # a cut last line is skipped
    assert exclusion(run, 0) is None
    assert "exit status 2" in exclusion(run, 2)


def test_list_choices_such_as_adams_betas_are_drawn_and_passed_as_lists():
    import optuna

    dimension = parse_dimension("model.init_args.generator_optimizer.init_args.betas",
                                {"choices": [[0.5, 0.999], [0.5, 0.4999]]}, "space.yaml")
    study = optuna.create_study()
    study.enqueue_trial({dimension.key: "[0.5, 0.4999]"})
    drawn = dimension.suggest(study.ask())
    assert drawn == [0.5, 0.4999]
    from genlab.sweep.space import command_line_value

    assert command_line_value(drawn) == "[0.5, 0.4999]"


def test_baselines_are_enqueued_first_once_and_must_be_in_the_space(tmp_path):
    import optuna

    from genlab.sweep.command import enqueue_baselines

    lr = parse_dimension("model.init_args.generator_optimizer.init_args.lr",
                         {"low": 1e-4, "high": 1e-2, "log": True}, "s")
    betas = parse_dimension("model.init_args.generator_optimizer.init_args.betas",
                            {"choices": [[0.5, 0.999], [0.5, 0.4999]]}, "s")
    (tmp_path / "baselines.yaml").write_text(f"- {{{lr.key}: 0.001, {betas.key}: [0.5, 0.4999]}}\n")
    study = optuna.create_study()
    enqueue_baselines(study, tmp_path / "baselines.yaml", [lr, betas])
    trial = study.ask()
    assert lr.suggest(trial) == 0.001 and betas.suggest(trial) == [0.5, 0.4999]
    enqueue_baselines(study, tmp_path / "baselines.yaml", [lr, betas])  # a study with trials gets none again
    assert len(study.trials) == 1
    (tmp_path / "bad.yaml").write_text("- {model.init_args.n_critic: 2}\n")
    with pytest.raises(GenlabError, match="keys are in the search space"):
        enqueue_baselines(optuna.create_study(), tmp_path / "bad.yaml", [lr, betas])
