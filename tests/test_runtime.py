"""Pins of the Lightning internals genlab relies on (all in genlab/runtime.py): if a Lightning release moves one,
these fail by name before a schedule, a log throttle or a resume goes wrong without an error."""

from genlab import runtime
from tests.test_cli import TINY_GAN, load_checkpoint


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
