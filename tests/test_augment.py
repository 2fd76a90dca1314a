"""DiffAugment: the same transformations as the paper's code, drawn from the training stream, in every
discriminator input, without host reads."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from genlab.augment import diff_augment, parse_policy
from genlab.errors import GenlabError
from genlab.host_syncs import HostSyncCounter
from genlab.models import GAN
from genlab.nets import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, ToyDiscriminator, ToyGenerator


# The reference: DiffAugment_pytorch.py of github.com/mit-han-lab/data-efficient-gans (BSD 2-clause, Zhao et al.),
# copied as published so genlab's rewrite is compared with it, draw for draw.
def reference_diff_augment(x, policy=""):
    for p in policy.split(","):
        for f in REFERENCE_FNS[p]:
            x = f(x)
    return x.contiguous()


def rand_brightness(x):
    return x + (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def rand_saturation(x):
    x_mean = x.mean(dim=1, keepdim=True)
    return (x - x_mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + x_mean


def rand_contrast(x):
    x_mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - x_mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + x_mean


def rand_translation(x, ratio=0.125):
    shift_x, shift_y = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    translation_x = torch.randint(-shift_x, shift_x + 1, size=[x.size(0), 1, 1], device=x.device)
    translation_y = torch.randint(-shift_y, shift_y + 1, size=[x.size(0), 1, 1], device=x.device)
    grid_batch, grid_x, grid_y = torch.meshgrid(
        torch.arange(x.size(0), dtype=torch.long, device=x.device),
        torch.arange(x.size(2), dtype=torch.long, device=x.device),
        torch.arange(x.size(3), dtype=torch.long, device=x.device),
        indexing="ij",
    )
    grid_x = torch.clamp(grid_x + translation_x + 1, 0, x.size(2) + 1)
    grid_y = torch.clamp(grid_y + translation_y + 1, 0, x.size(3) + 1)
    x_pad = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return x_pad.permute(0, 2, 3, 1).contiguous()[grid_batch, grid_x, grid_y].permute(0, 3, 1, 2)


def rand_cutout(x, ratio=0.5):
    cutout_size = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    offset_x = torch.randint(0, x.size(2) + (1 - cutout_size[0] % 2), size=[x.size(0), 1, 1], device=x.device)
    offset_y = torch.randint(0, x.size(3) + (1 - cutout_size[1] % 2), size=[x.size(0), 1, 1], device=x.device)
    grid_batch, grid_x, grid_y = torch.meshgrid(
        torch.arange(x.size(0), dtype=torch.long, device=x.device),
        torch.arange(cutout_size[0], dtype=torch.long, device=x.device),
        torch.arange(cutout_size[1], dtype=torch.long, device=x.device),
        indexing="ij",
    )
    grid_x = torch.clamp(grid_x + offset_x - cutout_size[0] // 2, min=0, max=x.size(2) - 1)
    grid_y = torch.clamp(grid_y + offset_y - cutout_size[1] // 2, min=0, max=x.size(3) - 1)
    mask = torch.ones(x.size(0), x.size(2), x.size(3), dtype=x.dtype, device=x.device)
    mask[grid_batch, grid_x, grid_y] = 0
    return x * mask.unsqueeze(1)


REFERENCE_FNS = {
    "color": [rand_brightness, rand_saturation, rand_contrast],
    "translation": [rand_translation],
    "cutout": [rand_cutout],
}


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout", "cutout,color"])
@pytest.mark.parametrize("shape", [(64, 3, 32, 32), (64, 1, 28, 28), (16, 3, 7, 9)])
def test_every_family_transforms_exactly_as_the_papers_code_from_the_same_draws(policy, shape):
    images = torch.rand(shape) * 2 - 1
    torch.manual_seed(3)
    expected = reference_diff_augment(images, policy)
    torch.manual_seed(3)
    augmented = diff_augment(images, parse_policy(policy))
    assert torch.equal(augmented, expected)
    assert not torch.equal(augmented, images)


def test_the_augmentation_is_differentiable_in_the_images():
    images = (torch.rand(8, 3, 16, 16) * 2 - 1).requires_grad_(True)
    diff_augment(images, ("color", "translation", "cutout")).square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_the_augmentation_reads_nothing_on_the_host():
    images = torch.rand(8, 3, 16, 16) * 2 - 1
    with HostSyncCounter() as counter:
        diff_augment(images, ("color", "translation", "cutout"))
    assert counter.count == 0


@pytest.mark.parametrize("policy, message", [
    ("colour", "'colour', which is not a DiffAugment family"),
    ("color,color", "names a family twice"),
])
def test_a_bad_policy_is_one_line_naming_the_families(policy, message):
    with pytest.raises(GenlabError, match=message) as error:
        parse_policy(policy)
    assert "\n" not in str(error.value) and "color, translation, cutout" in str(error.value)


def test_no_policy_means_no_augmentation():
    assert (parse_policy("") == () and parse_policy(None) == ()
            and parse_policy(" color , cutout ") == ("color", "cutout"))


def test_a_gan_of_points_refuses_augmentation_in_one_line():
    with pytest.raises(GenlabError, match="leave model.augment empty"):
        GAN(ToyGenerator(), ToyDiscriminator(), augment="translation")


def image_gan(augment: str, penalty: float = 0.0) -> GAN:
    critic = (MLPDiscriminator(in_shape=[3, 16, 16], hidden=[16]) if penalty  # the penalty needs no BatchNorm
              else DCGANDiscriminator(channels=3, image_size=16, base_channels=8))
    return GAN(DCGANGenerator(latent_dim=8, channels=3, image_size=16, base_channels=8), critic, augment=augment,
               loss="wasserstein" if penalty else "non_saturating", gradient_penalty=penalty)


def critic_inputs(gan: GAN, iterations: int = 2) -> list[torch.Tensor]:
    """Every image batch the discriminator is given in `iterations` training iterations."""
    seen: list[torch.Tensor] = []
    gan.discriminator.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    images = torch.rand(16, 3, 16, 16) * 1.8 - 0.9  # no pixel is exactly 0
    trainer = L.Trainer(max_epochs=1, limit_train_batches=iterations, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(gan, DataLoader(TensorDataset(images, torch.zeros(16, dtype=torch.long)), batch_size=8))
    return seen


@pytest.mark.parametrize("penalty", [0.0, 10.0])
def test_the_discriminator_sees_only_augmented_images_real_and_generated_in_both_updates(penalty):
    """Cutout zeroes at least a 4 x 4 corner of every image (half-size square, centre anywhere): every batch the
    critic is given (real, generated, the penalty's mixes; critic and generator updates) must show it."""
    seen = critic_inputs(image_gan("cutout", penalty))
    per_iteration = 3 + (penalty > 0)  # real, fake, (the penalty's mixes), the generator's fake
    assert len(seen) == 2 * per_iteration
    for index, batch in enumerate(seen):
        if penalty and index % per_iteration == 2:  # the mixes lie between the augmented real and fake images
            real, fake = seen[index - 2], seen[index - 1]
            differ = (real - fake).abs() > 1e-3
            epsilon = torch.where(differ, (batch - fake) / (real - fake), torch.nan).flatten(1)
            spread = epsilon.nan_to_num(-1.0).amax(1) - epsilon.nan_to_num(2.0).amin(1)
            assert (spread < 1e-3).all() and differ.flatten(1).any(1).all()
        else:
            assert ((batch == 0).all(dim=1).flatten(1).sum(dim=1) >= 16).all()
    assert not any((batch == 0).all(dim=1).any() for batch in critic_inputs(image_gan("", penalty)))
