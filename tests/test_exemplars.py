# SPDX-License-Identifier: GPL-3.0-or-later
"""Exemplar rendering (hqarf.exemplars): the choice of exemplar, the bank's files and checks, the codec's
decode with and without it, and the training side's choice of frames."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from conftest import make_codec, random_frames
from gnuradio import hqarf
from gnuradio.hqarf import exemplars
from gnuradio.hqarf.weights import WeightsError

SEMANTIC = dict(direct_levels=(0, 1, 2, 3, 4), semantic_levels=(2, 3, 4), semantic_classes=6)


def tone(bin_, n=1024, phase=0.0):
    return np.exp(1j * (2 * np.pi * bin_ * np.arange(n) / n + phase)).astype(np.complex64)


def test_log_spectrum_of_a_tone_puts_its_power_in_one_band():
    s = exemplars.log_spectrum(np.stack([tone(40), 3 * tone(40)]))
    assert s.shape == (2, 64)
    assert np.argmax(s[0]) == 40 // 16 and s[0].max() == pytest.approx(0.0, abs=1e-5)
    assert np.allclose(s[0], s[1], atol=1e-5)  # scale-free
    assert np.all(np.delete(s[0], 40 // 16) < -13)  # log(1e-6)
    assert np.isfinite(exemplars.log_spectrum(np.zeros((1, 1024), np.complex64))).all()


def bank_of_tones():
    # class 0: tones in band 2; class 1: tones in band 10 and band 40; features = the frames' own spectra
    frames = np.stack([tone(33), tone(170), tone(650), tone(37)])
    labels = np.array([0, 1, 1, 0])
    return exemplars.ExemplarBank(frames, labels, {4: exemplars.log_spectrum(frames)}, top_k=1)


def test_render_takes_the_nearest_exemplar_of_the_token_class_at_the_rendering_phase():
    bank = bank_of_tones()
    rendering = np.stack([tone(650, phase=0.7), tone(650), 0.5 * tone(170, phase=-2.0)])
    out = bank.render(rendering, np.array([1, 0, 1]), 4)
    assert out.dtype == np.complex64 and out.shape == rendering.shape
    # frame 0: class 1, nearest spectrum is tone(650), rotated to the rendering's phase, at unit scale
    assert np.allclose(out[0], tone(650, phase=0.7), atol=1e-4)
    # frame 1: token 0 rules out the class-1 tone at 650: one of class 0's exemplars
    assert any(np.allclose(np.abs(out[1]), np.abs(bank.frames[k])) and
               abs(abs(np.vdot(bank.frames[k], out[1])) - 1024) < 1e-2 for k in (0, 3))
    assert np.allclose(out[2], tone(170, phase=-2.0), atol=1e-4)


def test_render_keeps_the_rendering_for_a_token_without_exemplars_and_is_batch_independent(rng):
    bank = bank_of_tones()
    rendering = random_frames(rng, 5)
    tokens = np.array([5, 0, 1, 3, 1])
    out = bank.render(rendering, tokens, 4)
    assert np.array_equal(out[0], rendering[0]) and np.array_equal(out[3], rendering[3])
    one_by_one = np.concatenate([bank.render(rendering[i:i + 1], tokens[i:i + 1], 4) for i in range(5)])
    assert np.array_equal(out, one_by_one)
    assert np.array_equal(out, bank.render(rendering, tokens, 4))  # deterministic


def test_top_k_picks_the_best_correlated_of_the_nearest():
    # two class-0 exemplars with the same spectrum band; the rendering correlates with the second
    frames = np.stack([tone(33), tone(34)])
    bank = exemplars.ExemplarBank(frames, [0, 0], {3: exemplars.log_spectrum(frames)}, top_k=2)
    out = bank.render(tone(34, phase=1.0)[None], np.array([0]), 3)
    assert np.allclose(out[0], tone(34, phase=1.0), atol=1e-4)


def test_bank_shape_errors():
    frames = np.stack([tone(3), tone(5)])
    with pytest.raises(ValueError):
        exemplars.ExemplarBank(frames, [0], {4: exemplars.log_spectrum(frames)})
    with pytest.raises(ValueError):
        exemplars.ExemplarBank(frames, [0, 1], {4: np.zeros((2, 7))})
    with pytest.raises(ValueError):
        exemplars.ExemplarBank(frames, [0, 1], {4: exemplars.log_spectrum(frames)}, top_k=0)
    with pytest.raises(ValueError):
        exemplars.ExemplarBank(frames, [0, 1], {4: np.zeros((2, 0))})
    for top_k in (True, 2.5, "8"):
        with pytest.raises(ValueError, match="top_k"):
            exemplars.ExemplarBank(frames, [0, 1], {4: exemplars.log_spectrum(frames)}, top_k=top_k)


@pytest.fixture(scope="module")
def banked_model(tmp_path_factory):
    """A tiny semantic codec with a bank of 24 random frames (4 per class) for levels 2-4."""
    directory = make_codec(tmp_path_factory.mktemp("banked"), **SEMANTIC)
    codec = hqarf.load_codec(directory)
    rng = np.random.default_rng(7)
    frames = random_frames(rng, 24)
    frames /= np.abs(frames).max(1, keepdims=True)
    bank = exemplars.build(codec, frames, np.arange(24) % 6, (2, 3, 4))
    bank.save(directory, codec.fingerprint_hex, provenance={"made_by": "tests/test_exemplars.py"})
    return directory


def test_codec_decodes_bank_levels_to_rotated_exemplars(banked_model, rng):
    codec = hqarf.load_codec(banked_model)
    plain = hqarf.load_codec(banked_model, exemplars=False)
    assert codec.exemplars is not None and plain.exemplars is None
    assert [codec.rendering(lv) for lv in range(5)] == ["network"] * 2 + ["exemplar"] * 3
    assert [plain.rendering(lv) for lv in range(5)] == ["network"] * 5
    x = random_frames(rng, 6)
    bank = codec.exemplars.frames
    for level in range(5):
        codes = codec.encode(x, level)
        assert codes.shape == (6, codec.tokens(level))  # the bits are the encoder's, unchanged
        out = codec.decode(codes, level)
        network = plain.decode(codes, level)
        assert np.array_equal(codec.decode(codes, level, exemplars=False), network)
        if level < 2:
            assert np.array_equal(out, network)
            continue
        for row, token in zip(out, codes[:, -1]):
            # each frame is one exemplar of its token's class times a unit phase
            k = np.argmax(np.abs(bank.conj() @ row))
            ratio = row / bank[k]
            assert codec.exemplars.labels[k] == token
            assert np.allclose(ratio, ratio[0], atol=1e-3) and abs(abs(ratio[0]) - 1) < 1e-3
    # amplitudes restored as before through the wire format
    y = codec.decompress(codec.compress(3.0 * x / np.abs(x).max(1, keepdims=True), 4))
    assert np.allclose(np.abs(y).max(1), 3.0, rtol=1e-2)
    codec.use_exemplars = False
    assert codec.rendering(4) == "network"
    assert np.array_equal(codec.decode(codes, 4), plain.decode(codes, 4))
    assert codec.with_runtime("torch").exemplars is codec.exemplars
    assert not codec.with_runtime("torch").use_exemplars  # the switch travels too


def corrupt_copy(src, dst, edit_manifest=None, edit_state=None):
    import shutil
    shutil.copytree(src, dst)
    mpath = dst / "exemplars.json"
    if edit_state is not None:
        state = load_file(str(dst / "exemplars.safetensors"))
        edit_state(state)
        save_file(state, str(dst / "exemplars.safetensors"))
        from gnuradio.hqarf import weights
        manifest = json.loads(mpath.read_text())
        manifest["fingerprint"] = weights.fingerprint(state)
        manifest["config_fingerprint"] = weights.config_fingerprint(manifest["config"], manifest["fingerprint"])
        mpath.write_text(json.dumps(manifest))
    if edit_manifest is not None:
        from gnuradio.hqarf import weights
        manifest = json.loads(mpath.read_text())
        edit_manifest(manifest["config"])
        manifest["config_fingerprint"] = weights.config_fingerprint(manifest["config"], manifest["fingerprint"])
        mpath.write_text(json.dumps(manifest))
    return dst


@pytest.mark.parametrize("case, expect", [
    ("other codec", "built for codec"),
    ("levels", "must be levels that carry a class token"),
    ("labels", "labels must be one class"),
    ("float labels", "labels must be one class"),
    ("missing features", "do not form a bank"),
    ("duplicate levels", "must be levels that carry a class token"),
    ("top_k", "top_k must be a positive integer"),
    ("scale", "unit scale"),
    ("zero-width features", "expected"),
    ("nan", "not finite"),
    ("truncated", "corrupt or unreadable"),
])
def test_a_bank_that_does_not_fit_fails_at_load_naming_the_file(banked_model, tmp_path, case, expect):
    import torch
    dst = tmp_path / "model"
    if case == "other codec":
        corrupt_copy(banked_model, dst, edit_manifest=lambda c: c.update(codec_fingerprint="0" * 16))
    elif case == "levels":
        corrupt_copy(banked_model, dst, edit_manifest=lambda c: c.update(levels=[1, 4]))
    elif case == "labels":
        corrupt_copy(banked_model, dst, edit_state=lambda s: s.update(labels=torch.full_like(s["labels"], 6)))
    elif case == "float labels":
        corrupt_copy(banked_model, dst, edit_state=lambda s: s.update(labels=s["labels"].double() + 0.5))
    elif case == "missing features":
        corrupt_copy(banked_model, dst, edit_state=lambda s: s.pop("features.4"))
    elif case == "duplicate levels":
        corrupt_copy(banked_model, dst, edit_manifest=lambda c: c.update(levels=[2, 3, 4, 4]))
    elif case == "top_k":
        corrupt_copy(banked_model, dst, edit_manifest=lambda c: c.update(top_k="8"))
    elif case == "scale":
        corrupt_copy(banked_model, dst, edit_state=lambda s: s.update(frames=s["frames"] * 2))
    elif case == "zero-width features":
        corrupt_copy(banked_model, dst, edit_state=lambda s: s.update({"features.4": s["features.4"][:, :0].contiguous()}))
    elif case == "nan":
        def poison(s):
            s["frames"][0, 0, 0] = float("nan")
        corrupt_copy(banked_model, dst, edit_state=poison)
    else:
        corrupt_copy(banked_model, dst)
        data = (dst / "exemplars.safetensors").read_bytes()
        (dst / "exemplars.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=expect) as info:
        hqarf.load_codec(dst)
    assert "exemplars" in str(info.value)
    assert hqarf.load_codec(dst, exemplars=False).exemplars is None  # the codec itself still loads
    hqarf.encoder(model=str(dst))  # and the encoder, which never reads the bank


def test_a_bank_must_fit_its_codec(banked_model, rng):
    from gnuradio.hqarf.codec import Codec
    codec = hqarf.load_codec(banked_model)
    frames = random_frames(rng, 6)
    frames /= np.abs(frames).max(1, keepdims=True)
    with pytest.raises(ValueError, match="class token"):
        exemplars.build(codec, frames, np.arange(6), (1, 4))  # level 1's last index is a local code here
    bank = exemplars.ExemplarBank(frames[:, :512], np.arange(6), {4: exemplars.log_spectrum(frames[:, :512])})
    with pytest.raises(ValueError, match="512 samples"):
        Codec(codec.model, codec.manifest, exemplars=bank)


def test_rendering_does_not_depend_on_the_batch(banked_model, rng):
    codec = hqarf.load_codec(banked_model)
    x = random_frames(rng, 200)
    codes = codec.encode(x, 4)
    whole = codec.decode(codes, 4)
    for size in (1, 7, 64):
        parts = np.concatenate([codec.decode(codes[i:i + size], 4) for i in range(0, len(codes), size)])
        # the same exemplar for every frame; the phase follows the network's rendering (float rounding only)
        np.testing.assert_allclose(parts, whole, rtol=0, atol=1e-5)


def test_bank_frames_take_half_clean_half_impaired_per_class():
    from training.exemplar_bank import bank_frames
    n = 60
    clean = np.arange(n).astype(np.complex64)[:, None] * np.ones((1, 4), np.complex64)
    data = {"train": (-clean, np.arange(n) % 6), "train_clean": (clean, np.arange(n) % 6)}
    frames, labels = bank_frames(data, 4, 6)
    assert np.array_equal(np.bincount(labels), [4] * 6)
    assert (frames[:12, 0].real >= 0).all() and (frames[12:, 0].real < 0).all()
    # the impaired half are other frames than the clean half
    assert not set(np.abs(frames[:12, 0].real)) & set(np.abs(frames[12:, 0].real))
    frames, labels = bank_frames({"train": data["train"]}, 3, 6)  # no impairments: one split
    assert (frames[:, 0].real <= 0).all() and len(frames) == 18
    with pytest.raises(ValueError, match="frames per class"):
        bank_frames(data, 11, 6)
    # frames the unknown detector refuses (here: magnitudes 6-11 and 30-35) give way to the next of their class
    refused = set(range(6, 12)) | set(range(30, 36))
    accept = lambda f: ~np.isin(np.abs(f[:, 0].real), list(refused))  # noqa: E731
    frames, labels = bank_frames(data, 4, 6, accept)
    values = np.abs(frames[:, 0].real).astype(int)
    assert np.array_equal(labels, values % 6) and np.array_equal(np.bincount(labels), [4] * 6)
    assert not set(values) & refused and len(set(values)) == 24
    assert list(values[:12]) == [*range(6), *range(12, 18)]      # clean: the first two accepted of each class
    assert list(values[12:]) == [*range(18, 30)]                 # impaired: the next two accepted, other frames
    assert np.array_equal(bank_frames(data, 4, 6, lambda f: np.ones(len(f), bool))[0], bank_frames(data, 4, 6)[0])
    with pytest.raises(ValueError, match="unknown detector accepts"):
        bank_frames(data, 4, 6, lambda f: np.abs(f[:, 0].real) % 6 != 2)


def test_decoder_block_renders_with_the_bank_unless_told_not_to(banked_model, rng):
    import pmt
    from gnuradio import blocks, gr
    codec = hqarf.load_codec(banked_model)
    plain = hqarf.load_codec(banked_model, exemplars=False)
    blobs = [codec.compress(random_frames(rng, 5), level, sequence=level) for level in (1, 4, 2)]

    def run(**kwargs):
        tb = gr.top_block()
        decoder = hqarf.decoder(model=str(banked_model), **kwargs)
        sink = blocks.vector_sink_c()
        tb.connect(decoder, sink)
        raw = decoder.to_basic_block()
        for blob in blobs:
            raw._post(pmt.intern("pdus"), pmt.cons(pmt.make_dict(), pmt.init_u8vector(len(blob), list(blob))))
        raw._post(pmt.intern("system"), pmt.cons(pmt.intern("done"), pmt.from_long(1)))
        tb.run()
        return decoder, np.array(sink.data(), np.complex64).reshape(-1, 1024)

    decoder, y = run()
    assert decoder.codec.use_exemplars
    np.testing.assert_allclose(y, np.concatenate([codec.decompress(b) for b in blobs]), rtol=1e-5, atol=1e-6)
    decoder, y = run(exemplars=False)
    network = np.concatenate([plain.decompress(b) for b in blobs])
    np.testing.assert_allclose(y, network, rtol=1e-5, atol=1e-6)
    assert not np.allclose(network[5:10], codec.decompress(blobs[1]))  # level 4 differs with the bank
    decoder.set_exemplars(True)
    assert decoder.codec.rendering(4) == "exemplar" and decoder.codec.rendering(1) == "network"
    decoder.set_exemplars(0)  # a GRC variable may hold 0 / 1
    assert not decoder.codec.use_exemplars
    decoder.set_exemplars(1)
    assert decoder.codec.use_exemplars
    for bad in ("no", 2, None):
        with pytest.raises(ValueError, match="exemplars must be True or False"):
            decoder.set_exemplars(bad)


def test_cli_info_lists_the_rendering_and_decompress_can_skip_the_bank(banked_model, tmp_path, rng, capsys):
    from gnuradio.hqarf import cli, sigmf
    assert cli.main(["info", str(banked_model)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    rendering = {int(r[0]): r[-1] for r in rows if r and r[0].isdigit() and len(r) >= 9}
    assert rendering == {0: "network", 1: "network", 2: "exemplar", 3: "exemplar", 4: "exemplar"}
    x = random_frames(rng, 3).reshape(-1)
    sigmf.write_sigmf(tmp_path / "rec", x, sample_rate=1e6)
    assert cli.main(["compress", str(tmp_path / "rec.sigmf-data"), "-o", str(tmp_path / "c.hqarf"), "-l", "4",
                     "-m", str(banked_model), "-q"]) == 0
    outputs = {}
    for flag in ([], ["--no-exemplars"]):
        base = tmp_path / f"out{len(flag)}"
        assert cli.main(["decompress", str(tmp_path / "c.hqarf"), "-o", str(base), "-m", str(banked_model), "-q",
                         *flag]) == 0
        outputs[len(flag)] = np.fromfile(f"{base}.sigmf-data", np.complex64).reshape(-1, 1024)
    codes = hqarf.load_codec(banked_model).encode(x.reshape(-1, 1024), 4)
    plain = hqarf.load_codec(banked_model, exemplars=False)
    scale = np.abs(x.reshape(-1, 1024)).max(1, keepdims=True)
    np.testing.assert_allclose(outputs[1], plain.decode(codes, 4) * scale, rtol=1e-2, atol=1e-3)
    assert not np.allclose(outputs[0], outputs[1])


def test_the_bench_times_the_exemplar_step_where_the_model_has_one(banked_model):
    """bench.py's codec table: the share of decode time spent choosing exemplars, at the bank's levels only
    (the figure itself is not checked: speed lives in the bench)."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "bench" / "bench.py"), "--model", str(banked_model),
                           "--batches", "2", "--threads", "1", "--runtimes", "torch", "--levels", "1,2",
                           "--repeats", "1", "--min-seconds", "0", "--no-flowgraph"],
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {int(line.split()[2]): line.split() for line in proc.stdout.splitlines()
            if line.strip().startswith("torch ") and len(line.split()) == 10}
    assert sorted(rows) == [1, 2], proc.stdout
    assert rows[1][-1] == "-" and re.fullmatch(r"-?\d+\.\d%", rows[2][-1]), (rows, proc.stdout)
