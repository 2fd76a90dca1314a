"""The VAE's fitted sampling prior: mixture densities against torch's reference, EM against clusters whose
parameters are known, reproducibility, and the VAE's use of it through fit, checkpoints and `genlab test`."""

from pathlib import Path

import pytest
import torch
from torch.distributions import MultivariateNormal

from genlab.callbacks import SampleGrid
from genlab.cli import GenlabCLI
from genlab.errors import GenlabError
from genlab.models import VAE
from genlab.nets import MLPDecoder, MLPEncoder
from genlab.priors import GaussianMixture, gaussian_log_densities
from tests.helpers import vae_args

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def random_trils(k: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    a = torch.randn(k, dim, dim, generator=generator, dtype=torch.float64)
    return torch.linalg.cholesky(a @ a.transpose(1, 2) + 0.5 * torch.eye(dim, dtype=torch.float64))


def three_clusters(n: int = 6000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points from a known 3-component mixture in 2-D, and its weights, means and covariances."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    means = torch.tensor([[-6.0, 0.0], [5.0, 5.0], [4.0, -6.0]], dtype=torch.float64)
    covariances = torch.tensor([[[1.0, 0.6], [0.6, 1.0]], [[0.5, 0.0], [0.0, 2.0]], [[1.5, -0.4], [-0.4, 0.3]]],
                               dtype=torch.float64)
    component = torch.multinomial(weights, n, replacement=True, generator=generator)
    noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
    points = means[component] + (torch.linalg.cholesky(covariances)[component] @ noise[:, :, None]).squeeze(2)
    return points, weights, means, covariances


def test_log_densities_match_torch_multivariate_normal():
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(50, 6, generator=generator, dtype=torch.float64)
    means = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    trils = random_trils(4, 6, generator)
    expected = torch.stack([MultivariateNormal(m, scale_tril=t).log_prob(points) for m, t in zip(means, trils)], 1)
    torch.testing.assert_close(gaussian_log_densities(points, means, trils), expected)


def test_em_recovers_a_known_mixture():
    points, weights, means, covariances = three_clusters()
    mixture = GaussianMixture(3, 2, seed=0)
    mixture.fit(points.float())
    order = torch.stack([((mixture.means.double() - m).norm(dim=1)).argmin() for m in means])
    assert sorted(order.tolist()) == [0, 1, 2]
    torch.testing.assert_close(mixture.weights.double()[order], weights, atol=0.02, rtol=0)
    torch.testing.assert_close(mixture.means.double()[order], means, atol=0.1, rtol=0)
    fitted_covariances = (mixture.scale_trils @ mixture.scale_trils.transpose(1, 2)).double()[order]
    torch.testing.assert_close(fitted_covariances, covariances, atol=0.15, rtol=0)
    # the fitted density is as good as the true one on these points (EM maximises it; the truth is one candidate)
    truth = torch.logsumexp(gaussian_log_densities(points, means, torch.linalg.cholesky(covariances))
                            + weights.log(), dim=1).mean()
    assert mixture.log_prob(points).mean() >= truth - 1e-3


def test_samples_follow_each_component_of_the_mixture_its_weight_mean_and_covariance():
    """A mixture set by hand (well-separated components, correlated covariances): the samples nearest each mean
    come in its weight's share, with its mean and covariance L Lᵀ (a transposed L or ignored weights fail)."""
    mixture = GaussianMixture(3, 2)
    weights = torch.tensor([0.2, 0.3, 0.5])
    means = torch.tensor([[-20.0, 0.0], [0.0, 20.0], [20.0, -5.0]])
    trils = torch.tensor([[[1.0, 0.0], [0.8, 0.5]], [[2.0, 0.0], [-1.0, 1.0]], [[0.5, 0.0], [0.3, 1.5]]])
    mixture.load_state_dict({"weights": weights, "means": means, "scale_trils": trils, "fitted": torch.tensor(True)})
    points = mixture.sample(60_000, torch.Generator().manual_seed(0)).double()
    nearest = torch.cdist(points, means.double()).argmin(1)
    for k in range(3):
        chosen = points[nearest == k]
        assert len(chosen) / len(points) == pytest.approx(float(weights[k]), abs=0.01)
        torch.testing.assert_close(chosen.mean(0), means[k].double(), atol=0.05, rtol=0)
        covariance = (trils[k] @ trils[k].T).double()
        torch.testing.assert_close(torch.cov(chosen.T), covariance, atol=0.1, rtol=0.03)


def test_fit_and_samples_are_reproducible():
    points = three_clusters()[0].float()
    first, second = GaussianMixture(3, 2, seed=5), GaussianMixture(3, 2, seed=5)
    first.fit(points)
    second.fit(points)
    for a, b in zip(first.buffers(), second.buffers()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    draw = first.sample(100, torch.Generator().manual_seed(1))
    torch.testing.assert_close(draw, first.sample(100, torch.Generator().manual_seed(1)), rtol=0, atol=0)
    # samples follow the fitted mixture: the component weights come back in the draw
    many = first.sample(20_000, torch.Generator().manual_seed(2))
    nearest = torch.cdist(many, first.means).argmin(1)
    torch.testing.assert_close(torch.bincount(nearest, minlength=3) / 20_000, first.weights, atol=0.02, rtol=0)


def test_max_points_fits_a_seeded_subset():
    points = three_clusters(n=3000)[0].float()
    subset = GaussianMixture(3, 2, max_points=1000, seed=3)
    subset.fit(points)
    again = GaussianMixture(3, 2, max_points=1000, seed=3)
    again.fit(points)
    torch.testing.assert_close(subset.means, again.means, rtol=0, atol=0)
    everything = GaussianMixture(3, 2, max_points=None, seed=3)
    everything.fit(points)
    assert not torch.equal(subset.means, everything.means)  # the cap did take a subset


def test_bad_settings_and_inputs_are_one_line():
    with pytest.raises(GenlabError, match="at least"):
        GaussianMixture(0, 2)
    with pytest.raises(GenlabError, match="fewer components"):
        GaussianMixture(10, 2, max_points=None).fit(torch.randn(5, 2))
    with pytest.raises(GenlabError, match="shape"):
        GaussianMixture(2, 3).fit(torch.randn(20, 2))
    encoder, decoder = MLPEncoder(hidden=[8], latent_dim=2), MLPDecoder(latent_dim=2, hidden=[8])
    with pytest.raises(GenlabError, match="sampling_prior"):
        VAE(encoder, decoder, sampling_prior="vampprior")


def test_vae_samples_from_the_mixture_once_fitted():
    torch.manual_seed(0)
    model = VAE(MLPEncoder(hidden=[16], latent_dim=2), MLPDecoder(latent_dim=2, hidden=[16]),
                sampling_prior="mixture", mixture_components=3)
    standard = model.sample_latent(4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(standard, torch.randn(4, 2, generator=torch.Generator().manual_seed(0)))
    model.mixture.fit(three_clusters()[0].float())
    z = model.sample_latent(4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, model.mixture.sample(4, torch.Generator().manual_seed(0)))
    # the grid draws from the current prior with its fixed seed: the same images twice, the mixture's images
    grid = SampleGrid(num_samples=4, seed=0)
    torch.testing.assert_close(grid.grid(model), grid.grid(model))
    model.eval()
    expected = SampleGrid(num_samples=4).grid(model)
    with torch.no_grad():
        images = (model.decode(model.mixture.sample(4, torch.Generator().manual_seed(0))) + 1) / 2
    torch.testing.assert_close(expected[0, 2:30, 2:30], images[0, 0])  # first tile: grey expanded to RGB


def count_fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records each GaussianMixture.fit call (the number of points it got)."""
    calls: list[int] = []
    original = GaussianMixture.fit

    def recording_fit(self: GaussianMixture, points: torch.Tensor) -> float:
        calls.append(len(points))
        return original(self, points)

    monkeypatch.setattr(GaussianMixture, "fit", recording_fit)
    return calls


def test_checkpoint_carries_the_mixture_of_its_weights(run_cli, tiny_data, tmp_path, monkeypatch):
    fits = count_fits(monkeypatch)
    run_cli("fit", *vae_args(tiny_data), "--model.init_args.sampling_prior=mixture", "--trainer.max_epochs=2",
            "--trainer.limit_val_batches=1",
            "--trainer.callbacks+=genlab.callbacks.SampleGrid", "--trainer.callbacks.every_n_iterations=5")
    assert fits == [80, 80]  # one fit per grid (iterations 5 and 10; the end-of-fit grid reuses the second)
    path = tmp_path / "lightning_logs" / "vae_mnist" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=False)
    weights = checkpoint["state_dict"]
    assert bool(weights["mixture.fitted"]) and weights["mixture.means"].shape == (3, 20)
    assert int(weights["mixture_iteration"]) == checkpoint["genlab_iterations"] == 10  # 80 images / 16, 2 epochs

    # it is the fit of exactly these weights' codes: a fresh fit of them gives the same mixture
    cli = GenlabCLI(args=vae_args(tiny_data) + ["--trainer.logger=false"], run=False)
    model = cli.model.eval()
    model.load_state_dict(weights)
    cli.datamodule.setup("fit")
    with torch.no_grad():
        codes = model.encode(cli.datamodule.splits.train.samples)[0]
    fresh = GaussianMixture(3, 20)
    fresh.fit(codes)
    for name, buffer in fresh.named_buffers():
        torch.testing.assert_close(buffer, weights[f"mixture.{name}"])

    # sampling from the checkpoint (`genlab predict`) uses its mixture as it is ...
    fits.clear()
    predict = ["predict", *vae_args(tiny_data), f"--ckpt_path={path}", "--trainer.limit_predict_batches=1"]
    predicted = GenlabCLI(args=[*predict, "--model.init_args.sampling_prior=mixture"], run=True).model
    assert fits == []
    torch.testing.assert_close(predicted.mixture.means, weights["mixture.means"], rtol=0, atol=0)
    # ... and a model told to sample from N(0, I) loads the same checkpoint and does not use it
    standard = GenlabCLI(args=[*predict, "--model.init_args.sampling_prior=standard"], run=True).model
    assert standard.sampling_prior == "standard" and fits == []


def test_a_checkpoint_without_a_fitted_mixture_gets_one_when_sampled(run_cli, tiny_data, tmp_path, monkeypatch):
    run_cli("fit", *vae_args(tiny_data), "--model.init_args.sampling_prior=standard", "--trainer.max_epochs=1",
            "--trainer.limit_val_batches=1")
    checkpoint = tmp_path / "lightning_logs" / "vae_mnist" / "version_0" / "checkpoints" / "last.ckpt"
    assert not bool(torch.load(checkpoint, weights_only=False)["state_dict"]["mixture.fitted"])
    fits = count_fits(monkeypatch)
    args = ["predict", *vae_args(tiny_data), f"--ckpt_path={checkpoint}", "--trainer.limit_predict_batches=2",
            "--model.init_args.sampling_prior=mixture"]
    model = GenlabCLI(args=args, run=True).model
    assert fits == [80]  # fitted once, on the first batch's samples, to the checkpoint's 5 iterations
    assert bool(model.mixture.fitted) and int(model.mixture_iteration) == 5
