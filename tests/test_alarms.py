"""Collapse alarms: a score past its threshold gives one warning line with the iteration and the score, an
`alarm/<score>` curve, a note in the record and, if asked, a stop; a generator forced to one image trips them."""

from __future__ import annotations

import json
import types

import pytest
import torch

from genlab.callbacks.alarms import ScoreAlarm, StalledLossAlarm, sound_alarms
from genlab.errors import GenlabError
from tests.helpers import METRICS_YAML, SCORED_TINY_GAN, TINY_CLASSIFIER, TINY_GAN


class RecordingLogger:
    def __init__(self) -> None:
        self.logged: list[tuple[dict[str, float], int]] = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.logged.append((metrics, step))


def stand_in_trainer() -> types.SimpleNamespace:
    return types.SimpleNamespace(is_global_zero=True, loggers=[RecordingLogger()], should_stop=False)


ALARMS = [ScoreAlarm("classifier/label_tv", above=0.5), ScoreAlarm("classifier/recall", below=0.2),
          ScoreAlarm("classifier/coverage", below=0.2)]


def test_an_alarm_sounds_only_past_its_threshold_in_its_direction(capsys):
    trainer = stand_in_trainer()
    healthy = {"classifier/label_tv": 0.5, "classifier/recall": 0.2, "classifier/coverage": 0.9}  # on the lines
    assert sound_alarms(trainer, ALARMS, healthy, 100, stop=True) == [] and not trainer.should_stop
    assert capsys.readouterr().err == ""
    collapsed = {"classifier/label_tv": 0.81, "classifier/recall": 0.03, "classifier/coverage": 0.9}
    messages = sound_alarms(trainer, ALARMS, collapsed, 200, stop=False)
    assert messages == ["classifier/label_tv = 0.81 above 0.5", "classifier/recall = 0.03 below 0.2"]
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"genlab: warning: iteration 200: {message} (mode collapse?); training goes on"
                     for message in messages]
    assert not trainer.should_stop  # warned, not stopped
    logged = {(name, step): value for metrics, step in trainer.loggers[0].logged for name, value in metrics.items()}
    assert logged[("alarm/classifier/label_tv", 100)] == 0.0 and logged[("alarm/classifier/label_tv", 200)] == 1.0
    assert logged[("alarm/classifier/coverage", 200)] == 0.0
    sound_alarms(trainer, ALARMS, collapsed, 300, stop=True)
    assert trainer.should_stop


def test_an_alarm_is_silent_before_its_iteration(capsys):
    trainer = stand_in_trainer()
    alarm = ScoreAlarm("classifier/label_tv", above=0.5, after=1400)
    early = {"classifier/label_tv": 0.82}  # a healthy MLP GAN after its first epoch
    assert sound_alarms(trainer, [alarm], early, 1399, stop=True) == [] and not trainer.should_stop
    assert capsys.readouterr().err == "" and trainer.loggers[0].logged == []
    assert sound_alarms(trainer, [alarm], early, 1400, stop=False) == ["classifier/label_tv = 0.82 above 0.5"]
    with pytest.raises(GenlabError, match="no score 'classifier/label_TV'"):  # a wrong name fails before `after`
        sound_alarms(trainer, [ScoreAlarm("classifier/label_TV", above=0.5, after=1400)], early, 469, stop=False)
    with pytest.raises(GenlabError, match="after = -1; use 0 or more"):
        ScoreAlarm("classifier/label_tv", above=0.5, after=-1).check()


def test_an_alarm_needs_one_direction_and_a_score_the_evaluation_gives():
    with pytest.raises(GenlabError, match="exactly one of above or below"):
        ScoreAlarm("classifier/recall").check()
    with pytest.raises(GenlabError, match="exactly one of above or below"):
        ScoreAlarm("classifier/recall", above=0.9, below=0.1).check()
    with pytest.raises(GenlabError, match="no score 'classifier/recall'.*manifold_k"):
        ScoreAlarm("classifier/recall", below=0.1).message({"classifier/is": 2.0})


ALARM_YAML = METRICS_YAML.replace("splits: 10}", "splits: 10, manifold_k: 3}") + """
        stop_on_alarm: true
        alarms:
          - {score: classifier/recall, below: 0.2}
          - {score: classifier/coverage, below: 0.2}
"""


def test_a_generator_forced_to_one_image_trips_recall_and_coverage_and_stops_after_the_first_epoch(
        run_cli, tmp_path, capsys, monkeypatch):
    from genlab.models.base import GenerativeModule
    from tests.helpers import write_tiny_mnist

    data = write_tiny_mnist(tmp_path / "data", train=400, test=120)
    run_cli("fit", *TINY_CLASSIFIER, f"--data.data_dir={data}")
    one_image = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    monkeypatch.setattr(GenerativeModule, "sample",
                        lambda self, n, labels=None, generator=None: one_image.expand(n, -1, -1, -1).to(self.device))
    config = tmp_path / "alarms.yaml"
    config.write_text(ALARM_YAML)
    capsys.readouterr()
    run_cli("fit", *SCORED_TINY_GAN, "--config", str(config), f"--data.data_dir={data}", "--trainer.max_epochs=3")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("genlab: warning:")]
    # 300 training images in batches of 32: the first evaluation after 10 iterations, then the stop
    assert [line.split(" = ")[0] for line in warnings] == ["genlab: warning: iteration 10: classifier/recall",
                                                           "genlab: warning: iteration 10: classifier/coverage"]
    assert all(line.endswith("(mode collapse?); stopping (stop_on_alarm)") for line in warnings)
    run = tmp_path / "lightning_logs" / "gan_mnist" / "version_0"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [record["iteration"] for record in records] == [10]  # stopped after the first of 3 epochs
    assert records[0]["scores"]["classifier/recall"] == 0.0  # identical samples: balls of radius 0
    assert [message.split(" = ")[0] for message in records[0]["alarms"]] == ["classifier/recall", "classifier/coverage"]
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 2 * 10  # the usual last.ckpt, of the stop's iteration (a D and a G step each)


def stand_in_fit(log_every_n_steps: int = 5) -> tuple[types.SimpleNamespace, types.SimpleNamespace]:
    trainer = stand_in_trainer()
    trainer.callback_metrics, trainer.log_every_n_steps, trainer.global_step = {}, log_every_n_steps, 0
    trainer.strategy = types.SimpleNamespace(reduce_boolean_decision=lambda decision, all: decision)  # one process
    return trainer, types.SimpleNamespace(iteration=0)


def feed(alarm, trainer, module, losses: list[float], start: int) -> None:
    """One logged loss per `log_every_n_steps` iterations, from iteration `start` on."""
    every = trainer.log_every_n_steps
    for index, loss in enumerate(losses):
        for iteration in range(start + index * every + 1, start + (index + 1) * every + 1):
            if iteration % trainer.log_every_n_steps == 0:
                trainer.callback_metrics["loss/d"] = torch.tensor(loss)
            module.iteration = iteration
            alarm.on_train_batch_end(trainer, module, None, None, 0)


def test_a_loss_that_stops_moving_sounds_once_per_stall_and_a_moving_one_never(capsys):
    alarm, (trainer, module) = StalledLossAlarm("loss/d", window=20, tolerance=1e-3), stand_in_fit()
    feed(alarm, trainer, module, [0.69, 0.71, 0.68, 0.70, 0.72, 0.69, 0.70], start=0)  # batch noise: moving
    assert capsys.readouterr().err == ""
    feed(alarm, trainer, module, [1e-6, 2e-6, 1e-6, 3e-6, 2e-6, 1e-6, 1e-6], start=35)  # a saturated critic
    # 20 flat iterations from 40 (the first flat value) are complete at 60: one line, then quiet while it stays flat
    assert capsys.readouterr().err.splitlines() == [
        ("genlab: warning: iteration 60: loss/d stayed at 2e-06 (within 0.001) for 20 iterations (a network gets no"
         " gradient?); training goes on")]
    flags = {step: metrics["alarm/loss/d"] for metrics, step in trainer.loggers[0].logged}
    assert flags[55] == 0.0 and flags[60] == 1.0 and flags[70] == 1.0
    assert not trainer.should_stop
    feed(alarm, trainer, module, [0.5, 0.6], start=70)  # it moves again, then stalls anew: a second line
    feed(alarm, trainer, module, [0.3] * 6, start=80)
    assert capsys.readouterr().err.count("genlab: warning:") == 1


def test_a_window_that_is_not_a_multiple_of_the_logging_interval_still_sounds(capsys):
    alarm, (trainer, module) = StalledLossAlarm("loss/d", window=1000, tolerance=1e-3), stand_in_fit(300)
    feed(alarm, trainer, module, [0.5] * 5, start=0)  # read at 300, 600, ..., 1500
    lines = capsys.readouterr().err.splitlines()
    # flat since 300: at 1200 only 900 iterations are seen, at 1500 the 1,200 since 300 cover the window
    assert len(lines) == 1 and lines[0].startswith("genlab: warning: iteration 1500: loss/d stayed at 0.5")


def test_a_stalled_loss_alarm_on_a_loss_the_model_never_logs_is_one_line():
    alarm, (trainer, module) = StalledLossAlarm("loss/D", window=20), stand_in_fit(5)
    trainer.callback_metrics = {"loss/d": torch.tensor(0.5)}
    with pytest.raises(GenlabError, match=r"no loss 'loss/D' in 20 iterations; the model logs \['loss/d'\]"):
        for iteration in range(1, 30):
            module.iteration = iteration
            alarm.on_train_batch_end(trainer, module, None, None, 0)


def test_a_saturated_discriminator_in_a_real_fit_trips_the_stalled_loss_alarm_and_stops(run_cli, tiny_data, tmp_path,
                                                                                          capsys, monkeypatch):
    from genlab.nets.mlp import MLPDiscriminator

    # a critic that answers 20 whatever it sees (its weights still in the graph): the minimax loss/d freezes
    monkeypatch.setattr(
        MLPDiscriminator, "forward",
        lambda self, x, labels=None: 20.0 + 0.0 * sum(p.sum() for p in self.parameters()) * x[:, :1, 0, 0])
    config = tmp_path / "stall.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: genlab.callbacks.StalledLossAlarm\n"
                      "      init_args: {loss: loss/d, window: 10, tolerance: 1.0e-6, stop: true}\n")
    run_cli("fit", *TINY_GAN, "--config", str(config), f"--data.data_dir={tiny_data}", "--trainer.max_epochs=5",
            "--trainer.log_every_n_steps=2")
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("genlab: warning:")]
    assert len(warnings) == 1 and "loss/d stayed at" in warnings[0] and warnings[0].endswith("; stopping")
    checkpoint = torch.load(tmp_path / "lightning_logs" / "gan_mnist" / "version_0" / "checkpoints" / "last.ckpt",
                            map_location="cpu", weights_only=False)
    stopped_at = int(warnings[0].split("iteration ")[1].split(":")[0])
    assert stopped_at >= 10 and checkpoint["epoch"] < 4  # the first full window, then the stop: not all 5 epochs
    assert checkpoint["global_step"] <= 2 * (stopped_at + 16)  # a D and a G step per iteration, at most an epoch on
