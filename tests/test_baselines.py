"""Tests for training/baselines/: honest bit counts, rate/distortion behaviour, and the reference codecs."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from training import baselines as bl

BUDGETS = (3072, 1536, 768, 384, 192)
N = bl.N_SAMPLES


def bandlimited(n_frames, seed=0, bw=(0.25, 0.45), floor_db=None):
    """Oversampled complex baseband frames like the evaluation data: white noise through a raised-cosine-edged
    low-pass of random two-sided bandwidth in ``bw`` (fraction of fs), centred at 0 Hz, a 1024-sample window cut
    from a longer stretch (so frames are not periodic), normalised to max|x| = 1."""
    rng = np.random.default_rng(seed)
    length = 4 * N
    w = rng.standard_normal((n_frames, length)) + 1j * rng.standard_normal((n_frames, length))
    f = np.abs(np.fft.fftfreq(length))[None]
    b = rng.uniform(*bw, size=(n_frames, 1))
    lo, hi = b / 2 * 0.8, b / 2 * 1.2
    mask = np.sin(np.clip((hi - f) / (hi - lo), 0, 1) * np.pi / 2)
    x = np.fft.ifft(np.fft.fft(w, axis=1) * mask, axis=1)
    start = rng.integers(0, length - N, n_frames)
    x = x[np.arange(n_frames)[:, None], start[:, None] + np.arange(N)[None]]
    if floor_db is not None:
        p = np.mean(np.abs(x) ** 2, axis=1, keepdims=True)
        x = x + np.sqrt(p / 2 * 10 ** (floor_db / 10)) * (rng.standard_normal(x.shape)
                                                           + 1j * rng.standard_normal(x.shape))
    return (x / np.abs(x).max(axis=1, keepdims=True)).astype(np.complex64)


@pytest.fixture(scope="module")
def test_x():
    return bandlimited(192, seed=2)


@pytest.fixture(scope="module")
def train_x():
    return bandlimited(768, seed=1)


@pytest.fixture(scope="module")
def codecs(train_x):
    return bl.all_codecs(train_x)


@pytest.fixture(scope="module")
def curves(codecs, test_x):
    """name -> {budget: (snr dB, Encoded)} on the band-limited test frames."""
    out = {}
    for name, c in codecs.items():
        out[name] = {}
        for b in BUDGETS:
            enc = c.encode(test_x, b)
            out[name][b] = (bl.snr_db(test_x, c.decode(enc)), enc)
    return out


def test_registry_contract(codecs, test_x):
    assert set(codecs) == {"sq", "bfp", "resample", "svd"}
    assert set(bl.all_codecs(None)) == {"sq", "bfp", "resample"}
    for name, c in codecs.items():
        xh, bits = c(test_x[:10], 768)
        assert xh.dtype == np.complex64 and xh.shape == (10, N)
        assert isinstance(bits, float) and bits <= 768


def test_bits_within_budget_and_close_to_it(curves):
    for name, per_budget in curves.items():
        for b, (_, enc) in per_budget.items():
            enc.check()                                   # codes fit their widths, every frame <= budget
            assert enc.bits.max() <= b
            assert enc.mean_bits >= 0.8 * b, (name, b, enc.mean_bits)
            assert len(enc.bits) == 192


def test_bit_count_matches_payload(test_x):
    """The bit count is the sum of what is sent: codes x width + side information + configuration index."""
    sq = bl.UniformSQ()
    enc = sq.encode(test_x, 1536)
    nidx = bl.index_bits(len(enc.configs))
    assert np.array_equal(enc.bits, enc.code_len * enc.code_bits + bl.SCALE_BITS + nidx)
    assert enc.side["scale"].dtype == np.float16
    bfp = bl.BlockFloatingPoint()
    enc = bfp.encode(test_x, 1536)
    nidx = bl.index_bits(len(enc.configs))
    n_blocks = -(-(enc.code_len // 2) // bl.BFP_BLOCK)
    assert np.array_equal(enc.bits, enc.code_len * enc.code_bits + bl.BFP_EXP_BITS * n_blocks + nidx)
    assert enc.side["exponent"].max() <= 15


def test_snr_increases_with_budget(curves):
    for name, per_budget in curves.items():
        snrs = [per_budget[b][0] for b in sorted(BUDGETS)]
        assert all(np.diff(snrs) > 0), (name, snrs)


def test_sq_six_db_per_bit(test_x):
    """Full-rate b-bit mid-rise SQ with max-abs scale: noise s^2 4^-b / 3 per component, i.e. 6.02 dB per bit."""
    sq = bl.UniformSQ()
    snrs = {}
    for b in (6, 8, 10, 12):
        budget = 2 * N * b + bl.SCALE_BITS + 4
        enc = sq.encode(test_x, budget)
        assert all(enc.configs[i] == (b, 1, N) for i in np.unique(enc.cfg))    # full rate chosen
        s = enc.side["scale"].astype(np.float64)
        predicted = 10 * np.log10(np.sum(np.abs(test_x) ** 2) / np.sum(2 * N * s ** 2 * 4.0 ** -b / 3))
        snrs[b] = bl.snr_db(test_x, sq.decode(enc))
        assert abs(snrs[b] - predicted) < 0.3, (b, snrs[b], predicted)
    slope = np.polyfit(list(snrs), list(snrs.values()), 1)[0]
    assert abs(slope - 6.02) < 0.15


def test_bfp_six_db_per_bit(test_x):
    """Full-rate BFP: step 2^exponent LSBs of int16 per block, rounding noise step^2/12, 6 dB per mantissa bit."""
    bfp = bl.BlockFloatingPoint()
    snrs = {}
    for w in (5, 7, 9):
        budget = 2 * N * w + bl.BFP_EXP_BITS * 86 + 4
        enc = bfp.encode(test_x, budget)
        assert all(enc.configs[i] == (w, 1, N) for i in np.unique(enc.cfg))
        step = 2.0 ** enc.side["exponent"].astype(np.float64) / 32767.0
        per_block = np.full(step.shape, 24.0)
        per_block[:, -1] = 8                                 # last PRB holds 4 samples
        predicted = 10 * np.log10(np.sum(np.abs(test_x) ** 2) / np.sum(per_block * step ** 2 / 12))
        snrs[w] = bl.snr_db(test_x, bfp.decode(enc))
        assert abs(snrs[w] - predicted) < 0.3, (w, snrs[w], predicted)
    slope = np.polyfit(list(snrs), list(snrs.values()), 1)[0]
    assert abs(slope - 6.02) < 0.3


def test_bfp_exponent_convention():
    """O-RAN WG4 CUS A.1.2 exponent: max(0, bitlen(maxAbs) + 1 - width), maxAbs = max(max, -min - 1)."""
    blk = np.zeros((1, 2, 24), np.int32)
    blk[0, 0, 0] = 1000                      # bitlen 10 -> exponent 3 at width 8; 1000/8 = 125 fits in 8 bits
    blk[0, 1, 5] = -1024                     # -1024 needs no extra bit: maxAbs 1023, bitlen 10 -> exponent 3
    man, exp = bl.bfp_compress(blk, 8)
    assert exp.tolist() == [[3, 3]]
    assert man[0, 0, 0] == 125 and man[0, 1, 5] == -128
    man_f, exp_f = bl.bfp_compress(blk, 8, rounding="floor")   # the reference's arithmetic shift
    assert np.array_equal(man_f, blk >> 3) and np.array_equal(exp_f, exp)
    assert np.array_equal(bl.bfp_decompress(man, exp), blk)
    full = np.full((1, 1, 24), 32767, np.int32)
    assert bl.bfp_compress(full, 1)[1].max() <= 15       # fits the 4-bit field at any width


def test_resample_beats_plain_sq(curves):
    for b in BUDGETS:
        r = curves["resample"][b][0]
        assert r > curves["sq"][b][0] + 1.0, b
        assert r > curves["bfp"][b][0] + 1.0, b


def test_resample_bw99_mode(test_x):
    rs = bl.ResampleSQ(select="bw99")
    for b in (3072, 768, 192):
        enc = rs.encode(test_x, b)
        enc.check()
        assert bl.snr_db(test_x, rs.decode(enc)) > 0


def test_dct_resampling_is_exact_in_band():
    rng = np.random.default_rng(5)
    k = 300
    c = np.zeros((4, N), complex)
    c[:, :k] = rng.standard_normal((4, k)) + 1j * rng.standard_normal((4, k))
    x = bl.spectral._idct_c(c).astype(np.complex64)
    y = bl.dct_resample(x, k)
    assert y.shape == (4, k)
    assert np.allclose(np.mean(np.abs(y) ** 2), np.mean(np.abs(x) ** 2), rtol=1e-4)   # amplitude preserved
    assert np.allclose(bl.dct_upsample(y), x, atol=1e-5)
    assert np.all(bl.occupied_bandwidth(x, 1.0 - 1e-9) <= k / N)


def test_occupied_bandwidth_tracks_true_bandwidth():
    x = bandlimited(64, seed=7, bw=(0.3, 0.3))
    est = bl.occupied_bandwidth(x, 0.99)
    assert 0.27 < np.median(est) < 0.37            # nominal 0.3 with +-20 % raised-cosine edges


def _span(n, rank, seed):
    """Frames lying in a fixed ``rank``-dim real subspace of the 2048-dim [I, Q] space."""
    basis = np.linalg.qr(np.random.default_rng(99).standard_normal((2 * N, rank)))[0]
    a = np.random.default_rng(seed).standard_normal((n, rank)) @ basis.T
    x = (a[:, :N] + 1j * a[:, N:]).astype(np.complex64)
    return x / np.abs(x).max(axis=1, keepdims=True)


def test_svd_full_budget_reconstructs_training_span():
    train = _span(300, 48, seed=1)
    svd = bl.SVDCodec().fit(train)
    budget = 8192
    r, b = svd.choose(budget)
    assert r >= 48 and b >= 14
    for x in (train[:50], _span(50, 48, seed=2)):          # the training frames and fresh frames of the span
        xh, bits = svd(x, budget)
        assert bits <= budget
        assert bl.snr_db(x, xh) > 70
    outside = bandlimited(20, seed=3)
    assert bl.snr_db(outside, svd(outside, budget)[0]) < 10      # it only knows its span


def test_svd_choice_fits_budget(codecs):
    svd = codecs["svd"]
    for b in BUDGETS:
        r, bits = svd.choose(b)
        assert bl.SCALE_BITS + r * bits <= b
        assert bl.SCALE_BITS + r * bits > 0.95 * b


def test_svd_components_for_energy():
    rng = np.random.default_rng(3)
    k = 20
    w = np.linalg.qr(rng.standard_normal((2 * N, k)))[0]
    a = rng.standard_normal((400, k)) @ w.T
    x = (a[:, :N] + 1j * a[:, N:]).astype(np.complex64)
    assert bl.svd_components_for_energy(x, 0.99) == k
    assert bl.svd_components_for_energy(x, 1.0) == k
    # graded complex spectrum with a known answer: energies 2^-i, i = 0..15
    u = np.linalg.qr(rng.standard_normal((200, 16)))[0]
    v = np.linalg.qr(rng.standard_normal((N, 16)) + 1j * rng.standard_normal((N, 16)))[0]
    sig2 = 2.0 ** -np.arange(16)
    xc = (u * np.sqrt(sig2)) @ v.conj().T
    expected = int(np.searchsorted(np.cumsum(sig2), 0.99 * sig2.sum()) + 1)    # = 7
    assert bl.svd_components_for_energy(xc, 0.99, representation="complex") == expected == 7


@pytest.mark.parametrize("shuffle", [False, True])
def test_zstd_lossless_roundtrip(test_x, shuffle):
    res = bl.lossless_reference(test_x[:40], level=19, shuffle=shuffle)
    assert res.roundtrip_ok
    q, peak = bl.to_int16_iq(test_x[:40])
    back = bl.to_int16_iq(res.xhat)[0]
    assert np.array_equal(back, q)                         # xhat is the int16 frame, exactly
    assert bl.snr_db(test_x[:40], res.xhat) > 85           # int16 rounding only
    assert 0.8 * 32768 < res.bits_per_frame < 32768 + 400   # noise-like IQ barely compresses
    tone = np.exp(2j * np.pi * 0.125 * np.arange(N))[None].astype(np.complex64)
    assert bl.lossless_reference(tone).bits_per_frame < 2000   # a periodic frame does


def test_too_small_budget_raises(test_x):
    for c in (bl.UniformSQ(), bl.BlockFloatingPoint(), bl.ResampleSQ()):
        with pytest.raises(ValueError):
            c.encode(test_x[:4], 5)


@settings(max_examples=15, deadline=None)
@given(budget=st.integers(min_value=40, max_value=70000), codec=st.sampled_from(["sq", "bfp", "resample"]))
def test_any_budget_is_respected(budget, codec):
    c = {"sq": bl.UniformSQ(), "bfp": bl.BlockFloatingPoint(), "resample": bl.ResampleSQ()}[codec]
    x = bandlimited(6, seed=budget % 97)
    enc = c.encode(x, budget)
    enc.check()
    xh = c.decode(enc)
    assert xh.shape == x.shape and np.all(np.isfinite(xh))


@pytest.mark.parametrize("make", [bl.UniformSQ, bl.BlockFloatingPoint, bl.ResampleSQ,
                                  lambda: bl.ResampleSQ(select="bw99")])
def test_chunked_encoding_matches_single_pass(test_x, make):
    """The encoder works in chunks of frames; the configuration list must not depend on the chunk."""
    whole, chunked = make(), make()
    chunked.CHUNK = 50
    for budget in (3072, 384):
        a, b = whole.encode(test_x, budget), chunked.encode(test_x, budget)
        assert a.configs == b.configs
        assert np.array_equal(a.cfg, b.cfg) and np.array_equal(a.codes, b.codes) and np.array_equal(a.bits, b.bits)
        assert np.array_equal(whole.decode(a), chunked.decode(b))
