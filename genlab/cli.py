"""`genlab fit|validate|test|predict --config experiments/X.yaml`: LightningCLI with genlab's defaults.

What genlab adds to LightningCLI:
- a `checkpoint:` section (`RunCheckpoint`, a ModelCheckpoint with `save_last: true`) in every run;
- `--ckpt_path last` finds the newest `last.ckpt` of the experiment and continues in the same run folder,
  so TensorBoard shows one unbroken curve; the resumed config is saved beside the first as
  `config.resume-N.yaml` instead of refusing to start;
- checkpoints are read through `SafeCheckpointIO`, so a damaged file is named in one line with its fallback;
- user errors (`GenlabError`, and configuration errors from the parser) end the program with one line and exit
  status 2, no traceback.
"""

from __future__ import annotations

import logging
import math
import os
import re
import sys
import threading
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LightningArgumentParser, SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from genlab import run_layout, slurm
from genlab.atomic_files import disk_full, disk_full_cause
from genlab.callbacks.graceful_stop import EXIT_STATUS, GracefulStop
from genlab.callbacks.memorisation import Memorisation
from genlab.callbacks.metrics import GenerativeMetrics
from genlab.callbacks.predictions import WriteSamples
from genlab.callbacks.test_results import TestResults
from genlab.data.base import TensorDataModule
from genlab.errors import GenlabError, first_line
from genlab.precision import FastPath, apply_tf32, choose_fast_path, remember_choice, trains_on_cuda
from genlab.run_folder import RunClaim, version_number
from genlab.runtime import CLIHooks, first_process, summarize_parser_error
from genlab.training.checkpoints import (
    RunCheckpoint,
    SafeCheckpointIO,
    check_checkpoint_file,
    last_checkpoint,
)
from genlab.training.ddp import AlternatingUpdatesDDP

TENSORBOARD = "lightning.pytorch.loggers.TensorBoardLogger"
class GenlabArgumentParser(LightningArgumentParser):
    """Configuration errors in one line (the key, the problem) instead of usage text and a nested report."""

    def error(self, message: str, ex: Exception | None = None) -> None:  # type: ignore[override]
        if not self.exit_on_error:
            super().error(message, ex)
        raise GenlabError(summarize_parser_error(message))



def _not_an_advertisement(record: logging.LogRecord) -> bool:
    return "litlogger" not in record.getMessage()


# Lightning prints a tip for a logging service at every start; genlab's output keeps to what the run does
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_not_an_advertisement)

class SaveRunConfig(SaveConfigCallback):
    """Saves `config.yaml` in the run folder; a resumed run adds `config.resume-N.yaml` beside it."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not self.already_saved and self.save_to_log_dir:
            log_dir = Path(trainer.log_dir or trainer.default_root_dir)
            name = run_layout.CONFIG
            if trainer.is_global_zero:
                resumes = 0
                while (log_dir / name).exists():
                    resumes += 1
                    name = run_layout.resumed_config(resumes)
            self.config_filename = trainer.strategy.broadcast(name)
            if trainer.is_global_zero and resumes:
                previous = log_dir / run_layout.resumed_config(resumes - 1)
                current = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
                for line in config_changes(yaml.safe_load(previous.read_text()), current):
                    rank_zero_info(line)
        super().setup(trainer, pl_module, stage)


def check_batch_fits(datamodule: Any, processes: int = 1) -> None:
    """One line when a training batch would be larger than the training split, or than each process's share of it
    under DDP (a mistyped batch size would otherwise be timed, allocated and tried before anything says so, and a
    share smaller than a batch trains nothing at all when the last batch is dropped)."""
    if not isinstance(datamodule, TensorDataModule):
        return
    datamodule.prepare_data()  # downloads what is missing (Lightning's own call later finds it there)
    count = len(datamodule.split("train").labels)
    if datamodule.batch_size > count:
        raise GenlabError(f"data.batch_size {datamodule.batch_size:,} is larger than the {count:,} training samples:"
                          f" lower data.batch_size (to {count:,} for full-batch training)")
    share = math.ceil(count / processes)
    if processes > 1 and datamodule.drop_last and datamodule.batch_size > share:
        raise GenlabError(f"data.batch_size {datamodule.batch_size:,} is larger than the {share:,} training samples"
                          f" each of the {processes} processes gets ({count:,} in all), so no batch would be trained:"
                          f" lower data.batch_size to {share:,} or less, or use fewer devices")


def planned_processes(trainer_config: Any) -> int:
    """How many training processes the trainer settings ask for (devices x nodes) when they say it as numbers;
    1 when they leave it to Lightning ("auto")."""
    devices, nodes = trainer_config.get("devices"), trainer_config.get("num_nodes") or 1
    if isinstance(devices, (list, tuple)):
        devices = len(devices)
    elif isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    return devices * int(nodes) if isinstance(devices, int) and devices > 0 else 1


def flat(config: Any, prefix: str = "") -> dict[str, Any]:
    """A nested configuration as {"model.init_args.n_critic": 1, …}."""
    if not isinstance(config, dict) or not config:
        return {prefix: config}
    return {key: value for name, item in config.items()
            for key, value in flat(item, f"{prefix}.{name}" if prefix else str(name)).items()}


def config_changes(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """One line per setting a resumed run changes, and which side wins: the configuration, except the seed (the
    checkpoint's random streams continue). Optimizer settings are reported with the checkpoint's values when they
    are put back (`genlab.training.optimizer_settings`)."""
    before, after = flat(previous), flat(current)
    lines = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new or key in ("ckpt_path", "config") or "optimizer.init_args." in key:
            continue
        if key.startswith("trainer.logger.") and key.endswith(".version"):
            continue
        wins = ("the checkpoint's random streams continue, so it has no effect" if key == "seed_everything"
                else "the new value applies")
        lines.append(f"genlab: resumed with {key} = {new!r} (the run had {old!r}): {wins}")
    return lines


def find_last_checkpoint(experiment_dir: Path) -> Path:
    """`--ckpt_path last`: the experiment's last checkpoint (`genlab.training.checkpoints.last_checkpoint`)."""
    found = last_checkpoint(experiment_dir)
    if found is None:
        raise GenlabError(
            f"--ckpt_path last: no run in {experiment_dir.resolve()} has a checkpoints/last.ckpt;"
            " start the run without --ckpt_path, or pass the path of a checkpoint"
        )
    return found


def experiment_name(config_files: Any) -> str:
    """The name a run's logger folder takes when its config names none: the first `--config` file's name without
    its extension (later files are overlays), or "genlab" without one."""
    first = next(iter(config_files or []), None)
    return Path(os.fspath(first)).stem if first is not None else "genlab"


def whole_batch_limits(args: list[str]) -> dict[str, int]:
    """`--trainer.limit_*_batches N` settings written as whole numbers: N batches, as `Trainer(limit_…=N)` means.

    jsonargparse reads a command-line "1" for Lightning's `int | float` as 1.0, which Lightning takes as 100% of
    the batches (a known LightningCLI trap), so genlab puts the whole numbers back before building the Trainer.
    """
    limits = {}
    for index, arg in enumerate(args):
        name, equals, value = arg.partition("=")
        if not equals and index + 1 < len(args):
            value = args[index + 1]
        limit = re.fullmatch(r"--trainer\.(limit_(?:train|val|test|predict)_batches)", name)
        if limit and re.fullmatch(r"\d+", value.strip()):
            limits[limit.group(1)] = int(value)
    return limits


class GenlabCLI(CLIHooks):
    """LightningCLI with a checkpoint section, resumable runs and one-line user errors."""

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_callback", SaveRunConfig)
        kwargs.setdefault(
            "trainer_defaults",
            {"logger": {"class_path": TENSORBOARD, "init_args": {"save_dir": "lightning_logs", "name": ""}}},
        )
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("parser_class", GenlabArgumentParser)
        kwargs.setdefault(
            "parser_kwargs",  # no prefix matching: --trainer.max_epoch must not quietly mean max_epochs
            {"description": "genlab: train and evaluate deep generative models.", "allow_abbrev": False},
        )
        super().__init__(args=args, run=run, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 1})
        parser.add_argument(
            "--allow_untrained", type=bool, default=False,
            help="test/predict: accept running without --ckpt_path, i.e. on freshly initialised weights",
        )
        parser.add_argument(
            "--memory_format", type=Literal["auto", "contiguous", "channels_last"], default="auto",
            help="layout of the model's 4-D weights in training (auto: channels_last where it is measured faster"
                 " on this CPU; see genlab.precision)",
        )
        parser.add_argument(
            "--tf32", type=bool, default=False,
            help="TF32 in CUDA matmuls and cuDNN convolutions (default false: fp32 stays IEEE fp32 on a GPU as on a"
                 " CPU; see genlab.precision)",
        )
        parser.add_argument(
            "--num_samples", type=int | None, default=None,
            help="predict: how many samples to draw (default: one per test-split item, with its label)",
        )
        parser.add_argument(
            "--classes", type=list[int] | None, default=None,
            help="predict: the labels of a conditional model's samples, cycled (e.g. [3] or [0,1]; default: every"
                 " class in turn)",
        )
        parser.add_argument(
            "--sample_format", type=Literal["png", "npz"], default="png",
            help="predict: one PNG per sample and a grid, or one samples.npz (uint8 N x H x W x C under arr_0, with"
                 " labels)",
        )
        parser.add_argument(
            "--evaluate", type=bool, default=True,
            help="run the config's GenerativeMetrics and Memorisation callbacks (false: train or test without"
                 " scoring, e.g. offline without the Inception weights or before the classifier exists)",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        argv = sys.argv[1:] if args is None else args
        self._argv = [str(arg) for arg in argv] if isinstance(argv, (list, tuple)) else []
        self._whole_batch_limits = whole_batch_limits(self._argv)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry"):
            check_checkpoint_file(Path(ckpt_path))  # before LightningCLI reads its hyperparameters

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer_config = (self.config_init[self.subcommand] if self.subcommand else self.config_init)["trainer"]
        for name, count in self._whole_batch_limits.items():
            trainer_config[name] = count
        own_workspace = deterministic_cublas(trainer_config.get("deterministic"))
        if self.subcommand == "fit" and first_process():  # before the precision timing, which runs at the batch size
            check_batch_fits(self.datamodule, planned_processes(trainer_config))
        self._choose_fast_path(trainer_config)
        if self.setting("trainer.plugins") is None:
            kwargs.setdefault("plugins", [SafeCheckpointIO()])
        if self.setting("trainer.strategy") == "ddp" and not self.model.automatic_optimization:
            # A GAN's discriminator step leaves the generator unused (and the other way round), which plain DDP
            # refuses: the model averages each update's gradients itself instead (genlab.training.ddp)
            kwargs.setdefault("strategy", AlternatingUpdatesDDP())
        trainer = super().instantiate_trainer(**kwargs)
        if own_workspace is not None:  # Lightning sets ":4096:8" over the user's own (also valid) setting
            os.environ[CUBLAS_WORKSPACE] = own_workspace
        if not self.setting("evaluate", True):
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, (GenerativeMetrics, Memorisation))]
        if self.subcommand == "predict":
            self._plan_samples(trainer)
        if self.subcommand == "test":
            trainer.callbacks.append(TestResults())  # the printed table as test_results.json
        if self.subcommand == "fit":
            trainer.callbacks.append(GracefulStop(resume_command(self._argv)))
        trainer.callbacks.append(MarkStarted())
        return trainer

    def _plan_samples(self, trainer: Trainer) -> None:
        """`genlab predict`: what to draw (`--num_samples`, `--classes`) and the writer (`--sample_format`)."""
        count, classes = self.setting("num_samples"), self.setting("classes")
        if count is not None or classes:
            if not isinstance(self.datamodule, TensorDataModule):
                raise GenlabError("--num_samples and --classes need a genlab data module (e.g."
                                  " genlab.data.MNISTDataModule): configure one under data:")
            if count is None:
                self.datamodule.prepare_data()  # downloads what is missing before the test split is read
                count = len(self.datamodule.split("test").labels)
            self.datamodule.draw(count, classes, self.model.num_classes)
        if not any(isinstance(c, BasePredictionWriter) for c in trainer.callbacks):
            trainer.callbacks.append(WriteSamples(sample_format=self.setting("sample_format", "png")))

    def trainer_callbacks(self, trainer_config: dict[str, Any], callbacks: list[Any]) -> list[Any]:
        if trainer_config.get("enable_checkpointing") is False:  # honoured: without genlab's checkpoint section
            return [callback for callback in callbacks if not isinstance(callback, RunCheckpoint)]
        return callbacks

    def before_instantiate_classes(self) -> None:
        """Resolve `--ckpt_path last`, and let a resumed fit continue in its checkpoint's own run folder."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        ckpt_path = config.get("ckpt_path")
        if self.subcommand in ("test", "predict") and ckpt_path is None and not config.get("allow_untrained"):
            raise GenlabError(
                f"genlab {self.subcommand} without --ckpt_path would use untrained weights: pass --ckpt_path last (the"
                " newest run of this experiment) or a checkpoint file, or --allow_untrained true to mean it"
            )
        logger = config.trainer.logger
        if not hasattr(logger, "class_path") or logger.class_path != TENSORBOARD:
            return  # another logger: Lightning's own meaning of the path and folders applies
        if not logger.init_args.name:  # runs of experiments/dcgan_mnist.yaml go to lightning_logs/dcgan_mnist
            logger.init_args.name = experiment_name(config.get("config"))
        experiment_dir = Path(logger.init_args.save_dir) / (logger.init_args.name or "")
        claims = logger.init_args.get("version") is None and not config.trainer.get("fast_dev_run")
        if ckpt_path is None:
            job = slurm.job_id() if self.subcommand == "fit" and claims else None
            folder = experiment_dir / f"{slurm.FOLDER_PREFIX}{job}"
            if job is not None and (slurm.restarted() or not folder.exists()):  # the job's run: a requeue continues it
                self._continue_slurm_job(config, logger, experiment_dir, job)
            elif claims:  # fast_dev_run writes no run folder at all
                logger.init_args.version = RunClaim.claim(experiment_dir)
            return
        if ckpt_path == "last":
            config.ckpt_path = os.fspath(find_last_checkpoint(experiment_dir))
            check_checkpoint_file(Path(config.ckpt_path))
        checkpoint = Path(config.ckpt_path)
        run = checkpoint.parent.parent
        if (self.subcommand == "fit" and checkpoint.parent.name == "checkpoints"
                and run.parent.resolve() == experiment_dir.resolve()):
            logger.init_args.version = version_number(run) if version_number(run) >= 0 else run.name
        elif claims:  # a test, a predict, or a fit starting from other weights
            logger.init_args.version = RunClaim.claim(experiment_dir)

    @staticmethod
    def _continue_slurm_job(config: Any, logger: Any, experiment_dir: Path, job: str) -> None:
        """The run folder `slurm-<job>`; its last.ckpt, when a requeued job finds one, is where the fit resumes."""
        logger.init_args.version = f"{slurm.FOLDER_PREFIX}{job}"
        last = experiment_dir / logger.init_args.version / run_layout.CHECKPOINTS / run_layout.LAST_CHECKPOINT
        if last.is_file():
            check_checkpoint_file(last)
            config.ckpt_path = os.fspath(last)
            rank_zero_info(f"genlab: SLURM job {job} started again: resuming {last.parent.parent} from last.ckpt")

    def _choose_fast_path(self, trainer_config: dict[str, Any]) -> None:
        """Precision (when none is given) and memory layout (when `auto`): genlab's measured choice, announced,
        kept in the saved config and applied to the model; TF32 (`--tf32`) set explicitly on CUDA."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        given_precision, layout = trainer_config.get("precision"), config.get("memory_format", "auto")
        tf32, cuda = bool(config.get("tf32", False)), trains_on_cuda(trainer_config.get("accelerator"))
        if tf32 and not cuda:
            raise GenlabError("--tf32 true: TF32 is a CUDA GPU setting and this run does not train on a CUDA GPU;"
                              " set --tf32 false (tf32: false in a config), or train on a machine with one")
        if cuda:
            apply_tf32(tf32)
        if given_precision is None or layout == "auto":
            choice = choose_fast_path(trainer_config.get("accelerator"), self.subcommand or "fit", self.model,
                                      getattr(self.datamodule, "batch_size", 64), given_precision, tf32)
            if layout != "auto":
                choice = replace(choice, memory_format=layout)
            trainer_config["precision"] = config.trainer.precision = choice.precision
            config.memory_format = layout = choice.memory_format
            remember_choice(choice)
            rank_zero_info(choice.describe())  # beside Lightning's own "Using bfloat16 AMP" line, not on stderr
        else:
            choice = FastPath(str(given_precision), layout, "precision and memory format given", tf32 if cuda else None)
        self.model.fast_path = asdict(choice)  # into every score record of this run (`GenerativeMetrics`)
        if layout == "channels_last":
            self.model.to(memory_format=torch.channels_last)


CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"


def deterministic_cublas(deterministic: bool | str | None) -> str | None:
    """`--trainer.deterministic true` (or "warn"): cuBLAS needs a fixed workspace, `CUBLAS_WORKSPACE_CONFIG`, set
    before its first call on CUDA, or deterministic matmuls fail; set it where it is unset, and say so. Returns the
    user's own value, which Lightning's Trainer overwrites, so the CLI can put it back."""
    if not deterministic:
        return None
    own = os.environ.get(CUBLAS_WORKSPACE)
    if own is None:
        os.environ[CUBLAS_WORKSPACE] = ":4096:8"
        rank_zero_info(f"genlab: {CUBLAS_WORKSPACE}=:4096:8 set for --trainer.deterministic (cuBLAS needs it for"
                       " deterministic algorithms on CUDA)")
    return own


class MarkStarted(Callback):
    """Records that work began (an iteration, a test or a prediction): from then on the run folder is kept."""

    def _started(self, *args: Any) -> None:
        RunClaim.started = True

    on_train_batch_start = on_test_batch_start = on_predict_batch_start = on_validation_batch_start = _started


def resume_command(argv: list[str]) -> list[str]:
    """`genlab <argv>` without its --ckpt_path: what to run, plus `--ckpt_path last`, to continue this run."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--ckpt_path":
            skip = True
        elif not arg.startswith("--ckpt_path="):
            kept.append(arg)
    return ["genlab", *kept]


def user_error(error: BaseException) -> GenlabError | None:
    """The GenlabError behind an exception, if any (jsonargparse wraps errors raised while instantiating)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, GenlabError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def main(args: list[str] | None = None) -> None:
    """LightningCLI's subcommands (fit, validate, test, predict) with genlab's exits; `args` lets tests drive the
    real CLI in-process. genlab's own subcommands (doctor, report, sweep) are dispatched by `genlab.launch`."""
    GracefulStop.stopped_by = None
    RunClaim.reset()
    threading.excepthook = _quiet_about_full_disks
    try:
        _run(args)
    except BaseException:
        RunClaim.remove_if_unused()  # a run that never started leaves no folder behind
        raise


def _quiet_about_full_disks(args: threading.ExceptHookArgs) -> None:
    """A writer thread (TensorBoard's) that meets a full disk dies without a traceback: the main thread meets the
    same error at its next write and answers it in one line."""
    if args.exc_value is None or disk_full_cause(args.exc_value) is None:
        threading.__excepthook__(args)


def _run(args: list[str] | None) -> None:
    """The CLI with genlab's exits: one line and status 2 for user errors, 143 / 130 after SIGTERM / SIGINT."""
    try:
        GenlabCLI(args=args)
    except SystemExit:
        if GracefulStop.stopped_by is not None:  # SIGTERM / SIGINT: not a finished run, whatever Lightning exits with
            if GracefulStop.stopped_by == "SIGUSR1" and first_process():  # SLURM: after the fit has wound down
                print(f"genlab: {slurm.requeue()}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_STATUS[GracefulStop.stopped_by]) from None
        raise
    except MisconfigurationException as error:  # Lightning refused the trainer settings: a user error too
        cause = GenlabError(f"Lightning refuses these trainer settings: {first_line(error, 200)}; fix the trainer"
                            " section of the config or the --trainer.* options")
        if first_process():
            print(f"genlab: error: {cause}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as error:
        if (cause := user_error(error)) is None:
            if (full := disk_full_cause(error)) is None:
                raise
            cause = disk_full(Path(full.filename) if full.filename else None, None)  # e.g. TensorBoard's events
        if first_process():
            print(f"genlab: error: {cause}", file=sys.stderr)  # once, not once per DDP process
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
