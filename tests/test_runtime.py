"""Pins of the Lightning, jsonargparse and torch internals genlab relies on (all in genlab/runtime.py): if a release
moves one, these fail by name before a schedule, a log throttle, a checkpoint or a resume goes wrong without an
error."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI

from genlab import runtime
from tests.helpers import TINY_GAN, load_checkpoint


def test_iterations_count_training_batches_while_global_step_counts_optimizer_steps(run_cli, tiny_data, tmp_path,
                                                                                     monkeypatch):
    seen = []
    monkeypatch.setattr("genlab.models.gan.GAN.on_train_batch_end",
                        lambda self, *args: seen.append((runtime.iterations_done(self.trainer),
                                                         self.trainer.global_step)), raising=False)
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=2")
    assert seen == [(k, 2 * k) for k in range(1, 11)]  # 80 images / 16 = 5 batches per epoch, a D and a G step each


def test_step_logging_follows_log_every_n_steps(run_cli, tiny_data, monkeypatch):
    flags = []
    monkeypatch.setattr("genlab.models.gan.GAN.on_train_batch_start",
                        lambda self, *args: flags.append(runtime.logging_this_step(self.trainer)), raising=False)
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=2",
            "--trainer.log_every_n_steps=4")
    assert flags == [iteration % 4 == 0 for iteration in range(1, 11)]  # counted in batches, not optimizer steps


def test_checkpoints_hold_the_batch_progress_that_a_mid_batch_save_rewinds(run_cli, tiny_data, tmp_path):
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=1")
    checkpoint = load_checkpoint(tmp_path / "lightning_logs" / "gan_mnist" / "version_0" / "checkpoints" / "last.ckpt")
    progress = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]
    for counts in (progress["total"], progress["current"]):
        assert {"ready", "started", "processed", "completed"} <= counts.keys()
    progress["total"]["ready"] = progress["total"]["started"] = progress["total"]["completed"] + 1  # mid-batch
    runtime.rewind_batch_progress(checkpoint)
    assert progress["total"]["ready"] == progress["total"]["started"] == progress["total"]["completed"] == 5


@pytest.mark.parametrize("owner, name", [
    (ModelCheckpoint, "_save_last_checkpoint"), (ModelCheckpoint, "_save_topk_checkpoint"),
    (ModelCheckpoint, "_monitor_candidates"), (ModelCheckpoint, "_should_skip_saving_checkpoint"),
    (LightningCLI, "_get"), (LightningCLI, "_instantiate_trainer"),
])
def test_the_private_members_runtime_wraps_still_exist(owner, name):
    assert callable(getattr(owner, name, None)), (
        f"{owner.__qualname__}.{name} is gone in this Lightning release: update genlab/runtime.py")


def test_every_save_of_last_ckpt_passes_through_the_checkpoint_hook(tmp_path):
    from genlab.data import QuadraticDataModule
    from genlab.models import GAN
    from genlab.nets import MLPDiscriminator, MLPGenerator

    class Counting(runtime.CheckpointHooks):
        calls = 0

        def before_saving_last(self, trainer):
            Counting.calls += 1

    model = GAN(MLPGenerator(latent_dim=2, hidden=[8], out_shape=(2,)), MLPDiscriminator(in_shape=(2,), hidden=[8]))
    trainer = L.Trainer(max_epochs=3, limit_train_batches=2, logger=False, enable_progress_bar=False,
                        callbacks=[Counting(dirpath=tmp_path, save_last=True)], enable_model_summary=False)
    trainer.fit(model, QuadraticDataModule(train_size=64, val_size=16, test_size=16, batch_size=16))
    assert Counting.calls == 3  # Lightning's own end-of-epoch saves go through the method CheckpointHooks wraps
    saved = Counting(dirpath=tmp_path / "now", save_last=True).save_now(trainer, top_k=False)
    assert saved == tmp_path / "now" / "last.ckpt" and saved.is_file() and Counting.calls == 4


def test_attached_trainer_is_none_until_a_trainer_holds_the_module(tmp_path):
    module = L.LightningModule()
    assert runtime.attached_trainer(module) is None
    trainer = L.Trainer(logger=False)
    module.trainer = trainer
    assert runtime.attached_trainer(module) is trainer


def test_foreach_norm_is_the_two_norm_of_each_tensor():
    tensors = [torch.tensor([3.0, 4.0]), torch.ones(2, 2), torch.zeros(3)]
    assert [float(norm) for norm in runtime.foreach_norm(tensors)] == [5.0, 2.0, 0.0]
    assert isinstance(runtime.cpu_has_native_bf16(), bool)


def test_a_wrong_value_deep_in_the_config_is_summarized_to_its_key(run_cli, tiny_data, capsys):
    with pytest.raises(SystemExit):
        run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--model.init_args.n_critic=many")
    error = capsys.readouterr().err.strip()
    assert error.startswith("genlab: error: config key model.n_critic: ") and "many (genlab.models.GAN)" in error
    assert "\n" not in error


@pytest.mark.skipif(torch.cuda.device_count() > 0, reason="about machines without GPUs")
def test_without_gpus_a_fit_stops_torch_optimizers_from_loading_nvml_at_every_step(run_cli, tiny_data, monkeypatch):
    """Lightning's import sets PYTORCH_NVML_BASED_CUDA_CHECK=1, under which every optimizer step's
    torch.cuda.is_available() loads NVML again on a machine without GPUs; genlab answers it once instead."""
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # as `import lightning` leaves it
    loads = []
    probe = torch.cuda._device_count_nvml
    monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: loads.append(1) or probe())
    optimizer = torch.optim.Adam(torch.nn.Linear(2, 2).parameters())  # Adam, RMSprop: a health check per step
    optimizer.step()
    assert len(loads) == (1 if torch.backends.cuda.is_built() else 0)  # what every step costs without genlab
    run_cli("fit", *TINY_GAN, f"--data.data_dir={tiny_data}", "--trainer.max_epochs=1")
    assert runtime.os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "0"
    loads.clear()
    optimizer.step()
    assert not torch.cuda.is_available() and loads == []


def test_with_a_gpu_present_the_nvml_based_check_stays(monkeypatch):
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    runtime.answer_gpu_checks_once_without_gpus()
    assert runtime.os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"


class CountsUpdateHooks(L.Callback):
    def __init__(self) -> None:
        self.calls = {"on_after_backward": 0, "on_before_optimizer_step": 0}

    def on_after_backward(self, trainer, pl_module):
        self.calls["on_after_backward"] += 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.calls["on_before_optimizer_step"] += 1


def _tiny_gan_fit(tmp_path, *callbacks: L.Callback):
    from torch.utils.data import DataLoader

    from tests.helpers import GUARD_BATCH as BATCH
    from tests.helpers import guard_batches as images
    from tests.helpers import guarded_tiny_gan as tiny_gan

    model = tiny_gan()
    trainer = L.Trainer(max_epochs=1, logger=False, callbacks=list(callbacks), enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        default_root_dir=tmp_path)
    trainer.fit(model, DataLoader(images(6), batch_size=BATCH))
    return model, trainer


def test_a_gan_steps_without_lightnings_update_hooks_when_nothing_listens_and_counts_every_step(tmp_path):
    model, trainer = _tiny_gan_fit(tmp_path)
    assert model.lean_updates
    assert trainer.global_step == 2 * 6  # a D and a G step per iteration, counted as Lightning counts them
    assert {int(state["step"]) for optimizer in trainer.optimizers for state in optimizer.state.values()} == {6}


def test_a_callback_listening_to_update_hooks_gets_every_call(tmp_path):
    counter = CountsUpdateHooks()
    model, trainer = _tiny_gan_fit(tmp_path, counter)
    assert not model.lean_updates
    assert counter.calls == {"on_after_backward": 2 * 6, "on_before_optimizer_step": 2 * 6}
    assert trainer.global_step == 2 * 6
