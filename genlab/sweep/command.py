"""`genlab sweep`: a hyperparameter search over an experiment with Optuna, each trial an ordinary genlab run.

    genlab sweep --config experiments/gan_mnist.yaml --space space.yaml --trials 16 \\
        --objective classifier/fd --direction minimize [--study NAME] [--storage PATH|URL] [--seeds 0,1,2] \\
        [any --trainer/--model/--data setting for every trial]

Each trial draws its values (Optuna's default TPE sampler), then runs `genlab fit` once per seed as a child process
in `<root>/<study>/trial_NNNN/seed<S>/` (its own config.yaml, checkpoints, metrics.jsonl, report.html, and
`trial.json` with the drawn values beside the seeds). The objective is the score of the fit's last evaluation,
the mean over seeds. A trial whose run diverged, sounded a collapse alarm, collapsed (label TV >= 0.9), failed or
did not record the objective is marked FAIL with the reason and is never the best. The study lives in a journal
file by default (`<root>/<study>.journal`): any number of `genlab sweep` processes with the same study, on one
machine or a shared file system, add trials to it until it holds `--trials`; an Optuna storage URL
(`postgresql://…`, `sqlite:///…`) serves many machines. At the end a table of every trial is printed and written to
`<root>/<study>/trials.md`, and `genlab report <root>/<study>` compares the trial runs.

Ctrl-C or SIGTERM stops the running trial's run as genlab stops any run (last.ckpt saved), marks the trial FAIL
("interrupted") and leaves the study consistent.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from genlab.atomic_files import write_bytes
from genlab.errors import GenlabError
from genlab.sweep.outcome import evaluations, exclusion, final_scores
from genlab.sweep.space import Dimension, command_line_value, read_space

INTERRUPTED = 143
POLL_SECONDS = 2.0  # how often a running trial's records are read for pruning


class Excluded(Exception):
    """A trial that finished but must never be chosen (the reason is kept on the trial)."""


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(prog="genlab sweep", allow_abbrev=False,
                                   description=__doc__.split("\n\n")[0])
    made.add_argument("--config", action="append", required=True, type=Path, help="the experiment YAML (and overlays)")
    made.add_argument("--space", required=True, type=Path, help="YAML mapping configuration keys to distributions")
    made.add_argument("--trials", required=True, type=int, help="trials the study should hold in the end")
    made.add_argument("--objective", required=True, help="a score name from the runs' records, e.g. classifier/fd")
    made.add_argument("--direction", required=True, choices=("minimize", "maximize"))
    made.add_argument("--study", help="the study's name (default: the first config's name)")
    made.add_argument("--storage", help="a journal file (default <root>/<study>.journal) or an Optuna storage URL")
    made.add_argument("--seeds", default="0", help="training seeds of each trial, comma-separated (default 0)")
    made.add_argument("--root", type=Path, default=Path("lightning_logs") / "sweeps", help="where trial runs go")
    made.add_argument("--enqueue", type=Path,
                      help="YAML list of settings ({key: value}) to try first, e.g. the experiment's own setting as a"
                           " baseline; enqueued when the study has no trial yet")
    made.add_argument("--prune", action="store_true",
                      help="stop a trial whose first seed's evaluations during fit fall behind the median of earlier"
                           " trials at the same iteration (Optuna's MedianPruner, after 4 finished trials)")
    return made


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The sweep's own options, and the genlab settings every trial gets (anything else starting with --)."""
    arguments, passed = parser().parse_known_args(argv)
    stray = [item for item in passed if item.startswith("-") and not item.startswith(("--trainer", "--model",
                                                                                       "--data", "--checkpoint"))]
    if stray:
        raise GenlabError(f"genlab sweep does not know {stray[0].split('=')[0]}: settings for the trials start with"
                          " --trainer, --model, --data or --checkpoint")
    if arguments.trials < 1:
        raise GenlabError(f"--trials must be at least 1, got {arguments.trials}")
    try:
        arguments.seeds = [int(seed) for seed in arguments.seeds.split(",")]
    except ValueError:
        raise GenlabError(f"--seeds takes comma-separated integers, e.g. 0,1,2; got {arguments.seeds!r}") from None
    arguments.study = arguments.study or arguments.config[0].stem
    return arguments, passed


def configuration_keys(configs: list[Path], settings: list[str]) -> set[str]:
    """Every dotted key of the trials' configuration (`genlab fit --print_config`, in a child process)."""
    command = [sys.executable, "-m", "genlab.cli", "fit", *(f"--config={c}" for c in configs), *settings,
               "--print_config"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise GenlabError(f"the trials' configuration does not parse ({last}): fix --config or the settings")
    return set(flatten(yaml.safe_load(done.stdout)))


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict) or not config:
        return {prefix: config}
    return {key: value for name, item in config.items()
            for key, value in flatten(item, f"{prefix}.{name}" if prefix else str(name)).items()}


def open_study(arguments: argparse.Namespace) -> Any:
    """The study, created or loaded (several workers share it); one line when its storage cannot be opened."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage: Any = arguments.storage
    try:
        if storage is None or "://" not in storage:
            path = Path(storage) if storage else arguments.root / f"{arguments.study}.journal"
            path.parent.mkdir(parents=True, exist_ok=True)
            storage = JournalStorage(JournalFileBackend(str(path)))
        pruner = optuna.pruners.MedianPruner(n_startup_trials=4) if arguments.prune else optuna.pruners.NopPruner()
        study = optuna.create_study(study_name=arguments.study, storage=storage, direction=arguments.direction,
                                    load_if_exists=True, pruner=pruner)
    except Exception as error:  # noqa: BLE001 - Optuna and the database drivers raise many types
        raise GenlabError(f"cannot open the study's storage {arguments.storage or path} ({type(error).__name__}:"
                          f" {str(error).splitlines()[0] if str(error) else ''}): give a writable journal file path or"
                          " a reachable Optuna storage URL") from None
    if study.direction.name.lower() != arguments.direction:
        raise GenlabError(f"study {arguments.study} was created to {study.direction.name.lower()} and this call asks"
                          f" to {arguments.direction}: use the study's direction, or another --study")
    return study


class TrialRunner:
    """Optuna's objective: the trial's runs, one per seed, and their mean score."""

    def __init__(self, arguments: argparse.Namespace, settings: list[str], dimensions: list[Dimension]) -> None:
        self.arguments, self.settings, self.dimensions = arguments, settings, dimensions
        self.child: subprocess.Popen | None = None
        self.stopping = False  # a stop signal arrived while a trial's run was under way

    def folder(self, number: int) -> Path:
        return self.arguments.root / self.arguments.study / f"trial_{number:04d}"

    def __call__(self, trial: Any) -> float:
        values = {dimension.key: dimension.suggest(trial) for dimension in self.dimensions}
        folder = self.folder(trial.number)
        folder.mkdir(parents=True, exist_ok=True)
        scores = [self.run_seed(trial, folder, values, seed) for seed in self.arguments.seeds]
        write_bytes(folder / "trial.json", json.dumps({
            "study": self.arguments.study, "trial": trial.number, "values": values, "seeds": self.arguments.seeds,
            "objective": self.arguments.objective, "scores": scores, "mean": statistics.mean(scores)},
            indent=1).encode())
        trial.set_user_attr("scores", scores)
        return statistics.mean(scores)

    def run_seed(self, trial: Any, folder: Path, values: dict[str, Any], seed: int) -> float:
        command = [sys.executable, "-m", "genlab.cli", "fit", *(f"--config={c}" for c in self.arguments.config),
                   *self.settings, *(f"--{key}={command_line_value(value)}" for key, value in values.items()),
                   f"--seed_everything={seed}", f"--trainer.logger.init_args.save_dir={folder.parent}",
                   f"--trainer.logger.init_args.name={folder.name}", f"--trainer.logger.init_args.version=seed{seed}",
                   "--trainer.enable_progress_bar=false"]
        run = folder / f"seed{seed}"
        print(f"genlab sweep: trial {trial.number}, seed {seed}: {values} → {run}", flush=True)
        with open(folder / f"seed{seed}.log", "w") as log:
            try:
                # its own session: a Ctrl-C in the terminal (or a scheduler's signal to the group) reaches the sweep,
                # which passes it on once; a second copy would make genlab stop the run at once, unsaved
                self.child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                code = self.wait_reporting(trial, run) if seed == self.arguments.seeds[0] else self.child.wait()
                if self.stopping or code in (INTERRUPTED, 130):  # stopped by a signal (and saved last.ckpt)
                    raise KeyboardInterrupt
            except KeyboardInterrupt:
                trial.set_user_attr("excluded", f"interrupted (seed {seed}; its run saved last.ckpt in {run})")
                raise  # Optuna marks the trial FAIL and passes the interruption on
            finally:
                self.child = None
        reason = exclusion(run, code)
        if reason is None and self.arguments.objective not in (scores := final_scores(run)):
            reason = (f"no score {self.arguments.objective} in the run's records (they hold"
                      f" {', '.join(sorted(scores)) or 'none'})")
            trial.set_user_attr("missing_objective", True)
        if reason is not None:
            trial.set_user_attr("excluded", f"seed {seed}: {reason}")
            raise Excluded(reason)
        return float(final_scores(run)[self.arguments.objective])

    def wait_reporting(self, trial: Any, run: Path) -> int:
        """Wait for the run, handing each evaluation's objective to Optuna as it is written; when the pruner says
        the trial falls behind, stop the run (it saves last.ckpt) and prune the trial."""
        import optuna

        assert self.child is not None
        reported: set[int] = set()
        while (code := self.child.poll()) is None:
            time.sleep(POLL_SECONDS)
            for iteration, value in evaluations(run, self.arguments.objective):
                if iteration not in reported:
                    reported.add(iteration)
                    trial.report(value, iteration)
            if reported and trial.should_prune():
                self.child.send_signal(signal.SIGTERM)
                self.child.wait()
                trial.set_user_attr("excluded", f"pruned at iteration {max(reported)}")
                raise optuna.TrialPruned(f"behind the median at iteration {max(reported)}")
        return code

    def stop(self, signum: int, frame: Any) -> None:
        """A signal handler: pass a stop signal on to the running trial's run (genlab saves last.ckpt and exits,
        and the wait for it ends the trial as interrupted); between runs, stop at once."""
        child = self.child
        if child is not None and child.returncode is None:
            self.stopping = True
            child.send_signal(signum)  # no wait here: the interrupted frame holds Popen's wait lock
            return
        raise KeyboardInterrupt


def enqueue_baselines(study: Any, path: Path | None, dimensions: list[Dimension]) -> None:
    """The settings of `path` as the study's first trials (only into a study without trials)."""
    if path is None or study.trials:
        return
    try:
        baselines = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise GenlabError(f"cannot read --enqueue {path} ({type(error).__name__}):"
                          " give a YAML list of settings") from None
    keys = {dimension.key: dimension for dimension in dimensions}
    if not isinstance(baselines, list) or not all(isinstance(b, dict) and set(b) <= set(keys) for b in baselines):
        raise GenlabError(f"--enqueue {path} must be a YAML list of {{key: value}} settings whose keys are in the"
                          " search space")
    for baseline in baselines:
        study.enqueue_trial({key: value if keys[key].choices is None or not isinstance(value, list)
                             else json.dumps(value) for key, value in baseline.items()}, skip_if_exists=True)


def trials_table(study: Any, dimensions: list[Dimension], objective: str) -> str:
    """Every trial of the study: number, state, objective (mean over seeds), drawn values, why it was excluded."""
    keys = [dimension.key for dimension in dimensions]
    lines = [f"| trial | state | {objective} | " + " | ".join(keys) + " | note |",
             "|---" * (4 + len(keys)) + "|"]
    best = None
    try:
        best = study.best_trial.number
    except ValueError:
        pass
    for trial in sorted(study.trials, key=lambda t: t.number):
        value = "" if trial.value is None else f"{trial.value:.6g}"
        note = trial.user_attrs.get("excluded", "") + (" **best**" if trial.number == best else "")
        lines.append(f"| {trial.number} | {trial.state.name} | {value} | "
                     + " | ".join(str(trial.params.get(key, "")) for key in keys) + f" | {note.strip()} |")
    return "\n".join(lines)


def optimize(study: Any, runner: TrialRunner, total: int) -> None:
    """Run trials until the study holds `total` begun trials (counting those other workers are running; not those
    waiting in its queue)."""
    from optuna.trial import TrialState

    begun = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
    while len(study.get_trials(deepcopy=False, states=begun)) < total:
        study.optimize(runner, n_trials=1, catch=(Excluded,))
        latest = max(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)),
                     key=lambda t: t.number, default=None)
        if latest is not None and latest.state == TrialState.FAIL and latest.user_attrs.get("excluded"):
            print(f"genlab sweep: trial {latest.number} excluded: {latest.user_attrs['excluded']}", flush=True)


def finish(study: Any, arguments: argparse.Namespace, dimensions: list[Dimension]) -> None:
    """The table (printed and written), the report over the trials, and one line when no trial recorded the
    objective."""
    table = trials_table(study, dimensions, arguments.objective)
    folder = arguments.root / arguments.study
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes(folder / "trials.md", (table + "\n").encode())
    print(table)
    print(f"genlab sweep: table written to {folder / 'trials.md'}; compare the runs with: genlab report {folder}")
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "FAIL") and "interrupted" not in
                str(t.user_attrs.get("excluded", ""))]
    if finished and all(t.user_attrs.get("missing_objective") for t in finished):
        raise GenlabError(f"no trial recorded {arguments.objective}: choose a score the runs record (see a trial's"
                          f" metrics.jsonl), e.g. with --objective classifier/fd")


def run(argv: list[str]) -> int:
    """Exit status: 0 done, 2 for a user error (one line), 143 when stopped by a signal."""
    try:
        arguments, settings = parse(argv)
        dimensions = read_space(arguments.space, configuration_keys(arguments.config, settings))
        study = open_study(arguments)
    except GenlabError as error:
        print(f"genlab: error: {error}", file=sys.stderr)
        return 2
    try:
        enqueue_baselines(study, arguments.enqueue, dimensions)
    except GenlabError as error:
        print(f"genlab: error: {error}", file=sys.stderr)
        return 2
    runner = TrialRunner(arguments, settings, dimensions)
    previous = {signum: signal.signal(signum, runner.stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    status = 0
    try:
        optimize(study, runner, arguments.trials)
    except KeyboardInterrupt:
        status = INTERRUPTED
        print("genlab sweep: stopped; the running trial is marked FAIL (interrupted). Run the same command again to"
              " add the remaining trials.", file=sys.stderr)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    try:
        finish(study, arguments, dimensions)
    except GenlabError as error:
        print(f"genlab: error: {error}", file=sys.stderr)
        return 2
    return status
