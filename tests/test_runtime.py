# SPDX-License-Identifier: GPL-3.0-or-later
"""Inference runtimes (hqarf.runtime): compiled backends against eager torch at every level, on the
shipped model and on a random small-width config; thread isolation; the quantiser's distance GEMM
and tie-break; level costs with the quantisers; the encoder's backlog counters."""
import dataclasses
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_codec, random_frames
from gnuradio import blocks, gr, hqarf
from gnuradio.hqarf import flowgraphs, runtime, sigmf
from gnuradio.hqarf.costs import level_costs
from gnuradio.hqarf.model import HQARF, HQARFConfig
from gnuradio.hqarf.quantizer import Quantizer
from gnuradio.hqarf.weights import DEFAULT_MODEL_DIR

RECORDING = DEFAULT_MODEL_DIR.parents[3] / "examples" / "data" / "6mod_sample"
HAVE_ORT = True
try:
    import onnxruntime  # noqa: F401
except ImportError:
    HAVE_ORT = False


def recording_frames(n=None):
    samples, _ = sigmf.read_recording(RECORDING)
    frames = samples[:len(samples) // 1024 * 1024].reshape(-1, 1024)
    return frames[:n]


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    """A random model of small (non-tiny) widths, another shape than the shipped one."""
    return make_codec(tmp_path_factory.mktemp("small"), seed=3, encoder_widths=(8, 16, 16, 32, 32),
                      decoder_widths=(16, 16, 32, 32, 48), residual_blocks=(0, 1, 1, 2, 1), code_dim=24,
                      codebook_size=32)


@pytest.fixture(scope="module")
def shipped():
    return hqarf.load_codec(None)


def mixed_frames(rng, codec_frames):
    """Real frames (recording) plus random ones, several batch sizes' worth."""
    return np.concatenate([codec_frames, random_frames(rng, 21)])


@pytest.mark.parametrize("which", ["shipped", "small"])
def test_torchscript_codes_and_reconstructions_equal_eager_torch_at_every_level(which, shipped, small_dir, rng):
    eager = shipped if which == "shipped" else hqarf.load_codec(small_dir)
    frames = mixed_frames(rng, recording_frames(24))
    compiled = eager.with_runtime("torchscript", num_threads=1)
    for level in range(eager.levels):
        codes = eager.encode(frames, level)
        for chunk in (1, 16, 64):  # the traced graphs must not have kept the tracing batch size
            # the same batch as eager torch: torch's own conv kernels round differently by batch size
            compiled.chunk = chunk
            same = eager.with_runtime("torch", chunk=chunk).encode(frames, level)
            assert np.array_equal(compiled.encode(frames, level), same), (level, chunk)
        compiled.chunk = eager.chunk
        ref = eager.decode(codes, level)
        got = compiled.decode(codes, level)
        assert np.abs(got - ref).max() <= 1e-5, level


@pytest.mark.skipif(not HAVE_ORT, reason="onnxruntime not installed")
@pytest.mark.parametrize("which", ["shipped", "small"])
def test_onnx_agrees_with_eager_torch_up_to_rounding_at_every_level(which, shipped, small_dir, rng):
    """ONNX Runtime rounds differently: codes agree except near ties (measured 1 token in 10^4 on the
    recording), and a decode whose lower re-quantisations agree is within 1e-5; level 0 has none."""
    eager = shipped if which == "shipped" else hqarf.load_codec(small_dir)
    frames = mixed_frames(rng, recording_frames(24))
    compiled = eager.with_runtime("onnx", num_threads=1)
    for level in range(eager.levels):
        codes = eager.encode(frames, level)
        got = compiled.encode(frames, level)
        assert got.shape == codes.shape and got.dtype == np.int64
        assert (got == codes).mean() >= 0.999, level
        ref = eager.decode(codes, level)
        out = compiled.decode(codes, level)
        close = np.abs(out - ref).max(axis=1) <= 1e-5
        assert close.mean() >= (1.0 if level == 0 else 0.5), level
    # the export is cached beside the weights, named by the fingerprint
    cached = list((DEFAULT_MODEL_DIR if which == "shipped" else small_dir).glob(".hqarf-cache/*.onnx"))
    assert any(eager.fingerprint_hex in p.name for p in cached)


def test_classifier_torchscript_logits_equal_eager(rng):
    eager = hqarf.load_classifier(None)
    frames = mixed_frames(rng, recording_frames(16))
    compiled = hqarf.load_classifier(None, runtime="torchscript", num_threads=1)
    assert np.abs(compiled.logits(frames) - eager.logits(frames)).max() <= 1e-5
    assert np.array_equal(compiled.predict(frames), eager.predict(frames))
    # the unknown detector too (its offset-invariant branch goes through torch.fft)
    assert np.abs(compiled.detector.logits(frames) - eager.detector.logits(frames)).max() <= 1e-4
    assert np.array_equal(compiled.classify(frames)["unknown"], eager.classify(frames)["unknown"])


@pytest.mark.parametrize("name", ["torch", "torchscript", "onnx"])
def test_two_workers_give_one_threads_codes_and_reconstructions_at_every_level(name, shipped, rng):
    """num_threads=2 runs the pieces of a batch on two workers of one thread each (Runtime.map): the
    codes are one thread's, the reconstructions within 1e-5 of them, and two threads did the work."""
    if name == "onnx" and not HAVE_ORT:
        pytest.skip("onnxruntime not installed")
    one = shipped.with_runtime(name, num_threads=1)
    two = shipped.with_runtime(name, num_threads=2)
    assert two.runtime.workers == 2 and one.runtime.workers == 1
    frames = mixed_frames(rng, recording_frames(24))  # 45 frames: 3 chunks of 16, and 16 alone below
    seen = set()
    call = two.runtime.call

    def recording_call(*args):
        seen.add(threading.current_thread().name)
        return call(*args)
    two.runtime.call = recording_call
    for level in range(shipped.levels):
        for batch in (frames, frames[:16], frames[:1]):
            codes = one.encode(batch, level)
            assert np.array_equal(two.encode(batch, level), codes), (level, len(batch))
            assert np.abs(two.decode(codes, level) - one.decode(codes, level)).max() <= 1e-5, (level, len(batch))
    assert len([t for t in seen if t.startswith("hqarf-runtime")]) == 2


def test_classifier_on_two_workers_gives_one_threads_logits(rng):
    frames = mixed_frames(rng, recording_frames(16))
    one = hqarf.load_classifier(None, num_threads=1)
    two = hqarf.load_classifier(None, num_threads=2)
    assert np.abs(two.logits(frames) - one.logits(frames)).max() <= 1e-5
    assert np.array_equal(two.classify(frames)["unknown"], one.classify(frames)["unknown"])


def test_runtime_parameter_is_validated(tiny_model_dir):
    with pytest.raises(ValueError, match="runtime"):
        hqarf.load_codec(tiny_model_dir, runtime="tensorrt")
    with pytest.raises(ValueError, match="runtime"):
        hqarf.encoder(model=str(tiny_model_dir), runtime="nope")
    with pytest.raises(ValueError, match="chunk"):
        hqarf.load_codec(tiny_model_dir, chunk=0)


def test_blocks_leave_torch_threads_of_the_process_alone(tiny_model_dir):
    before = torch.get_num_threads()
    target = 2 if before != 2 else 3
    torch.set_num_threads(target)
    try:
        keep = [hqarf.encoder(model=str(tiny_model_dir), num_threads=1),
                hqarf.modrec_sink(model=str(tiny_model_dir), num_threads=1),
                hqarf.decoder(model=str(tiny_model_dir), num_threads=1)]
        assert torch.get_num_threads() == target  # construction no longer sets it for everyone
        assert len(keep) == 3
    finally:
        torch.set_num_threads(before)


def test_torch_threads_guard_keeps_other_counts_out_while_a_call_runs():
    before = torch.get_num_threads()
    seen, inside = [], threading.Event()
    release = threading.Event()

    def one_thread_call():
        with runtime.torch_threads(1):
            inside.set()
            release.wait(5)
            seen.append(torch.get_num_threads())

    t = threading.Thread(target=one_thread_call)
    t.start()
    assert inside.wait(5)
    entered = []

    def two_thread_call():
        with runtime.torch_threads(2):
            entered.append(time.monotonic())

    u = threading.Thread(target=two_thread_call)
    u.start()
    time.sleep(0.2)
    assert not entered  # waits: changing the count now would change the running call's
    release.set()
    t.join(5)
    u.join(5)
    assert seen == [1] and entered
    torch.set_num_threads(before)


def test_distance_gemm_gives_the_codes_of_the_previous_formula_on_the_shipped_model(shipped, rng):
    frames = mixed_frames(rng, recording_frames())
    x = torch.from_numpy(np.stack([frames.real, frames.imag], 1).astype(np.float32))
    model = shipped.model
    with torch.no_grad():
        for level in range(shipped.levels):
            q = model.levels[level].quantizer
            z = model.encode_continuous(x / x.abs().amax((1, 2), keepdim=True), level)
            zt = z.transpose(1, 2)
            before = (zt.pow(2).sum(-1, keepdim=True) + q.codebook.pow(2).sum(-1) - 2.0 * zt @ q.codebook.t())
            now = q.distances(z)
            assert torch.equal(now, before)  # baddbmm: bit for bit the previous values
            assert torch.equal(now.argmin(-1), before.argmin(-1)), level


def test_nearest_code_ties_go_to_the_lowest_index():
    q = Quantizer(6, 4)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[5., 5, 5, 5], [1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0],
                                       [0, 1, 0, 0], [9, 9, 9, 9]]))
        z = torch.tensor([[[0.5, 0.0], [0.5, 1.0], [0.0, 0.0], [0.0, 0.0]]])  # (1, D=4, T=2)
        # token 0 is equidistant from codes 1, 2, 3, 4; token 1 equals codes 2 and 4
        assert q.indices(z).tolist() == [[1, 2]]


def test_level_costs_count_the_quantisers():
    config = HQARFConfig(encoder_widths=(8,) * 5, decoder_widths=(8,) * 5, codebook_size=32, code_dim=16)
    costs = level_costs(config)
    for c in costs:
        level = c["level"]
        # the search runs over the encoder's 8 features, the 1x1 projection to D = 16 folded in
        assert c["encode_quantizer_macs"] == config.tokens(level) * 32 * 8
        assert c["decode_quantizer_macs"] == sum(config.tokens(i) for i in range(level)) * 32 * 16
        assert c["encode_total_macs"] == c["encode_macs"] + c["encode_quantizer_macs"]
        assert c["decode_total_macs"] == c["decode_macs"] + c["decode_quantizer_macs"]
    assert costs[0]["encode_quantizer_macs"] == 512 * 32 * 8
    # ... and the projection (8 -> 16, 1x1) is not run: level 0's encoder is its two convolutions
    assert costs[0]["encode_macs"] == 512 * (2 * 4 * 3 + 4 * 8 * 3)
    # a direct level's G_i re-quantises nothing
    direct = level_costs(dataclasses.replace(config, direct_levels=(3,)))
    assert direct[3]["decode_quantizer_macs"] == 0 and direct[2] == costs[2]


def test_encoder_counts_a_growing_backlog_and_not_a_slow_source(tiny_model_dir, rng):
    frames = random_frames(rng, 64)
    fast = flowgraphs.encoder_benchmark(str(tiny_model_dir), 0, frames)
    assert fast["backlog_growths"] >= 1  # an unthrottled source outruns any encoder
    # the examples' vector-source flowgraphs count it without the radio-overflow warning
    tb = flowgraphs.loopback(str(tiny_model_dir), 0, frames[:4])
    assert tb.encoder.backlog_warnings is False and hqarf.encoder(model=str(tiny_model_dir)).backlog_warnings

    # A source that keeps pace: it hands over the next frame only once the encoder has read the
    # previous one (lockstep, so no wall-clock rate and no load can make its input pile up).
    class LockstepSource(gr.sync_block):
        def __init__(self, x):
            gr.sync_block.__init__(self, "lockstep", in_sig=None, out_sig=[np.complex64])
            self.x, self.sent, self.encoder = x.reshape(-1), 0, None

        def work(self, input_items, output_items):
            if self.sent >= len(self.x):
                return -1
            deadline = time.monotonic() + 600  # a hang guard
            while self.encoder.nitems_read(0) < self.sent and time.monotonic() < deadline:
                time.sleep(0.001)
            n = min(1024, len(output_items[0]))
            output_items[0][:n] = self.x[self.sent:self.sent + n]
            self.sent += n
            return n

    tb = gr.top_block()
    src = LockstepSource(frames[:12])
    enc = hqarf.encoder(model=str(tiny_model_dir), frames_per_pdu=4)
    src.encoder = enc
    tb.connect(src, enc)
    tb.run()
    assert enc.frames_encoded == 12
    assert enc.backlog_max <= 1024 and enc.backlog_growths == 0  # a source that keeps pace is not counted
    assert set(enc.counters()) >= {"input_backlog", "backlog_max", "backlog_growths"}


def test_the_bench_runs_end_to_end_and_prints_every_table(tiny_model_dir):
    """./dev.sh bench at its smallest: every table is printed (figures are not checked: speed lives in
    the bench, never in a test)."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "bench" / "bench.py"), "--model", str(tiny_model_dir),
                           "--batches", "2", "--threads", "1", "--runtimes", "torch", "--levels", "0",
                           "--repeats", "1", "--min-seconds", "0", "--flow-frames", "16", "--encoder-frames", "32",
                           "--flow-repeats", "1"],
                          cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for heading in ("MACs per frame", "codec throughput", "best batch per level", "MAC budget per frame",
                    "wire bytes per frame", "flowgraph throughput", "enc 2thr", "chain det", "default output buffer"):
        assert heading in proc.stdout, heading
