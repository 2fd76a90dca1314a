"""`genlab fit|validate|test|predict --config experiments/X.yaml`: LightningCLI with genlab's defaults.

What genlab adds to LightningCLI:
- a `checkpoint:` section (`RunCheckpoint`, a ModelCheckpoint with `save_last: true`) in every run;
- `--ckpt_path last` finds the newest `last.ckpt` of the experiment and continues in the same run folder,
  so TensorBoard shows one unbroken curve; the resumed config is saved beside the first as
  `config.resume-N.yaml` instead of refusing to start;
- user errors (`GenlabError`) end the program with one line and exit status 2, no traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from genlab.callbacks.checkpoint import RunCheckpoint
from genlab.errors import GenlabError

TENSORBOARD = "lightning.pytorch.loggers.TensorBoardLogger"


class SaveRunConfig(SaveConfigCallback):
    """Saves `config.yaml` in the run folder; a resumed run adds `config.resume-N.yaml` beside it."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not self.already_saved and self.save_to_log_dir:
            log_dir = Path(trainer.log_dir or trainer.default_root_dir)
            name = "config.yaml"
            if trainer.is_global_zero:
                resumes = 0
                while (log_dir / name).exists():
                    resumes += 1
                    name = f"config.resume-{resumes}.yaml"
            self.config_filename = trainer.strategy.broadcast(name)
        super().setup(trainer, pl_module, stage)


def _version_number(folder: Path) -> int:
    suffix = folder.name.removeprefix("version_")
    return int(suffix) if suffix.isdigit() else -1


def find_last_checkpoint(experiment_dir: Path) -> Path:
    """The most recently written `version_*/checkpoints/last.ckpt` of an experiment folder."""
    candidates = list(experiment_dir.glob("*/checkpoints/last.ckpt"))
    if not candidates:
        raise GenlabError(
            f"--ckpt_path last: no run in {experiment_dir.resolve()} has a checkpoints/last.ckpt;"
            " start the run without --ckpt_path, or pass the path of a checkpoint"
        )
    return max(candidates, key=lambda path: (path.stat().st_mtime, _version_number(path.parent.parent)))


class GenlabCLI(LightningCLI):
    """LightningCLI with a checkpoint section, resumable runs and one-line user errors."""

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_callback", SaveRunConfig)
        kwargs.setdefault(
            "trainer_defaults",
            {"logger": {"class_path": TENSORBOARD, "init_args": {"save_dir": "lightning_logs", "name": "genlab"}}},
        )
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("parser_kwargs", {"description": "genlab: train and evaluate deep generative models."})
        super().__init__(args=args, run=run, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 1})

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("ckpt_path") != "last":
            return
        logger = config.trainer.logger
        if not (isinstance(logger, dict) or hasattr(logger, "class_path")) or logger.class_path != TENSORBOARD:
            return  # another logger: Lightning's own meaning of "last" applies
        init_args = logger.init_args
        experiment_dir = Path(init_args.save_dir) / (init_args.name or "")
        checkpoint = find_last_checkpoint(experiment_dir)
        config.ckpt_path = os.fspath(checkpoint)
        if self.subcommand == "fit":
            init_args.version = _version_number(checkpoint.parent.parent)


def main(args: list[str] | None = None) -> None:
    """Console entry point; `args` lets tests drive the real CLI in-process."""
    try:
        GenlabCLI(args=args)
    except GenlabError as error:
        print(f"genlab: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
