"""Run folders claimed atomically and removed again when the run never started.

TensorBoard's logger picks `version_N` by listing the folder, so two runs of one experiment started together
could pick the same N and write into each other's files. genlab claims the folder instead: `mkdir` of the next
free `version_N` either creates it or fails because another process just did, and then the next N is tried.
A run that stops before its first iteration (a one-line error about the data, say) removes the folder it
claimed, so version numbers do not drift and `--ckpt_path last` never has to skip empty runs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from genlab.runtime import launched_by_first_process

CLAIM_VARIABLE = "GENLAB_CLAIMED_RUN"  # the first process's claim, read by the processes Lightning starts for DDP


def version_number(folder: Path) -> int:
    """N of a `version_N` folder; -1 for other names."""
    suffix = folder.name.removeprefix("version_")
    return int(suffix) if suffix.isdigit() else -1


class RunClaim:
    """The run folder this process claimed (None: none, e.g. a resumed run) and whether work began in it."""

    folder: Path | None = None
    started: bool = False

    @classmethod
    def reset(cls) -> None:
        cls.folder, cls.started = None, False

    @classmethod
    def claim(cls, experiment_dir: Path) -> int:
        """Create the next free `version_N` in `experiment_dir` (atomically) and return N. DDP processes started
        by Lightning take the first process's folder instead of claiming their own."""
        inherited = os.environ.get(CLAIM_VARIABLE)
        if inherited and launched_by_first_process():
            return version_number(Path(inherited))
        experiment_dir.mkdir(parents=True, exist_ok=True)
        version = max((version_number(path) for path in experiment_dir.glob("version_*")), default=-1) + 1
        while True:
            try:
                (experiment_dir / f"version_{version}").mkdir()
                break
            except FileExistsError:  # another run took it between the listing and now
                version += 1
        cls.folder, cls.started = experiment_dir / f"version_{version}", False
        os.environ[CLAIM_VARIABLE] = os.fspath(cls.folder)
        return version

    @classmethod
    def remove_if_unused(cls) -> None:
        """After a run ended early: delete the folder it claimed if no iteration, test or prediction began."""
        if cls.folder is not None and not cls.started and not launched_by_first_process():
            shutil.rmtree(cls.folder, ignore_errors=True)
        cls.reset()
