#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""gr-hqarf benchmark: codec throughput per level and batch size against the machine's fp32 GEMM rate,
wire bytes per frame, and (when the blocks are present) flowgraph throughput. Prints figures, asserts nothing.

    ./dev.sh bench [--model paper|default|DIR] [--batches 1,16,64] [--seconds 1.0] [--threads N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shim"), str(ROOT)]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gnuradio import hqarf  # noqa: E402
from gnuradio.hqarf.codec import Codec  # noqa: E402
from gnuradio.hqarf.model import HQARF, HQARFConfig, level_costs  # noqa: E402


def timed(fn, seconds: float) -> float:
    """Mean seconds per call: one warm-up call, then repeat for about `seconds` (at least 2 calls)."""
    fn()
    n, start = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - start < seconds:
        fn()
        n += 1
    return (time.perf_counter() - start) / n


def gemm_gflops(seconds: float) -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    return 2 * 1024 ** 3 / timed(lambda: a @ b, seconds) / 1e9


def load(model: str):
    if model == "paper":
        torch.manual_seed(0)
        net = HQARF(HQARFConfig()).eval()
        return Codec(net), "paper-sized HQARFConfig() (random weights: speed does not depend on them)"
    if model == "default":
        return hqarf.load_codec(None), "shipped default model"
    return hqarf.load_codec(model), model


def flowgraph_figures(codec, args):
    """Encoder alone, decoder alone and vector source -> encoder -> decoder -> ModRec sink per level,
    beside GNU Radio's C++ copy block measured in the same run, and the process's peak memory."""
    import resource

    from gnuradio import blocks, gr
    from gnuradio.hqarf import flowgraphs

    gr.logging().set_default_level(gr.log_levels.warn)  # figures only, no per-run block summaries
    n = 256
    rng = np.random.default_rng(1)
    frames = (rng.standard_normal((n, codec.frame_len)) + 1j * rng.standard_normal((n, codec.frame_len))).astype(np.complex64)
    tb = gr.top_block()
    src = blocks.vector_source_c(frames.reshape(-1).tolist() * 8)
    tb.connect(src, blocks.copy(gr.sizeof_gr_complex), blocks.null_sink(gr.sizeof_gr_complex))
    t = time.perf_counter()
    tb.run()
    passthrough = frames.size * 8 / (time.perf_counter() - t) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        model = tmp
        codec.save(tmp)
        try:
            hqarf.load_classifier(args.model if args.model not in ("paper", "default") else None).save(tmp)
            have_classifier = True
        except hqarf.WeightsError:
            have_classifier = False
        print(f"flowgraph throughput (Msps, {n} frames, frames_per_pdu 16, 1 torch thread per block);"
              f" GNU Radio C++ copy block in the same run: {passthrough:.1f} Msps")
        print(f"{'level':>5} {'encoder':>9} {'decoder':>9} {'enc->dec->ModRec':>17}")
        for level in range(codec.levels):
            enc = flowgraphs.encoder_benchmark(model, level, frames)
            blobs = [codec.compress(frames[i:i + 16], level, sequence=i // 16) for i in range(0, n, 16)]
            dec = flowgraphs.decoder_benchmark(model, blobs)
            full = float("nan")
            if have_classifier:
                loop = flowgraphs.loopback(model, level, frames)
                t = time.perf_counter()
                loop.run()
                full = frames.size / (time.perf_counter() - t) / 1e6
            print(f"{level:>5} {enc['msps']:>9.3f} {dec['msps']:>9.3f} {full:>17.3f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak:.0f} MiB")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="paper", help="paper (default), default (shipped) or a model directory")
    p.add_argument("--batches", default="1,16,64", help="frames per call, comma-separated")
    p.add_argument("--seconds", type=float, default=1.0, help="time spent per measurement")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--no-flowgraph", action="store_true", help="skip the GNU Radio flowgraph figures")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    codec, what = load(args.model)
    rng = np.random.default_rng(0)
    L = codec.frame_len

    gemm = gemm_gflops(args.seconds)
    print(f"model: {what}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"fp32 GEMM 1024^3 on this machine, same run: {gemm:.1f} GFLOP/s\n")

    costs = level_costs(codec.config)
    print("codec throughput (complex samples per second, Msps; % = share of the GEMM rate reached)")
    print(f"{'level':>5} {'batch':>5} {'encode Msps':>12} {'enc %GEMM':>9} {'decode Msps':>12} {'dec %GEMM':>9}"
          f" {'enc MMAC/frame':>14} {'dec MMAC/frame':>14}")
    for level in range(codec.levels):
        c = costs[level]
        for b in batches:
            x = (rng.standard_normal((b, L)) + 1j * rng.standard_normal((b, L))).astype(np.complex64)
            codes = codec.encode(x, level)
            te = timed(lambda: codec.encode(x, level), args.seconds)
            td = timed(lambda: codec.decode(codes, level), args.seconds)
            enc_gflops = b * 2 * c["encode_macs"] / te / 1e9
            dec_gflops = b * 2 * c["decode_macs"] / td / 1e9
            print(f"{level:>5} {b:>5} {b * L / te / 1e6:>12.3f} {100 * enc_gflops / gemm:>8.1f}% "
                  f"{b * L / td / 1e6:>12.3f} {100 * dec_gflops / gemm:>8.1f}% "
                  f"{c['encode_macs'] / 1e6:>14.2f} {c['decode_macs'] / 1e6:>14.2f}")

    print("\nwire bytes per frame (indices + header + per-frame scale + CRC32)")
    print(f"{'level':>5} {'bits/frame':>10} {'1-frame msg':>11} {'16-frame msg':>12} {'overhead@16':>11}"
          f" {'CR cf32 bits':>12} {'CR cf32 msg16':>13}")
    for level in range(codec.levels):
        bits = codec.bits_per_frame(level)
        m1, m16 = codec.message_size(level, 1), codec.message_size(level, 16) / 16
        packed = bits / 8
        print(f"{level:>5} {bits:>10} {m1:>11} {m16:>12.2f} {100 * (m16 - packed) / packed:>10.1f}%"
              f" {codec.compression_ratio(level):>12.1f} {L * 8 / m16:>13.1f}")

    if not args.no_flowgraph:
        flowgraph_figures(codec, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
