"""The reference networks, checked by output shape and exact parameter count."""

import pytest
import torch

from genlab.nets import (
    DCGANDiscriminator,
    DCGANGenerator,
    InfoGANDiscriminator,
    InfoGANGenerator,
    MLPDiscriminator,
    MLPGenerator,
)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_cs231n_mlp_gan_counts():
    # CS231n's own checks use noise dimension 4: G 4-1024-1024-784, D 784-256-256-1
    assert count(MLPGenerator(latent_dim=4)) == 1_858_320
    assert count(MLPDiscriminator()) == 267_009
    assert [type(m).__name__ for m in MLPDiscriminator().net] == [
        "Linear", "LeakyReLU", "Linear", "LeakyReLU", "Linear"
    ]
    assert MLPDiscriminator().net[1].negative_slope == 0.01


def test_batchnorm_mlp_gan_counts_and_layout():
    generator = MLPGenerator(
        latent_dim=100, hidden=[128, 256, 512, 1024], activation="leaky_relu", batch_norm=True, batch_norm_eps=0.8
    )
    # 100·128+128 + 128·256+256 + 2·256 + 256·512+512 + 2·512 + 512·1024+1024 + 2·1024 + 1024·784+784
    assert count(generator) == 1_510_032
    norms = [m for m in generator.net if isinstance(m, torch.nn.BatchNorm1d)]
    assert [n.num_features for n in norms] == [256, 512, 1024] and all(n.eps == 0.8 for n in norms)
    assert count(MLPDiscriminator(hidden=[512, 256], negative_slope=0.2)) == 533_505


def test_infogan_dcgan_counts():
    assert count(InfoGANDiscriminator()) == 1_102_721
    # 6,580,801 is CS231n's figure, which its test computes at noise dimension 4; each extra dimension adds
    # 1,024 weights of the first FC layer (so noise 10 gives 6,586,945)
    assert count(InfoGANGenerator(latent_dim=4)) == 6_580_801
    assert count(InfoGANGenerator(latent_dim=10)) == 6_580_801 + 6 * 1024


@pytest.mark.parametrize("latent_dim", [4, 96])
def test_generators_and_discriminators_agree_on_shapes(latent_dim):
    z = torch.randn(5, latent_dim)
    for generator, discriminator in [
        (MLPGenerator(latent_dim), MLPDiscriminator()),
        (InfoGANGenerator(latent_dim), InfoGANDiscriminator()),
    ]:
        images = generator(z)
        assert images.shape == (5, 1, 28, 28) and images.abs().max() <= 1
        assert discriminator(images).shape == (5,)


def test_dcgan_32_layout():
    generator, discriminator = DCGANGenerator(latent_dim=100), DCGANDiscriminator()
    images = generator(torch.randn(3, 100))
    assert images.shape == (3, 3, 32, 32) and discriminator(images).shape == (3,)
    # no BatchNorm on the discriminator's input layer nor on the generator's output layer
    assert isinstance(discriminator.net[0], torch.nn.Conv2d) and isinstance(discriminator.net[1], torch.nn.LeakyReLU)
    assert isinstance(generator.net[-2], torch.nn.ConvTranspose2d) and isinstance(generator.net[-1], torch.nn.Tanh)
    feature_maps = [m.num_features for m in generator.net if isinstance(m, torch.nn.BatchNorm2d)]
    assert feature_maps == [128, 64, 32]
    with pytest.raises(ValueError, match="image_size must be"):
        DCGANGenerator(image_size=28)


def test_conditional_networks_take_one_hot_labels():
    labels = torch.tensor([0, 3, 9])
    mlp_g = MLPGenerator(latent_dim=100, num_classes=10)
    assert mlp_g.net[0].in_features == 110
    mlp_d = MLPDiscriminator(num_classes=10)
    assert mlp_d.net[0].in_features == 794
    assert mlp_d(mlp_g(torch.randn(3, 100), labels), labels).shape == (3,)
    conv_d = InfoGANDiscriminator(num_classes=10)
    assert conv_d.net[0].in_channels == 11
    assert conv_d(InfoGANGenerator(8, num_classes=10)(torch.randn(3, 8), labels), labels).shape == (3,)
    with pytest.raises(ValueError, match="pass labels"):
        mlp_g(torch.randn(3, 100))
