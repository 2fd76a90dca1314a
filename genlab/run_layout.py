"""The layout of a run folder in one place: what genlab writes where, and the keys it adds to checkpoints.

Torch-free, so the readers (`genlab report`, `genlab sweep`) import it without Lightning; the writers (the CLI,
`genlab.training`, the callbacks) import the same names, so the two cannot drift apart.

    lightning_logs/<experiment>/version_N/   (slurm-<job id>/ in a SLURM job; trial_NNNN/seed<S>/ in a sweep)
        config.yaml, config.resume-1.yaml …   the configuration of the run and of each resume
        checkpoints/last.ckpt, previous.ckpt, epoch=…ckpt, diverged-iteration_NNNNNNN.ckpt
        samples/iteration_NNNNNNN.png         fixed-noise grids (samples/<sampler>/ for other samplers)
        metrics.jsonl, memorisation.jsonl, environment.jsonl, toy/metrics.jsonl   records, one JSON object a line
        <figure folder>/*.png                 every other callback's figures (shown by the report as found)
        predictions/                          `genlab predict`
        report.html, events.out.tfevents.*
"""

from __future__ import annotations

CONFIG = "config.yaml"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
PREVIOUS_CHECKPOINT = "previous.ckpt"
DIVERGED_CHECKPOINTS = "diverged-iteration_*.ckpt"
SAMPLES = "samples"
SCORE_RECORDS = "metrics.jsonl"
MEMORISATION_RECORDS = "memorisation.jsonl"
ENVIRONMENT_RECORDS = "environment.jsonl"
TOY = "toy"
TOY_RECORDS = f"{TOY}/metrics.jsonl"
PREDICTIONS = "predictions"
REPORT = "report.html"

#: figure folders whose files the report filters (others: every PNG), in the report's order; a folder of PNGs
#: not named here is shown after these, so a new callback's figures reach the report without editing it
FIGURE_PATTERNS = {"interpolation": "*.png", TOY: "*.png", "denoising": "*.png", "metrics": "label_histogram-*.png",
                   "memorisation": "*.png", PREDICTIONS: "grid.png"}
NOT_FIGURES = (SAMPLES, CHECKPOINTS)  # grids are shown as grids; checkpoints are not pictures

# keys genlab adds to Lightning's checkpoints
RNG_KEY = "genlab_rng_states"
ITERATIONS_KEY = "genlab_iterations"  # training batches behind the weights, for `genlab test` records
SKIPPED_KEY = "genlab_skipped_updates"
DIVERGED_KEY = "genlab_diverged_at_iteration"  # in a diverged-iteration_N.ckpt: N, the first non-finite iteration
PRECISIONS_KEY = "genlab_training_precisions"  # what the weights were trained in, for `genlab test` records


def resumed_config(resumes: int) -> str:
    """The configuration file of the `resumes`-th resume (0: the first start's config.yaml)."""
    return CONFIG if resumes == 0 else f"config.resume-{resumes}.yaml"


def diverged_checkpoint(iteration: int) -> str:
    return f"diverged-iteration_{iteration:07d}.ckpt"


def grid_name(iteration: int) -> str:
    return f"iteration_{iteration:07d}.png"
