# SPDX-License-Identifier: GPL-3.0-or-later
"""Coreset selection (training/coreset/): the three FoQuS scores on hand-made trajectories, the
normalisation, tiered sampling, the baselines, and record -> select -> train -> report at smoke size."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from training import coreset as cs
from training.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("HQARF_TEST_CACHE", str(ROOT / ".cache" / "test-data")))


# -- scores on hand-made trajectories (rows = epochs, columns = frames) ---------------------------
CORRECT = np.array([
    # frame: 0 learned at once, 1 forgotten twice, 2 never learned, 3 learned late, 4 forgotten at the end
    [1, 1, 0, 0, 1],
    [1, 0, 0, 0, 1],
    [1, 1, 0, 0, 1],
    [1, 0, 0, 1, 1],
    [1, 1, 0, 1, 0],
], dtype=np.uint8)


def test_recorded_correctness_is_the_papers_indicator():
    # FoQuS (method section, as far as the stored copies reach): c_i^(t) = 1[argmax f^(t)(x_i) == y_i],
    # recorded for every sample at every epoch; here with the softmax probability of the true class and EL2N.
    rec = cs.TrajectoryRecorder(np.array([0, 1, 2]), epochs=2)
    logits = torch.tensor([[2.0, 0.0, 0.0],    # predicts 0, label 0 -> 1
                           [3.0, 1.0, 0.0],    # predicts 0, label 1 -> 0
                           [0.0, 0.0, 0.0]])   # tie: argmax picks class 0, label 2 -> 0
    rec.update(0, np.arange(3), logits)
    assert rec.correct[0].tolist() == [1, 0, 0]
    p = torch.softmax(logits, -1).numpy()
    np.testing.assert_allclose(rec.p_true[0].astype(float), p[[0, 1, 2], [0, 1, 2]], atol=1e-3)
    np.testing.assert_allclose(rec.el2n[0][2], np.sqrt(2 * (1 / 3) ** 2 + (2 / 3) ** 2), atol=1e-3)
    assert rec.seen[0].all() and not rec.seen[1].any()


def test_forgetting_counts_right_to_wrong_flips():
    assert cs.forgetting_score(CORRECT).tolist() == [0, 2, 0, 0, 1]
    # wrong -> right is learning, not forgetting
    assert cs.forgetting_score(np.array([[0], [1], [1]])).tolist() == [0]


def test_persistent_error_is_share_of_epochs_wrong_and_maximal_when_never_learned():
    e = cs.persistent_error_score(CORRECT)
    np.testing.assert_allclose(e, [0.0, 0.4, 1.0, 0.6, 0.2])
    assert e.argmax() == 2 and e[2] == 1.0


def test_quality_peaks_for_partially_learned_frames():
    p = np.array([[0.5, 1.0, 0.0, 0.9],
                  [0.5, 1.0, 0.0, 0.1]], dtype=np.float16)
    np.testing.assert_allclose(cs.quality_score(p), [1.0, 0.0, 0.0, 4 * 0.9 * 0.1], atol=1e-3)


def test_minmax_normalisation():
    np.testing.assert_allclose(cs.minmax(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    assert cs.minmax(np.array([7.0, 7.0])).tolist() == [0.0, 0.0]  # constant: no information, all zero


def test_foqus_score_combines_normalised_scores():
    p = np.where(CORRECT == 1, 0.9, 0.2).astype(np.float16)
    parts = [cs.minmax(cs.forgetting_score(CORRECT)), cs.minmax(cs.persistent_error_score(CORRECT)),
             cs.minmax(cs.quality_score(p))]
    np.testing.assert_allclose(cs.foqus_score(CORRECT, p), sum(parts) / 3)
    np.testing.assert_allclose(cs.foqus_score(CORRECT, p, weights=(1, 0, 0)), parts[0])
    s = cs.foqus_score(CORRECT, p)
    assert s.min() >= 0 and s.max() <= 1 and s[0] == s.min()  # the always-right frame scores lowest
    with pytest.raises(ValueError):
        cs.foqus_score(CORRECT, p, weights=(1, 1))


def test_forgetting_baseline_ranks_never_learned_first_and_el2n_uses_early_epochs():
    r = cs.forgetting_rank_score(CORRECT)
    assert r.argmax() == 2 and r[1] > r[4] > r[0]
    el2n = np.array([[0.1, 1.0], [0.2, 1.0], [1.4, 0.0]])
    np.testing.assert_allclose(cs.el2n_score(el2n, 2), [0.15, 1.0])
    assert cs.default_el2n_epochs(3) == 1 and cs.default_el2n_epochs(12) == 2 and cs.default_el2n_epochs(40) == 4


# -- sampling -------------------------------------------------------------------------------------
def test_tier_quotas_sum_to_k_and_overflow_moves_to_tiers_with_room():
    assert cs.tier_quotas(30, [100, 100, 100], (0.5, 0.3, 0.2)).tolist() == [15, 9, 6]
    assert cs.tier_quotas(7, [100, 100, 100], (0.5, 0.3, 0.2)).sum() == 7
    q = cs.tier_quotas(240, [100, 100, 100], (0.5, 0.3, 0.2))  # high tier holds only 100 of its 120
    assert q.sum() == 240 and q[0] == 100 and np.all(q <= 100)
    assert cs.tier_quotas(300, [100, 100, 100], (1, 0, 0)).tolist() == [100, 100, 100]


def test_tiered_sampling_counts_proportions_uniqueness_and_determinism():
    rng = np.random.default_rng(0)
    score = rng.random(3000)
    idx = cs.tiered_sample(score, 300, seed=5)
    assert len(idx) == 300 and len(np.unique(idx)) == 300
    tier = cs.tiers(score, seed=5)
    assert np.bincount(tier).tolist() == [1000, 1000, 1000]
    assert np.all(score[tier == 0].min() >= score[tier == 1].max())  # tier 0 holds the highest scores
    assert np.bincount(tier[idx], minlength=3).tolist() == [150, 90, 60]
    assert np.array_equal(idx, cs.tiered_sample(score, 300, seed=5))
    assert not np.array_equal(idx, cs.tiered_sample(score, 300, seed=6))
    other = cs.tiered_sample(score, 301, seed=5, bounds=(0.1, 0.5), proportions=(0.2, 0.2, 0.6))
    assert len(other) == 301 and len(np.unique(other)) == 301
    assert np.bincount(cs.tiers(score, 5, (0.1, 0.5))[other], minlength=3).tolist() == [60, 60, 181]


def fake_trajectories(n=600, epochs=6, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random((epochs, n)).astype(np.float16)
    return {"correct": (p > 0.4).astype(np.uint8), "p_true": p, "el2n": (1 - p).astype(np.float16),
            "labels": np.arange(n) % 6}


@pytest.mark.parametrize("method", cs.METHODS)
@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.3, 1.0])
def test_every_method_returns_the_requested_count_without_duplicates(method, fraction):
    traj = fake_trajectories()
    idx = cs.select(method, traj, fraction, seed=1)
    k = cs.coreset_size(600, fraction)
    assert len(idx) == k and len(np.unique(idx)) == k and idx.min() >= 0 and idx.max() < 600
    assert np.array_equal(idx, cs.select(method, traj, fraction, seed=1))
    balanced = cs.select(method, traj, fraction, seed=1, class_balanced=True)
    assert len(np.unique(balanced)) == k
    counts = np.bincount(traj["labels"][balanced], minlength=6)
    assert counts.max() - counts.min() <= 1


def test_esn0_strata_are_equal_count_bins_lowest_first():
    esn0 = np.array([5.0, -3.0, 19.0, 0.5, 12.0, 7.0, -1.0, 15.0, 3.0])
    strata = cs.esn0_strata(esn0, 3)
    assert np.bincount(strata).tolist() == [3, 3, 3]
    assert set(esn0[strata == 0]) == {-3.0, -1.0, 0.5} and set(esn0[strata == 2]) == {12.0, 15.0, 19.0}
    assert cs.esn0_strata(esn0, 1).tolist() == [0] * 9
    with pytest.raises(ValueError):
        cs.esn0_strata(esn0, 0)


@pytest.mark.parametrize("method", cs.METHODS)
def test_snr_strata_keep_the_es_n0_make_up_of_the_training_set(method):
    traj = fake_trajectories()
    # Es/N0 strongly tied to the scores (low Es/N0 = hard), as on noisy 6Mod
    esn0 = np.linspace(-4, 20, 600)[np.argsort(np.argsort(-traj["p_true"].mean(0)))]
    k = cs.coreset_size(600, 0.1)
    strata = cs.esn0_strata(esn0, 6)
    idx = cs.select(method, traj, 0.1, seed=3, esn0=esn0, snr_strata=6)
    assert len(idx) == k and len(np.unique(idx)) == k
    assert np.bincount(strata[idx], minlength=6).tolist() == [10] * 6  # k split by stratum size (100 each)
    assert np.array_equal(idx, cs.select(method, traj, 0.1, seed=3, esn0=esn0, snr_strata=6))
    both = cs.select(method, traj, 0.1, seed=3, esn0=esn0, snr_strata=6, class_balanced=True)
    groups = np.bincount(traj["labels"][both] * 6 + strata[both], minlength=36)
    sizes = np.bincount(traj["labels"] * 6 + strata, minlength=36)
    assert len(both) == k and np.all(np.abs(groups - k * sizes / 600) < 1)  # largest remainder: within 1
    with pytest.raises(ValueError, match="Es/N0"):
        cs.select(method, traj, 0.1, seed=3, snr_strata=6)


def test_test_accuracy_by_esn0_counts_each_bin():
    class AlwaysZero(torch.nn.Module):
        def forward(self, iq):
            out = torch.zeros(iq.shape[0], 6)
            out[:, 0] = 1.0
            return out

    x = np.zeros((8, 1024), np.complex64)
    y = np.array([0, 1, 0, 0, 1, 1, 0, 2])
    esn0 = np.array([-4.0, -1.0, 0.0, 3.9, 8.0, 12.0, 20.0, 19.0])  # 20 dB: the last bin's upper edge
    out = cs.evaluate_on_test(AlwaysZero(), {"test": (x, y), "esn0_test": esn0}, cs.data_spec("noisy", 1, 1))
    by = out["test_accuracy_by_esn0"]
    assert by["edges_db"] == [-4, 0, 4, 8, 12, 16, 20] and out["test_accuracy"] == 0.5
    assert by["frames"] == [2, 2, 0, 1, 1, 2]
    assert by["accuracy"] == [0.5, 1.0, None, 0.0, 0.0, 0.5]


def test_baselines_pick_the_highest_scores():
    traj = fake_trajectories()
    k = cs.coreset_size(600, 0.05)
    el2n = cs.el2n_score(traj["el2n"])
    chosen = cs.select("el2n", traj, 0.05, seed=0)
    assert el2n[chosen].min() >= np.sort(el2n)[-k]
    forgetting = cs.forgetting_rank_score(traj["correct"])
    chosen = cs.select("forgetting", traj, 0.05, seed=0)
    assert forgetting[chosen].min() >= np.sort(forgetting)[-k]
    assert not np.array_equal(cs.select("random", traj, 0.05, seed=0), cs.select("random", traj, 0.05, seed=1))
    assert cs.coreset_size(600, 0.0001) == 1
    with pytest.raises(ValueError):
        cs.select("herding", traj, 0.1, seed=0)


def test_epoch_batches_cover_every_frame_once():
    for n in (1, 65, 128, 129, 200):
        parts = cs.epoch_batches(n, 64, seed=0, epoch=3)
        assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n)) and min(map(len, parts)) >= min(2, n)


# -- end to end at smoke size ---------------------------------------------------------------------
@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_record_select_train_smoke(tmp_path, one_thread):
    run = tmp_path / "clean"
    common = ["--data-cache", str(CACHE), "--quiet"]
    assert cs.main(["record", "--run-dir", str(run), "--train-per-class", "30", "--test-per-class", "16",
                    "--arch", "tiny", "--epochs", "2", "--batch", "32", *common]) == 0
    traj = cs.load_trajectories(run)
    assert traj["correct"].shape == (2, 180) and traj["correct"].dtype == np.uint8
    assert traj["p_true"].dtype == np.float16 and np.all((traj["p_true"] >= 0) & (traj["p_true"] <= 1))
    assert np.array_equal(traj["labels"], np.arange(180) % 6)
    rec = json.loads((run / "record.json").read_text())
    assert rec["n_train"] == 180 and rec["epochs"] == 2 and 0 <= rec["test_accuracy"] <= 1
    assert (run / "classifier" / "classifier.json").exists()

    assert cs.main(["select", "--run-dir", str(run), "--fractions", "0.1,0.3", "--seeds", "0,1"]) == 0
    selection = json.loads((run / "selection.json").read_text())
    assert len(selection["coresets"]) == 4 * 2 * 2
    assert selection["coresets"]["foqus-0.1-seed0"]["size"] == 18
    coreset = run / "coresets" / "foqus-0.3-seed1.npz"
    assert len(np.load(coreset)["indices"]) == 54

    assert cs.main(["train", "--run-dir", str(run), "--coreset", str(coreset), "--arch", "tiny", *common]) == 0
    result = json.loads((run / "results.jsonl").read_text().splitlines()[-1])
    assert result["method"] == "foqus" and result["size"] == 54 and result["epochs"] == 2
    assert 0 <= result["test_accuracy"] <= 1 and result["train_time_s"] > 0


def test_train_py_trains_the_classifier_on_a_saved_coreset(tmp_path, one_thread):
    from training import train as train_py
    run = tmp_path / "rec"
    common = ["--data-cache", str(CACHE), "--quiet"]
    per_class = PRESETS["smoke"]["data"]["train"]
    assert cs.main(["record", "--run-dir", str(run), "--train-per-class", str(per_class), "--test-per-class", "16",
                    "--arch", "tiny", "--epochs", "2", "--batch", "32", *common]) == 0
    assert cs.main(["select", "--run-dir", str(run), "--fractions", "0.25", "--methods", "foqus"]) == 0
    coreset = run / "coresets" / "foqus-0.25-seed0.npz"
    out = tmp_path / "train"
    assert train_py.main(["--preset", "smoke", "--stage", "classifier", "--run-dir", str(out), "--coreset",
                          str(coreset), "--data-cache", str(CACHE), "--threads", "1"]) == 0
    log = (out / "train.log").read_text()
    assert f"trained on coreset {coreset} ({per_class * 6 // 4} of {per_class * 6} frames)" in log
    assert (out / "checkpoint" / "classifier.safetensors").exists()
    # A coreset of other data is refused with a message naming the file.
    other = tmp_path / "other"
    assert cs.main(["record", "--run-dir", str(other), "--train-per-class", "30", "--test-per-class", "16",
                    "--arch", "tiny", "--epochs", "2", "--batch", "32", *common]) == 0
    assert cs.main(["select", "--run-dir", str(other), "--fractions", "0.25", "--methods", "random"]) == 0
    bad = other / "coresets" / "random-0.25-seed0.npz"
    with pytest.raises(SystemExit, match="30 frames per class"):
        train_py.main(["--preset", "smoke", "--stage", "classifier", "--run-dir", str(tmp_path / "t2"),
                       "--coreset", str(bad), "--data-cache", str(CACHE)])
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a coreset")
    with pytest.raises(SystemExit, match="junk.npz"):
        train_py.main(["--preset", "smoke", "--stage", "classifier", "--run-dir", str(tmp_path / "t3"),
                       "--coreset", str(junk), "--data-cache", str(CACHE)])


def test_report_smoke_clean_noisy_cross_architecture(tmp_path, one_thread, capsys):
    out = tmp_path / "report"
    args = ["report", "--out", str(out), "--variants", "clean,noisy", "--fractions", "0.1,0.3", "--seeds", "0,1",
            "--archs", "tiny,smoke", "--train-per-class", "20", "--test-per-class", "8", "--epochs", "1",
            "--batch", "32", "--data-cache", str(CACHE), "--quiet"]
    assert cs.main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["variants"]) == {"clean", "noisy"}
    noisy = report["variants"]["noisy"]
    assert set(noisy["results"]) == {"tiny", "smoke"} and set(noisy["full_data"]) == {"tiny", "smoke"}
    cell = noisy["results"]["smoke"]["foqus"]["0.3"]
    assert cell["size"] == 36 and cell["accuracy"]["n"] == 2 and len(cell["accuracies"]) == 2
    esn0 = np.load(out / "noisy" / "esn0_train.npy")
    assert esn0.min() >= -4 and esn0.max() <= 20 and "esn0_db_mean" in noisy["selection"]["foqus-0.1-seed0"]
    assert (out / "accuracy_vs_fraction.png").stat().st_size > 5000
    # the summary table: one row per (variant, classifier), accuracy and time from the report
    table = (out / "summary.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| noisy, smoke (cross-architecture) |"))
    assert f"{cell['accuracy']['mean']:.3f} ± {cell['accuracy']['std']:.3f}" in row
    assert f"{noisy['full_data']['smoke']['test_accuracy']:.3f}" in row and row.count("|") == 2 + 1 + 2 * 4
    capsys.readouterr()
    assert cs.main(["table", str(out / "report.json"), "--fractions", "0.3"]) == 0
    printed = capsys.readouterr().out
    main_table, esn0_part = printed.split("\n\n")
    assert "foqus 30 %" in main_table and "foqus 10 %" not in main_table and len(main_table.splitlines()) == 2 + 4
    # per-Es/N0 accuracy (noisy only): six 4 dB bins over -4..20 dB, every run and the full-data references
    by = cell["accuracy_by_esn0"]
    assert by["edges_db"] == [-4, 0, 4, 8, 12, 16, 20] and len(by["accuracy"]) == 6
    clean = report["variants"]["clean"]
    assert noisy["full_data"]["smoke"]["accuracy_by_esn0"] and clean["full_data"]["smoke"]["accuracy_by_esn0"] is None
    assert clean["results"]["smoke"]["foqus"]["0.3"]["accuracy_by_esn0"] is None  # no Es/N0 on clean data
    esn0_lines = esn0_part.strip().splitlines()
    assert esn0_lines[0].startswith("| noisy: test accuracy by Es/N0 | -4..0 dB |") and "16..20 dB" in esn0_lines[0]
    assert len(esn0_lines) == 2 + 2 * (1 + 4)  # per classifier: full data + 4 methods at 30 %
    assert "| smoke, foqus 30 % | " + " | ".join("-" if a is None else f"{a:.3f}" for a in by["accuracy"]) + " |" \
        in esn0_lines
    with pytest.raises(SystemExit, match="not a coreset report"):
        cs.main(["table", str(out / "clean" / "record.json")])
    # a second run reuses the recording and every trained result
    lines = (out / "clean" / "results.jsonl").read_text().count("\n")
    assert cs.main(args) == 0
    assert (out / "clean" / "results.jsonl").read_text().count("\n") == lines


def test_eval_pass_trajectories_cover_every_frame(one_thread):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((40, 1024)) + 1j * rng.standard_normal((40, 1024))).astype(np.complex64)
    y = np.arange(40) % 6
    recorder = cs.TrajectoryRecorder(y, epochs=2, source="eval")
    timing = cs.fit(cs.new_classifier("tiny", 0), x, y, epochs=2, batch=16, lr=1e-3, seed=0, recorder=recorder)
    assert recorder.seen.all() and timing["steps"] == 2 * 3 and timing["record_time_s"] > 0
    p = recorder.p_true.astype(np.float64)
    assert np.all((p > 0) & (p < 1)) and np.array_equal(recorder.correct.astype(bool), recorder.correct == 1)
