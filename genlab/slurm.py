"""SLURM: a job's run folder tied to its job id, so a preempted or requeued job continues its own run.

Under a SLURM batch job (`SLURM_JOB_ID` set, not an interactive allocation) `genlab fit` names its run folder
`slurm-<job id>` (`<array job>_<task>` for array tasks) instead of the next `version_N`. When the job starts again
after a requeue (`SLURM_RESTART_COUNT` > 0), that folder holds `checkpoints/last.ckpt` and the fit resumes from it,
in the same folder, as `--ckpt_path last` would. A further fit in the same job (a loop over seeds in one batch
script) gets an ordinary `version_N` folder: only the job's first fit is tied to it. `#SBATCH --signal=USR1@120`
asks SLURM to send SIGUSR1 to the job step (`srun genlab fit …`) two minutes before the time limit: genlab then
finishes the iteration, saves last.ckpt and, once the fit has wound down, requeues the job (`scontrol requeue`); a
preemption's SIGTERM saves last.ckpt the same way and SLURM requeues the job itself (with `--requeue`).
"""

from __future__ import annotations

import os
import subprocess

FOLDER_PREFIX = "slurm-"


def job_id() -> str | None:
    """This batch job's id (`<array job>_<task>` for an array task), or None outside SLURM batch jobs."""
    if not os.environ.get("SLURM_JOB_ID") or os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ["SLURM_JOB_ID"]


def restarted() -> bool:
    """Whether SLURM started this job again (after a requeue or a preemption)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0


def requeue() -> str:
    """Ask SLURM to requeue this job; returns what happened, for the stop message."""
    job = os.environ.get("SLURM_JOB_ID", "")
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"could not requeue job {job} ({type(error).__name__}): requeue it by hand with scontrol requeue {job}"
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return f"scontrol requeue {job} failed ({reason}): requeue it by hand"
    return f"job {job} requeued (scontrol requeue {job}); it continues this run when it starts again"
