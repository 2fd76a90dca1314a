"""`benchmarks/reproduce.py` end to end on its smallest row (the toy GAN, shortened): train, test, table, and a
second call that finds everything done."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import REPO


def _reproduce(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "reproduce.py"), "--experiments", "toy_quadratic",
         "--runs", str(tmp_path / "runs"), "--output", str(tmp_path / "RESULTS.md"), "--docs", str(tmp_path / "docs"),
         "--set=--trainer.max_steps=300", "--set=--trainer.enable_model_summary=false", *extra],
        capture_output=True, text=True, timeout=600,
        check=False,
    )


def test_the_smallest_row_trains_tests_and_lands_in_the_table_and_a_rerun_skips_it(tmp_path):
    done = _reproduce(tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "runs" / "results" / "toy_quadratic-seed0.json").read_text())
    assert result["iterations"] == 150 and result["fit_seconds"] > 0  # 300 optimizer steps = 150 iterations
    toy = (tmp_path / "runs" / "lightning_logs" / "toy_quadratic" / "version_0" / "toy" / "metrics.jsonl")
    last = json.loads(toy.read_text().splitlines()[-1])
    assert result["scores"]["curve_distance"] == last["curve_distance"]
    table = (tmp_path / "RESULTS.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| toy_quadratic |"))
    assert f"curve_distance {last['curve_distance']:.4g}" in row and "| 150 | 32-true |" in row
    assert "| dcgan_mnist |" in table and "not run yet" in table  # every row is listed
    assert (tmp_path / "docs" / "toy_quadratic-seed0.json").is_file()

    again = _reproduce(tmp_path)  # finished runs are neither trained nor tested again
    assert again.returncode == 0 and "+ fit" not in again.stdout and "+ test" not in again.stdout


def _table_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("reproduce", REPO / "benchmarks" / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _record(docs: Path, name: str, seed: int, fd: float, classifier: str = "aaaaaaaaaaaa", **extra) -> None:
    docs.mkdir(parents=True, exist_ok=True)
    entry = {"experiment": name, "seed": seed, "iterations": 10, "fit_seconds": 1.0, "scores": {"classifier/fd": fd,
             "classifier/precision": 0.5, "classifier/recall": 0.5, **extra.pop("scores", {})},
             "record": {"settings": {"classifier": {"checkpoint_sha256": classifier}}}, **extra}
    (docs / f"{name}-seed{seed}.json").write_text(json.dumps(entry))


def test_the_table_refuses_to_summarise_seeds_scored_by_different_classifiers(tmp_path):
    reproduce = _table_module()
    docs = tmp_path / "docs"
    _record(docs, "classifier_fashion", 0, 0.0, classifier="", checkpoint_sha256="aaaaaaaaaaaa",
            scores={"test/acc": 0.9186})
    for seed, fd in enumerate((100.0, 110.0, 120.0)):
        _record(docs, "dcgan_fashion_1k", seed, fd, classifier="aaaaaaaaaaaa" if seed < 2 else "bbbbbbbbbbbb")
    reproduce.write_table(tmp_path / "RESULTS.md", docs, inception=False)
    row = next(line for line in (tmp_path / "RESULTS.md").read_text().splitlines() if "| dcgan_fashion_1k |" in line)
    assert "seeds scored by different classifiers: not summarised" in row and "classifier/fd" not in row
    _record(docs, "dcgan_fashion_1k", 2, 120.0)  # now all three by the table's own classifier
    reproduce.write_table(tmp_path / "RESULTS.md", docs, inception=False)
    row = next(line for line in (tmp_path / "RESULTS.md").read_text().splitlines() if "| dcgan_fashion_1k |" in line)
    assert "classifier/fd 110 ± 10;" in row  # the sample std (n - 1): the population std would be 8.2
    assert "classifier_fashion (test acc 0.9186) aaaaaaaaaaaa" in row


def test_comparisons_are_written_from_the_records_and_refused_across_classifiers(tmp_path):
    reproduce = _table_module()
    docs = tmp_path / "docs"
    comparison = reproduce.Comparison("dcgan_fashion_1k_diffaugment", "dcgan_fashion_1k", ("classifier/fd",
                                                                                          "classifier/recall"), "DA")
    for seed, (fd, augmented_fd) in enumerate(((100.0, 60.0), (110.0, 62.0), (120.0, 64.0))):
        _record(docs, "dcgan_fashion_1k", seed, fd, scores={"classifier/recall": 0.1 + seed / 100})
        _record(docs, "dcgan_fashion_1k_diffaugment", seed, augmented_fd, scores={"classifier/recall": 0.11})
    sentence = reproduce.compare(comparison, docs)
    assert "n = 3 and 3 training seeds" in sentence
    assert "classifier/fd 62 ± 2 against 110 ± 10 (lower)" in sentence
    assert "classifier/recall 0.11 ± 0 against 0.11 ± 0.01 (not distinguishable)" in sentence
    _record(docs, "dcgan_fashion_1k", 1, 110.0, classifier="bbbbbbbbbbbb")
    assert "not compared, the records were scored by different classifiers" in reproduce.compare(comparison, docs)


def test_a_comparison_within_one_row_sets_each_score_against_its_named_counterpart(tmp_path):
    reproduce = _table_module()
    docs = tmp_path / "docs"
    for seed, (raw, average) in enumerate(((80.0, 60.0), (90.0, 62.0), (100.0, 64.0))):
        _record(docs, "dcgan_mnist_ema", seed, raw, scores={"classifier/fd@ema": average})
    comparison = reproduce.Comparison("dcgan_mnist_ema", "dcgan_mnist_ema", ("classifier/fd@ema",), "average",
                                      against=("classifier/fd",))
    sentence = reproduce.compare(comparison, docs)
    assert sentence.startswith("**dcgan_mnist_ema: average**")
    assert "classifier/fd@ema against classifier/fd: 62 ± 2 against 90 ± 10 (lower)" in sentence


def test_the_table_scores_every_row_by_the_classifiers_it_trained_and_stops_when_one_changed(tmp_path):
    reproduce = _table_module()
    runs = tmp_path / "runs"
    table = reproduce.Reproduction(runs, tmp_path / "docs", [])
    row = next(row for row in reproduce.ROWS if row.name == "gan_fashion")
    with pytest.raises(SystemExit, match="classifier_fashion, which has not finished"):
        table.pinned_classifiers(row)
    checkpoint = runs / "lightning_logs" / "classifier_fashion" / "version_0" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"the classifier's weights")
    pinned = hashlib.sha256(b"the classifier's weights").hexdigest()[:12]
    (runs / "results" / "classifier_fashion-seed0.json").write_text(json.dumps({"checkpoint_sha256": pinned}))
    assert table.pinned_classifiers(row) == {pinned}
    checkpoint.write_bytes(b"retrained weights")  # e.g. the classifier trained again in the same folder
    with pytest.raises(SystemExit, match=f"not the one this table is scored by \\({pinned}\\)"):
        table.pinned_classifiers(row)


def test_a_row_is_pinned_to_exactly_the_classifiers_its_yaml_loads_and_comments_do_not_count():
    reproduce = _table_module()
    config = yaml.safe_load("""
    trainer:
      callbacks:  # needs lightning_logs/classifier_mnist_reference (a comment, not a setting)
        - init_args:
            suites:
              - init_args: {checkpoint: lightning_logs/classifier_mnist}
        - init_args: {classifier: lightning_logs/classifier_mnist/, num_samples: 1000}
    """)
    assert reproduce.classifiers_named(config) == ("classifier_mnist",)
    rows = {row.name: row for row in reproduce.ROWS}
    # a WGAN is scored by the CNN alone: pinning it to the pair stopped the table after its test (seen)
    assert rows["wgan_gp_mnist"].needs == ("classifier_mnist",)
    assert rows["dcgan_mnist_ema"].needs == ("classifier_mnist", "classifier_mnist_reference")
    assert rows["toy_quadratic"].needs == ()


def test_a_description_of_a_grid_is_shown_only_beside_that_grid(tmp_path):
    reproduce = _table_module()
    docs = tmp_path / "docs"
    _record(docs, "lsgan_mnist", 0, 100.0)
    (docs / "lsgan_mnist-seed0.png").write_bytes(b"a newer run's grid")
    reproduce.write_table(tmp_path / "RESULTS.md", docs, inception=False)
    table = (tmp_path / "RESULTS.md").read_text()
    row = next(row for row in reproduce.ROWS if row.name == "lsgan_mnist")
    assert row.observed not in table and "**lsgan_mnist, the grids looked at.** not yet looked at" in table
    described = REPO / "docs" / "results" / "lsgan_mnist-seed0.png"  # the grid the description was written from
    (docs / "lsgan_mnist-seed0.png").write_bytes(described.read_bytes())
    reproduce.write_table(tmp_path / "RESULTS.md", docs, inception=False)
    assert row.observed in (tmp_path / "RESULTS.md").read_text()


def test_scores_during_training_and_real_data_values_are_written_from_the_records(tmp_path):
    reproduce = _table_module()
    docs = tmp_path / "docs"
    history = [{"iteration": 469, "scores": {"reference/is": 9.1, "classifier/fd": 90.0}},
               {"iteration": 938, "scores": {"reference/is": 9.3, "classifier/fd": 80.0}}]
    real = {"split": "train", "count": 10000, "scores": {"classifier/is": 9.8, "classifier/m_is": 1.1}}
    _record(docs, "dcgan_mnist", 0, 75.0, fit_history=history, scores={"reference/is": 9.2})
    entry = json.loads((docs / "dcgan_mnist-seed0.json").read_text())
    entry["record"] |= {"real_values": real, "real_split": "test"}
    (docs / "dcgan_mnist-seed0.json").write_text(json.dumps(entry))
    reproduce.write_table(tmp_path / "RESULTS.md", docs, inception=False)
    table = (tmp_path / "RESULTS.md").read_text()
    assert "| seed | score | iteration 469 | iteration 938 | test |" in table
    assert "| 0 | reference/is | 9.1 | 9.3 | 9.2 |" in table and "| 0 | classifier/fd | 90 | 80 | 75 |" in table
    assert ("10,000 train images against the test split (rows dcgan_mnist): classifier/is 9.8" in table
            and "m_is" not in table.split("Real-data values")[1].split("\n\n")[2])


def test_an_older_record_gets_its_fit_history_only_from_its_own_run_folder(tmp_path):
    reproduce = _table_module()
    docs, runs = tmp_path / "docs", tmp_path / "runs"
    run_dir = runs / "lightning_logs" / "dcgan_mnist-seed0" / "version_0"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text(json.dumps({"iteration": 5, "stage": "fit", "scores": {"a": 1.0}}) + "\n"
                                           + json.dumps({"iteration": 5, "stage": "test", "scores": {"a": 2.0}}) + "\n")
    (run_dir / "reproduce_fit_seconds.json").write_text(json.dumps({"seconds": 2.0}))
    _record(docs, "dcgan_mnist", 0, 75.0)  # fit_seconds 1.0: another run's record
    reproduce.add_fit_histories(runs, docs)
    assert "fit_history" not in json.loads((docs / "dcgan_mnist-seed0.json").read_text())
    _record(docs, "dcgan_mnist", 0, 75.0, fit_seconds=2.0)
    reproduce.add_fit_histories(runs, docs)
    assert json.loads((docs / "dcgan_mnist-seed0.json").read_text())["fit_history"] == [
        {"iteration": 5, "scores": {"a": 1.0}}]


def _reference_loop_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("reference_loop", REPO / "benchmarks" / "reference_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_notebook_loops_is_matches_closed_forms():
    loop = _reference_loop_module()
    assert loop.reference_is(torch.full((6, 10), 0.1, dtype=torch.float64)) == pytest.approx(1.0)  # no information
    one_hot = torch.eye(4, dtype=torch.float64).repeat(3, 1)  # sure of each of 4 classes, equally often
    assert loop.reference_is(one_hot) == pytest.approx(4.0)


def test_the_cross_table_and_what_it_says_are_written_from_the_loops_record(tmp_path):
    loop, reproduce = _reference_loop_module(), _table_module()
    weights = tmp_path / "loop"
    weights.mkdir()
    for seed in (0, 1):
        torch.manual_seed(seed)
        decoder, classifier = loop.Decoder(), loop.MLPClassifier()
        with torch.no_grad():  # sure classifiers and varied images: IS values far apart, not all near 1
            classifier.fc3.weight.mul_(300)
            decoder.fc4.weight.mul_(30)
        torch.save({"decoder": decoder.state_dict(), "classifier": classifier.state_dict()}, weights / f"seed{seed}.pt")
    docs = tmp_path / "docs"
    loop.score(weights, [], [], [50, 200], record=docs / reproduce.NOTEBOOK_LOOP_VAE)
    record = json.loads((docs / reproduce.NOTEBOOK_LOOP_VAE).read_text())
    assert {cell["classifier"] for cell in record["cells"]} == {"loop MLP seed0", "loop MLP seed1"}
    assert record["networks"]["loop VAE seed1"]["sha256"] == hashlib.sha256(
        (weights / "seed1.pt").read_bytes()).hexdigest()[:12]
    reproduce.write_table(tmp_path / "RESULTS.md", docs, inception=False)
    table = (tmp_path / "RESULTS.md").read_text()
    cell = {(c["samples"], c["vae"], c["classifier"]): c["is"] for c in record["cells"]}
    assert f"| 200 | loop VAE seed1 | {cell[200, 'loop VAE seed1', 'loop MLP seed0']:.3f} |" in table
    by_classifier_seed = max(abs(cell[50, vae, "loop MLP seed0"] - cell[50, vae, "loop MLP seed1"])
                             for vae in ("loop VAE seed0", "loop VAE seed1"))
    assert f"moves one VAE's score by up to {by_classifier_seed:.3f}" in table
    by_count = max(abs(cell[50, vae, mlp] - cell[200, vae, mlp]) for vae in ("loop VAE seed0", "loop VAE seed1")
                   for mlp in ("loop MLP seed0", "loop MLP seed1"))
    assert f"the sample count (50 against 200) moves a cell by at most {by_count:.3f}" in table


def test_the_dcgan_loop_is_set_beside_dcgan_mnist_only_by_one_classifier_on_one_protocol_and_length(tmp_path):
    reproduce, docs = _table_module(), tmp_path / "docs"
    suites = {"reference": {"checkpoint_sha256": "aaaaaaaaaaaa", "splits": 1, "epsilon": 1e-10},
              "classifier": {"checkpoint_sha256": "bbbbbbbbbbbb", "splits": 10, "epsilon": 1e-10}}
    for seed, value in enumerate((9.0, 9.2)):
        _record(docs, "dcgan_mnist", seed, 70.0, iterations=2345, record={"settings": suites},
                scores={"reference/is": value, "classifier/is": 8.0})
    run = {"seed": 0, "epochs": 5, "iterations": 2345, "seconds": 1.0,
           "scores": [{"classifier": "a", "sha256": "aaaaaaaaaaaa", "is": 9.18},
                      {"classifier": "b", "sha256": "bbbbbbbbbbbb", "is": 8.85}]}
    record = {"command": "python benchmarks/reference_loop.py dcgan", "date": "today", "genlab_commit": "abc",
              "cpu_capability": "AVX512", "what": "the loop", "protocol": "cell [28]", "runs": [run]}
    (docs / reproduce.NOTEBOOK_LOOP_DCGAN).write_text(json.dumps(record))
    lines = reproduce.notebook_loop_dcgan(docs, {})
    assert ("IS 9.18 (seeds 0); dcgan_mnist's `reference/is` by the same classifier on the same protocol: 9.1 ± 0.14"
            " over 2 training seeds, range 9.000-9.200 (a spread on each side is needed to compare)." in lines[-2])
    assert lines[-1].endswith("IS 8.85 (seeds 0); no dcgan_mnist score by this classifier over one split with +1e-10"
                              " to set beside it.")  # genlab's CNN IS uses 10 splits: another protocol
    more = {**record, "runs": [{**run, "seed": 1, "scores": [{**run["scores"][0], "is": 9.6}]},
                               {**run, "seed": 2, "scores": [{**run["scores"][0], "is": 9.7}]}]}
    (docs / "notebook-loop-dcgan-seeds12.json").write_text(json.dumps(more))  # a second command's record adds seeds
    lines = reproduce.notebook_loop_dcgan(docs, {})
    assert "IS 9.493 ± 0.28 (seeds 0, 1, 2)" in lines[-2] and lines[-2].endswith(": not distinguishable.")
    more["runs"] = [{**one, "iterations": 4690} for one in more["runs"]]
    (docs / "notebook-loop-dcgan-seeds12.json").write_text(json.dumps(more))
    assert "dcgan_mnist trained another number of iterations (2,345)" in reproduce.notebook_loop_dcgan(docs, {})[-2]
