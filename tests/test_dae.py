"""The patch corruption (where it changes pixels, how it is placed, determinism), PSNR against torchmetrics,
the denoising model's logged test PSNR against an independent computation, and the triplet figure."""

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image
from torchmetrics.functional.image import peak_signal_noise_ratio

from genlab.callbacks import DenoisingTriplets
from genlab.data import MNISTDataModule, PatchNoise
from genlab.errors import GenlabError
from genlab.metrics.functional import psnr
from genlab.models import DenoisingAutoencoder
from genlab.nets import MLPAutoencoder
from tests.helpers import EXPERIMENTS, write_tiny_mnist


def bounding_box(changed: torch.Tensor) -> tuple[int, int, int, int]:
    rows, cols = changed.nonzero(as_tuple=True)
    return int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())


# --- the corruption ---------------------------------------------------------------------------------------

def test_patch_noise_changes_exactly_one_8x8_window_per_image():
    clean = torch.zeros(200, 3, 28, 28)  # mid-grey: no pixel of the patch can be clamped back to its value
    noisy, mask = PatchNoise(patch_size=8, std=0.3).corrupt_with_region(clean, torch.Generator().manual_seed(0))
    for image, region in zip(noisy, mask):
        changed = image != 0
        assert torch.equal(changed[0], changed[1]) and torch.equal(changed[0], changed[2])  # one patch for all channels
        assert int(changed[0].sum()) == 64
        top, bottom, left, right = bounding_box(changed[0])
        assert (bottom - top, right - left) == (7, 7)  # 64 changed pixels inside an 8x8 box: the whole window
        assert torch.equal(region[0], changed[0])


def test_patch_positions_cover_every_allowed_place():
    clean = torch.zeros(3000, 1, 12, 10)
    mask = PatchNoise(patch_size=4).mask(clean, torch.Generator().manual_seed(1))
    tops = {bounding_box(m[0])[0] for m in mask}
    lefts = {bounding_box(m[0])[2] for m in mask}
    assert tops == set(range(12 - 4 + 1)) and lefts == set(range(10 - 4 + 1))  # inside the image, never beyond


def test_patch_noise_level_and_clamping():
    clean = torch.zeros(500, 1, 28, 28)
    noisy, mask = PatchNoise(std=0.2, clamp=False).corrupt_with_region(clean, torch.Generator().manual_seed(2))
    assert noisy[mask.expand_as(noisy)].std().item() == pytest.approx(0.2, rel=0.03)  # 32,000 draws
    bright = torch.full((50, 1, 28, 28), 0.9)
    clamped = PatchNoise(std=1.0)(bright, torch.Generator().manual_seed(3))
    assert clamped.max() == 1.0 and clamped.min() >= -1


def test_patch_noise_is_reproducible_with_a_generator_and_leaves_the_global_rng_alone():
    clean = torch.rand(16, 1, 28, 28) * 2 - 1
    corruption = PatchNoise()
    state = torch.get_rng_state()
    first = corruption(clean, torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, corruption(clean, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, corruption(clean, torch.Generator().manual_seed(6)))


def test_patch_noise_settings_are_checked():
    with pytest.raises(GenlabError, match="patch_size"):
        PatchNoise(patch_size=0)
    with pytest.raises(GenlabError, match="does not fit"):
        PatchNoise(patch_size=30)(torch.zeros(1, 1, 28, 28))


# --- PSNR --------------------------------------------------------------------------------------------------

def test_psnr_matches_torchmetrics_per_image():
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(5, 1, 28, 28, generator=generator) * 2 - 1
    noisy = (clean + 0.1 * torch.randn(5, 1, 28, 28, generator=generator)).clamp(-1, 1)
    reference = peak_signal_noise_ratio((noisy + 1) / 2, (clean + 1) / 2, data_range=1.0, reduction="none",
                                        dim=(1, 2, 3))
    torch.testing.assert_close(psnr(noisy, clean), reference)


def test_region_psnr_uses_only_the_masked_pixels():
    clean = torch.zeros(1, 1, 4, 4)
    noisy = clean.clone()
    noisy[0, 0, 0, 0] = 0.2  # intensity error 0.1 on one pixel
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, :2, :2] = True  # that pixel and three exact ones: MSE 0.01 / 4
    assert psnr(noisy, clean, mask).item() == pytest.approx(10 * torch.log10(torch.tensor(400.0)).item(), rel=1e-6)
    assert psnr(noisy, clean).item() == pytest.approx(10 * torch.log10(torch.tensor(1600.0)).item(), rel=1e-6)


# --- networks and model ------------------------------------------------------------------------------------

def test_mlp_autoencoder_shapes_and_residual_identity():
    network = MLPAutoencoder(hidden=[512, 256], code_dim=128)
    # 784·512+512 + 512·256+256 + 256·128+128 + 128·256+256 + 256·512+512 + 512·784+784
    assert sum(p.numel() for p in network.parameters()) == 1_132_944
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    out = network(x)
    assert out.shape == x.shape and out.abs().max() <= 1
    residual = MLPAutoencoder(residual=True)
    torch.nn.init.zeros_(residual.decoder[-1].weight)
    torch.nn.init.zeros_(residual.decoder[-1].bias)
    assert torch.equal(residual(x), x)  # a zero correction gives the input back exactly


def tiny_datamodule(tmp_path: Path) -> MNISTDataModule:
    root = write_tiny_mnist(tmp_path / "data", train=64, test=40)
    return MNISTDataModule(data_dir=str(root), batch_size=16, val_size=16, download=False)


def test_logged_test_psnr_matches_an_independent_computation(tmp_path):
    torch.manual_seed(0)
    model = DenoisingAutoencoder(MLPAutoencoder(hidden=[32], code_dim=8), PatchNoise(std=0.5), eval_seed=11)
    datamodule = tiny_datamodule(tmp_path)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path)
    (results,) = trainer.test(model, datamodule=datamodule, verbose=False)

    datamodule.setup()
    clean = datamodule.splits.test.samples
    pairs = [PatchNoise(std=0.5).corrupt_with_region(batch, torch.Generator().manual_seed(11 + index))
             for index, batch in enumerate(clean.split(16))]  # eval_seed + batch index
    noisy, mask = torch.cat([pair[0] for pair in pairs]), torch.cat([pair[1] for pair in pairs])
    with torch.no_grad():
        restored = model.network(noisy)
    assert results["test/psnr/noisy"] == pytest.approx(psnr(noisy, clean).mean().item(), rel=1e-5)
    assert results["test/psnr/restored"] == pytest.approx(psnr(restored, clean).mean().item(), rel=1e-5)
    assert results["test/psnr/noisy_region"] == pytest.approx(psnr(noisy, clean, mask).mean().item(), rel=1e-5)
    # only the 64 patch pixels differ, so their MSE is 784/64 times the whole image's: 10.88 dB apart
    gap = results["test/psnr/noisy"] - results["test/psnr/noisy_region"]
    assert gap == pytest.approx(10 * math.log10(784 / 64), abs=1e-3)


def test_triplet_grid_rows_are_clean_noisy_restored():
    torch.manual_seed(0)
    model = DenoisingAutoencoder(MLPAutoencoder(hidden=[16], code_dim=4))
    clean = torch.rand(5, 1, 28, 28) * 2 - 1
    grid = DenoisingTriplets(num_images=5, seed=3).grid(model, clean)
    assert grid.shape == (3, 3 * 30 + 2, 5 * 30 + 2)
    tile = lambda row, col: grid[0, 2 + row * 30 : 30 + row * 30, 2 + col * 30 : 30 + col * 30]
    noisy = model.corrupt(clean, torch.Generator().manual_seed(3))
    with torch.no_grad():
        restored = model.restore(noisy)
    for col in range(5):
        for row, images in enumerate((clean, noisy, restored)):
            torch.testing.assert_close(tile(row, col), ((images[col, 0] + 1) / 2).clamp(0, 1))


def test_dae_cli_fit_then_test_prints_psnr_and_writes_triplets(run_cli, tiny_data, tmp_path, capsys):
    config = str(EXPERIMENTS / "dae_mnist.yaml")
    common = [f"--data.data_dir={tiny_data}", "--data.batch_size=16", "--data.val_size=16",
              "--trainer.enable_progress_bar=false"]
    run_cli("fit", "--config", config, *common, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=1")
    run = tmp_path / "lightning_logs" / "dae_mnist" / "version_0"
    (val_grid,) = (run / "denoising").glob("val_iteration_*.png")
    assert Image.open(val_grid).size == (8 * 30 + 2, 3 * 30 + 2)
    capsys.readouterr()
    run_cli("test", "--config", config, *common, f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}")
    printed = capsys.readouterr().out
    assert "test/psnr/noisy" in printed and "test/psnr/restored" in printed
    assert Image.open(tmp_path / "lightning_logs" / "dae_mnist" / "version_1" / "denoising" / "test.png").size == (
        8 * 30 + 2, 3 * 30 + 2)
