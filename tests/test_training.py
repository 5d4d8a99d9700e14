# SPDX-License-Identifier: GPL-3.0-or-later
"""Training package end to end at smoke size: weights that load and round-trip, a classifier that
beats chance, resume, a 2-process DDP step, and the evaluation report."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_train(*args, env_extra=None, launcher=None):
    env = {**os.environ, "HQARF_CACHE": os.environ.get("HQARF_TEST_CACHE", str(ROOT / ".cache" / "test-data")),
           **(env_extra or {})}
    cmd = (launcher or [sys.executable]) + [str(ROOT / "training" / "train.py"), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=2400)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke_run")
    # one thread: on a loaded 2-core machine it is several times faster than two (environment notes)
    proc = run_train("--preset", "smoke", "--run-dir", str(run_dir), "--threads", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run_dir


def test_smoke_run_produces_loadable_model(smoke_run):
    from gnuradio import hqarf
    from training.data import DataConfig, generate

    codec = hqarf.load_codec(smoke_run / "model")
    clf = hqarf.load_classifier(smoke_run / "model")
    assert clf.classes == ["4ask", "8pam", "16psk", "32qam_cross", "2fsk", "ofdm-256"]
    x, y = generate("test", 16, DataConfig(), cache_dir=ROOT / ".cache" / "test-data", progress=False)
    for level in range(codec.levels):
        back = codec.decompress(codec.compress(x[:4] * 3.0, level))
        assert back.shape == (4, 1024) and np.all(np.isfinite(back))
    accuracy = float((clf.predict(x) == y).mean())
    assert accuracy >= 0.45, f"smoke classifier accuracy {accuracy:.2f}, chance is 0.17"
    manifest = json.loads((smoke_run / "model" / "codec.json").read_text())
    prov = manifest["provenance"]
    assert prov["preset"] == "smoke" and prov["seed"] == 0 and "train.py" in prov["command"]
    assert prov["data"]["key"] == DataConfig().key() and "hae/L0" in prov["durations_s"]
    assert len(manifest["metrics"]["accuracy_per_level"]) == 5
    assert (smoke_run / "model" / "PROVENANCE.md").read_text().startswith("# Provenance")
    rows = [json.loads(line) for line in (smoke_run / "metrics.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in rows} == {"classifier", "hae", "hqarf_nokl", "hqarf", "semantic", "direct"}
    assert codec.model.config.semantic_levels == (2, 3, 4) and "semantic/L" not in str(prov["durations_s"])
    # the exemplar bank (smoke: 4 frames per class, levels 2-4), built for this codec and in its provenance
    assert [codec.rendering(level) for level in range(5)] == ["network"] * 2 + ["exemplar"] * 3
    assert len(codec.exemplars.frames) == 24 and "exemplars" in prov["durations_s"]
    bank = json.loads((smoke_run / "model" / "exemplars.json").read_text())
    assert bank["config"]["codec_fingerprint"] == manifest["fingerprint"] and bank["provenance"]["preset"] == "smoke"
    # trained on impaired frames, recorded in the provenance; the held-out classifier ships beside
    assert prov["data"]["impairments"]["max_freq_offset"] == 0.01 and prov["data"]["impairments"]["random_phase"]
    heldout = hqarf.load_classifier(smoke_run / "model", kind="heldout_classifier")
    assert heldout.config.arch == "transformer" and heldout.classes == clf.classes
    # at smoke size the transformer may still be at chance (0.17); the default preset's is measured in
    # tests/test_default_model.py
    assert heldout.predict(x).shape == y.shape and set(heldout.predict(x)) <= set(range(6))
    assert codec.config.direct_levels == (0, 1, 2, 3, 4)
    # level 0's epoch is kept by the project classifier's and the critics' mean (smoke direct_select)
    assert all("val_accuracy_critics" in r for r in rows if r["stage"] == "direct" and r["level"] == 0)
    assert [codec.bits_per_frame(level) for level in range(5)] == [3072, 1536, 768, 384, 192]
    assert all("val_perplexity" in r for r in rows if r["stage"] == "hqarf")
    # The classifier term trains the levels task_scale does not zero (smoke and default: HAE, quantised
    # levels 0-2, level 4 without KL).
    assert all("train_task" in r for r in rows if r["stage"] == "hae")
    quantised = [r for r in rows if r["stage"] in ("hqarf_nokl", "hqarf")]
    assert all(("train_task" in r) == (r["level"] <= 2 or (r["level"], r["stage"]) == (4, "hqarf_nokl"))
               for r in quantised) and len(quantised) == 10
    assert prov["commit"] and prov["training"]["reset_mode"] == "batch"
    # the unknown detector learns the codec's reconstructions too, so it is trained after the codec
    log = (smoke_run / "train.log").read_text()
    assert "20 reconstructions of training frames (4 per level, 0.5 of their sources clean)" in log
    assert log.index("direct L4 epoch") < log.index("reconstructions of training frames")
    assert clf.detector is not None and clf.unknown_score(x).shape == y.shape
    # its threshold is set on the clean validation frames and on their reconstructions at every level: the
    # largest of the per-set thresholds, so no level's reconstructions are flagged more than the originals' rate
    info = json.loads((smoke_run / "model" / "unknown_detector.json").read_text())["unknown_detector"]
    per_set = info["calibration_thresholds"]
    assert list(per_set) == ["originals"] + [f"level {level}" for level in range(5)]
    assert info["threshold"] == max(per_set.values()) == clf.unknown_threshold
    assert "and of their reconstructions at each level" in log
    # each of its epochs logs its share of out-of-set validation frames flagged; the other networks' epochs do not
    detector_rows = [r for r in rows if r.get("network") == "unknown_detector"]
    assert [r["epoch"] for r in detector_rows] == [1, 2] and all(0 <= r["out_of_set_val_flagged"] <= 1 for r in detector_rows)
    assert "unknown_detector epoch 2/2" in log and "out-of-set val frames flagged" in log
    assert not any("out_of_set_val_flagged" in r for r in rows if r.get("network") != "unknown_detector")
    val = generate("val", 8, DataConfig(), cache_dir=ROOT / ".cache" / "test-data", progress=False)[0]
    n_above = int(np.ceil(0.01 * len(val)))  # the quantile's frames: at most one in 48
    for level in range(5):
        assert (clf.unknown_score(codec.decode(codec.encode(val, level), level)) > info["threshold"]).sum() <= n_above
    # the direct decoders' critic (smoke: one, seed offset 1234) trains before them, is in their loss,
    # and stays out of the model
    progress = json.loads((smoke_run / "checkpoint" / "progress.json").read_text())
    assert ["critic0", None] in progress["done"] and log.index("critic0:") < log.index("direct L1 start")
    assert all("train_critic" in r for r in rows if r["stage"] == "direct")
    assert not any("critic" in f.name for f in (smoke_run / "model").iterdir())


def test_evaluation_writes_json_and_plots(smoke_run):
    report = json.loads((smoke_run / "evaluation" / "report.json").read_text())
    # "network": the shipped codec without its exemplar bank
    assert set(report["stages"]) == {"hae", "hqarf_nokl", "hqarf", "direct", "network"}
    assert report["stages"]["network"][1] == {**report["stages"]["direct"][1], "seconds": report["stages"]["network"][1]["seconds"]}
    assert report["headline"]["stage"] == "direct" and len(report["headline"]["accuracy_per_level_heldout"]) == 5
    impaired = json.loads((smoke_run / "evaluation" / "impaired" / "report.json").read_text())
    assert impaired["test_set"] == "impaired" and report["impaired_headline"] == impaired["headline"]
    row = report["stages"]["hqarf"][4]
    assert row["bits_per_frame"] == 192 and row["bytes_per_frame_16"] == (26 + 2 * 16 + 16 * 24) / 16
    assert set(report["conventional"]) >= {"sq", "bfp", "resample", "svd"}
    assert all(r["bits_per_frame"] <= r["budget_bits"] for rows in report["conventional"].values() for r in rows)
    assert report["lossless_zstd_int16"]["roundtrip_exact"]
    for name in ("accuracy_vs_cr.png", "iq_scatter.png", "spectrogram_first_samples.png", "confusion.png"):
        assert (smoke_run / "evaluation" / name).stat().st_size > 5000
    assert "| level |" in (smoke_run / "evaluation" / "summary.md").read_text()


def test_resume_skips_done_levels_and_refuses_overwrite(smoke_run, tmp_path):
    proc = run_train("--preset", "smoke", "--run-dir", str(smoke_run), "--no-evaluate")
    assert proc.returncode != 0 and "--resume" in (proc.stderr + proc.stdout)
    # Drop the last level's checkpoint entry: --resume trains only that one.
    progress_file = smoke_run / "checkpoint" / "progress.json"
    progress = json.loads(progress_file.read_text())
    progress["done"] = [d for d in progress["done"] if d != ["hqarf", 4]]
    progress_file.write_text(json.dumps(progress))
    log_before = (smoke_run / "train.log").read_text()
    proc = run_train("--preset", "smoke", "--run-dir", str(smoke_run), "--resume", "--no-evaluate")
    assert proc.returncode == 0, proc.stderr[-3000:]
    new = (smoke_run / "train.log").read_text()[len(log_before):]
    assert "classifier: loaded from checkpoint" in new
    assert "hqarf L4 epoch" in new and "hae L0 epoch" not in new and "hqarf L3 epoch" not in new


def test_ddp_two_process_cpu_step(tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = run_train("--preset", "smoke", "--run-dir", str(tmp_path / "ddp"), "--stage", "classifier",
                     "--threads", "1", launcher=launcher, env_extra={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (tmp_path / "ddp" / "train.log").read_text()
    assert "world 2" in log and "classifier epoch 4/4" in log
    assert (tmp_path / "ddp" / "checkpoint" / "classifier.safetensors").exists()
    proc = run_train("--preset", "smoke", "--run-dir", str(tmp_path / "ddp"), "--stage", "hae", "--level", "0",
                     "--threads", "1", launcher=launcher, env_extra={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "hae L0 epoch 1/1" in (tmp_path / "ddp" / "train.log").read_text()


def test_schedules():
    from training.common import learning_rate, temperature
    assert temperature(0, 100) == pytest.approx(0.667)
    assert temperature(99, 100) == pytest.approx(0.001)
    assert temperature(50, 100) == pytest.approx(0.667 + (0.001 - 0.667) * 50 / 99)
    # flat for two thirds, then a cosine down to the floor, never alternating
    lrs = [learning_rate(s, 90, 4e-4, 4e-5) for s in range(90)]
    assert all(v == 4e-4 for v in lrs[:60]) and lrs[-1] == pytest.approx(4e-5, rel=0.05)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_preset_values_per_level():
    from training.common import per_level
    from training.presets import PRESETS
    assert per_level(3, 4) == 3 and per_level((1, 2, 3), 1) == 2
    default = PRESETS["default"]
    for value in (default["reset_codes"], default["reset_mode"], *default["task_scale"].values()):
        assert not isinstance(value, (list, tuple)) or len(value) == 5
    for stage, value in default["level_epochs"].items():
        # the stages that start a level (a fresh codebook after hae) train it; the KL fine-tuning may skip one
        assert all(per_level(value, level) >= (0 if stage == "hqarf" else 1) for level in range(5)), stage


def test_unknown_detector_starts_as_the_project_classifier():
    import torch
    from gnuradio.hqarf.classifier import ClassifierConfig, ModRecNet
    from training.classifiers import detector_from_project
    torch.manual_seed(0)
    project = ModRecNet(ClassifierConfig(num_classes=6, stem_width=8, widths=(8, 16), blocks=(1, 1))).eval()
    detector = detector_from_project(project).eval()
    assert detector.config.num_classes == 7
    x = torch.randn(4, 2, 1024)
    with torch.no_grad():
        known, full = project(x), detector(x)
    torch.testing.assert_close(full[:, :6], known)     # the known classes' logits, unchanged
    assert not torch.allclose(full[:, 6], known[:, 0])  # a fresh "none of them" row


@pytest.mark.parametrize("stage,fresh,accuracies,kept", [
    ("hqarf", False, [0.5, 0.7, 0.6], 1),     # start, epoch 1, epoch 2: epoch 1 wins
    ("hqarf", False, [0.8, 0.7, 0.6], 0),     # a fine-tuning stage that only got worse keeps its start
    ("hqarf_nokl", True, [0.7, 0.6], 1),      # a fresh codebook: the start is no candidate
    ("hqarf", False, [0.5, 0.6, 0.6], 2),     # ties go to the later epoch
    ("hqarf", False, [0.5], 0),               # no epochs (the default preset's level 4): the start, untouched
])
def test_keep_best_restores_the_best_validation_epoch(monkeypatch, tmp_path, stage, fresh, accuracies, kept):
    import copy

    import torch
    from training import levels
    from training.common import Dist, RunLog
    from gnuradio.hqarf.model import HQARF, HQARFConfig
    from training.presets import PRESETS

    cfg = copy.deepcopy(PRESETS["smoke"])
    cfg["level_epochs"] = {stage: len(accuracies) - (0 if fresh else 1)}
    torch.manual_seed(0)
    model = HQARF(HQARFConfig(**cfg["codec"]))
    level = 1
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((32, 1024)) + 1j * rng.standard_normal((32, 1024))).astype(np.complex64) * 0.3
    data = {"train": (x, np.zeros(32, np.int64)), "val": (x[:8], np.zeros(8, np.int64))}
    seen, calls = [], iter(accuracies)

    def fake_validate(model, lvl, quantize, xv, yv, ctx, classifier):
        seen.append({k: v.clone() for k, v in model.levels[level].state_dict().items()})
        return {"val_snr_db": 0.0, "val_accuracy": next(calls)}

    monkeypatch.setattr(levels, "validate_level", fake_validate)
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2048, 6))
    val = levels.train_level(model, level, stage, data, cfg, Dist("cpu"), RunLog(tmp_path, enabled=True), seed=0,
                             classifier=classifier, fresh_codebook=fresh)
    assert len(seen) == len(accuracies)
    candidates = seen if not fresh else [None, *seen]
    final = model.levels[level].state_dict()
    assert val["kept_epoch"] == kept and val["val_accuracy"] == accuracies[kept - (1 if fresh else 0)]
    assert all(torch.equal(final[k], candidates[kept][k]) for k in final)
    other = [i for i in range(len(candidates)) if candidates[i] is not None and i != kept]
    assert all(any(not torch.equal(final[k], candidates[i][k]) for k in final) for i in other)
    assert "kept epoch" in (tmp_path / "train.log").read_text()


@pytest.mark.parametrize("select,scores,kept", [
    # (project accuracy, critics' mean accuracy) at the start and after epochs 1 and 2
    ("classifier", [(0.99, 0.90), (0.98, 0.97), (0.97, 0.99)], 0),  # the project figure alone keeps the start
    ("critics", [(0.99, 0.90), (0.98, 0.97), (0.97, 0.99)], 2),     # their mean: epoch 2 (0.980 > 0.975 > 0.945)
    ("critics", [(0.99, 0.99), (0.90, 0.95), (0.95, 0.90)], 0),
])
def test_direct_decoder_keeps_the_epoch_its_selection_names(monkeypatch, tmp_path, select, scores, kept):
    import copy

    import torch
    from training import stages
    from training.common import Dist, RunLog
    from gnuradio.hqarf.classifier import ClassifierConfig, build_network
    from gnuradio.hqarf.frames import to_iq
    from gnuradio.hqarf.model import HQARF, HQARFConfig
    from training.presets import PRESETS

    cfg = copy.deepcopy(PRESETS["smoke"])
    cfg.update(direct_epochs=2, direct_steps=1, direct_select=select)
    torch.manual_seed(0)
    model = HQARF(HQARFConfig(**cfg["codec"]))
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((32, 1024)) + 1j * rng.standard_normal((32, 1024))).astype(np.complex64) * 0.3
    data = {"train": (x, np.zeros(32, np.int64)), "val": (x[:8], np.zeros(8, np.int64))}
    seen, calls = [], iter(scores)

    def fake_validate(model, lvl, quantize, xv, yv, ctx, classifier, critics=(), codes=None):
        # the frozen encoders' codes, computed once for every validation
        assert codes is not None and torch.equal(torch.cat(codes), model.encode(to_iq(xv, "cpu"), lvl))
        seen.append({k: v.clone() for k, v in model.direct["0"].state_dict().items()})
        assert bool(critics) == (select == "critics")
        project, critic = next(calls)
        return {"val_snr_db": 0.0, "val_accuracy": project, **({"val_accuracy_critics": critic} if critics else {})}

    monkeypatch.setattr(stages, "validate_level", fake_validate)
    classifier = build_network(ClassifierConfig(num_classes=6, **cfg["classifier"]))
    critic = build_network(ClassifierConfig(num_classes=6, **cfg["heldout_classifier"]))
    val = stages.train_direct(model, 0, data, cfg, Dist("cpu"), RunLog(tmp_path), seed=0, classifier=classifier,
                              critics=[critic])
    final = model.direct["0"].state_dict()
    assert val["kept_epoch"] == kept and all(torch.equal(final[k], seen[kept][k]) for k in final)
    assert any(not torch.equal(final[k], seen[1 if kept != 1 else 2][k]) for k in final)
    # a selection by critics without critics in the loss is refused
    if select == "critics":
        with pytest.raises(ValueError, match="needs critics"):
            stages.train_direct(model, 0, data, cfg, Dist("cpu"), RunLog(tmp_path), seed=0, classifier=classifier)


def test_robustness_report_on_the_smoke_model(smoke_run, tmp_path):
    """training/robustness.py at a tiny grid: accuracy vs SNR for both classifiers, the unknown flag by
    every score (the detector's at the model's own threshold), signal properties, JSON, Markdown, plot."""
    from training import robustness

    report = robustness.run(smoke_run / "model", tmp_path, per_class=1, snrs=[0.0, 20.0], ood_per_kind=2,
                            say=lambda _: None, flag_per_class=2)
    assert report["out_of_set"]["in_set_frames"] == 12  # the flag's in-set frames: 2 per class
    sweep = report["accuracy_vs_snr"]
    assert sweep["snr_db"] == [0.0, 20.0] and set(sweep["variants"]) == {"awgn", "awgn+phase+offset"}
    for res in sweep["variants"].values():
        assert set(res["originals"]) == {"project", "held-out"} and len(res["levels"]) == 5
        assert all(0.0 <= a <= 1.0 for row in res["levels"] for accs in row.values() for a in accs)
    scores = report["out_of_set"]["scores"]
    assert set(scores) == {"max_softmax", "energy", "mahalanobis", "detector"}
    from gnuradio import hqarf
    assert scores["detector"]["threshold"] == pytest.approx(hqarf.load_classifier(smoke_run / "model").unknown_threshold)
    assert {"gr-qpsk", "gr-gmsk", "gr-tone", "bpsk", "tone"} <= set(report["out_of_set"]["kinds"])
    assert set(report["signal_properties"]["levels"]) == {"0", "1", "2", "3", "4"}
    assert all(len(v["bandwidth_tracking"]) == 6 and all(-1.0 <= r <= 1.0 for r in v["bandwidth_tracking"])
               for v in report["signal_properties"]["levels"].values())
    assert "| bandwidth_tracking |" in (tmp_path / "robustness.md").read_text()
    flagged = report["out_of_set"]["reconstructions_flagged"]
    assert set(flagged) == {"0", "1", "2", "3", "4"} and all(0.0 <= v <= 1.0 for v in flagged.values())
    assert "Reconstructions of the clean 6Mod frames flagged unknown" in (tmp_path / "robustness.md").read_text()
    rec = report["out_of_set"]["reconstructed"]  # out-of-set frames after the codec; the smoke bank at levels 2-4
    assert rec["frames"] == 2 * len(report["out_of_set"]["kinds"]) and set(rec["flagged"]) == {"0", "1", "2", "3", "4"}
    assert set(rec["flagged_network"]) == {"2", "3", "4"} and rec["rendering"]["4"] == "exemplar"
    assert "Out-of-set frames (the" in (tmp_path / "robustness.md").read_text()
    assert json.loads((tmp_path / "robustness.json").read_text())["fingerprint"] == report["fingerprint"]
    assert "## Unknown flag" in (tmp_path / "robustness.md").read_text()
    sources = report["class_sources"]  # the ModRec sink's classes_from, both sources, clean and impaired
    assert set(sources) == {"clean", "impaired"}
    assert all(list(rows) == ["originals", "L0", "L1", "L2", "L3", "L4"] for rows in sources.values())
    assert all(set(r) == {"classifier", "detector"} and all(0.0 <= a <= 1.0 for a in r.values())
               for rows in sources.values() for r in rows.values())
    assert "## The ModRec sink's class sources" in (tmp_path / "robustness.md").read_text()
    assert (tmp_path / "accuracy_vs_snr.png").stat().st_size > 5000
    gr_in = report["gnuradio_in_set"]
    assert list(gr_in["rows"]) == ["originals", "L0", "L1", "L2", "L3", "L4"] and gr_in["frames_per_kind"] == 3
    assert all(set(r["accuracy"]) == {"project", "held-out"} and set(r["per_class"]) == set(gr_in["kinds"])
               for r in gr_in["rows"].values())
    assert list(gr_in["gfsk"]["rows"]) == list(gr_in["rows"]) and gr_in["gfsk"]["frames"] == 3
    assert all(0.0 <= v <= 1.0 for r in gr_in["gfsk"]["rows"].values() for v in r.values())
    assert "gfsk_mod" in (tmp_path / "robustness.md").read_text()
    assert "GNU Radio's own modulators" in (tmp_path / "robustness.md").read_text()


def test_gnuradio_made_6mod_frames_are_what_their_class_says():
    """GNU Radio's modulators, checked by the signal's own statistics: 4ask and 8pam are real (no Q
    before the receiver model), 8pam is unipolar and 4ask is not, 32qam_cross is complex; 2fsk is
    continuous-phase FSK with rectangular pulses (constant envelope, phase steps of +-pi h / sps, h the
    slot's modulation index), GNU Radio's GFSK a constant envelope with smoothed (Gaussian) steps."""
    import numpy as np
    from training.robustness import FSK_INDEX, FSK_SPS, gnuradio_gfsk_frames, gnuradio_in_set_frames
    f = {k: gnuradio_in_set_frames(k, 4, 4, 1024, seed=3) for k in ("4ask", "8pam", "16psk", "32qam_cross", "2fsk")}
    assert all(v.shape == (4, 1024) and np.isfinite(v).all() for v in f.values())
    for k in ("4ask", "8pam"):
        assert np.abs(f[k].imag).max() < 1e-6 * np.abs(f[k].real).max() + 1e-7
    assert f["8pam"].real.mean() > 0.2 and abs(f["4ask"].real.mean()) < 0.1
    env = np.abs(f["2fsk"])
    assert env.std() < 0.01 * env.mean()
    assert np.abs(f["32qam_cross"].imag).max() > 0.1
    for slot, index in FSK_INDEX.items():
        z = gnuradio_in_set_frames("2fsk", 2, slot, 1024, seed=5)
        steps = np.angle(z[:, 1:] * z[:, :-1].conj()).ravel()
        np.testing.assert_allclose(np.abs(steps), np.pi * index / FSK_SPS, atol=1e-4)
        assert 0.3 < (steps > 0).mean() < 0.7          # both tones
    g = gnuradio_gfsk_frames(2, 4, 1024, seed=5)
    assert np.abs(g).std() < 0.01 * np.abs(g).mean()
    steps = np.abs(np.angle(g[:, 1:] * g[:, :-1].conj()))
    assert steps.max() <= 0.5 + 1e-4 and (steps < 0.45).mean() > 0.1   # sensitivity 0.5, Gaussian-smoothed


def test_run_log_writes_metrics_as_csv_beside_the_jsonl(tmp_path):
    import csv

    from training.common import RunLog
    log = RunLog(tmp_path)
    log.metrics(stage="classifier", epoch=1, loss=0.5, val_accuracy=0.25)
    log.metrics(stage="hae", level=0, epoch=1, train_loss=0.125)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    jsonl = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["classifier", "hae"] and len(jsonl) == 2
    assert rows[0]["val_accuracy"] == "0.25" and rows[0]["level"] == "" and rows[1]["train_loss"] == "0.125"
    assert list(rows[0]) == ["time_s", "stage", "epoch", "loss", "val_accuracy", "level", "train_loss"]


def test_out_of_set_flagged_is_the_share_above_the_known_frames_quantile():
    from training.classifier_loop import out_of_set_flagged
    # 100 known frames with unknown scores 0.00 .. 0.99; at 1 % the threshold is their 0.99 quantile (0.9801)
    known = np.stack([1 - np.arange(100) / 100, np.arange(100) / 100], 1)
    outliers = np.array([[0.6, 0.4], [0.01, 0.99], [0.0, 1.0], [0.02, 0.98]])
    prob, y = np.concatenate([known, outliers]), np.array([0] * 100 + [1] * 4)
    assert out_of_set_flagged(prob, y, 0.01) == 0.5 and out_of_set_flagged(prob, y, 0.5) == 0.75
    assert np.isnan(out_of_set_flagged(known, np.zeros(100, int), 0.01))


def test_summary_says_toy_run_when_originals_are_at_chance():
    from training.evaluate import at_chance, summary_markdown
    report = {"classes": ["a", "b", "c", "d", "e", "f"], "test_frames": 96, "test_per_class": 16,
              "summary_table": "| level |", "stages": {}}
    assert at_chance(0.2, 6, 96) and not at_chance(0.5, 6, 96)
    assert "Toy run" in summary_markdown({**report, "original_accuracy": 0.2})
    assert "Toy run" not in summary_markdown({**report, "original_accuracy": 0.9})



def test_redo_from_drops_that_level_and_everything_after_it(tmp_path):
    from training.train import Checkpoints, parse_redo
    ckpt = Checkpoints(tmp_path)
    done = [["classifier", None], *[[s, lv] for s in ("hae", "hqarf_nokl", "hqarf") for lv in range(5)],
            ["unknown_detector", None], ["semantic", None], *[["direct", lv] for lv in range(1, 5)]]
    ckpt.progress = {"done": done, "durations_s": {f"{s}/L{lv}": 1.0 for s, lv in done if lv is not None},
                     "metrics": {}}
    (tmp_path / "checkpoint").mkdir()
    dropped = ckpt.redo_from(*parse_redo("hqarf_nokl:3"))
    assert dropped == [("hqarf_nokl", 3), ("hqarf_nokl", 4), *[("hqarf", lv) for lv in range(5)],
                       ("semantic", None), *[("direct", lv) for lv in range(1, 5)]]
    kept = json.loads((tmp_path / "checkpoint" / "progress.json").read_text())
    assert ["classifier", None] in kept["done"] and ["unknown_detector", None] in kept["done"]
    assert ["hqarf_nokl", 2] in kept["done"] and ["hqarf_nokl", 3] not in kept["done"]
    assert "hqarf/L0" not in kept["durations_s"] and "hae/L4" in kept["durations_s"]
    assert parse_redo("direct") == ("direct", 0)
    assert ckpt.redo_from(*parse_redo("semantic")) == [] and ["hqarf", 4] not in ckpt.progress["done"]
    for bad in ("nonsense:1", "hae:x"):
        with pytest.raises(SystemExit, match="--redo-from"):
            parse_redo(bad)
    # --redo-direct: one direct decoder alone, the others and everything before them kept
    done = [["semantic", None], *[["direct", lv] for lv in range(1, 5)]]
    ckpt.progress = {"done": [list(e) for e in done], "durations_s": {"direct/L1": 2.0, "direct/L2": 3.0},
                     "metrics": {"direct/L1": {}}}
    assert ckpt.redo_direct(1) == "direct/L1"
    kept = json.loads((tmp_path / "checkpoint" / "progress.json").read_text())
    assert kept["done"] == [["semantic", None], *[["direct", lv] for lv in range(2, 5)]]
    assert kept["durations_s"] == {"direct/L2": 3.0} and kept["metrics"] == {}
    with pytest.raises(SystemExit, match="--redo-direct 1"):
        ckpt.redo_direct(1)
    # the unknown detector, dropped once (a redone decoder's reconstructions are new to it)
    ckpt.progress["done"].append(["unknown_detector", None])
    assert ckpt.redo_detector() == "unknown_detector" and ckpt.redo_detector() is None
    assert ["unknown_detector", None] not in json.loads((tmp_path / "checkpoint" / "progress.json").read_text())["done"]


def test_a_resumed_run_keeps_its_seed(tmp_path):
    """Session 19's --redo-direct and --stage unknown_detector on a --seed 1 run trained with seed 0: a
    continued run now takes the seed it started with, and refuses another."""
    from training.train import Checkpoints, run_seed
    fresh = Checkpoints(tmp_path / "a")
    assert run_seed(1, fresh, resume=False) == 1 and fresh.progress["seed"] == 1
    fresh.progress["done"] = [["classifier", None]]
    assert run_seed(None, fresh, resume=True) == 1          # --resume without --seed
    assert run_seed(None, fresh, resume=False) == 1         # --stage X on the run's checkpoints
    assert run_seed(1, fresh, resume=True) == 1
    with pytest.raises(SystemExit, match="--seed 1"):
        run_seed(0, fresh, resume=True)
    assert run_seed(None, Checkpoints(tmp_path / "b"), resume=False) == 0
    for given, used in ((None, 0), (3, 3)):                 # runs from before the seed was recorded
        old = Checkpoints(tmp_path / f"old{used}")
        old.progress["done"] = [["classifier", None]]
        assert run_seed(given, old, resume=True) == used and old.progress["seed"] == used


def test_redo_from_retrains_from_the_previous_stage(smoke_run):
    proc = run_train("--preset", "smoke", "--run-dir", str(smoke_run), "--redo-from", "hqarf:4", "--no-evaluate")
    assert proc.returncode != 0 and "--resume" in (proc.stderr + proc.stdout)
    log_before = (smoke_run / "train.log").read_text()
    proc = run_train("--preset", "smoke", "--run-dir", str(smoke_run), "--resume", "--redo-from", "hqarf:4",
                     "--no-evaluate", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    new = (smoke_run / "train.log").read_text()[len(log_before):]
    assert "dropped 7 checkpointed levels (hqarf/L4, semantic, direct/L0, direct/L1" in new
    assert "hqarf L4 start" in new and "hqarf L3 epoch" not in new and "hae L0 epoch" not in new
    assert "semantic epoch 2/2" in new and "direct L1 start" in new and "model written" in new
    # the detector had learned the old reconstructions (detector_reconstructions): it is trained again after them
    assert new.index("the unknown detector learned the reconstructions") < new.index("direct L1 start") \
        < new.index("unknown detector: ") < new.index("model written")
    progress = json.loads((smoke_run / "checkpoint" / "progress.json").read_text())
    assert progress["invocations"][-1]["command"].endswith("--redo-from hqarf:4 --no-evaluate --threads 1")
    # a --redo-from that drops nothing (no level 9) keeps the detector, which still knows every reconstruction
    log_before = (smoke_run / "train.log").read_text()
    proc = run_train("--preset", "smoke", "--run-dir", str(smoke_run), "--resume", "--redo-from", "direct:9",
                     "--no-evaluate", "--threads", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    new = (smoke_run / "train.log").read_text()[len(log_before):]
    assert "dropped 0 checkpointed levels (none)" in new and "model written" in new
    assert "unknown_detector: loaded from checkpoint" in new
    assert "the unknown detector learned the reconstructions" not in new and "unknown detector: " not in new


def test_a_redone_stage_is_the_stage_a_single_run_trains(smoke_run, tmp_path):
    """--redo-from semantic on a copy of a finished run trains the token head, every direct decoder and the
    unknown detector again, and gets the same weights bit for bit: they start from the chain and fresh
    initial weights (not the run's earlier ones, still in the checkpoint files) under their own seeds,
    whatever the invocation loaded or trained before them."""
    import shutil

    from safetensors.torch import load_file

    copy = tmp_path / "copy"
    shutil.copytree(smoke_run, copy)
    before = {name: load_file(str(smoke_run / "model" / name))
              for name in ("codec.safetensors", "unknown_detector.safetensors", "exemplars.safetensors")}
    proc = run_train("--preset", "smoke", "--run-dir", str(copy), "--resume", "--redo-from", "semantic",
                     "--no-evaluate", "--threads", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (copy / "train.log").read_text()[len((smoke_run / "train.log").read_text()):]
    assert "semantic epoch 2/2" in log and "direct L4 start" in log and "unknown detector: " in log
    for name, tensors in before.items():
        after = load_file(str(copy / "model" / name))
        assert sorted(after) == sorted(tensors), name
        differ = [k for k in tensors if not torch.equal(tensors[k], after[k])]
        assert not differ, f"{name}: {differ[:5]}"


def test_init_from_a_model_retrains_only_what_is_redone(smoke_run, tmp_path):
    from gnuradio import hqarf

    run_dir = tmp_path / "from_model"
    proc = run_train("--preset", "smoke", "--run-dir", str(run_dir), "--init-from", str(smoke_run / "model"),
                     "--redo-from", "direct:4", "--no-evaluate", "--threads", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert "--init-from" in log and "dropped 1 checkpointed levels (direct/L4)" in log
    assert "direct L4 start" in log and "direct L3 start" not in log and "hae L0 epoch" not in log
    assert "classifier: loaded from checkpoint" in log and "semantic epoch" not in log
    before, after = hqarf.load_codec(smoke_run / "model"), hqarf.load_codec(run_dir / "model")
    old, new = before.model.state_dict(), after.model.state_dict()
    # G_4 was trained again (the log's "direct L4 start"), from its start, the chain D_4 ... D_0, with the seed of
    # the model's own run: the same weights as that single run trained, bit for bit (before session 29's seeding
    # its token embeddings kept their trained values and the generator differed, and this test asked for a change)
    assert all(np.array_equal(old[k], new[k]) for k in old)
    # the imported model's invocations come first; only the last stage's model is written
    progress = json.loads((run_dir / "checkpoint" / "progress.json").read_text())
    assert progress["invocations"][0]["command"].startswith("python training/train.py --preset smoke")
    assert progress["imported_from"]["codec_fingerprint"] == before.manifest["fingerprint"]
    assert sorted(p.name for p in (run_dir / "stages").iterdir()) == ["direct", "hqarf"]
    # evaluated afterwards, with the provenance written as train.py writes it when it evaluates
    env = {**os.environ, "HQARF_CACHE": os.environ.get("HQARF_TEST_CACHE", str(ROOT / ".cache" / "test-data"))}
    proc = subprocess.run([sys.executable, str(ROOT / "training" / "evaluate.py"), "--run-dir", str(run_dir),
                           "--per-class", "2", "--no-baselines", "--write-provenance"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (run_dir / "model" / "PROVENANCE.md").read_text()
    assert "--init-from" in text and "run started from the weights of" in text and "--write-provenance" in text
    assert "| level |" in text and json.loads((run_dir / "model" / "codec.json").read_text())["metrics"]
    # a run directory that already holds checkpoints is refused
    proc = run_train("--preset", "smoke", "--run-dir", str(run_dir), "--init-from", str(smoke_run / "model"))
    assert proc.returncode != 0 and "already holds" in proc.stderr + proc.stdout


def test_a_distilled_network_follows_its_teacher_where_the_labels_say_otherwise():
    """fit_classifier with a teacher (knowledge distillation): on frames all labelled class 0, whose teacher puts
    them in class 2, the loss of the teacher alone (alpha 1) teaches class 2 and the labels alone (alpha 0)
    class 0; the teacher's weights do not change."""
    import torch
    from training.classifier_loop import fit_classifier, outputs
    from training.common import Dist
    from gnuradio.hqarf.classifier import ClassifierConfig, ModRecNet
    config = ClassifierConfig(num_classes=3, stem_width=4, widths=(4,), blocks=(1,))
    torch.manual_seed(0)
    teacher = ModRecNet(config).eval()
    with torch.no_grad():
        teacher.head.bias.copy_(torch.tensor([0.0, 0.0, 8.0]))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    rng = np.random.default_rng(4)
    x = ((rng.standard_normal((32, 1024)) + 1j * rng.standard_normal((32, 1024))) * 0.3).astype(np.complex64)
    y = np.zeros(32, np.int64)
    chosen = {}
    for alpha in (0.0, 1.0):
        torch.manual_seed(1)
        net = ModRecNet(config)
        fit_classifier(net, x, y, epochs=3, batch=8, lr=1e-2, seed=0, ctx=Dist("cpu"), progress=False,
                       teacher=teacher, distill={"alpha": alpha, "temperature": 2.0})
        chosen[alpha] = np.bincount(outputs(net, x, "cpu").argmax(-1), minlength=3)
    assert chosen[0.0][0] == 32 and chosen[1.0][2] == 32, chosen
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_redo_detector_distils_a_detector_from_a_models_own(smoke_run, tmp_path):
    """train.py --init-from MODEL --redo-detector --detector-teacher MODEL trains the unknown detector again, with
    the model's detector as its teacher (its directory and fingerprint in the log and the provenance), and leaves
    the codec's weights as they were; --redo-detector without a run to continue, and a teacher for a detector
    that is already trained, are refused."""
    import torch
    from safetensors.torch import load_file

    run_dir = tmp_path / "distilled"
    teacher = smoke_run / "model"
    proc = run_train("--preset", "smoke", "--run-dir", str(run_dir), "--init-from", str(teacher), "--redo-detector",
                     "--detector-teacher", str(teacher), "--no-evaluate", "--threads", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    fingerprint = json.loads((teacher / "unknown_detector.json").read_text())["fingerprint"]
    assert "--redo-detector: dropped the unknown detector" in log
    assert f"distilled from the detector of {teacher} (fingerprint {fingerprint})" in log
    assert "unknown_detector epoch 2/2" in log and "classifier: loaded from checkpoint" in log
    manifest = json.loads((run_dir / "model" / "unknown_detector.json").read_text())
    assert manifest["provenance"]["training"]["detector_teacher_fingerprint"] == fingerprint
    assert manifest["fingerprint"] != fingerprint  # trained again
    old, new = load_file(str(teacher / "codec.safetensors")), load_file(str(run_dir / "model" / "codec.safetensors"))
    assert sorted(old) == sorted(new) and all(torch.equal(old[k], new[k]) for k in old)
    proc = run_train("--preset", "smoke", "--run-dir", str(tmp_path / "fresh"), "--redo-detector")
    assert proc.returncode != 0 and "--redo-detector needs --resume or --init-from" in proc.stderr + proc.stdout
    # a teacher for a detector that is already trained (no --redo-detector) is refused, not ignored
    proc = run_train("--preset", "smoke", "--run-dir", str(tmp_path / "kept"), "--init-from", str(teacher),
                     "--detector-teacher", str(teacher))
    assert proc.returncode != 0 and "add --redo-detector" in proc.stderr + proc.stdout


def test_task_term_reads_the_classifier_posteriors_of_the_originals_computed_once():
    """The classifier's view of the original frames is the same in every step of every chain stage
    (frozen classifier, fixed training frames): train_log_posterior computes it once per run, and the
    task term with it equals the term computed per batch."""
    import torch
    from training.common import Dist
    from training.levels import LevelObjective, level_coefficients, train_log_posterior
    from training.presets import PRESETS
    from gnuradio.hqarf.classifier import ClassifierConfig, build_network
    from gnuradio.hqarf.frames import to_iq
    from gnuradio.hqarf.model import HQARF, HQARFConfig
    cfg = PRESETS["smoke"]
    torch.manual_seed(0)
    model = HQARF(HQARFConfig(**cfg["codec"])).eval()
    classifier = build_network(ClassifierConfig(num_classes=6, **cfg["classifier"])).eval().requires_grad_(False)
    rng = np.random.default_rng(3)
    x = ((rng.standard_normal((12, 1024)) + 1j * rng.standard_normal((12, 1024))) * 0.3).astype(np.complex64)
    data = {"train": (x, np.zeros(12, np.int64))}
    logp = train_log_posterior(data, classifier, Dist("cpu"), batch=5)
    assert logp.shape == (12, 6) and train_log_posterior(data, classifier, Dist("cpu")) is logp  # cached
    iq = to_iq(x, "cpu")
    torch.testing.assert_close(logp, torch.log_softmax(classifier(iq), -1), atol=1e-5, rtol=1e-5)
    objective = LevelObjective(model, 2, True, {**level_coefficients(cfg, "hqarf_nokl", 2), "task_frames": 4},
                               classifier)
    idx = np.array([7, 2, 9, 0, 5, 11])
    torch.manual_seed(1)
    _, inside, _ = objective(iq[idx], tau=0.5)
    torch.manual_seed(1)
    _, given, _ = objective(iq[idx], tau=0.5, log_posterior=logp[torch.as_tensor(idx)])
    assert inside["task"] > 0 and given["task"] == pytest.approx(inside["task"], rel=1e-4)


def test_code_class_term_trains_a_head_on_the_codes_not_saved_with_the_model():
    import torch
    from training.levels import LevelObjective, level_coefficients
    from training.presets import PRESETS
    from gnuradio.hqarf.model import HQARF, HQARFConfig
    cfg = {**PRESETS["smoke"], "code_class": {"hqarf_nokl": (0.0, 0.0, 0.5, 0.5, 0.5)}}
    assert level_coefficients(cfg, "hqarf_nokl", 1)["code_class"] == 0.0
    assert level_coefficients(cfg, "hae", 2)["code_class"] == 0.0
    coefs = level_coefficients(cfg, "hqarf_nokl", 2)
    assert coefs["code_class"] == 0.5
    torch.manual_seed(0)
    model = HQARF(HQARFConfig(**cfg["codec"]))
    keys = set(model.state_dict())
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2048, 6)).requires_grad_(False)
    objective = LevelObjective(model, 2, True, {**coefs, "task": 0.0}, classifier)
    assert objective.code_head is not None
    loss, parts, _ = objective(torch.randn(4, 2, 1024) * 0.3, tau=0.5)
    assert parts["code_class"] > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.levels[2].encoder.parameters())
    assert all(p.grad is not None for p in objective.code_head.parameters())
    assert set(model.state_dict()) == keys  # the head lives in the objective, not the model
    no_term = LevelObjective(model, 2, True, {**coefs, "code_class": 0.0, "task": 0.0}, classifier)
    assert no_term.code_head is None and "code_class" not in no_term(torch.randn(2, 2, 1024), tau=0.5)[1]



def test_critic_term_is_the_critics_mean_kl_and_a_judge_cannot_be_a_critic(tmp_path):
    """DirectObjective's critic term: its weight times the critics' mean KL, with a gradient into the
    direct decoder only; off at weight 0; critic_stages refuses the held-out classifier's seed."""
    import argparse
    import copy

    import torch

    from gnuradio.hqarf.classifier import ClassifierConfig, build_network
    from gnuradio.hqarf.model import HQARF, HQARFConfig
    from training.classifiers import HELDOUT_SEED, critic_stages
    from training.presets import PRESETS
    from training.stages import DirectObjective

    cfg = copy.deepcopy(PRESETS["smoke"])
    torch.manual_seed(0)
    model = HQARF(HQARFConfig(**cfg["codec"])).eval()
    level = 3
    model.direct[str(level)].init_from_chain(model.levels)
    critics = [build_network(ClassifierConfig(num_classes=6, **cfg["heldout_classifier"])).eval() for _ in range(2)]
    for net in critics:
        net.requires_grad_(False)
    x = torch.randn(6, 2, model.config.frame_len) * 0.3
    coefs = {"cos": 0.7, "task_frames": 4}
    base, base_parts = DirectObjective(model, level, coefs, None, critics)(x, torch.Generator().manual_seed(1))
    assert "critic" not in base_parts  # weight 0: the critics are not run
    objective = DirectObjective(model, level, {**coefs, "critic": 0.5}, None, critics)
    loss, parts = objective(x, torch.Generator().manual_seed(1))
    assert parts["critic"] > 0 and loss.item() == pytest.approx(base.item() + 0.5 * parts["critic"], rel=1e-5)
    # the same views through each critic by hand give the term's value
    with torch.no_grad():
        idx = model.encode(x, level)
        xhat = model.decode_codewords(model.levels[level].quantizer.lookup(idx), level, idx[:, -1])
    from training.stages import kl_divergence, random_rotation
    view_hat, view = random_rotation([xhat[:4], x[:4]], torch.Generator().manual_seed(1))
    want = sum(kl_divergence(net(view_hat), net(view)) for net in critics).item() / 2
    assert parts["critic"] == pytest.approx(want, rel=1e-4)
    model.zero_grad()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.direct[str(level)].parameters())
    assert all(p.grad is None for net in critics for p in net.parameters())

    args = argparse.Namespace(seed=0, resume=False, coreset=None, stage="all")
    with pytest.raises(SystemExit, match="held-out"):
        critic_stages({**cfg, "critics": {"seeds": (HELDOUT_SEED,)}}, {}, args, None, None, None, 6)


def test_unseen_judges_are_trained_once_cached_and_score_every_level(smoke_run, tmp_path):
    from gnuradio.hqarf.classifier import Classifier, ClassifierConfig, build_network
    from safetensors.torch import load_file
    from training.data import DataConfig, generate
    from training.presets import PRESETS
    env = {**os.environ, "HQARF_CACHE": os.environ.get("HQARF_TEST_CACHE", str(ROOT / ".cache" / "test-data"))}

    def evaluate(*extra):
        return subprocess.run([sys.executable, str(ROOT / "training" / "evaluate.py"), "--model", str(smoke_run / "model"),
                               "--per-class", "4", "--no-baselines", "--out", str(tmp_path / "eval"),
                               "--judges-dir", str(tmp_path / "judges"), *extra],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    proc = evaluate("--judges", "5", "11")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    weights = sorted((tmp_path / "judges").glob("judge-smoke-*-seed*.safetensors"))
    assert [w.name.rsplit("-", 1)[1] for w in weights] == ["seed11.safetensors", "seed5.safetensors"]
    record = json.loads(weights[1].with_suffix(".json").read_text())
    assert record["seed"] == 5 and 0.0 <= record["val_accuracy"] <= 1.0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert all(set(r["accuracy_judges"]) == {"seed5", "seed11"} for r in report["stages"]["hqarf"])
    # the originals' figure is the cached judge's own prediction on the same test frames
    x, y = generate("test", 4, DataConfig())
    net = build_network(ClassifierConfig(num_classes=6, **PRESETS["smoke"]["heldout_classifier"]))
    net.load_state_dict(load_file(str(weights[1])))
    judge = Classifier(net.eval(), {"classes": report["classes"]})
    assert report["original_accuracy_judges"]["seed5"] == pytest.approx(float((judge.predict(x) == y).mean()))
    assert "## Unseen judges" in (tmp_path / "eval" / "summary.md").read_text()
    # a second evaluation reuses them
    stamp = weights[1].stat().st_mtime_ns
    proc = evaluate("--judges", "5")
    assert proc.returncode == 0 and "judges: seed 5 trained" not in proc.stdout + proc.stderr
    assert weights[1].stat().st_mtime_ns == stamp
    # a seed of the run's own classifiers (the smoke critic's, the held-out one's) is refused
    for seed in ("1234", "7919"):
        proc = evaluate("--judges", seed)
        assert proc.returncode != 0 and "never saw" in proc.stderr and "Traceback" not in proc.stderr


def test_the_detector_reconstructs_a_share_of_clean_copies():
    """`detector_clean_share`: about that share of the frames the detector's reconstructions come from are the
    clean copies of the same frames (same index, so the labels stay), reproducibly; 0 leaves them as they are."""
    from training.classifiers import with_clean

    rng = np.random.default_rng(1)
    noisy = rng.standard_normal((400, 16)).astype(np.complex64)
    clean = noisy + np.complex64(10)
    mixed = with_clean(noisy, clean, 0.5, seed=3)
    from_clean = np.all(mixed == clean, axis=1)
    assert np.all(from_clean | np.all(mixed == noisy, axis=1)) and 150 < from_clean.sum() < 250
    assert np.array_equal(mixed, with_clean(noisy, clean, 0.5, seed=3)) and noisy[0, 0] != clean[0, 0]
    assert with_clean(noisy, clean, 0.0, seed=3) is noisy
    with pytest.raises(ValueError, match="clean copies"):
        with_clean(noisy, clean[:10], 0.5, seed=3)
