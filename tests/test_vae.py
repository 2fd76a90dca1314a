"""The VAE: KL and likelihood terms against closed forms and torch's reference distributions, the reference
networks by shape and parameter count, and the model's loss against a hand-written negative ELBO."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import ContinuousBernoulli as TorchContinuousBernoulli
from torch.distributions import Normal, kl_divergence

from genlab.callbacks import SampleGrid
from genlab.errors import GenlabError
from genlab.likelihoods import (
    TAYLOR_BELOW,
    Bernoulli,
    ContinuousBernoulli,
    continuous_bernoulli_log_normalizer,
    continuous_bernoulli_mean,
    kl_to_standard_normal,
    resolve_likelihood,
)
from genlab.models import VAE
from genlab.nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder
from tests.helpers import EXPERIMENTS


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def log_normalizer_float64(probability: torch.Tensor) -> torch.Tensor:
    """log C(λ) = log(2 artanh(1 - 2λ) / (1 - 2λ)), straight from the definition (λ ≠ ½)."""
    p = probability.double()
    return torch.log(2 * torch.atanh(1 - 2 * p) / (1 - 2 * p))


# --- KL ---------------------------------------------------------------------------------------------------

def test_kl_matches_hand_computed_value():
    # per dimension ½(σ² + μ² - 1 - log σ²): μ=1, σ²=1 → 0.5; μ=-2, σ²=4 → ½(4 + 4 - 1 - log 4)
    mean = torch.tensor([[1.0, -2.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    expected = 0.5 + 0.5 * (7 - math.log(4.0))
    assert kl_to_standard_normal(mean, logvar).item() == pytest.approx(expected, rel=1e-6)
    assert kl_to_standard_normal(torch.zeros(3, 5), torch.zeros(3, 5)).tolist() == [0.0, 0.0, 0.0]


def test_kl_matches_torch_distributions():
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(6, 20, generator=generator, dtype=torch.float64)
    logvar = torch.randn(6, 20, generator=generator, dtype=torch.float64)
    reference = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(kl_to_standard_normal(mean, logvar), reference)


# --- continuous Bernoulli -------------------------------------------------------------------------------------

@pytest.mark.parametrize("probability", [1e-4, 0.01, 0.2, 0.45, 0.49, 0.4999, 0.5001, 0.51, 0.6, 0.9, 0.9999])
def test_log_normalizer_matches_the_definition(probability):
    p = torch.tensor([probability], dtype=torch.float64)
    value = continuous_bernoulli_log_normalizer(torch.logit(p).float())
    assert value.item() == pytest.approx(log_normalizer_float64(p).item(), rel=1e-6, abs=1e-6)


def test_log_normalizer_at_one_half_is_log_two_with_zero_slope():
    logits = torch.zeros(1, requires_grad=True)
    value = continuous_bernoulli_log_normalizer(logits)
    value.backward()
    assert value.item() == pytest.approx(math.log(2.0), abs=1e-7)
    assert logits.grad.item() == 0.0  # log C is even in the logit; and no NaN from the unused 0/0 branch


def test_log_normalizer_is_continuous_across_the_taylor_threshold():
    for sign in (1.0, -1.0):
        inside = torch.tensor([sign * (TAYLOR_BELOW - 1e-6)])
        outside = torch.tensor([sign * (TAYLOR_BELOW + 1e-6)])
        jump = continuous_bernoulli_log_normalizer(outside) - continuous_bernoulli_log_normalizer(inside)
        assert abs(jump.item()) < 1e-6  # the true change over 2e-6 in η is ~ 3e-8
        reference = log_normalizer_float64(torch.sigmoid(inside.double()))
        assert continuous_bernoulli_log_normalizer(inside).item() == pytest.approx(reference.item(), abs=1e-7)


def test_log_normalizer_gradient_matches_the_definition():
    logits = torch.tensor([-8.0, -1.0, -0.05, 0.02, 0.3, 4.0], dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(continuous_bernoulli_log_normalizer(logits).sum(), logits)
    reference_logits = logits.detach().clone().requires_grad_(True)
    (reference,) = torch.autograd.grad(log_normalizer_float64(torch.sigmoid(reference_logits)).sum(), reference_logits)
    torch.testing.assert_close(gradient, reference, rtol=1e-5, atol=1e-7)


def test_continuous_bernoulli_nll_matches_torch_log_prob():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 1, 28, 28, generator=generator) * 3
    logits[0, 0, 0, :5] = torch.tensor([0.0, 1e-4, -1e-3, 0.05, -0.099])  # around λ = ½
    targets = torch.rand(4, 1, 28, 28, generator=generator)
    reference = -TorchContinuousBernoulli(logits=logits.double()).log_prob(targets.double()).flatten(1).sum(1)
    torch.testing.assert_close(ContinuousBernoulli().nll(logits, targets).double(), reference, rtol=1e-5, atol=1e-3)


def test_log_normalizer_weight_scales_only_the_normalizer():
    generator = torch.Generator().manual_seed(2)
    logits, targets = torch.randn(3, 10, generator=generator), torch.rand(3, 10, generator=generator)
    bce = Bernoulli().nll(logits, targets)
    torch.testing.assert_close(ContinuousBernoulli(log_normalizer_weight=0.0).nll(logits, targets), bce)
    log_c = continuous_bernoulli_log_normalizer(logits).sum(1)
    torch.testing.assert_close(ContinuousBernoulli(log_normalizer_weight=0.3).nll(logits, targets), bce - 0.3 * log_c)


def test_continuous_bernoulli_mean_matches_torch():
    logits = torch.tensor([-20.0, -3.0, -0.5, -0.09, -1e-5, 0.0, 1e-3, 0.099, 0.101, 2.0, 30.0])
    reference = TorchContinuousBernoulli(logits=logits.double()).mean
    torch.testing.assert_close(continuous_bernoulli_mean(logits).double(), reference, rtol=0, atol=2e-6)
    assert continuous_bernoulli_mean(torch.zeros(1)).item() == 0.5
    assert ContinuousBernoulli(output="probability").image(torch.zeros(1)).item() == 0.5


def test_bernoulli_nll_is_the_summed_binary_cross_entropy():
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    targets = torch.tensor([[1.0, 0.2, 0.0]])
    p = torch.sigmoid(logits.double())
    expected = -(targets * p.log() + (1 - targets) * (1 - p).log()).sum()
    assert Bernoulli().nll(logits, targets).item() == pytest.approx(expected.item(), rel=1e-6)


def test_unknown_likelihood_is_one_line():
    with pytest.raises(GenlabError, match="bernoulli, continuous_bernoulli"):
        resolve_likelihood("gaussian")


# --- networks ----------------------------------------------------------------------------------------------

def test_seed_mlp_encoder_and_decoder():
    encoder, decoder = MLPEncoder(latent_dim=20), MLPDecoder(latent_dim=20)
    # 784·512+512 + 512·256+256 + 256·128+128 + 128·40+40
    assert count(encoder) == 571_304
    # 20·400+400 + 400·600+600 + 600·800+800 + 800·784+784
    assert count(decoder) == 1_357_784
    assert [m.out_features for m in encoder.net if isinstance(m, torch.nn.Linear)] == [512, 256, 128, 40]
    assert [m.out_features for m in decoder.net if isinstance(m, torch.nn.Linear)] == [400, 600, 800, 784]
    assert isinstance(encoder.net[-1], torch.nn.Linear) and isinstance(decoder.net[-1], torch.nn.Linear)
    mean, logvar = encoder(torch.rand(5, 1, 28, 28))
    assert mean.shape == logvar.shape == (5, 20)
    logits = decoder(torch.randn(5, 20))
    assert logits.shape == (5, 1, 28, 28) and logits.min() < 0  # raw logits, no squashing layer


def test_conv_encoder_and_decoder():
    encoder, decoder = ConvEncoder(latent_dim=20), ConvDecoder(latent_dim=20)
    # conv 1→32 (4x4): 544, conv 32→64: 32,832, FC 64·7·7→256: 803,072, FC 256→40: 10,280
    assert count(encoder) == 846_728
    # FC 20→256: 5,376, FC 256→64·7·7: 805,952, convT 64→32: 32,800, convT 32→1: 513
    assert count(decoder) == 844_641
    mean, logvar = encoder(torch.rand(3, 1, 28, 28))
    assert mean.shape == logvar.shape == (3, 20)
    assert decoder(mean).shape == (3, 1, 28, 28)
    assert ConvDecoder(latent_dim=8, out_shape=[3, 32, 32], channels=[128, 64, 32])(torch.randn(2, 8)).shape == (
        2, 3, 32, 32)
    with pytest.raises(ValueError, match="divisible by 8"):
        ConvEncoder(in_shape=[1, 28, 28], channels=[8, 16, 32])


# --- the model ---------------------------------------------------------------------------------------------

def tiny_vae(likelihood="bernoulli") -> VAE:
    return VAE(MLPEncoder(hidden=[32], latent_dim=4), MLPDecoder(latent_dim=4, hidden=[32]), likelihood=likelihood)


def test_mismatched_networks_are_refused():
    with pytest.raises(GenlabError, match="latent_dim"):
        VAE(MLPEncoder(latent_dim=4), MLPDecoder(latent_dim=5))
    with pytest.raises(GenlabError, match="shape"):
        VAE(MLPEncoder(latent_dim=4), MLPDecoder(latent_dim=4, out_shape=[1, 32, 32]))


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli"])
def test_loss_is_the_negative_elbo(likelihood):
    torch.manual_seed(0)
    model = tiny_vae(likelihood)
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    torch.manual_seed(123)
    losses = model.losses(x)

    mean, logvar = model.encoder((x + 1) / 2)
    torch.manual_seed(123)
    z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
    logits = model.decoder(z)
    recon = F.binary_cross_entropy_with_logits(logits, (x + 1) / 2, reduction="sum") / 6
    if likelihood == "continuous_bernoulli":
        recon = recon - continuous_bernoulli_log_normalizer(logits).sum() / 6
    kl = (-0.5 * (1 + logvar - mean**2 - logvar.exp()).sum(1)).mean()
    torch.testing.assert_close(losses["loss/recon"], recon, rtol=1e-5, atol=1e-4)  # sum order differs
    torch.testing.assert_close(losses["loss/kl"], kl)
    torch.testing.assert_close(losses["loss/total"], recon + kl, rtol=1e-5, atol=1e-4)

    losses["loss/recon"].backward()  # the reparameterised sample lets the reconstruction reach the encoder
    assert model.encoder.net[0].weight.grad.abs().sum() > 0


def test_decode_reconstruct_and_sample_follow_the_interface():
    torch.manual_seed(0)
    model = tiny_vae("continuous_bernoulli")
    z = torch.randn(5, 4)
    images = model.decode(z)
    torch.testing.assert_close(images, continuous_bernoulli_mean(model.decoder(z)) * 2 - 1)
    assert images.shape == (5, 1, 28, 28) and images.min() >= -1 and images.max() <= 1
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    torch.testing.assert_close(model.reconstruct(x), model.decode(model.encode(x)[0]))
    first = model.sample(4, generator=torch.Generator().manual_seed(7))
    again = model.sample(4, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(first, again)
    torch.testing.assert_close(first, model.decode(torch.randn(4, 4, generator=torch.Generator().manual_seed(7))))
    grid = SampleGrid(num_samples=9).grid(model)  # unchanged GAN callback: 3x3 tiles of 28 px, padding 2
    assert grid.shape == (3, 3 * 30 + 2, 3 * 30 + 2)


def test_the_beta_vae_weights_the_kl_term_and_is_the_vae_at_beta_one():
    from genlab.models import VAE, BetaVAE
    from genlab.nets import MLPDecoder, MLPEncoder

    def made(cls, **settings):
        torch.manual_seed(0)
        return cls(MLPEncoder(in_shape=[1, 4, 4], hidden=[8], latent_dim=2),
                   MLPDecoder(latent_dim=2, hidden=[8], out_shape=[1, 4, 4]), **settings)

    images = torch.rand(6, 1, 4, 4) * 2 - 1
    results = []
    for model in (made(VAE), made(BetaVAE, beta=1.0), made(BetaVAE, beta=3.0)):
        torch.manual_seed(1)  # the same reparameterisation noise for each
        results.append(model.losses(images))
    plain, one, three = results
    assert torch.equal(one["loss/total"], plain["loss/total"])
    torch.testing.assert_close(three["loss/total"], plain["loss/recon"] + 3.0 * plain["loss/kl"])
    with pytest.raises(GenlabError, match="model.beta must be positive"):
        made(BetaVAE, beta=0.0)


def test_the_beta_vae_is_configured_from_the_vaes_yaml_by_its_class_path(run_cli, tiny_data, tmp_path):
    run_cli("fit", "--config", str(EXPERIMENTS / "vae_mnist.yaml"), "--model", "genlab.models.BetaVAE",
            "--model.init_args.beta", "2.5", f"--data.data_dir={tiny_data}", "--data.val_size=16",
            "--data.batch_size=16", "--trainer.max_epochs=1", "--evaluate=false", "--trainer.callbacks=[]",
            "--trainer.enable_progress_bar=false")
    config = (tmp_path / "lightning_logs" / "vae_mnist" / "version_0" / "config.yaml").read_text()
    assert "class_path: genlab.models.BetaVAE" in config and "beta: 2.5" in config
