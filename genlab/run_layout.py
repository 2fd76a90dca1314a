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

One count runs through all of it: the training iterations (batches) behind the weights. During a fit it is
`runtime.iterations_done(trainer)`; a checkpoint carries it under `ITERATIONS_KEY`; a model loaded from one (in
`genlab test` or `predict`) holds it as `trained_iterations`; every record names it `iteration`, every file
`iteration_NNNNNNN`. Lightning's `global_step` counts optimizer steps (two per GAN iteration) and means none of these.
"""

from __future__ import annotations

import math

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
FAST_PATHS_KEY = "genlab_training_fast_paths"  # each fit's precision, layout, TF32 and why, for `genlab test` records


def resumed_config(resumes: int) -> str:
    """The configuration file of the `resumes`-th resume (0: the first start's config.yaml)."""
    return CONFIG if resumes == 0 else f"config.resume-{resumes}.yaml"


def diverged_checkpoint(iteration: int) -> str:
    return f"diverged-iteration_{iteration:07d}.ckpt"


def grid_name(iteration: int) -> str:
    return f"iteration_{iteration:07d}.png"


LOG_2 = math.log(2)
# What the loss curves read when the discriminator cannot tell real from generated and outputs its best constant score,
# for the losses chosen by name (genlab.callbacks.toy_plots.equilibrium_losses computes the same from the loss
# object; tests/test_toy.py pins those values): the dashed lines of the report's curves.
# (Here because it describes what a run's logged curves mean, read by the report without torch.)
EQUILIBRIA = {
    "non_saturating": {"loss/d": 2 * LOG_2, "loss/g": LOG_2, "d/real": 0.5, "d/fake": 0.5},
    "minimax": {"loss/d": 2 * LOG_2, "loss/g": -LOG_2, "d/real": 0.5, "d/fake": 0.5},
    "least_squares": {"loss/d": 0.25, "loss/g": 0.125, "d/real": 0.5, "d/fake": 0.5},
}


def equilibrium_lines(config: dict) -> dict[str, float]:
    """The equilibrium value of each curve that has one, for a GAN whose config names its loss (none otherwise:
    a loss object with its own settings, Wasserstein and hinge have no unique equilibrium)."""
    loss = ((config or {}).get("model") or {}).get("init_args", {}).get("loss")
    return dict(EQUILIBRIA.get(loss, {})) if isinstance(loss, str) else {}
