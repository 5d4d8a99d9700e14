#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""How the shipped model does on captures: accuracy vs SNR (AWGN alone, and with carrier phase, frequency
offset and timing offset), signals outside the six classes (the "unknown" flag), the salient signal
properties of reconstructions, and five of the six classes as GNU Radio's own modulators make them.
JSON plus plots.

    ./dev.sh env python training/robustness.py --model python/hqarf/models/default --out docs/results
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from training.common import REPO

import numpy as np

from gnuradio.hqarf.classifier import load_classifier
from gnuradio.hqarf.codec import load_codec
from training.data import CLASSES, OUT_OF_SET_TRAIN, DataConfig, Impairments, generate, impair
from training import signal_properties
from training.evaluate import style_accuracy_axes

# Out-of-set torchsig classes (none of them in 6Mod); the report gives each one's flag rate, because
# some are near relatives of an in-set class (ofdm-64 of ofdm-256, 16qam of 32qam_cross).
# The detector's training kinds (new frames of the test split), then kinds it never saw.
TORCHSIG_UNSEEN = ("8ask", "32psk", "16apsk", "4gmsk", "chirpss", "am-usb", "tone", "ofdm-128")
TORCHSIG_OUT_OF_SET = OUT_OF_SET_TRAIN + TORCHSIG_UNSEEN
GNURADIO_OUT_OF_SET = ("gr-qpsk", "gr-8psk", "gr-gmsk", "gr-tone", "gr-noise")


def sweep_impairments(snr: float, with_channel: bool, base: Impairments) -> Impairments:
    """Fixed SNR, no clean share; with_channel adds the trained carrier phase, frequency offset and timing."""
    return dataclasses.replace(base if with_channel else Impairments.none(), snr_db_min=snr, snr_db_max=snr,
                               clean_fraction=0.0, multipath_probability=0.0)


def accuracy_vs_snr(codec, classifiers: dict, x, y, snrs, base: Impairments, say=print) -> dict:
    """Accuracy of every classifier on noisy originals and on their reconstructions at every level."""
    out = {"snr_db": list(map(float, snrs)), "frames_per_point": int(len(x)), "variants": {}}
    for variant, with_channel in (("awgn", False), ("awgn+phase+offset", True)):
        res = {"originals": {n: [] for n in classifiers}, "levels": [{n: [] for n in classifiers}
                                                                      for _ in range(codec.levels)]}
        for snr in snrs:
            frames, _ = impair(x, "test", sweep_impairments(snr, with_channel, base))
            for name, clf in classifiers.items():
                res["originals"][name].append(float((clf.predict(frames) == y).mean()))
            for level in range(codec.levels):
                xhat = codec.decode(codec.encode(frames, level), level)
                for name, clf in classifiers.items():
                    res["levels"][level][name].append(float((clf.predict(xhat) == y).mean()))
            say(f"robustness: {variant} {snr:+.0f} dB: originals "
                + " / ".join(f"{res['originals'][n][-1]:.2f}" for n in classifiers) + " | levels "
                + " ".join("/".join(f"{res['levels'][lv][n][-1]:.2f}" for n in classifiers)
                           for lv in range(codec.levels)))
        out["variants"][variant] = res
    return out


def _modulated(mod, rng, total: int, nbytes: int) -> np.ndarray:
    """`total` complex samples of GNU Radio modulator `mod` (bytes in) fed `nbytes` random bytes."""
    return _through((mod,), rng.integers(0, 256, nbytes).astype(np.uint8), total)


def _through(chain: tuple, values: np.ndarray, total: int) -> np.ndarray:
    """The first `total` complex samples of GNU Radio blocks `chain` fed the bytes `values`."""
    from gnuradio import blocks, gr  # pylint: disable=import-outside-toplevel
    tb = gr.top_block()
    src = blocks.vector_source_b(values.tolist(), False)
    head = blocks.head(gr.sizeof_gr_complex, total)
    sink = blocks.vector_sink_c()
    tb.connect(src, *chain, head, sink)
    tb.run()
    sig = np.asarray(sink.data(), np.complex64)
    if len(sig) < total:
        raise RuntimeError(f"the modulator gave {len(sig)} samples, wanted {total}")
    return sig


def _frames(sig: np.ndarray, n: int, frame_len: int) -> np.ndarray:
    sig = np.asarray(sig[2048:2048 + n * frame_len], np.complex64).reshape(n, frame_len)
    return sig / np.abs(sig).max(-1, keepdims=True)


def gnuradio_frames(kind: str, n: int, frame_len: int, seed: int) -> np.ndarray:
    """Frames made by GNU Radio's own blocks: QPSK / 8PSK (constellation_modulator, RRC, 4 sps),
    GMSK (gmsk_mod, 4 sps), a tone at a random frequency, complex Gaussian noise."""
    from gnuradio import digital  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(seed)
    total = n * frame_len + 4096
    if kind == "gr-noise":
        return _frames(rng.standard_normal(total) + 1j * rng.standard_normal(total), n, frame_len)
    if kind == "gr-tone":
        return _frames(np.concatenate([np.exp(2j * np.pi * (rng.uniform(-0.2, 0.2) * np.arange(frame_len) + rng.random()))
                                       for _ in range(n + 4)]), n, frame_len)
    if kind == "gr-gmsk":
        mod = digital.gmsk_mod(samples_per_symbol=4, bt=0.35)  # takes packed bytes
    else:
        const = digital.constellation_qpsk() if kind == "gr-qpsk" else digital.constellation_8psk()
        mod = digital.generic_mod(const, differential=False, samples_per_symbol=4, excess_bw=0.35)
    return _frames(_modulated(mod, rng, total, total // 4 + 64), n, frame_len)


# 6Mod's classes as GNU Radio's own modulators make them (ofdm-256 has no plain GNU Radio modulator).
GNURADIO_IN_SET = ("4ask", "8pam", "16psk", "32qam_cross", "2fsk")


def _constellation(kind: str) -> list:
    if kind == "4ask":
        p = np.array([-3, -1, 1, 3], complex)
    elif kind == "8pam":
        p = np.linspace(0, 1, 8).astype(complex)  # unipolar, as training/data.py registers it
    elif kind == "16psk":
        p = np.exp(2j * np.pi * np.arange(16) / 16)
    elif kind == "32qam_cross":
        p = np.array([complex(i, q) for i in range(-5, 6, 2) for q in range(-5, 6, 2) if not abs(i) == abs(q) == 5])
    else:
        raise ValueError(f"no GNU Radio constellation for {kind}")
    return (p / np.sqrt(np.mean(np.abs(p) ** 2))).tolist()


# 2fsk as torchsig makes it (rectangular pulses, modulation index 1, or 0.7-1.01): continuous-phase FSK from
# GNU Radio's blocks at FSK_SPS samples per symbol, where its 99 % occupied bandwidth (0.28-0.38 of the band for
# these indices) lies inside torchsig's 2fsk frames' (5-95 %: 0.26-0.42). At 2-4 samples per symbol it would fill
# 0.45-0.95 of the band, wider than any 2fsk frame the models saw (session 20, training/README.md).
FSK_SPS = 6
FSK_INDEX = {2: 1.0, 3: 0.85, 4: 0.7}   # the caller's `sps` slot -> modulation index


def gnuradio_in_set_frames(kind: str, n: int, sps: int, frame_len: int, seed: int) -> np.ndarray:
    """Frames of a 6Mod class from GNU Radio's blocks, `sps` samples per symbol: generic_mod over the
    class's constellation (RRC, excess bandwidth 0.35); 2fsk: continuous-phase FSK with rectangular pulses
    (chunks_to_symbols_bf, repeat, frequency_modulator_fc) at FSK_SPS samples per symbol, modulation index
    FSK_INDEX[sps]."""
    from gnuradio import digital  # pylint: disable=import-outside-toplevel
    total = n * frame_len + 4096
    if kind == "2fsk":
        return _frames(_cpfsk(np.random.default_rng(seed), total, FSK_SPS, FSK_INDEX[sps]), n, frame_len)
    mod = digital.generic_mod(digital.constellation_calcdist(_constellation(kind), [], 1, 1), differential=False,
                              samples_per_symbol=sps, excess_bw=0.35)
    return _frames(_modulated(mod, np.random.default_rng(seed), total, total + 64), n, frame_len)


def gnuradio_gfsk_frames(n: int, sps: int, frame_len: int, seed: int) -> np.ndarray:
    """GNU Radio's gfsk_mod (sensitivity 0.5, BT 0.5: modulation index 0.32 / 0.48 / 0.64 at 2 / 3 / 4 samples
    per symbol, Gaussian pulses): torchsig's 2gfsk, a kind outside 6Mod that the unknown detector learns as
    "none of them". Until session 20 it stood in for 2fsk among the GNU Radio-made 6Mod frames."""
    from gnuradio import digital  # pylint: disable=import-outside-toplevel
    total = n * frame_len + 4096
    mod = digital.gfsk_mod(samples_per_symbol=sps, sensitivity=0.5, bt=0.5)
    return _frames(_modulated(mod, np.random.default_rng(seed), total, total + 64), n, frame_len)


def _cpfsk(rng, total: int, sps: int, index: float) -> np.ndarray:
    """`total` samples of binary continuous-phase FSK with rectangular pulses from GNU Radio's blocks."""
    from gnuradio import analog, blocks, digital, gr  # pylint: disable=import-outside-toplevel
    chain = (digital.chunks_to_symbols_bf([-1.0, 1.0], 1), blocks.repeat(gr.sizeof_float, sps),
             analog.frequency_modulator_fc(np.pi * index / sps))
    return _through(chain, rng.integers(0, 2, total // sps + 8).astype(np.uint8), total)


def gnuradio_in_set(codec, classifiers: dict, per_kind: int, base: Impairments, say=print) -> dict:
    """Accuracy on GNU Radio-made frames of five 6Mod classes (2, 3 and 4 samples per symbol; 2fsk at FSK_SPS
    with three modulation indices; through the receiver model at 20-30 dB), originals and each level's
    reconstructions; per class for the project classifier. Beside them GNU Radio's GFSK (gnuradio_gfsk_frames,
    outside 6Mod): the share the project classifier calls 2fsk and the share its flag calls unknown. The codec
    and the classifiers saw torchsig frames only."""
    third = max(1, per_kind // 3)
    x = np.concatenate([gnuradio_in_set_frames(k, third, sps, codec.frame_len, seed=2000 + 10 * i + sps)
                        for i, k in enumerate(GNURADIO_IN_SET) for sps in (2, 3, 4)])
    y = np.repeat([CLASSES.index(k) for k in GNURADIO_IN_SET], 3 * third)
    receiver = dataclasses.replace(base, snr_db_min=20.0, snr_db_max=30.0, clean_fraction=0.0,
                                   multipath_probability=0.0)
    x = impair(x, "test", receiver)[0]

    def through_codec(frames):
        return {"originals": frames,
                **{f"L{lv}": codec.decode(codec.encode(frames, lv), lv) for lv in range(codec.levels)}}

    out = {"kinds": list(GNURADIO_IN_SET), "frames_per_kind": 3 * third, "rows": {}, "fsk_sps": FSK_SPS,
           "fsk_index": [FSK_INDEX[sps] for sps in (2, 3, 4)]}
    for name, frames in through_codec(x).items():
        pred = {n: c.predict(frames) for n, c in classifiers.items()}
        out["rows"][name] = {"accuracy": {n: float((p == y).mean()) for n, p in pred.items()},
                             "per_class": {k: float((pred["project"][y == CLASSES.index(k)] == CLASSES.index(k)).mean())
                                           for k in GNURADIO_IN_SET}}
        say(f"robustness: GNU Radio-made 6Mod, {name}: " + " / ".join(f"{v:.3f}" for v in out["rows"][name]["accuracy"].values()))
    # GFSK (torchsig's 2gfsk, outside 6Mod): how often the project classifier calls it 2fsk, and flags it unknown
    g = np.concatenate([gnuradio_gfsk_frames(third, sps, codec.frame_len, seed=2500 + sps) for sps in (2, 3, 4)])
    g = impair(g, "test", receiver)[0]
    out["gfsk"] = {"frames": int(len(g)), "rows": {}}
    project = classifiers["project"]
    for name, frames in through_codec(g).items():
        c = project.classify(frames)
        out["gfsk"]["rows"][name] = {"called_2fsk": float((c["prediction"] == CLASSES.index("2fsk")).mean()),
                                     "flagged_unknown": float(c["unknown"].mean())}
    say("robustness: GNU Radio gfsk_mod (2gfsk), called 2fsk / flagged unknown: " + ", ".join(
        f"{k} {v['called_2fsk']:.2f} / {v['flagged_unknown']:.2f}" for k, v in out["gfsk"]["rows"].items()))
    return out


def out_of_set(classifier, x_in, x_val_clean, n_per_kind: int, frame_len: int, base: Impairments, say=print,
               keep: dict | None = None) -> dict:
    """Out-of-set scores (higher = less like a known class) of clean in-set test frames, of in-set frames
    through the receiver model, and of signals outside 6Mod as a receiver sees them (carrier phase,
    frequency offset, 20-30 dB). max_softmax and energy are thresholded at 2 % of clean validation
    frames; mahalanobis and detector (the shipped flag) at the model's own thresholds; the curve is the share flagged
    against the threshold."""
    kinds = {}
    ts = generate("test", n_per_kind, DataConfig(classes=TORCHSIG_OUT_OF_SET), progress=False)[0]
    for i, name in enumerate(TORCHSIG_OUT_OF_SET):
        kinds[name] = ts[i::len(TORCHSIG_OUT_OF_SET)]
    for j, name in enumerate(GNURADIO_OUT_OF_SET):
        kinds[name] = gnuradio_frames(name, n_per_kind, frame_len, seed=1000 + j)
    high_snr = dataclasses.replace(base, snr_db_min=20.0, snr_db_max=30.0, clean_fraction=0.5)
    seen = {name: impair(frames, "test", high_snr)[0] for name, frames in kinds.items()}
    if keep is not None:  # the out-of-set frames as scored, for out_of_set_reconstructed
        keep["frames"] = np.concatenate(list(seen.values()))
    in_impaired = impair(x_in, "test", high_snr)[0]
    sets = {"in_set_clean": x_in, "in_set_impaired_20_30db": in_impaired, **seen}
    all_scores = {name: ood_scores(classifier, frames) for name, frames in sets.items()}
    val_scores = ood_scores(classifier, x_val_clean)
    out = {"kinds": list(kinds), "frames_per_kind": n_per_kind, "scores": {}}
    for score in val_scores:
        threshold = {"mahalanobis": (classifier.manifest.get("out_of_set") or {}).get("threshold"),
                     "detector": classifier.unknown_threshold}.get(score)
        if threshold is None:
            threshold = float(np.quantile(val_scores[score], 0.98))
        row = {"threshold": threshold}
        for name, values in all_scores.items():
            row[name] = float((values[score] > threshold).mean())
        row["out_of_set_flagged_mean"] = float(np.mean([row[k] for k in kinds]))
        for group, names in (("seen_kinds", OUT_OF_SET_TRAIN), ("unseen_torchsig", TORCHSIG_UNSEEN),
                             ("gnuradio", GNURADIO_OUT_OF_SET)):
            row[f"flagged_mean_{group}"] = float(np.mean([row[k] for k in names]))
        pooled_ood = np.concatenate([all_scores[k][score] for k in kinds])
        grid = np.quantile(np.concatenate([pooled_ood, all_scores["in_set_clean"][score]]), np.linspace(0, 1, 41))
        row["curve"] = {"threshold": grid.tolist(),
                        "in_set_clean_flagged": [float((all_scores["in_set_clean"][score] > t).mean()) for t in grid],
                        "out_of_set_flagged": [float((pooled_ood > t).mean()) for t in grid]}
        out["scores"][score] = row
        say(f"robustness: unknown flag by {score} (threshold {threshold:.3g}): clean in-set flagged "
            f"{row['in_set_clean']:.3f}, impaired in-set (20-30 dB) {row['in_set_impaired_20_30db']:.3f}, "
            f"out-of-set flagged {row['out_of_set_flagged_mean']:.3f} (" + ", ".join(f"{k} {row[k]:.2f}" for k in kinds) + ")")
    return out


def reconstructions_flagged(classifier, recon: dict, say=print) -> dict | None:
    """Share of the codec's reconstructions of clean 6Mod frames that the shipped unknown flag (the
    model's own score and threshold) calls none of the six classes, per level: a cloud-side ModRec
    sink sees reconstructions, not originals. None for models without a threshold."""
    if classifier.unknown_threshold is None:
        return None
    out = {str(level): float((classifier.unknown_score(frames) > classifier.unknown_threshold).mean())
           for level, frames in recon.items()}
    say("robustness: reconstructions of clean 6Mod flagged unknown per level " + " ".join(f"L{k} {v:.3f}" for k, v in out.items()))
    return out


def out_of_set_reconstructed(codec, classifier, frames, say=print) -> dict | None:
    """Share of out-of-set frames (out_of_set's, pooled) that the model's flag calls unknown after the codec, per
    level: what a cloud-side sink can still flag. With the codec's rendering and, at the levels of its exemplar
    bank, with the network's rendering too. None for models without a threshold."""
    if classifier.unknown_threshold is None:
        return None

    def flagged(level, exemplars=None):
        out = codec.decode(codec.encode(frames, level), level, exemplars=exemplars)
        return float((classifier.unknown_score(out) > classifier.unknown_threshold).mean())
    result = {"frames": int(len(frames)),
              "rendering": {str(lv): codec.rendering(lv) for lv in range(codec.levels)},
              "flagged": {str(lv): flagged(lv) for lv in range(codec.levels)},
              "flagged_network": {str(lv): flagged(lv, exemplars=False) for lv in range(codec.levels)
                                  if codec.rendering(lv) == "exemplar"}}
    say("robustness: out-of-set frames flagged after the codec " + " ".join(
        f"L{k} {v:.3f}" for k, v in result["flagged"].items()) + "".join(
        f", network rendering at L{k} {v:.3f}" for k, v in result["flagged_network"].items()))
    return result


def class_sources(codec, classifier, x, y, base: Impairments, say=print) -> dict | None:
    """Accuracy of the ModRec sink's two class sources (`classes_from`): the classifier, and the unknown
    detector's outputs for the known classes (one network instead of two), on originals and every level's
    reconstructions, clean and through the receiver model (`base`). The detector saw reconstructions in its
    training, so it is no independent judge of the codec: this says which source a sink may use, not how good
    the codec is. None for models without a detector."""
    if classifier.detector is None:
        return None
    out = {}
    for variant, frames in (("clean", x), ("impaired", impair(x, "test", base)[0])):
        rows = {"originals": frames, **{f"L{lv}": codec.decode(codec.encode(frames, lv), lv) for lv in range(codec.levels)}}
        out[variant] = {name: {"classifier": float((classifier.predict(f) == y).mean()),
                               "detector": float((classifier.classify(f, classes_from="detector")["prediction"] == y).mean())}
                        for name, f in rows.items()}
        say(f"robustness: class sources, {variant}: " + ", ".join(
            f"{name} {r['classifier']:.3f} / {r['detector']:.3f}" for name, r in out[variant].items()))
    return out


def ood_scores(classifier, x) -> dict:
    """Per-frame out-of-set scores, higher = less like a known class: 1 - max softmax, minus the energy
    score log-sum-exp of the logits, and (models with statistics) the Mahalanobis score."""
    logits = classifier.logits(x).astype(np.float64)
    m = logits.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[:, 0]
    out = {"max_softmax": 1 - np.exp(m[:, 0] - lse), "energy": -lse}
    if classifier.out_of_set is not None:
        out["mahalanobis"] = classifier.out_of_set_score(x)
    if classifier.detector is not None:
        out["detector"] = classifier.unknown_score(x)
    return out


def plot_accuracy_vs_snr(result: dict, path: Path):
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    variants = list(result["variants"])
    names = list(result["variants"][variants[0]]["originals"])
    fig, axes = plt.subplots(len(variants), len(names), figsize=(5.2 * len(names), 3.6 * len(variants)), squeeze=False)
    snr = result["snr_db"]
    for i, variant in enumerate(variants):
        res = result["variants"][variant]
        for j, name in enumerate(names):
            ax = axes[i, j]
            ax.plot(snr, res["originals"][name], "k-", lw=2.2, label="noisy originals")
            for level, row in enumerate(res["levels"]):
                ax.plot(snr, row[name], "o-", ms=3, lw=1.2, label=f"level {level}")
            ax.set_title(f"{variant}, {name} classifier", fontsize=9)
            style_accuracy_axes(ax, "SNR (dB, frame power / noise power)", "lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(report: dict) -> str:
    """The report's tables: accuracy vs SNR (every 4 dB), the unknown flag, the signal properties."""
    out = [f"# Real captures: model {report['fingerprint']}", "",
           "Made by `./dev.sh env python training/robustness.py --model MODEL --out DIR` (training/robustness.py).", ""]
    sweep = report["accuracy_vs_snr"]
    snrs = sweep["snr_db"]
    picks = [i for i, v in enumerate(snrs) if int(v) % 4 == 2 or v == snrs[-1]]
    for variant, res in sweep["variants"].items():
        names = list(res["originals"])
        out += [f"## Accuracy vs SNR, {variant} ({sweep['frames_per_point']} frames per point; "
                + " / ".join(names) + " classifier)", "",
                "| SNR (dB) | originals | " + " | ".join(f"L{lv}" for lv in range(len(res["levels"]))) + " |",
                "|---|---|" + "---|" * len(res["levels"])]
        for i in picks:
            cells = [" / ".join(f"{res['originals'][n][i]:.2f}" for n in names)]
            cells += [" / ".join(f"{row[n][i]:.2f}" for n in names) for row in res["levels"]]
            out.append(f"| {snrs[i]:.0f} | " + " | ".join(cells) + " |")
        out.append("")
    ood = report["out_of_set"]
    frames = f"; clean and 20-30 dB 6Mod: {ood['in_set_frames']} test frames each" if ood.get("in_set_frames") else ""
    out += [f"## Unknown flag (share of frames flagged{frames})", "",
            "| score | threshold | clean 6Mod | 6Mod at 20-30 dB | out-of-set mean | detector's training kinds "
            "| unseen torchsig kinds | GNU Radio-made |", "|---|---|---|---|---|---|---|---|"]
    for score, row in ood["scores"].items():
        out.append(f"| {score} | {row['threshold']:.3g} | {row['in_set_clean']:.3f} | {row['in_set_impaired_20_30db']:.3f} "
                   f"| {row['out_of_set_flagged_mean']:.3f} | {row['flagged_mean_seen_kinds']:.3f} "
                   f"| {row['flagged_mean_unseen_torchsig']:.3f} | {row['flagged_mean_gnuradio']:.3f} |")
    out += ["", "Per kind:", "", "| score | " + " | ".join(ood["kinds"]) + " |", "|---|" + "---|" * len(ood["kinds"])]
    for score, row in ood["scores"].items():
        out.append(f"| {score} | " + " | ".join(f"{row[k]:.2f}" for k in ood["kinds"]) + " |")
    if ood.get("reconstructions_flagged"):
        out += ["", "Reconstructions of the clean 6Mod frames flagged unknown by the model's own flag: "
                + ", ".join(f"level {k} {v:.3f}" for k, v in ood["reconstructions_flagged"].items()) + "."]
    rec = ood.get("reconstructed")
    if rec:
        out += ["", f"Out-of-set frames (the {rec['frames']} above) after the codec, flagged unknown by the model's own flag "
                "(what a cloud-side ModRec sink can still flag): " + ", ".join(
                    f"level {k} {v:.3f}" + (" (exemplars)" if rec["rendering"][k] == "exemplar" else "")
                    for k, v in rec["flagged"].items()) + "."
                + (" With the network's rendering instead: " + ", ".join(
                    f"level {k} {v:.3f}" for k, v in rec["flagged_network"].items()) + "." if rec["flagged_network"] else "")]
    gr_in = report.get("gnuradio_in_set")
    if gr_in:
        names = list(next(iter(gr_in["rows"].values()))["accuracy"])
        out += ["", f"## 6Mod frames from GNU Radio's own modulators ({gr_in['frames_per_kind']} per class at 20-30 dB; "
                + " / ".join(names) + " classifier; per class: project)", "",
                "| frames | accuracy | " + " | ".join(gr_in["kinds"]) + " |", "|---|---|" + "---|" * len(gr_in["kinds"])]
        for row_name, row in gr_in["rows"].items():
            out.append(f"| {row_name} | " + " / ".join(f"{v:.3f}" for v in row["accuracy"].values()) + " | "
                       + " | ".join(f"{row['per_class'][k]:.2f}" for k in gr_in["kinds"]) + " |")
        if gr_in.get("fsk_sps"):
            out += ["", f"2fsk: continuous-phase FSK with rectangular pulses (torchsig's 2fsk) from GNU Radio's blocks at "
                    f"{gr_in['fsk_sps']} samples per symbol, modulation index "
                    + " / ".join(f"{h:g}" for h in gr_in["fsk_index"]) + "; the other classes at 2, 3 and 4."]
        if gr_in.get("gfsk"):
            g = gr_in["gfsk"]
            out += ["", f"GNU Radio's gfsk_mod (Gaussian pulses, BT 0.5, modulation index 0.32-0.64: torchsig's 2gfsk, a kind "
                    f"outside 6Mod; {g['frames']} frames), called 2fsk by the project classifier / flagged unknown: "
                    + ", ".join(f"{k} {v['called_2fsk']:.2f} / {v['flagged_unknown']:.2f}" for k, v in g["rows"].items()) + "."]
    sources = report.get("class_sources")
    if sources:
        frames = f"{ood['in_set_frames']} test frames" if ood.get("in_set_frames") else "test frames"
        out += ["", f"## The ModRec sink's class sources ({frames}; `classes_from`: classifier / detector)", "",
                "Accuracy on the unknown flag's in-set frames, clean and through the receiver model; the detector "
                "(one network instead of two) saw reconstructions in training, so this chooses a source, it does not "
                "judge the codec.", "", "| frames | " + " | ".join(sources) + " |", "|---|" + "---|" * len(sources)]
        for name in next(iter(sources.values())):
            out.append(f"| {name} | " + " | ".join(f"{sources[v][name]['classifier']:.3f} / {sources[v][name]['detector']:.3f}"
                                                for v in sources) + " |")
    props = report["signal_properties"]
    out += ["", "## Salient signal properties (means per class: originals, then each level)", "",
            "bandwidth_tracking: Spearman's rank correlation, within each class, between the originals' and the "
            "reconstructions' 90 % occupied bandwidth (1: a reconstruction is wide where its original is; 0: its "
            "bandwidth says nothing of the original's).", ""]
    for name in (*signal_properties.PROPERTIES, "log_spectral_distance_db", "snr_db", "bandwidth_tracking"):
        out += [f"| {name} | " + " | ".join(props["classes"]) + " |", "|---|" + "---|" * len(props["classes"])]
        if name in props["original"]:
            out.append("| original | " + " | ".join(f"{v:.2f}" for v in props["original"][name]) + " |")
        for level, values in props["levels"].items():
            if name in values:  # a report of an older version may not have every property
                out.append(f"| L{level} | " + " | ".join(f"{v:.2f}" for v in values[name]) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def run(model_dir, out_dir: Path, per_class: int = 50, snrs=None, ood_per_kind: int = 100, say=print,
        flag_per_class: int = 300) -> dict:
    """`flag_per_class`: clean (and impaired) 6Mod test frames per class behind the unknown flag's false-flag
    rates (at least `per_class`): a 2 % bar needs more than the accuracy curve's 180 frames to be read."""
    out_dir.mkdir(parents=True, exist_ok=True)
    codec = load_codec(model_dir)
    classifiers = {"project": load_classifier(model_dir)}
    try:
        classifiers["held-out"] = load_classifier(model_dir, kind="heldout_classifier")
    except Exception:  # pylint: disable=broad-except  (older models have none)
        say("robustness: no held-out classifier in this model")
    manifest = codec.manifest.get("provenance", {}).get("data", {})
    base = Impairments(**manifest["impairments"]) if manifest.get("impairments") else Impairments()
    snrs = list(range(-4, 31, 2)) if snrs is None else snrs
    t = time.time()
    x, y = generate("test", per_class, DataConfig(), progress=False)
    report = {"model": str(model_dir), "fingerprint": codec.fingerprint_hex, "impairments": base.to_dict(),
              "classes": list(CLASSES)}
    report["accuracy_vs_snr"] = accuracy_vs_snr(codec, classifiers, x, y, snrs, base, say)
    plot_accuracy_vs_snr(report["accuracy_vs_snr"], out_dir / "accuracy_vs_snr.png")
    xv, _ = generate("val", max(per_class, 100), DataConfig(), progress=False)
    x_flag, y_flag = (x, y) if flag_per_class <= per_class else generate("test", flag_per_class, DataConfig(), progress=False)
    kept: dict = {}
    report["out_of_set"] = out_of_set(classifiers["project"], x_flag, xv, ood_per_kind, codec.frame_len, base, say,
                                      keep=kept)
    report["out_of_set"]["reconstructed"] = out_of_set_reconstructed(codec, classifiers["project"], kept["frames"], say)
    report["out_of_set"]["in_set_frames"] = int(len(x_flag))
    recon = {level: codec.decode(codec.encode(x, level), level) for level in range(codec.levels)}
    report["out_of_set"]["reconstructions_flagged"] = reconstructions_flagged(classifiers["project"], recon, say)
    report["signal_properties"] = signal_properties.property_table(x, y, recon, CLASSES)
    report["class_sources"] = class_sources(codec, classifiers["project"], x_flag, y_flag, base, say)
    report["gnuradio_in_set"] = gnuradio_in_set(codec, classifiers, ood_per_kind, base, say)
    report["seconds"] = round(time.time() - t, 1)
    (out_dir / "robustness.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "robustness.md").write_text(markdown(report))
    say(f"robustness: report in {out_dir} ({report['seconds']} s)")
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="model directory (default: the shipped model)")
    p.add_argument("--out", type=Path, default=Path("robustness"), help="output directory")
    p.add_argument("--per-class", type=int, default=50, help="test frames per class and SNR point (default 50)")
    p.add_argument("--snr", type=float, nargs="+", default=None, help="SNR points in dB (default -4..30 step 2)")
    p.add_argument("--ood-per-kind", type=int, default=100, help="frames of each out-of-set signal (default 100)")
    p.add_argument("--flag-per-class", type=int, default=300,
                   help="clean 6Mod test frames per class behind the unknown flag's false-flag rates (default 300)")
    args = p.parse_args(argv)
    run(args.model, args.out, args.per_class, args.snr, args.ood_per_kind, flag_per_class=args.flag_per_class)
    return 0


if __name__ == "__main__":
    sys.exit(main())
