"""`genlab doctor`: one line per thing a run needs, ok or what to do, before anyone trains."""

import pytest

from tests.helpers import EXPERIMENTS, TINY_GAN


def _doctor(run_cli, capsys, *args: str) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exit_info:
        run_cli("doctor", *args)
    return exit_info.value.code, capsys.readouterr().out.strip().splitlines()


def test_a_run_with_everything_in_place_gets_one_ok_line_per_check(run_cli, tiny_data, tmp_path, capsys):
    status, lines = _doctor(run_cli, capsys, *TINY_GAN, f"--data.data_dir={tiny_data}")
    assert status == 0, lines
    assert [line.split(":")[0] for line in lines] == ["ok   config", "ok   data", "ok   log folder", "ok   disk",
                                                      "ok   fast path"]
    assert "train 80, val 16, test 32" in lines[1] and "(1, 28, 28)" in lines[1]
    assert "precision 32-true" in lines[-1]
    assert not (tmp_path / "lightning_logs" / "gan_mnist").exists()  # the doctor trains nothing, claims no run


def test_what_is_missing_is_named_with_the_fix_and_the_status_says_so(run_cli, tiny_data, tmp_path, capsys):
    status, lines = _doctor(run_cli, capsys, "--config", str(EXPERIMENTS / "dcgan_mnist.yaml"),
                            f"--data.data_dir={tiny_data}", "--data.init_args.val_size=16")
    assert status == 2
    failed = [line for line in lines if line.startswith("FAIL")]
    # both classifiers of the scores, and the one the memorisation check measures in
    assert [line.split(":")[0] for line in failed] == ["FAIL scores classifier", "FAIL scores reference",
                                                       "FAIL memorisation"]
    assert "classifier checkpoint lightning_logs/classifier_mnist does not exist: train it with" in failed[0]
    assert "classifier checkpoint lightning_logs/classifier_mnist does not exist" in failed[2]
    status, lines = _doctor(run_cli, capsys, *TINY_GAN, f"--data.data_dir={tmp_path / 'nowhere'}",
                            "--data.download=false")
    assert status == 2 and lines[1].startswith("FAIL data: MNIST not found in")


def test_without_a_config_it_says_what_to_pass(run_cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("doctor")
    assert exit_info.value.code == 2 and "genlab doctor --config" in capsys.readouterr().err
