"""The evaluation layer in numbers: IS, m-IS, Fréchet distance and label counts against their formulas, batched
accumulation against one-shot computation, Inception metrics end to end on a random weights file the test writes,
and `GenerativeMetrics` / `genlab test` / `genlab predict` through the real CLI on tiny data."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.errors import GenlabError
from genlab.metrics import (
    EvaluationPlan,
    FrechetDistance,
    InceptionMetrics,
    InceptionScore,
    LabelHistogram,
    ModifiedInceptionScore,
    random_inception_weights,
)
from genlab.metrics.functional import frechet_distance, inception_score, modified_inception_score
from tests.helpers import EXPERIMENTS, METRICS_YAML, SCORED_TINY_GAN, TINY_CLASSIFIER


def random_probabilities(n: int, classes: int = 10, seed: int = 0) -> torch.Tensor:
    logits = torch.randn(n, classes, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3
    return logits.softmax(1)


# --- Inception Score -----------------------------------------------------------------------------------------


def test_inception_score_of_uniform_predictions_is_one():
    mean, std = inception_score(torch.full((100, 10), 0.1), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_of_confident_balanced_predictions_is_the_class_count():
    one_hot = torch.eye(10).repeat(10, 1)  # 100 samples, 10 per class, classes in order
    assert inception_score(one_hot, splits=1)[0] == pytest.approx(10.0, rel=1e-12)
    assert inception_score(one_hot, splits=10, seed=None)[0] == pytest.approx(10.0, rel=1e-12)  # each split balanced


def test_inception_score_matches_the_formula_split_by_split():
    probs = random_probabilities(300)
    order = np.random.RandomState(2020).permutation(300)  # torch-fidelity's split convention
    p = probs.numpy()[order]
    scores = []
    for part in np.array_split(p, 3):
        marginal = part.mean(0, keepdims=True)
        scores.append(np.exp((part * (np.log(part) - np.log(marginal))).sum(1).mean()))
    mean, std = inception_score(probs, splits=3, seed=2020)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10)
    assert std == pytest.approx(np.std(scores), rel=1e-8)


def test_reference_protocol_inception_score_is_the_notebooks_code():
    """One split over all samples with the notebooks' 1e-10 inside the logarithm, against their own lines."""
    probs = random_probabilities(400, seed=4).float().double()  # some near-zero probabilities
    probs[:50] = torch.eye(10).repeat(5, 1).double()  # exact zeros, which the guarded log must survive
    p = probs.numpy()
    p_y = p.mean(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        dcgan_cell = np.exp(np.mean([np.sum(row * np.log(row / p_y + 1e-10)) for row in p]))  # 001, cell [28]
    vae_cell = np.exp(np.mean(np.sum(p * (np.log(p + 1e-10) - np.log(p_y + 1e-10)), 1)))  # 001, cell [261]
    mean, std = inception_score(probs, splits=1, seed=None, epsilon=1e-10)
    assert mean == pytest.approx(dcgan_cell, rel=1e-12) and std == 0.0
    assert mean == pytest.approx(vae_cell, rel=1e-8)
    assert mean == pytest.approx(inception_score(probs, splits=1, seed=None)[0], rel=1e-8)  # eps is a protocol detail


def test_inception_score_metric_accumulated_in_batches_equals_one_shot():
    probs = random_probabilities(250, seed=1)
    batched = InceptionScore(10, splits=5)
    for chunk in probs.split(37):
        batched.update(chunk)
    assert tuple(float(v) for v in batched.compute()) == pytest.approx(inception_score(probs, 5, 2020), rel=1e-12)


def test_inception_score_refuses_fewer_samples_than_splits():
    metric = InceptionScore(10, splits=10)
    metric.update(random_probabilities(5))
    with pytest.raises(GenlabError, match="meaningless"):
        metric.compute()


# --- modified Inception Score --------------------------------------------------------------------------------


def test_modified_inception_score_is_one_for_identical_predictions_within_each_class():
    assert modified_inception_score(torch.eye(10).repeat(5, 1)) == pytest.approx((1.0, 0.0))


def test_modified_inception_score_matches_the_pairwise_definition():
    probs = random_probabilities(60, classes=4, seed=3)
    predicted = probs.argmax(1)
    expected = []
    for c in predicted.unique():
        group = probs[predicted == c].numpy()
        if len(group) < 2:
            continue
        kl = [(a * (np.log(a) - np.log(b))).sum() for a in group for b in group]
        expected.append(np.exp(np.mean(kl)))
    mean, std = modified_inception_score(probs)
    assert mean == pytest.approx(np.mean(expected), rel=1e-10) and std == pytest.approx(np.std(expected), rel=1e-8)
    metric = ModifiedInceptionScore(4)
    for chunk in probs.split(7):
        metric.update(chunk)
    assert float(metric.compute()[0]) == pytest.approx(mean, rel=1e-12)


# --- Fréchet distance ----------------------------------------------------------------------------------------


def test_frechet_distance_equals_the_closed_form_for_known_gaussians():
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    var1, var2 = torch.tensor([1.0, 4.0, 9.0], dtype=torch.float64), torch.tensor([4.0, 1.0, 1.0], dtype=torch.float64)
    # diagonal covariances: |mu1 - mu2|^2 + sum(s1 + s2 - 2 sqrt(s1 s2))
    expected = float((mu1 - mu2).square().sum() + (var1 + var2 - 2 * (var1 * var2).sqrt()).sum())
    assert frechet_distance(mu1, torch.diag(var1), mu2, torch.diag(var2)) == pytest.approx(expected, rel=1e-10)
    # basis-free
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
    rotated = frechet_distance(rotation @ mu1, rotation @ torch.diag(var1) @ rotation.T,
                               rotation @ mu2, rotation @ torch.diag(var2) @ rotation.T)
    assert rotated == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_a_sample_against_itself_is_zero_and_batching_does_not_matter():
    features = torch.randn(500, 8, generator=torch.Generator().manual_seed(0)) * torch.arange(1, 9)
    one_shot = FrechetDistance(8)
    one_shot.update(features, real=True)
    one_shot.update(features, real=False)
    assert float(one_shot.compute()) == pytest.approx(0.0, abs=1e-8)
    shifted = features + 0.5
    batched, whole = FrechetDistance(8), FrechetDistance(8)
    for chunk in features.split(64):
        batched.update(chunk, real=True)
    for chunk in shifted.split(100):
        batched.update(chunk, real=False)
    whole.update(features, real=True)
    whole.update(shifted, real=False)
    assert float(batched.compute()) == pytest.approx(float(whole.compute()), rel=1e-10)
    assert float(whole.compute()) == pytest.approx(8 * 0.25, rel=1e-8)  # a pure shift costs |delta mu|^2


def test_frechet_distance_refuses_too_few_samples():
    metric = FrechetDistance(8)
    metric.update(torch.randn(8, 8), real=True)
    metric.update(torch.randn(20, 8), real=False)
    with pytest.raises(GenlabError, match="needs more than 8 samples"):
        metric.compute()


def test_keep_real_survives_reset():
    metric = FrechetDistance(2, keep_real=True)
    metric.update(torch.randn(10, 2), real=True)
    metric.update(torch.randn(10, 2), real=False)
    metric.reset()
    assert int(metric.real_count) == 10 and int(metric.fake_count) == 0


# --- label histogram ------------------------------------------------------------------------------------------


def test_label_histogram_counts_predictions_and_requested_labels():
    histogram = LabelHistogram(3)
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    histogram.update(probs, real=False, requested=torch.tensor([0, 1, 2, 2]))
    histogram.update(probs[:2], real=True)
    counts = histogram.compute()
    assert counts["fake"].tolist() == [1, 2, 1] and counts["real"].tolist() == [1, 1, 0]
    assert counts["joint"].tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


# --- Inception-v3 through torch-fidelity, with a weights file written here --------------------------------------


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_inception_weights(tmp_path_factory.mktemp("inception") / "weights.pth")


def _plan(num_fake: int, num_real: int, shape: tuple[int, ...] = (1, 28, 28)) -> EvaluationPlan:
    return EvaluationPlan(shape, "MNISTDataModule", 10, 0, num_fake, num_real, "val")


def test_inception_metrics_run_end_to_end_on_a_local_weights_file(inception_weights):
    # Inception-v3 at 299x299 costs ~0.2 s per image on a 2-core CPU: 66 images per side is the least FID on the
    # 64-d pool features accepts. The same images on both sides must give FID 0 and KID ~0.
    suite = InceptionMetrics(weights_path=str(inception_weights), is_splits=1, fid_features=64, kid_subsets=10,
                             kid_subset_size=50, allow_unofficial_weights=True, manifold_k=3)
    with pytest.raises(GenlabError, match="1008 samples per split"):
        suite.prepare(_plan(num_fake=66, num_real=66))
    suite.is_splits = 0
    suite.prepare(_plan(num_fake=66, num_real=66))
    images = torch.rand(66, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for chunk in images.split(33):
        suite.update(chunk, real=True)
        suite.update(chunk, real=False)
    scores = suite.compute().scores
    assert scores["inception/fid"] == pytest.approx(0.0, abs=1e-9)
    # identical sets: every point in its own ball and in those of the points it is among the k nearest of
    assert [scores[f"inception/{name}"] for name in ("precision", "recall", "coverage")] == [1.0, 1.0, 1.0]
    assert scores["inception/density"] == pytest.approx(4 / 3, rel=1e-12)
    assert suite.settings()["manifold_k"] == 3 and suite.settings()["manifold_counts"] == {"generated": 66, "real": 66}
    features = suite.features(images[:4])[0]
    assert features.shape == (4, 64) and features.std(0).mean() > 0  # the network sees the images
    assert abs(scores["inception/kid"]) < 1e-3 * float(features.square().sum(1).mean()) ** 3
    assert suite.settings()["weights"] == str(inception_weights)
    assert suite.settings()["official_weights"] is False and "UNOFFICIAL" in suite.settings()["network"]


def test_weights_other_than_the_official_file_are_refused_unless_allowed(inception_weights, tmp_path):
    """A loadable file of other weights under the official name is not the TF 2015 network: its SHA-256 says so."""
    from genlab.metrics.inception import WEIGHTS_NAME

    impostor = tmp_path / WEIGHTS_NAME
    impostor.write_bytes(inception_weights.read_bytes())
    suite = InceptionMetrics(weights_path=str(impostor), is_splits=0, kid_subsets=0, fid_features=64)
    with pytest.raises(GenlabError, match=r"is not the official Inception weights file .*6726825d.*allow_unofficial"):
        suite.prepare(_plan(100, 100))


def test_inception_images_enter_as_the_bytes_a_png_would_hold():
    from genlab.metrics.inception import to_bytes

    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    as_float = pixels.float() / 127.5 - 1  # how genlab's data modules load bytes
    assert torch.equal(to_bytes(as_float), pixels.expand(-1, 3, -1, -1))
    # generated values, exact half levels included, become the bytes `genlab predict`'s PNG files hold
    from torchvision.utils import save_image

    halves = (torch.arange(255).float() + 0.5) / 127.5 - 1
    samples = torch.cat([halves, torch.rand(1345, generator=torch.Generator().manual_seed(0)) * 2 - 1])
    images = samples.view(4, 1, 40, 10)
    for image, as_bytes in zip(images, to_bytes(images)):
        buffer = io.BytesIO()
        save_image((image + 1) / 2, buffer, format="png")
        with Image.open(buffer) as png:
            assert torch.equal(torch.from_numpy(np.asarray(png)).permute(2, 0, 1), as_bytes)


def test_missing_inception_weights_are_one_line_naming_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(GenlabError) as error:
        InceptionMetrics(download=False, is_splits=0, kid_subsets=0, fid_features=64).prepare(_plan(100, 100))
    message = str(error.value)
    assert "\n" not in message and "weights-inception-2015-12-05-6726825d.pth" in message
    assert str(tmp_path / "torch") in message
    with pytest.raises(GenlabError, match="does not exist"):
        InceptionMetrics(weights_path=str(tmp_path / "nope.pth")).prepare(_plan(20_000, 20_000))


def test_a_corrupt_inception_weights_file_is_named(tmp_path):
    broken = tmp_path / "weights.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(GenlabError, match="not a usable Inception-v3 weights file"):
        InceptionMetrics(weights_path=str(broken), is_splits=0, kid_subsets=0, fid_features=64,
                         allow_unofficial_weights=True).prepare(_plan(100, 100))


# --- GenerativeMetrics, genlab test and genlab predict through the CLI -----------------------------------------



@pytest.fixture()
def mnist_400(tmp_path: Path) -> Path:
    from tests.helpers import write_tiny_mnist

    return write_tiny_mnist(tmp_path / "data400", train=400, test=120)


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_generative_metrics_fit_test_and_predict_end_to_end(run_cli, mnist_400, tmp_path, capsys):
    run_cli("fit", *TINY_CLASSIFIER, f"--data.data_dir={mnist_400}")
    metrics_config = tmp_path / "metrics.yaml"
    metrics_config.write_text(METRICS_YAML)
    run_cli("fit", *SCORED_TINY_GAN, "--config", str(metrics_config), f"--data.data_dir={mnist_400}",
            "--trainer.max_epochs=2")
    run = tmp_path / "lightning_logs" / "gan_mnist" / "version_0"
    fit_records = _records(run)
    # 300 images, batches of 32, the last kept
    assert [(r["stage"], r["epoch"], r["iteration"]) for r in fit_records] == [("fit", 0, 10), ("fit", 1, 20)]
    for record in fit_records:
        scores = record["scores"]
        assert 1.0 <= scores["classifier/is"] <= 10.0 and scores["classifier/fd"] >= 0
        assert 0.0 <= scores["classifier/label_tv"] <= 1.0
        assert record["num_fake"] == 100 and record["num_real"] == 100 and record["real_split"] == "val"
        assert sum(record["label_histogram"]["generated"]) == 100 and sum(record["label_histogram"]["real"]) == 100
        assert record["settings"]["classifier"]["network"] == "ConvClassifier"
    assert len(list((run / "metrics").glob("label_histogram-fit-*.png"))) == 2
    # a record alone reproduces its numbers: sampler, seed, batch size, device, counts, real-data values
    sampling = fit_records[0]["sampling"]
    assert sampling["seed"] == 0 and sampling["batch_size"] == 40 and sampling["device"] == "cpu"
    assert sampling["processes"] == 1 and sampling["precision"] == "32-true"
    assert fit_records[0]["trained_in_precision"] == ["32-true"]
    fast_path = fit_records[0]["fast_path"]  # how this run trained, and why
    assert fast_path["precision"] == "32-true" and fast_path["memory_format"] == "contiguous" and fast_path["reason"]
    assert sampling["samplers"] == {"configured": {"latent_dim": 10, "noise": "U(-1, 1)",
                                                   "batchnorm": "none (the generator has no BatchNorm)",
                                                   "weights": "the trained generator"}}
    real_values = fit_records[0]["real_values"]
    assert real_values["split"] == "train" and real_values["count"] == 100  # 100 training images as "samples"
    assert real_values == fit_records[1]["real_values"]  # computed once: real data does not change
    real_scores = real_values["scores"]
    assert real_scores.keys() >= {"classifier/is", "classifier/fd", "classifier/m_is", "classifier/label_tv"}
    assert fit_records[0]["scores"]["classifier/m_is_gap"] == pytest.approx(
        abs(fit_records[0]["scores"]["classifier/m_is"] - real_scores["classifier/m_is"]), rel=1e-12)
    settings = fit_records[0]["settings"]["classifier"]
    assert settings["splits"] == 10 and settings["split_seed"] == 2020 and settings["epsilon"] == 0.0

    capsys.readouterr()
    run_cli("test", *SCORED_TINY_GAN, "--config", str(metrics_config), f"--data.data_dir={mnist_400}",
            "--ckpt_path=last")
    printed = capsys.readouterr().out
    test_runs = sorted((tmp_path / "lightning_logs" / "gan_mnist").glob("version_*"))
    test_record = _records(test_runs[-1])[-1]
    assert test_record["stage"] == "test" and test_record["real_split"] == "test" and test_record["num_real"] == 100
    assert test_record["iteration"] == 20  # the iteration of the checkpoint's weights
    assert test_record["trained_in_precision"] == ["32-true"]  # from the checkpoint, not the test's precision
    assert test_record["trained_with_fast_paths"] == [fast_path]  # the fit's layout and reason, not the test's
    assert test_record["fast_path"]["reason"] == "genlab test evaluates the same on every machine"
    assert "test/classifier/is" in printed
    printed_results = json.loads((test_runs[-1] / "test_results.json").read_text())  # the printed table, for scripts
    assert printed_results["iteration"] == 20
    assert printed_results["test/classifier/is"] == pytest.approx(test_record["scores"]["classifier/is"], rel=1e-6)
    # the same generator and the same seeded samples: the test-time IS equals the end-of-training IS
    assert test_record["scores"]["classifier/is"] == pytest.approx(fit_records[-1]["scores"]["classifier/is"], rel=1e-9)

    run_cli("predict", *SCORED_TINY_GAN, f"--data.data_dir={mnist_400}", "--ckpt_path=last",
            "--trainer.limit_predict_batches=2")
    predict_run = max((tmp_path / "lightning_logs" / "gan_mnist").glob("version_*"))
    written = sorted((predict_run / "predictions").glob("0*.png"))
    assert [path.name for path in written] == [f"{item:06d}.png" for item in range(2 * 32)]
    with Image.open(written[0]) as image:
        assert image.size == (28, 28)
    assert (predict_run / "predictions" / "grid.png").is_file()


def test_predict_draws_the_same_image_per_test_item_for_any_batch_size(run_cli, mnist_400, tmp_path):
    run_cli("fit", *SCORED_TINY_GAN, f"--data.data_dir={mnist_400}", "--trainer.max_epochs=1", "--evaluate=false",
            "--trainer.limit_train_batches=2")
    folders = []
    for eval_batch_size in (32, 12):
        run_cli("predict", *SCORED_TINY_GAN, f"--data.data_dir={mnist_400}", "--ckpt_path=last",
                f"--data.init_args.eval_batch_size={eval_batch_size}", "--trainer.limit_predict_batches=2")
        folders.append(max((tmp_path / "lightning_logs" / "gan_mnist").glob("version_*")) / "predictions")
    same = [f"{item:06d}.png" for item in range(24)]  # 2 batches of 12 ⊂ 2 batches of 32
    assert all((folders[1] / name).read_bytes() == (folders[0] / name).read_bytes() for name in same)
    images = [(folders[0] / name).read_bytes() for name in same]
    assert len(set(images)) == len(images)  # and different items get different samples


def test_generative_metrics_refuse_before_training_without_a_classifier(run_cli, mnist_400, tmp_path, capsys):
    metrics_config = tmp_path / "metrics.yaml"
    metrics_config.write_text(METRICS_YAML)
    with pytest.raises(SystemExit):
        run_cli("fit", *SCORED_TINY_GAN, "--config", str(metrics_config), f"--data.data_dir={mnist_400}",
                "--trainer.max_epochs=1")
    line = capsys.readouterr().err.strip().splitlines()
    assert len(line) == 1 and "classifier checkpoint" in line[0]
    assert "genlab fit --config experiments/classifier_mnist.yaml" in line[0]
    assert not list(tmp_path.glob("lightning_logs/gan_mnist/*/checkpoints/*.ckpt"))  # nothing trained


@pytest.mark.slow
@pytest.mark.parametrize("batch_size", [40, 120], ids=["uneven-shares", "a-process-without-a-batch"])
def test_metrics_from_two_ddp_processes_equal_one_process(batch_size, run_cli, mnist_400, tmp_path):
    import os
    import subprocess
    import sys

    from tests.helpers import REPO

    run_cli("fit", *TINY_CLASSIFIER, f"--data.data_dir={mnist_400}")
    run_cli("fit", *SCORED_TINY_GAN, f"--data.data_dir={mnist_400}", "--trainer.max_epochs=1", "--evaluate=false")
    metrics_config = tmp_path / "metrics.yaml"
    # 110 samples in batches of 40: 3 batches, shared 1 / 2; in batches of 120: one batch, so process 1 generates
    # nothing and must still take part in every gather
    # manifold_k: the k-NN scores gather whole feature sets, also from the process without a generated batch
    metrics_config.write_text(METRICS_YAML.replace("num_samples: 100", "num_samples: 110")
                              .replace("batch_size: 40", f"batch_size: {batch_size}")
                              .replace("splits: 10}", "splits: 10, manifold_k: 3}"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    scores = {}
    for devices in (1, 2):
        strategy = ["--trainer.strategy=ddp", "--trainer.accelerator=cpu"] if devices > 1 else []
        done = subprocess.run(
            [sys.executable, "-m", "genlab.cli", "test", *SCORED_TINY_GAN, "--config", str(metrics_config),
             f"--data.data_dir={mnist_400}", "--ckpt_path=last", f"--trainer.devices={devices}", *strategy],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        run = max((tmp_path / "lightning_logs" / "gan_mnist").glob("version_*"), key=lambda p: p.stat().st_mtime)
        records = _records(run)
        assert len(records) == 1  # written once, by rank 0
        scores[devices] = records[0]["scores"]
    assert scores[2].keys() == scores[1].keys() >= {"classifier/precision", "classifier/coverage"}
    for name, value in scores[1].items():
        assert scores[2][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


@pytest.mark.slow
def test_under_ddp_every_process_evaluates_with_the_batchnorm_statistics_the_checkpoint_holds(run_cli, mnist_400,
                                                                                                tmp_path):
    import os
    import subprocess
    import sys

    from tests.helpers import REPO

    run_cli("fit", *TINY_CLASSIFIER, f"--data.data_dir={mnist_400}")
    metrics_config = tmp_path / "metrics.yaml"
    metrics_config.write_text(METRICS_YAML.replace("every_n_epochs: 1",
                                                   "every_n_epochs: 1\n        samplers: [running]"))
    command = [sys.executable, "-m", "genlab.cli", "fit", "--config", str(EXPERIMENTS / "dcgan_mnist.yaml"),
               "--config", str(metrics_config), "--trainer.callbacks+=tests.pause.SaveAveragePerRank",
               f"--trainer.callbacks.folder={tmp_path}", f"--data.data_dir={mnist_400}",
               "--data.init_args.batch_size=32", "--data.init_args.val_size=100",
               "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--trainer.strategy=ddp",
               "--trainer.devices=2", "--trainer.accelerator=cpu"]
    done = subprocess.run(command, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)["generator"] for rank in (0, 1)]
    statistics = [name for name in ranks[0] if name.endswith(("running_mean", "running_var"))]
    assert statistics  # the DCGAN generator has BatchNorm
    for name in ranks[0]:  # each process trained its statistics on its own batches; the evaluation shared rank 0's
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    checkpoint = torch.load(tmp_path / "lightning_logs" / "dcgan_mnist" / "version_0" / "checkpoints" / "last.ckpt",
                            map_location="cpu", weights_only=False)
    for name in statistics:
        assert torch.equal(checkpoint["state_dict"][f"generator.{name}"], ranks[0][name]), name


def test_a_second_sampler_is_scored_in_the_same_evaluation_under_its_own_names(run_cli, mnist_400, tmp_path):
    """vae_mnist samples N(0, I) as the reference does; the fitted mixture is scored beside it as `…@mixture`."""
    run_cli("fit", *TINY_CLASSIFIER, f"--data.data_dir={mnist_400}")
    metrics_config = tmp_path / "metrics.yaml"
    metrics_config.write_text(METRICS_YAML.replace("every_n_epochs: 1",
                                                   "every_n_epochs: 1\n        samplers: [mixture]"))
    run_cli("fit", "--config", str(EXPERIMENTS / "vae_mnist.yaml"), "--config", str(metrics_config),
            "--model.init_args.encoder.init_args.hidden=[32]", "--model.init_args.decoder.init_args.hidden=[32]",
            "--model.init_args.mixture_components=3", f"--data.data_dir={mnist_400}", "--data.init_args.val_size=100",
            "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false")
    record = _records(tmp_path / "lightning_logs" / "vae_mnist" / "version_0")[-1]
    scores = record["scores"]
    for name in ("classifier/is", "classifier/fd", "classifier/label_tv", "classifier/m_is_gap"):
        assert name in scores and f"{name}@mixture" in scores
    for name in ("classifier/is", "classifier/fd"):
        assert scores[name] != scores[f"{name}@mixture"]  # different samples, different numbers
    samplers = record["sampling"]["samplers"]
    assert samplers["configured"] == {"latent_dim": 20, "prior": "N(0, I)"}
    assert samplers["mixture"]["prior"].startswith("3-component Gaussian mixture")
    assert samplers["mixture"]["mixture_fitted_to_iteration"] == record["iteration"]
    assert "label_histogram" in record and "label_histogram@mixture" in record


def test_a_conditional_gan_is_scored_per_class_with_real_images_of_each_class(run_cli, mnist_400, tmp_path):
    run_cli("fit", *TINY_CLASSIFIER, f"--data.data_dir={mnist_400}")
    metrics_config = tmp_path / "metrics.yaml"
    metrics_config.write_text(METRICS_YAML)
    run_cli("fit", "--config", str(EXPERIMENTS / "cgan_mnist.yaml"),
            "--model.init_args.generator.init_args.hidden=[16]", "--model.init_args.discriminator.init_args.hidden=[8]",
            "--data.init_args.batch_size=32", "--data.init_args.val_size=100", "--trainer.max_epochs=1",
            "--trainer.enable_progress_bar=false", f"--data.data_dir={mnist_400}", "--trainer.callbacks=[]",
            "--config", str(metrics_config))  # the YAML's callbacks replaced by the metrics alone
    run = tmp_path / "lightning_logs" / "cgan_mnist" / "version_0"
    record = _records(run)[-1]
    per_class = record["classifier/per_class"]
    assert len(per_class["label_accuracy"]) == len(per_class["fd"]) == 10
    requested = record["label_histogram"]["requested_vs_predicted"]
    assert per_class["label_accuracy"] == pytest.approx([row[c] / sum(row) for c, row in enumerate(requested)])
    assert record["scores"]["classifier/label_accuracy_worst_class"] == min(per_class["label_accuracy"])
    # 10 samples and ~10 real images a class, 16 classifier features: too few for any class's Fréchet distance
    assert all(math.isnan(fd) for fd in per_class["fd"])
    assert list((run / "metrics").glob("label_histogram-fit-iteration_*.png"))


def test_a_record_names_the_precision_samples_are_really_drawn_in():
    from genlab.evaluation import sampling_precision

    network = torch.nn.Linear(2, 2)
    assert sampling_precision(network) == "32-true"  # a bf16-mixed fit's callbacks sample outside its autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert sampling_precision(network) == "autocast torch.bfloat16"
    assert sampling_precision(network.to(torch.bfloat16)) == "bf16-true"
