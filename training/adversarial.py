#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""Adversarial robustness of compress -> reconstruct -> classify: white-box FGSM / PGD on the ModRec
classifier, with the perturbation size given as a perturbation-to-signal power ratio (PSR, dB).

    ./dev.sh env python training/adversarial.py --out docs/adversarial                 # the default grid, shipped model
    ./dev.sh env python training/adversarial.py --model runs/default/model --frames 60 --ratios -30,-20 --out runs/adv
    ./dev.sh env python training/adversarial.py table docs/adversarial/report.json     # its Markdown table again

For every constraint, attack, PSR and level it reports ModRec accuracy on held-out frames:

* non-adaptive: the attack is computed on the classifier alone (it ignores the codec); the attacked
  frames are re-normalised to max |x| = 1, as the sensor does, and go through the public
  `codec.decode(codec.encode(x_adv, level), level)`; `original` is the classifier on the attacked
  frames themselves (no codec), the reference every level is read against.
* adaptive: the attacker knows the codec and attacks the whole pipeline at each level: max-|x|
  normalisation -> `encode_continuous` -> straight-through quantiser (forward pass = the argmax
  codeword, gradient = identity) -> `decode_codewords` (straight-through at its lower
  re-quantisations) -> classifier. The forward pass is the codec's exactly; the accuracy reported is
  still measured through the public encode/decode of the attacked frames.

Budget and steps. The budget of a frame x is a perturbation power ||d||^2 <= rho ||x||^2, rho =
10^(PSR/10), powers averaged over the frame's complex samples.

* constraint `none`: L_inf sign steps on the I and Q components, eps = sqrt(rho P_x / 2) per frame,
  so the corners of the L_inf ball (where FGSM lands: every component +-eps) have exactly the
  budgeted power and every point inside it less. FGSM: d = eps sign(grad). PGD (Madry et al.):
  uniform random start in the ball, `--pgd-steps` K sign steps of 2.5 eps / K, clipped to the ball.
  BIM (`--attacks` bim): PGD without the random start.
* constraint `band`: the perturbation lives in the frame's occupied band: the 99 % power bandwidth
  of the clean frame (ITU-R SM.328's occupied bandwidth: 0.5 % of the power below the lower edge and
  above the upper one), a mask on the frame's DFT bins; the band projection P is the orthogonal
  projector onto those bins. A sign vector has no meaning after a band projection, so these attacks
  are L2: the ball ||d|| <= eps2 = sqrt(rho ||x||^2). FGSM (in the band, i.e. FGM): d = eps2 Pg/||Pg||,
  the exact maximiser of the linearised loss on band and ball; PGD: random start in band and ball,
  K steps of 2.5 eps2 / K along Pg/||Pg||, then d <- P d with its norm clipped to eps2 (the exact
  projection onto band and ball, since P is an orthogonal projector).
* constraint `l2` (not in the default grid): the same L2 attacks with no band, to tell the effect of
  the band from that of the norm.

  Why this constraint: a receiver's channel filter removes whatever lies outside the signal's band
  before any classifier sees it, a transmitter's spectral mask forbids emitting it, and a spectrum
  monitor sees it at once; in-band, the perturbation reads as a little in-channel interference at
  Es/N0 = -PSR, which is what an over-the-air attacker (or a jammer in the channel) can deliver.
  Phase-only or amplitude-only perturbations were not chosen: neither is band-limited (phase or
  envelope modulation of the signal spreads its spectrum), and phase-only is the weaker attacker.

Worst case (mode "worst case", attack "any"): a frame counts as right at a level only if it is
right after every attack of the grid at that constraint and PSR, non-adaptive and adaptive (and, for
"no codec", after every attack on the classifier): the robust accuracy against all the attacks run.

PGD keeps, per frame, the iterate of highest loss (non-adaptive) or, adaptive, stops a frame at the
first iterate the pipeline misclassifies (its accuracy is decided; the compute goes to the others).
Random starts are seeded: the run is deterministic for a given model, data and grid.

Outputs in --out: report.json (every figure, the measured PSR and out-of-band share of every
perturbation set, times), accuracy_vs_psr.png, summary.md (the tables).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gnuradio import hqarf
from gnuradio.hqarf.frames import from_iq, to_iq
from training.common import comma_list, git_commit
from training.data import DataConfig, generate

DEFAULT_RATIOS = (-40.0, -30.0, -20.0, -10.0)
DEFAULT_FRAMES = 120
DEFAULT_PGD_STEPS = 10
CONSTRAINTS = ("none", "band", "l2")
DEFAULT_CONSTRAINTS = ("none", "band")
ATTACKS = ("fgsm", "pgd", "bim")
BATCH = 60
OCCUPIED_FRACTION = 0.99


# -- budget and constraint ----------------------------------------------------------------------
def frame_power(iq: torch.Tensor) -> torch.Tensor:
    """(B, 2, L) -> (B,) mean complex power |x|^2 over the frame."""
    return iq.pow(2).sum(1).mean(-1)


def occupied_band(iq: torch.Tensor, fraction: float = OCCUPIED_FRACTION) -> torch.Tensor:
    """(B, 2, L) frames -> (B, L) bool mask over DFT bins (torch.fft order): the contiguous bins
    between the frequencies below which (1 - fraction) / 2 and above which (1 - fraction) / 2 of the
    frame's power lies (the occupied bandwidth of ITU-R SM.328; 99 % by default)."""
    z = torch.complex(iq[:, 0].double(), iq[:, 1].double())
    psd = torch.fft.fftshift(torch.fft.fft(z).abs().pow(2), dim=-1)  # bins from -fs/2 to fs/2
    cum = psd.cumsum(-1)
    total = cum[:, -1:]
    tail = (1.0 - fraction) / 2.0
    lo = torch.searchsorted(cum, tail * total)                       # first bin reaching the lower tail
    hi = torch.searchsorted(cum, (1.0 - tail) * total)               # first bin reaching the upper one
    hi = torch.minimum(hi, torch.full_like(hi, z.shape[-1] - 1))
    k = torch.arange(z.shape[-1], device=iq.device)[None]
    return torch.fft.ifftshift((k >= lo) & (k <= hi), dim=-1)


def band_project(d: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Orthogonal projection of (B, 2, L) perturbations onto the DFT bins of `mask` (B, L)."""
    z = torch.complex(d[:, 0], d[:, 1])
    z = torch.fft.ifft(torch.fft.fft(z) * mask)
    return torch.stack([z.real, z.imag], 1).to(d.dtype)


def out_of_band_fraction(d: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) share of each perturbation's energy in the DFT bins outside `mask`."""
    e = torch.fft.fft(torch.complex(d[:, 0].double(), d[:, 1].double())).abs().pow(2)
    return (e * ~mask).sum(-1) / e.sum(-1).clamp_min(1e-300)


class Budget:
    """The perturbation set of a batch of frames at one PSR: direction of a step and projection."""

    def __init__(self, x: torch.Tensor, ratio_db: float, constraint: str = "none"):
        if constraint not in CONSTRAINTS:
            raise ValueError(f"unknown constraint {constraint!r}; expected one of {CONSTRAINTS}")
        self.constraint = constraint
        rho = 10.0 ** (ratio_db / 10.0)
        power = frame_power(x)
        self.mask = occupied_band(x) if constraint == "band" else None
        self.linf = constraint == "none"
        if self.linf:
            # every component +-eps: |d_n|^2 = 2 eps^2 = rho P_x, the budget exactly at the ball's corners
            self.eps = torch.sqrt(rho * power / 2.0)[:, None, None]
        else:
            self.eps = torch.sqrt(rho * power * x.shape[-1])[:, None, None]   # L2 radius

    def subset(self, idx: torch.Tensor) -> "Budget":
        out = object.__new__(Budget)
        out.constraint, out.linf, out.eps = self.constraint, self.linf, self.eps[idx]
        out.mask = None if self.mask is None else self.mask[idx]
        return out

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        if self.linf:
            return g.sign()
        pg = band_project(g, self.mask) if self.mask is not None else g
        return pg / pg.flatten(1).norm(dim=1).clamp_min(1e-30)[:, None, None]

    def project(self, d: torch.Tensor) -> torch.Tensor:
        if self.linf:
            return torch.maximum(torch.minimum(d, self.eps), -self.eps)
        if self.mask is not None:
            d = band_project(d, self.mask)
        norm = d.flatten(1).norm(dim=1)[:, None, None]
        return d * torch.clamp(self.eps / norm.clamp_min(1e-30), max=1.0)

    def random_start(self, like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.linf:
            u = torch.rand(like.shape, generator=generator, dtype=like.dtype)
            return (2 * u - 1) * self.eps
        d = torch.randn(like.shape, generator=generator, dtype=like.dtype)
        if self.mask is not None:
            d = band_project(d, self.mask)
        d = d / d.flatten(1).norm(dim=1).clamp_min(1e-30)[:, None, None]
        r = torch.rand((like.shape[0], 1, 1), generator=generator, dtype=like.dtype)
        return d * self.eps * r


# -- attacks ------------------------------------------------------------------------------------
def _loss(forward, x, y):
    logits = forward(x)
    return F.cross_entropy(logits, y, reduction="none"), logits


def fgsm(forward, x: torch.Tensor, y: torch.Tensor, budget: Budget) -> torch.Tensor:
    """One step of the full budget along the loss gradient's direction (its sign with constraint
    `none`): returns the perturbation d, (B, 2, L)."""
    d = torch.zeros_like(x, requires_grad=True)
    loss, _ = _loss(forward, x + d, y)
    (g,) = torch.autograd.grad(loss.sum(), d)
    return budget.project(budget.eps * budget.direction(g)).detach()


def pgd(forward, x: torch.Tensor, y: torch.Tensor, budget: Budget, steps: int, random_start: bool = True,
        generator: torch.Generator | None = None, stop_when_wrong: bool = False) -> torch.Tensor:
    """Projected gradient ascent on the cross-entropy: `steps` steps of 2.5 eps / steps (BIM with
    random_start False). Returns each frame's iterate of highest loss or, with `stop_when_wrong`, the
    first one `forward` misclassifies (that frame is attacked no further)."""
    if steps < 1:
        raise ValueError("PGD needs at least one step")
    alpha = 2.5 * budget.eps / steps
    delta = budget.random_start(x, generator) if random_start else torch.zeros_like(x)
    best = delta.clone()
    best_loss = torch.full((len(x),), -math.inf, dtype=x.dtype)
    active = torch.arange(len(x))
    for k in range(steps + 1):
        if len(active) == 0:
            break
        d = delta[active].clone().requires_grad_(True)
        loss, logits = _loss(forward, x[active] + d, y[active])
        with torch.no_grad():
            better = loss.detach() > best_loss[active]
            wrong = logits.argmax(-1) != y[active]
            keep = (wrong | better) if stop_when_wrong else better
            best[active[keep]] = d.detach()[keep]
            best_loss[active[keep]] = loss.detach()[keep]
        if k == steps:
            break
        (g,) = torch.autograd.grad(loss.sum(), d)
        with torch.no_grad():
            sub = budget.subset(active)
            delta[active] = sub.project(d.detach() + alpha[active] * sub.direction(g))
            if stop_when_wrong:
                active = active[~wrong]
    return best.detach()


def classifier_forward(net):
    return net


def pipeline_forward(codec, net, level: int):
    """Differentiable sensor -> codec -> classifier path at `level` (the adaptive attacker's model):
    max-|x| normalisation, encode_continuous, straight-through quantiser, decode_codewords, classifier."""
    m = codec.model
    q = m.levels[level].quantizer

    def forward(iq):
        peak = iq.pow(2).sum(1).sqrt().amax(-1).clamp_min(1e-12)[:, None, None]
        z_e, source = m._encode_path(iq / peak, level)
        z_q = z_e + (q.lookup(q.indices(z_e)) - z_e).detach()
        token = m.token(source) if level in m.config.semantic_levels else None
        return net(m.decode_codewords(z_q, level, token))

    return forward


def attack(method: str, forward, x, y, budget, steps, generator, stop_when_wrong=False):
    if method == "fgsm":
        return fgsm(forward, x, y, budget)
    if method in ("pgd", "bim"):
        return pgd(forward, x, y, budget, steps, random_start=method == "pgd", generator=generator,
                   stop_when_wrong=stop_when_wrong)
    raise ValueError(f"unknown attack {method!r}; expected one of {ATTACKS}")


def batched_attack(method, forward, x, y, ratio_db, constraint, steps, seed, stop_when_wrong=False):
    """Attack (N, 2, L) frames in batches of BATCH; returns the perturbations and their measured
    PSR (dB) and out-of-band energy share, per frame."""
    gen = torch.Generator().manual_seed(seed)
    out, psr, oob = [], [], []
    for i in range(0, len(x), BATCH):
        xb, yb = x[i:i + BATCH], y[i:i + BATCH]
        budget = Budget(xb, ratio_db, constraint)
        d = attack(method, forward, xb, yb, budget, steps, gen, stop_when_wrong)
        out.append(d)
        psr.append(10 * torch.log10(frame_power(d).clamp_min(1e-30) / frame_power(xb)))
        oob.append(out_of_band_fraction(d, budget.mask if budget.mask is not None else occupied_band(xb)))
    return torch.cat(out), torch.cat(psr), torch.cat(oob)


# -- evaluation ---------------------------------------------------------------------------------
def unit(frames: np.ndarray) -> np.ndarray:
    """Each frame scaled to max |x| = 1, as the sensor does before encoding."""
    peak = np.abs(frames).max(axis=1, keepdims=True)
    return (frames / np.where(peak > 0, peak, 1)).astype(np.complex64)


def correct(clf, frames, y) -> np.ndarray:
    return clf.predict(frames) == y


def accuracy(clf, frames, y) -> float:
    return float(correct(clf, frames, y).mean())


def through_codec(codec, frames, level) -> np.ndarray:
    return codec.decode(codec.encode(unit(frames), level), level)


def _stats(psr, oob) -> dict:
    return {"psr_db_mean": float(psr.mean()), "psr_db_max": float(psr.max()),
            "out_of_band_mean": float(oob.mean()), "out_of_band_max": float(oob.max())}


def run(codec, clf, x: np.ndarray, y: np.ndarray, ratios, attacks=("fgsm", "pgd"), constraints=DEFAULT_CONSTRAINTS,
        steps: int = DEFAULT_PGD_STEPS, adaptive: bool = True, log=print) -> dict:
    """The whole grid on frames x (complex (N, L), max |x| = 1) with labels y; returns the report."""
    net = clf.net.eval()
    codec.model.eval()
    for p in list(net.parameters()) + list(codec.model.parameters()):
        p.requires_grad_(False)
    levels = list(range(codec.levels))
    iq = to_iq(x, "cpu")
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    t0, c0 = time.time(), time.process_time()
    clean = {"original": accuracy(clf, x, y),
             "levels": [accuracy(clf, through_codec(codec, x, lv), y) for lv in levels]}
    log(f"clean: original {clean['original']:.3f}, levels " + " ".join(f"{a:.3f}" for a in clean["levels"]))
    results = []
    # per (constraint, PSR): frames still classified right after every attack run (no codec; each level)
    survive: dict = {}
    for ci, constraint in enumerate(constraints):
        for ai, method in enumerate(attacks):
            for ri, ratio in enumerate(ratios):
                seed = 1000 * ci + 100 * ai + ri
                t, c = time.time(), time.process_time()
                d, psr, oob = batched_attack(method, net, iq, yt, ratio, constraint, steps, seed)
                x_adv = from_iq(iq + d)
                ok_orig = correct(clf, x_adv, y)
                ok = [correct(clf, through_codec(codec, x_adv, lv), y) for lv in levels]
                prev = survive.get((constraint, ratio), (True, [True] * len(levels)))
                survive[(constraint, ratio)] = (prev[0] & ok_orig, [a & b for a, b in zip(prev[1], ok)])
                row = {"constraint": constraint, "attack": method, "mode": "non-adaptive", "ratio_db": ratio,
                       "original": float(ok_orig.mean()), "levels": [float(a.mean()) for a in ok],
                       **_stats(psr, oob), "seconds": round(time.time() - t, 1),
                       "cpu_seconds": round(time.process_time() - c, 1)}
                results.append(row)
                log(f"{constraint:4s} {method:4s} non-adaptive {ratio:6.1f} dB: original {row['original']:.3f}, "
                    f"levels " + " ".join(f"{a:.3f}" for a in row["levels"]) + f" ({row['cpu_seconds']} s CPU)")
                if not adaptive:
                    continue
                t, c = time.time(), time.process_time()
                row = {"constraint": constraint, "attack": method, "mode": "adaptive", "ratio_db": ratio,
                       "levels": [], "original_per_level": [], "psr_db_max": -math.inf, "out_of_band_max": 0.0}
                psr_sum = oob_sum = 0.0
                for lv in levels:
                    fwd = pipeline_forward(codec, net, lv)
                    d, psr, oob = batched_attack(method, fwd, iq, yt, ratio, constraint, steps, seed + 10 * (lv + 1),
                                                 stop_when_wrong=True)
                    x_adv = from_iq(iq + d)
                    ok = correct(clf, through_codec(codec, x_adv, lv), y)
                    survive[(constraint, ratio)][1][lv] &= ok
                    row["levels"].append(float(ok.mean()))
                    row["original_per_level"].append(accuracy(clf, x_adv, y))   # the same frames, no codec
                    row["psr_db_max"] = max(row["psr_db_max"], float(psr.max()))
                    row["out_of_band_max"] = max(row["out_of_band_max"], float(oob.max()))
                    psr_sum, oob_sum = psr_sum + float(psr.mean()), oob_sum + float(oob.mean())
                row["psr_db_mean"] = psr_sum / len(levels)
                row["out_of_band_mean"] = oob_sum / len(levels)
                row["seconds"] = round(time.time() - t, 1)
                row["cpu_seconds"] = round(time.process_time() - c, 1)
                results.append(row)
                log(f"{constraint:4s} {method:4s} adaptive     {ratio:6.1f} dB: levels "
                    + " ".join(f"{a:.3f}" for a in row["levels"]) + f" ({row['cpu_seconds']} s CPU)")
    for (constraint, ratio), (ok_orig, ok) in survive.items():
        results.append({"constraint": constraint, "attack": "any", "mode": "worst case", "ratio_db": ratio,
                        "original": float(ok_orig.mean()), "levels": [float(a.mean()) for a in ok]})
    return {"frames": int(len(x)), "classes": list(clf.classes), "levels": len(levels), "ratios_db": list(ratios),
            "attacks": list(attacks), "constraints": list(constraints), "pgd_steps": steps,
            "pgd_step_size": "2.5 eps / steps", "occupied_fraction": OCCUPIED_FRACTION, "clean": clean,
            "results": results, "seconds": round(time.time() - t0, 1),
            "cpu_seconds": round(time.process_time() - c0, 1), "threads": torch.get_num_threads()}


# -- report -------------------------------------------------------------------------------------
def table(report: dict) -> str:
    """Markdown: one row per (constraint, attack, mode, PSR), one column per level."""
    n = report["levels"]
    clean = report["clean"]
    head = "| constraint | attack | mode | PSR (dB) | no codec | " + " | ".join(f"L{lv}" for lv in range(n)) + " |"
    out = [head, "|" + "---|" * (5 + n),
           "| - | - | clean | - | " + f"{clean['original']:.3f} | " + " | ".join(f"{a:.3f}" for a in clean["levels"]) + " |"]
    for r in report["results"]:
        ref = f"{r['original']:.3f}" if "original" in r else "-"
        out.append(f"| {r['constraint']} | {r['attack']} | {r['mode']} | {r['ratio_db']:g} | {ref} | "
                   + " | ".join(f"{a:.3f}" for a in r["levels"]) + " |")
    return "\n".join(out) + "\n"


def plot(report: dict, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cons, atts, n = report["constraints"], report["attacks"], report["levels"]
    modes = [m for m in ("non-adaptive", "adaptive") if any(r["mode"] == m for r in report["results"])]
    ratios = report["ratios_db"]
    step = (ratios[1] - ratios[0]) if len(ratios) > 1 else 10.0
    xs = [ratios[0] - step] + list(ratios)        # the clean figures drawn one grid step to the left
    labels = ["clean"] + [f"{r:g}" for r in ratios]
    panels = [(a, mo) for a in atts for mo in modes] + [("any", "worst case")]
    fig, axes = plt.subplots(len(cons), len(panels), figsize=(3.3 * len(panels), 3.0 * len(cons)),
                             squeeze=False, sharey=True)
    colors = plt.cm.viridis(np.linspace(0, 0.9, n))
    for i, c in enumerate(cons):
        for j, (a, mode) in enumerate(panels):
            ax = axes[i, j]
            rows = sorted((r for r in report["results"] if (r["constraint"], r["attack"], r["mode"]) == (c, a, mode)),
                          key=lambda r: r["ratio_db"])
            ref_mode = "non-adaptive" if mode == "adaptive" else mode
            ref = sorted((r for r in report["results"] if (r["constraint"], r["attack"], r["mode"]) ==
                          (c, a, ref_mode)), key=lambda r: r["ratio_db"])
            ax.plot(xs, [report["clean"]["original"]] + [r["original"] for r in ref], "k-", lw=2.2,
                    label="attacked originals (no codec)")
            for lv in range(n):
                ax.plot(xs, [report["clean"]["levels"][lv]] + [r["levels"][lv] for r in rows], "o-", ms=3,
                        color=colors[lv], label=f"level {lv}")
            ax.axhline(1 / len(report["classes"]), color="grey", lw=0.8, ls=":")
            ax.set_xticks(xs, labels, fontsize=7)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            ax.set_title(f"{'all attacks' if a == 'any' else a.upper()} {mode}, constraint {c}", fontsize=8)
            if i == len(cons) - 1:
                ax.set_xlabel("perturbation-to-signal power ratio (dB)", fontsize=7)
            if j == 0:
                ax.set_ylabel("ModRec accuracy", fontsize=8)
    axes[0, 0].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _names(text: str, allowed) -> list:
    names = comma_list(text)
    bad = [v for v in names if v not in allowed]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(allowed)}, got {text!r}")
    return names


def load_frames(args, clf, frame_len):
    """Held-out frames, the same number per class, each at max |x| = 1."""
    n_classes = len(clf.classes)
    per_class = max(1, -(-args.frames // n_classes))
    if args.data:
        with np.load(args.data) as f:
            x, y = np.asarray(f["x"]), np.asarray(f["y"], dtype=np.int64)
        pick = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(n_classes)])
        x, y = x[np.sort(pick)], y[np.sort(pick)]
    else:
        config = DataConfig(frame_len=frame_len, classes=tuple(clf.classes))
        x, y = generate("test", per_class, config, cache_dir=args.data_cache, progress=not args.quiet)
    return unit(x), y


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 1):   # "--ratios -30,-20": a value argparse would take for an option
        if argv[i] == "--ratios" and argv[i + 1][:1] == "-" and argv[i + 1][1:2].isdigit():
            argv[i:i + 2] = [f"--ratios={argv[i + 1]}", ""]
    argv = [a for a in argv if a != ""]
    if argv[:1] == ["table"]:
        p = argparse.ArgumentParser(prog="adversarial.py table", description="Markdown table of a report.json")
        p.add_argument("report", type=Path)
        a = p.parse_args(argv[1:])
        print(table(json.loads(a.report.read_text())), end="")
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="model directory (codec + classifier; default: shipped)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help=f"held-out test frames, rounded up to a multiple of the classes (default {DEFAULT_FRAMES})")
    p.add_argument("--ratios", type=lambda s: comma_list(s, float), default=list(DEFAULT_RATIOS),
                   help="perturbation-to-signal power ratios in dB, comma-separated (default -40,-30,-20,-10)")
    p.add_argument("--attacks", type=lambda s: _names(s, ATTACKS), default=["fgsm", "pgd"],
                   help="comma-separated subset of fgsm,pgd,bim (default fgsm,pgd)")
    p.add_argument("--constraints", type=lambda s: _names(s, CONSTRAINTS), default=list(DEFAULT_CONSTRAINTS),
                   help="comma-separated subset of none,band,l2 (default none,band)")
    p.add_argument("--pgd-steps", type=int, default=DEFAULT_PGD_STEPS, help=f"PGD / BIM steps (default {DEFAULT_PGD_STEPS})")
    p.add_argument("--no-adaptive", action="store_true", help="skip the adaptive (through-the-codec) attacks")
    p.add_argument("--out", type=Path, default=Path("runs/adversarial"), help="output directory (default runs/adversarial)")
    p.add_argument("--data", type=Path, default=None, help="frames from an .npz with x (complex, N x L) and y "
                   "(labels) instead of the 6Mod test split")
    p.add_argument("--data-cache", type=Path, default=None, help="6Mod cache directory (default .cache/data)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no data-generation progress bar")
    args = p.parse_args(argv)
    if not args.ratios:
        p.error("--ratios is empty")
    if args.frames < 1 or args.pgd_steps < 1:
        p.error("--frames and --pgd-steps must be positive")
    torch.set_num_threads(args.threads)
    codec = hqarf.load_codec(args.model)
    clf = hqarf.load_classifier(args.model)
    x, y = load_frames(args, clf, codec.frame_len)
    print(f"{len(x)} frames, model {args.model or 'shipped default'} (codec {codec.fingerprint_hex}), "
          f"{torch.get_num_threads()} thread(s)", flush=True)
    report = run(codec, clf, x, y, args.ratios, args.attacks, args.constraints, args.pgd_steps,
                 adaptive=not args.no_adaptive, log=lambda s: print(s, flush=True))
    report["model"] = {"dir": str(args.model) if args.model else "shipped default",
                       "codec_fingerprint": codec.fingerprint_hex,
                       "classifier_fingerprint": clf.manifest.get("fingerprint")}
    report["data"] = str(args.data) if args.data else "6Mod test split (training.data.generate)"
    report["command"] = "python training/adversarial.py " + " ".join(argv)
    report["commit"] = git_commit()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "summary.md").write_text(f"# Adversarial robustness\n\n`{report['command']}`\n\n"
                                         f"{report['frames']} frames; {report['seconds']} s wall, "
                                         f"{report['cpu_seconds']} s CPU\n\n" + table(report))
    plot(report, args.out / "accuracy_vs_psr.png")
    print(f"report in {args.out} ({report['seconds']} s, {report['cpu_seconds']} s CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
