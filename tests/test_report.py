"""`genlab report` and the RunReport callback: one self-contained page per run, checked in a real browser.

The browser test opens the page in headless Chromium (Debian's `chromium`, which .ci/run installs) and reads back,
from the DOM the browser built, whether every image decoded, whether anything was logged as an error, and the
score cells, which must match metrics.jsonl.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import TINY_GAN, write_tiny_mnist

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# injected into a copy of the page: errors (script, console, resources) and every image's decoded width go into
# an attribute of <html>, which --dump-dom prints
CHECKER = """<script>
window.__errors = [];
window.addEventListener('error', e => \
window.__errors.push(String(e.message || (e.target && e.target.src || '').slice(0, 60))), true);
const __consoleError = console.error; \
console.error = (...a) => { window.__errors.push(a.join(' ')); __consoleError(...a); };
window.addEventListener('load', () => {
  const images = [...document.images].map(i => ({alt: i.alt, width: i.naturalWidth, complete: i.complete}));
  document.documentElement.setAttribute('data-check', JSON.stringify({images, errors: window.__errors}));
});
</script>"""


def score_record(iteration: int, is_: float, fd: float, label_tv: float = 0.1, num_fake: int = 1000,
                 stage: str = "fit") -> dict:
    """A metrics.jsonl record shaped as GenerativeMetrics writes it."""
    return {
        "iteration": iteration, "step": 2 * iteration, "epoch": 0, "stage": stage, "real_split": "val",
        "trained_in_precision": ["32-true"], "num_fake": num_fake, "num_real": 500,
        "scores": {"classifier/is": is_, "classifier/is_std": 0.0123456, "classifier/fd": fd,
                   "classifier/label_tv": label_tv},
        "real_values": {"split": "train", "count": num_fake,
                        "scores": {"classifier/is": 9.87654321, "classifier/fd": 0.0123, "classifier/label_tv": 0.01}},
        "sampling": {"samplers": {"configured": {"sampler": "prior", "batchnorm": "running"}}, "seed": 0,
                     "batch_size": 500, "noise_batches": "batch b of 500 drawn with seed + b", "device": "cpu",
                     "processes": 1, "precision": "32-true"},
        "settings": {"classifier": {"network": "ConvClassifier", "checkpoint_sha256": "ab12cd34", "splits": 10,
                                    "split_seed": 0, "epsilon": 0.0}},
    }


def append_records(run: Path, *records: dict) -> None:
    with open(run / "metrics.jsonl", "a") as file:
        file.writelines(json.dumps(record) + "\n" for record in records)


def fabricated_run(folder: Path, seed: int = 0, records: tuple[dict, ...] = (), steps: int = 20) -> Path:
    """A run folder written without training: config.yaml, an event file, metrics.jsonl."""
    from torch.utils.tensorboard import SummaryWriter

    folder.mkdir(parents=True)
    config = {"seed_everything": seed, "trainer": {"max_epochs": 1, "logger": {"init_args": {"version": 0}}},
              "model": {"class_path": "genlab.models.GAN", "init_args": {"noise": "uniform"}},
              "data": {"class_path": "genlab.data.MNISTDataModule"}}
    (folder / "config.yaml").write_text("# lightning.pytorch==2.6.6\n" + yaml.safe_dump(config))
    writer = SummaryWriter(str(folder))
    for step in range(1, steps + 1):
        writer.add_scalar("loss/d", 1.0 / step, step, walltime=1000.0 + step)
    writer.close()
    append_records(folder, *records)
    return folder


SCORED_RUN = """
trainer:
  callbacks:
    - class_path: genlab.callbacks.RunReport
    - class_path: genlab.callbacks.SampleGrid
      init_args: {every_n_iterations: 2, num_samples: 16}
    - class_path: genlab.callbacks.GenerativeMetrics
      init_args:
        num_samples: 100
        batch_size: 40
        suites:
          - class_path: genlab.metrics.ClassifierMetrics
            init_args: {checkpoint: lightning_logs/classifier_mnist, splits: 10}
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real `genlab fit`s: a tiny classifier, then the tiny GAN scored by it after each of 2 epochs, with a grid
    every 2 iterations; RunReport writes the GAN run's report.html."""
    from genlab.launch import main
    from tests.helpers import SCORED_TINY_GAN as SCORED_GAN
    from tests.helpers import TINY_CLASSIFIER

    root = tmp_path_factory.mktemp("report")
    data = write_tiny_mnist(root / "data", train=400, test=120)
    (root / "scored.yaml").write_text(SCORED_RUN)
    with pytest.MonkeyPatch.context() as patch:  # what conftest's function-scoped fixtures do for other tests
        patch.chdir(root)
        patch.setattr("sys.argv", ["genlab"])
        patch.delenv("GENLAB_DATA_DIR", raising=False)
        patch.setenv("GENLAB_CACHE_DIR", str(root / "genlab-cache"))
        patch.setattr("genlab.precision.measure_paths", lambda model, batch_size, bf16: {
            f"{p} {layout}": 1.0 for p in ("32-true", "bf16-mixed") for layout in ("contiguous", "channels_last")})
        main(["fit", *TINY_CLASSIFIER, f"--data.data_dir={data}"])
        main(["fit", *SCORED_GAN, "--config", str(root / "scored.yaml"), f"--data.data_dir={data}",
              "--trainer.max_epochs=2", "--trainer.log_every_n_steps=1"])
    return root / "lightning_logs" / "gan_mnist" / "version_0"


def report(*args: str) -> int:
    """`genlab report ARGS` in-process; its exit status."""
    from genlab.launch import main

    with pytest.raises(SystemExit) as exit_info:
        main(["report", *args])
    return exit_info.value.code


def test_fit_ends_with_report_html_in_the_run_folder(tiny_run):
    page = (tiny_run / "report.html").read_text()
    assert "gan_mnist/version_0" in page and "genlab.models.GAN" in page
    assert "iterations done</td><td>20<" in page  # 2 epochs of 300 training images in batches of 32
    assert 'src="http' not in page and "<script" not in page  # self-contained, readable without JavaScript
    environment = json.loads((tiny_run / "environment.jsonl").read_text().splitlines()[0])
    assert environment["stage"] == "fit" and environment["torch"] and environment["lightning"]


def test_genlab_test_ends_with_a_report_of_its_run_folder(tiny_run, run_cli, tiny_data, tmp_path):
    run_cli("test", *TINY_GAN, f"--data.data_dir={tiny_data}", f"--ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}")
    tested = tmp_path / "lightning_logs" / "gan_mnist" / "version_0"
    assert "gan_mnist/version_0" in (tested / "report.html").read_text()
    assert json.loads((tested / "environment.jsonl").read_text())["stage"] == "test"


def test_page_opens_in_chromium_every_image_decodes_and_scores_match_metrics_jsonl(tiny_run, tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (.ci/run installs it: apt-get install chromium)")
    run = tmp_path / "gan_mnist" / "version_0"
    shutil.copytree(tiny_run, run)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [record["iteration"] for record in records] == [10, 20]
    (run / "interpolation").mkdir()
    shutil.copy(run / "samples" / "iteration_0000020.png", run / "interpolation" / "same_class.png")
    assert report(str(run), "-o", str(tmp_path / "report.html")) == 0

    checked = tmp_path / "checked.html"
    checked.write_text((tmp_path / "report.html").read_text().replace("<head>", "<head>" + CHECKER, 1))
    browser = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*browser, "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()],
                         capture_output=True, text=True, timeout=60, check=False).stdout
    check = json.loads(re.search(r'data-check="([^"]*)"', dom)[1].replace("&quot;", '"').replace("&amp;", "&"))
    assert check["errors"] == []
    # curves, 8 grid frames, the last grid, 2 label-histogram frames and the newest, the interpolation
    assert len(check["images"]) == 1 + 8 + 1 + 3 + 1
    assert all(image["complete"] and image["width"] > 0 for image in check["images"]), check["images"]

    cells = re.finditer(r'data-score="([^"]+)" data-iteration="(\d+)" data-stage="(\w+)">([^<]+)<', dom)
    shown = {(cell[1], int(cell[2]), cell[3]): float(cell[4]) for cell in cells}
    for record in records:
        for name, value in record["scores"].items():
            assert math.isclose(shown[(name, record["iteration"], "fit")], value, rel_tol=1e-4), name
    real = records[-1]["real_values"]["scores"]["classifier/is"]
    assert re.search(rf'data-score="classifier/is"[^>]*>[^<]+</td><td>{re.escape(f"{real:.5g}")}<', dom)  # beside

    screenshot = tmp_path / "report.png"
    subprocess.run([*browser, "--window-size=1280,2000", f"--screenshot={screenshot}", checked.as_uri()],
                   capture_output=True, timeout=60, check=False)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 10_000


@pytest.mark.parametrize("kind", ["missing", "experiment", "empty", "other"])
def test_a_folder_that_is_not_a_run_is_one_line_and_no_file(kind, tmp_path, capsys):
    folder = tmp_path / "lightning_logs" / "gan_mnist"
    if kind == "experiment":
        (folder / "version_3").mkdir(parents=True)
    elif kind == "empty":
        folder.mkdir(parents=True)
    elif kind == "other":
        folder.mkdir(parents=True)
        (folder / "notes.txt").write_text("hello")
    status = report(str(folder), "-o", str(tmp_path / "out.html"))
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and err.startswith("genlab: error: ")
    assert str(folder) in err and "Traceback" not in err and not (tmp_path / "out.html").exists()
    if kind == "experiment":
        assert "version_3" in err


def test_damaged_parts_are_named_on_the_page_and_the_rest_is_shown(tmp_path, capsys):
    run = fabricated_run(tmp_path / "exp" / "version_0", records=(score_record(10, 5.0, 50.0),))
    events = next(run.glob("events.out.tfevents.*"))
    events.write_bytes(events.read_bytes()[:-7])  # a killed writer's partial last record
    with open(run / "metrics.jsonl", "a") as file:
        file.write('{"iteration": 20, "sco')  # a line cut by a crash
    (run / "samples").mkdir()
    (run / "samples" / "iteration_0000010.png").write_bytes(b"not a png")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"half a checkpoint")
    assert report(str(run)) == 0
    page = (run / "report.html").read_text()
    assert f"event file {events.name}: truncated" in page
    assert "metrics.jsonl line 2 is not valid JSON" in page
    assert "iteration_0000010.png could not be read" in page
    assert "checkpoints/last.ckpt is truncated or corrupt" in page
    assert 'data-score="classifier/is" data-iteration="10"' in page  # the readable record is still there
    assert "report written to" in capsys.readouterr().out


def test_warnings_name_divergence_skipped_updates_collapse_and_mixed_protocols(tmp_path):
    import torch

    run = fabricated_run(tmp_path / "exp" / "version_0",
                         records=(score_record(10, 5.0, 50.0, num_fake=1000), score_record(20, 2.0, 90.0, 0.97, 2000)))
    (run / "checkpoints").mkdir()
    torch.save({"epoch": 1, "genlab_iterations": 20, "genlab_skipped_updates": 3}, run / "checkpoints" / "last.ckpt")
    (run / "checkpoints" / "diverged-iteration_0000017.ckpt").write_bytes(b"")
    append_records(run, {**score_record(20, 2.0, 90.0, 0.97, 2000), "alarms": ["classifier/label_tv = 0.97 above 0.9"]})
    (run / "memorisation.jsonl").write_text(json.dumps({"iteration": 20, "stage": "fit", "scores": {
        "memorisation/pixel_ratio": 0.875}, "settings": {"num_samples": 100}}) + "\n")
    assert report(str(run)) == 0
    page = (run / "report.html").read_text()
    assert "alarm at iteration 20: classifier/label_tv = 0.97 above 0.9" in page
    assert "(memorisation.jsonl)" in page and 'data-score="memorisation/pixel_ratio" data-iteration="20"' in page
    assert "diverged at iteration 17" in page and "3 non-finite updates were skipped" in page
    assert "classifier/label_tv = 0.970 at iteration 20" in page and "mode collapse" in page
    assert "2 different protocols" in page
    assert "checkpoints/last.ckpt (epoch 1, iteration 20)" in page


def test_runs_differing_only_by_seed_get_mean_and_std(tmp_path):
    from genlab.report import render
    from genlab.report.reading import read_run

    runs = [fabricated_run(tmp_path / f"seed{seed}" / "version_0", seed, (score_record(10, is_, 40.0 + seed),))
            for seed, is_ in ((0, 8.0), (1, 9.0), (2, 10.0))]
    page = render([read_run(run) for run in runs])
    differences = re.search(r"<h3>Config differences</h3>(.*?)</table>", page, re.DOTALL)[1]
    assert "seed_everything" in differences and differences.count("<code>") == 1  # only the key that differs
    assert "differ only by seed (3 seeds)" in page
    assert "9 ± 1<" in page  # classifier/is: mean 9, sample std 1
    assert "Not ranked" not in page


def test_scores_under_different_protocols_are_not_ranked(tmp_path):
    from genlab.report import render
    from genlab.report.reading import read_run

    a = fabricated_run(tmp_path / "a" / "version_0", 0, (score_record(10, 8.0, 40.0, num_fake=1000),))
    b = fabricated_run(tmp_path / "b" / "version_0", 0, (score_record(10, 9.0, 30.0, num_fake=5000),))
    page = render([read_run(a), read_run(b)])
    assert "Not ranked: these scores were measured under different protocols (num_fake" in page
    assert "mean ± std" not in page
    assert 'data-compare="classifier/is">8<' in page and 'data-compare="classifier/is">9<' in page


def test_scores_of_two_classifiers_are_not_ranked_even_with_every_other_setting_equal(tmp_path):
    """Two evaluation classifiers (different weights, the same architecture) give different numbers for the same
    samples: the classifier's hash is part of a score's protocol identity."""
    from genlab.report import render
    from genlab.report.reading import read_run

    other = score_record(10, 9.0, 30.0)
    other["settings"]["classifier"]["checkpoint_sha256"] = "ef56ab78"
    a = fabricated_run(tmp_path / "a" / "version_0", 0, (score_record(10, 8.0, 40.0),))
    b = fabricated_run(tmp_path / "b" / "version_0", 0, (other,))
    page = render([read_run(a), read_run(b)])
    assert "Not ranked: these scores were measured under different protocols (settings.classifier.checkpoint_sha256" \
        in page


def test_a_report_failure_in_training_is_one_warning_not_a_crash(tmp_path, monkeypatch):
    from lightning.pytorch import Trainer

    from genlab.callbacks import RunReport

    trainer = Trainer(default_root_dir=tmp_path, logger=False, enable_checkpointing=False)
    monkeypatch.setattr("genlab.report.write_report", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.warns(UserWarning, match=r"writing report.html failed \(RuntimeError: boom\)"):
        RunReport().teardown(trainer, None, "fit")


def test_long_curves_are_thinned_keeping_the_last_point_and_every_non_finite_one(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from genlab.report.events import MAX_SCALARS_PER_TAG, read_events
    from genlab.report.reading import read_run
    from genlab.report.summary import warnings

    run = fabricated_run(tmp_path / "exp" / "version_0", steps=1)
    writer = SummaryWriter(str(run), filename_suffix=".long")
    for step in range(1, 3 * MAX_SCALARS_PER_TAG + 2):
        writer.add_scalar("loss/g", float("nan") if step == 1001 else 1.0, step, walltime=2000.0 + step)
    writer.close()
    curve = read_events(run).scalars["loss/g"]
    assert len(curve.steps) <= MAX_SCALARS_PER_TAG + 2 and curve.steps[-1] == 3 * MAX_SCALARS_PER_TAG + 1
    assert 1001 in curve.steps
    assert any("non-finite values" in warning and "loss/g" in warning for warning in warnings(read_run(run)))


def test_the_toy_gan_measures_show_beside_the_real_vs_real_floor(tmp_path):
    from genlab.report import render
    from genlab.report.reading import read_run

    run = fabricated_run(tmp_path / "toy_quadratic" / "version_0")
    (run / "toy").mkdir()
    (run / "toy" / "metrics.jsonl").write_text(json.dumps({
        "iteration": 50, "loss_d": 1.38, "loss_g": 0.69, "curve_distance": 0.0296, "sliced_wasserstein": 0.0314,
        "sliced_wasserstein_real_vs_real": 0.0174, "num_points": 1000, "num_directions": 64}) + "\n")
    page = render([read_run(run)])
    assert "Toy measures at iteration 50" in page and 'data-score="toy/curve_distance" data-iteration="50"' in page
    assert ">0.0314</td><td>0.0174<" in page


def test_genlab_report_starts_without_importing_lightning_or_torch(tmp_path):
    import torch

    run = fabricated_run(tmp_path / "exp" / "version_0", records=(score_record(10, 5.0, 50.0),))
    (run / "checkpoints").mkdir()
    torch.save({"epoch": 3, "genlab_iterations": 10, "state_dict": {"w": torch.zeros(2)}, "size": torch.Size([2])},
               run / "checkpoints" / "last.ckpt")
    code = ("import sys; from genlab.launch import main\ntry: main(['report', sys.argv[1]])\nexcept SystemExit as e:"
            " assert e.code == 0\nassert not [m for m in sys.modules if m.startswith(('lightning', 'torch'))]")
    done = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-1000:]
    assert "checkpoints/last.ckpt (epoch 3, iteration 10)" in (run / "report.html").read_text()


def test_toy_runs_differing_only_by_seed_compare_their_toy_measures(tmp_path):
    from genlab.report import render
    from genlab.report.reading import read_run

    runs = []
    for seed, distance in ((0, 0.010), (1, 0.014)):
        run = fabricated_run(tmp_path / f"seed{seed}" / "version_0", seed)
        (run / "toy").mkdir()
        (run / "toy" / "metrics.jsonl").write_text(json.dumps(
            {"iteration": 50, "curve_distance": distance, "sliced_wasserstein": 0.02}) + "\n")
        runs.append(read_run(run))
    page = render(runs)
    comparison = page.split("<h2", 2)[1]  # the comparison section comes first
    assert "toy/curve_distance" in comparison and "No scores in" not in comparison
    assert "0.012 ± 0.002828" in comparison  # mean and sample std of 0.010 and 0.014



def test_the_equilibrium_values_of_the_named_losses_match_the_losses_themselves():
    from genlab.callbacks.toy_plots import equilibrium_losses
    from genlab.losses import resolve_loss
    from genlab.run_layout import equilibrium_lines

    for name in ("non_saturating", "minimax", "least_squares"):
        lines = equilibrium_lines({"model": {"init_args": {"loss": name}}})
        assert (lines["loss/d"], lines["loss/g"]) == pytest.approx(equilibrium_losses(resolve_loss(name)), abs=1e-6)
    assert equilibrium_lines({"model": {"init_args": {"loss": "wasserstein"}}}) == {}
    assert equilibrium_lines({"model": {"init_args": {"loss": {"class_path": "genlab.losses.LeastSquares"}}}}) == {}


def test_a_scored_run_shows_one_row_per_score_with_a_column_per_sampler_and_score_curves(tmp_path):
    from genlab.report import render
    from genlab.report.html import score_series
    from genlab.report.reading import read_run

    records = []
    for iteration, fd in ((10, 50.0), (20, 40.0)):
        record = score_record(iteration, 8.0, fd)
        record["scores"] |= {"classifier/fd@ema": fd - 10, "classifier/fd@running": fd + 1, "classifier/is@ema": 8.5}
        records.append(record)
    run = read_run(fabricated_run(tmp_path / "scored" / "version_0", 0, tuple(records)))
    page = render([run])
    last_table = page[page.index("Scores: fit evaluation at iteration 20"):]
    last_table = last_table[:last_table.index("Protocol of these scores")]
    # fd, is_std, is, tv
    assert last_table.count('data-score="classifier/fd') == 3 and last_table.count("<tr>") - 1 == 4
    assert "<th>configured sampler</th><th>@ema</th><th>@running</th>" in last_table
    curves = score_series(run.records)
    assert curves["classifier/fd"].steps == [10, 20] and curves["classifier/fd"].values == [50.0, 40.0]
    assert "classifier/fd@ema" not in curves and "classifier/is_std" not in curves


def test_a_new_callbacks_figures_reach_the_report_without_editing_it(tmp_path):
    from PIL import Image

    from genlab.report import render
    from genlab.report.reading import figure_files, read_run

    run = fabricated_run(tmp_path / "exp" / "version_0", 0, (score_record(10, 8.0, 40.0),))
    (run / "my_callback").mkdir()
    for iteration in (5, 10):
        Image.new("RGB", (8, 8), (iteration * 20, 0, 0)).save(
            run / "my_callback" / f"plot-iteration_{iteration:07d}.png")
    (run / "checkpoints").mkdir(exist_ok=True)
    Image.new("RGB", (8, 8)).save(run / "checkpoints" / "not-a-figure.png")
    found = figure_files(run)
    assert ([path.name for path in found["my_callback"][0]]
            == ["plot-iteration_0000005.png", "plot-iteration_0000010.png"])
    assert "checkpoints" not in found and "samples" not in found
    assert "my_callback" in render([read_run(run)])
