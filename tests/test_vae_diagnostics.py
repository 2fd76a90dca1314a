"""The VAE's test diagnostics against independent references: the importance-weighted likelihood against
numerical integration over a 1-D latent, the KL per dimension against the closed form summed, active units
against a hand-made table."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from genlab.likelihoods import Bernoulli, kl_to_standard_normal
from genlab.metrics.vae import active_units, iwae_nll, kl_per_dimension


def exact_nll(x: torch.Tensor, decoder: nn.Module) -> torch.Tensor:
    """-log ∫ p(x|z) N(z; 0, 1) dz by the trapezoid rule on a fine grid (a 1-D latent makes it exact enough)."""
    grid = torch.linspace(-8, 8, 20001, dtype=torch.float64)
    log_joint = -Bernoulli().nll(decoder(grid[:, None]).double(), x.double().expand(len(grid), -1))
    log_joint = log_joint - 0.5 * grid.pow(2) - 0.5 * math.log(2 * math.pi)
    peak = log_joint.max()
    return -(peak + torch.log(torch.trapezoid((log_joint - peak).exp(), grid)))


def test_importance_weighted_nll_converges_to_the_exact_likelihood_from_above():
    torch.manual_seed(0)
    decoder = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 6)).double()
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0, 0.3]], dtype=torch.float64)
    truth = float(exact_nll(x[0], decoder))
    mean, logvar = torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)  # wide q

    def log_likelihood(z):  # z: (c, 1, 1) → log p(x|z): (c, 1)
        return -Bernoulli().nll(decoder(z.flatten(0, 1)), x.expand(len(z), -1)).view(len(z), 1)

    estimates = {k: float(iwae_nll(mean, logvar, log_likelihood, k, torch.Generator().manual_seed(1)))
                 for k in (1, 10, 100000)}
    assert estimates[100000] == pytest.approx(truth, abs=3e-3)
    # one draw of k=1 is the negative ELBO's single-sample estimate; on average over draws the bound is looser
    k1 = torch.stack([iwae_nll(mean, logvar, log_likelihood, 1, torch.Generator().manual_seed(s)) for s in range(300)])
    k10 = torch.stack([iwae_nll(mean, logvar, log_likelihood, 10, torch.Generator().manual_seed(s))
                       for s in range(300)])
    assert float(k1.mean()) > float(k10.mean()) > truth - 1e-3


def test_kl_per_dimension_sums_to_the_closed_form_kl():
    mean, logvar = torch.randn(5, 4), torch.randn(5, 4)
    per_dim = kl_per_dimension(mean, logvar)
    torch.testing.assert_close(per_dim.sum(dim=1), kl_to_standard_normal(mean, logvar))
    assert torch.equal(kl_per_dimension(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2, 3))  # q = prior


def test_active_units_count_dimensions_whose_posterior_means_vary():
    # per dimension: variance 0.25, 0, 0.0225, 0.0004 → two above 0.01
    means = torch.tensor([[0.5, 1.0, 0.15, 0.02], [-0.5, 1.0, -0.15, -0.02]])
    assert active_units(means.mean(0), means.pow(2).mean(0)) == 2


def test_genlab_test_reports_the_likelihood_the_kl_of_each_dimension_and_active_units(run_cli, tiny_data, tmp_path):
    from tests.helpers import vae_args

    args = [*vae_args(tiny_data), "--model.init_args.likelihood_samples=4"]
    run_cli("fit", *args, "--trainer.max_epochs=1")
    run_cli("test", *args, "--ckpt_path=last")
    runs = sorted((tmp_path / "lightning_logs" / "vae_mnist").glob("version_*"))
    results = json.loads((runs[-1] / "test_results.json").read_text())
    kls = [results[f"test/kl_dim_{dim:02d}"] for dim in range(20)]
    assert all(kl >= 0 for kl in kls)
    # the dimensions' KLs add up to the test KL term (both are means over the same test images)
    assert sum(kls) == pytest.approx(results["test/loss/kl"], rel=1e-4)
    assert 0 <= results["test/active_units"] <= 20
    # the importance-weighted bound is below the negative ELBO's single-sample estimate on average (k = 4 > 1)
    assert 0 < results["test/nll_iwae4"] < results["test/loss/total"] * 1.05
