#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-3.0-or-later
"""gr-hqarf benchmark: codec throughput per level, batch size, thread count and runtime, each figure
beside the fp32 GEMM rate measured just before it; wire bytes per frame; flowgraph throughput of the
encoder, decoder and modrec_sink blocks and of the chain, beside GNU Radio's C++ copy block.
Every figure is the median of --repeats timed runs. Prints figures, asserts nothing.

    ./dev.sh bench [--model default|paper|DIR] [--batches 1,16,64,256] [--threads 1,2]
                   [--runtimes torch,torchscript,onnx] [--repeats 5] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time


import numpy as np
import torch
from torch import nn

from gnuradio import hqarf
from gnuradio.hqarf.codec import Codec
from gnuradio.hqarf.costs import level_costs
from gnuradio.hqarf.model import HQARF, HQARFConfig
from gnuradio.hqarf.runtime import torch_threads

# Rates the issue asks for (Msps): encoder / decoder at levels 0 and 4, modrec_sink, chain.
TARGETS = {"encoder": {0: 10.0, 4: 3.0}, "decoder": {0: 3.0, 4: 1.0}}
SHARE = 0.30  # share of the same-run GEMM rate a well-batched network can be expected to reach


def median_time(fn, repeats: int, min_seconds: float) -> float:
    """Median seconds per call over `repeats` timed runs (each at least one call and about
    `min_seconds` long), after one warm-up call."""
    fn()
    runs = []
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while n < 1 or time.perf_counter() - start < min_seconds:
            fn()
            n += 1
        runs.append((time.perf_counter() - start) / n)
    return statistics.median(runs)


def gemm_gflops(threads: int, device, repeats: int = 3) -> float:
    """fp32 GEMM 1024^3 rate (GFLOP/s) now, under `threads` torch threads: the roofline beside a figure."""
    a = torch.randn(1024, 1024, device=device)
    b = torch.randn(1024, 1024, device=device)

    def run():
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
    with torch_threads(threads):
        return 2 * 1024 ** 3 / median_time(run, repeats, 0.0) / 1e9


def classifier_macs(clf) -> int:
    macs = {"n": 0}

    def hook(mod, inp, outp):
        if isinstance(mod, nn.Conv1d):
            macs["n"] += outp.shape[-1] * mod.out_channels * (mod.in_channels // mod.groups) * mod.kernel_size[0]
        elif isinstance(mod, nn.Linear):
            macs["n"] += mod.in_features * mod.out_features
    handles = [m.register_forward_hook(hook) for m in clf.net.modules() if isinstance(m, (nn.Conv1d, nn.Linear))]
    with torch.no_grad():
        clf.net(torch.zeros(1, 2, clf.frame_len, device=clf.device))
    for h in handles:
        h.remove()
    return macs["n"]


def load(model: str, device: str):
    if model == "paper":
        torch.manual_seed(0)
        net = HQARF(HQARFConfig()).eval()
        return Codec(net, device=device), "paper-sized HQARFConfig() (random weights: speed does not depend on them)"
    if model == "default":
        return hqarf.load_codec(None, device=device), "shipped default model"
    return hqarf.load_codec(model, device=device), model


def codec_figures(codec, costs, args, device, rng):
    L = codec.frame_len
    best = {}  # (kind, level) -> (share, msps, batch, runtime, threads)
    print("codec throughput (Msps = complex samples per second; %GEMM = share of the fp32 GEMM rate measured")
    print(f"just before the row, at the row's thread count; MACs include the quantisers; median of {args.repeats};")
    print("with n threads, n workers of one thread each, each a forward pass of 'batch' frames per call)")
    print("exemplar: at a level the model decodes with exemplars (hqarf.exemplars), the share of the decode time")
    print("spent choosing them (ExemplarBank.render timed alone on the network's frames, on one thread; '-' at the")
    print("network's levels)")
    print(f"{'runtime':>11} {'thr':>3} {'level':>5} {'batch':>5} {'GEMM GF/s':>9} {'encode Msps':>11} {'enc %GEMM':>9}"
          f" {'decode Msps':>11} {'dec %GEMM':>9} {'exemplar':>8}")
    for threads in args.threads:
        for runtime in args.runtimes:
            try:
                c = codec.with_runtime(runtime, threads)
            except ValueError as exc:
                print(f"{runtime:>11} skipped: {exc}")
                continue
            for level in args.levels:
                cost = costs[level]
                for b in args.batches:
                    # one forward pass of `b` frames per call and worker: the batch is the figure's subject
                    # (with n threads, n workers each take a batch: hqarf.runtime.Runtime.map)
                    n = b * max(1, threads)
                    x = (rng.standard_normal((n, L)) + 1j * rng.standard_normal((n, L))).astype(np.complex64)
                    codes = codec.encode(x, level)
                    c.chunk = b
                    gemm = gemm_gflops(threads, device)
                    te = median_time(lambda: c.encode(x, level), args.repeats, args.min_seconds)
                    td = median_time(lambda: c.decode(codes, level), args.repeats, args.min_seconds)
                    exemplar = "-"
                    if c.rendering(level) == "exemplar":  # the step itself, timed on the network's frames
                        net = c.decode(codes, level, exemplars=False)
                        tx = median_time(lambda: c.exemplars.render(net, codes[:, -1], level), args.repeats,
                                         args.min_seconds)
                        exemplar = f"{100 * tx / td:.1f}%"
                    enc_share = n * 2 * cost["encode_total_macs"] / te / 1e9 / gemm
                    dec_share = n * 2 * cost["decode_total_macs"] / td / 1e9 / gemm
                    for kind, share, t in (("encode", enc_share, te), ("decode", dec_share, td)):
                        if share > best.get((kind, level), (0,))[0]:
                            best[(kind, level)] = (share, n * L / t / 1e6, b, runtime, threads, gemm)
                    print(f"{runtime:>11} {threads:>3} {level:>5} {b:>5} {gemm:>9.1f} {n * L / te / 1e6:>11.3f}"
                          f" {100 * enc_share:>8.1f}% {n * L / td / 1e6:>11.3f} {100 * dec_share:>8.1f}%"
                          f" {exemplar:>8}", flush=True)
    print("\nbest batch per level (highest share of the same-row GEMM rate)")
    print(f"{'level':>5} {'kind':>6} {'share':>6} {'Msps':>7} {'batch':>5} {'runtime':>11} {'thr':>3}"
          f" {'MMAC/frame':>10} {'of which quantiser':>18}")
    for level in args.levels:
        for kind in ("encode", "decode"):
            if (kind, level) not in best:
                continue
            share, msps, b, runtime, threads, _ = best[(kind, level)]
            cost = costs[level]
            print(f"{level:>5} {kind:>6} {100 * share:>5.1f}% {msps:>7.3f} {b:>5} {runtime:>11} {threads:>3}"
                  f" {cost[kind + '_total_macs'] / 1e6:>10.2f} {cost[kind + '_quantizer_macs'] / 1e6:>18.2f}")
    return best


def budgets(costs, best, gemm_1thread, clf_macs, args, detector_macs=0):
    """What the must-show rates need: MACs per frame at SHARE of the same-run 1-thread GEMM rate."""
    L = 1024
    print(f"\nMAC budget per frame for the target rates at {100 * SHARE:.0f}% of a {gemm_1thread:.1f} GFLOP/s "
          f"(1 thread, this run) GEMM rate, against the shipped architecture")
    print("(a block on num_threads=2, two workers, has twice the budget: 'over by, 2 cores')")
    print(f"{'block':>8} {'level':>5} {'target Msps':>11} {'budget MMAC':>11} {'has MMAC':>8} {'over by':>7}"
          f" {'over by, 2 cores':>16}")
    for block, kind in (("encoder", "encode"), ("decoder", "decode")):
        for level, target in TARGETS[block].items():
            if level >= len(costs):
                continue
            budget = SHARE * gemm_1thread * 1e9 / 2 / (target * 1e6 / L)
            has = costs[level][kind + "_total_macs"]
            print(f"{block:>8} {level:>5} {target:>11.1f} {budget / 1e6:>11.2f} {has / 1e6:>8.2f} {has / budget:>6.1f}x"
                  f" {has / budget / 2:>15.1f}x")
    budget = SHARE * gemm_1thread * 1e9 / 2 / (2.0e6 / L)
    print(f"{'modrec':>8} {'-':>5} {2.0:>11.1f} {budget / 1e6:>11.2f} {clf_macs / 1e6:>8.2f} {clf_macs / budget:>6.1f}x"
          f" {clf_macs / budget / 2:>15.1f}x")
    if detector_macs:  # classes_from="detector": the detector alone
        print(f"{'mod det':>8} {'-':>5} {2.0:>11.1f} {budget / 1e6:>11.2f} {detector_macs / 1e6:>8.2f}"
              f" {detector_macs / budget:>6.1f}x {detector_macs / budget / 2:>15.1f}x")
    for level in range(len(costs)):
        # the chain on 2 cores: encoder, decoder and classifier share two cores' GEMM rate
        budget = SHARE * 2 * gemm_1thread * 1e9 / 2 / (1.0e6 / L)
        codec_macs = costs[level]["encode_total_macs"] + costs[level]["decode_total_macs"]
        # the sink as shipped, and on classes_from="detector" (the detector alone) where the model has one
        sinks = [("chain", clf_macs)] + ([("chain det", detector_macs)] if detector_macs else [])
        for row, sink_macs in sinks:
            has = codec_macs + sink_macs
            print(f"{row:>8} {level:>5} {1.0:>11.1f} {budget / 1e6:>11.2f} {has / 1e6:>8.2f}"
                  f" {has / budget:>6.1f}x  (2 cores)")


def flowgraph_figures(codec, args):
    """Encoder, decoder and modrec_sink alone and vector source -> encoder -> decoder -> modrec_sink
    per level and runtime (one thread per block), beside GNU Radio's C++ copy block measured at each level."""
    import resource

    from gnuradio import blocks, gr
    from gnuradio.hqarf import flowgraphs

    gr.logging().set_default_level(gr.log_levels.error)  # figures only (the encoder warns of its backlog)
    n = args.flow_frames
    rng = np.random.default_rng(1)
    frames = (rng.standard_normal((n, codec.frame_len)) + 1j * rng.standard_normal((n, codec.frame_len))).astype(np.complex64)
    copy_data = frames.reshape(-1).tolist() * 8
    # The encoder alone runs over more frames (the flow frames repeated): a flowgraph's start and stop take
    # 3-12 ms, a third of a 256-frame run at level 0, and a radio's stream has neither.
    enc_frames = np.resize(frames, (max(n, args.encoder_frames), codec.frame_len))

    def copy_rate():
        tb = gr.top_block()
        tb.connect(blocks.vector_source_c(copy_data), blocks.copy(gr.sizeof_gr_complex),
                   blocks.null_sink(gr.sizeof_gr_complex))
        t = time.perf_counter()
        tb.run()
        return len(copy_data) / (time.perf_counter() - t) / 1e6

    def med(fn):
        return statistics.median(fn()["msps"] for _ in range(args.flow_repeats))

    with tempfile.TemporaryDirectory() as tmp:
        model = tmp
        codec.save(tmp)
        try:
            classifier = hqarf.load_classifier(args.model if args.model not in ("paper", "default") else None)
            classifier.save(tmp)
            if classifier.detector is not None:  # the sink runs both (until session 27 the bench left it out)
                classifier.detector.save(tmp)
            have_classifier = True
        except hqarf.WeightsError:
            have_classifier = False
        print(f"\nflowgraph throughput (Msps, {n} frames from a vector source ({len(enc_frames)} for the encoder "
              f"alone), frames_per_pdu 16, 1 thread per "
              f"block, median of {args.flow_repeats}); GNU Radio C++ copy block measured beside each row; '2thr': "
              f"the block alone with num_threads=2 (two workers: a sensor or a cloud host whose only heavy block it is); "
              f"'modrec': classifier and unknown detector, 'mod det': classes_from='detector' (the detector alone) on 1 and 2 threads; "
              f"'chain det': the chain with the sink on classes_from='detector'")
        print(f"{'runtime':>11} {'level':>5} {'copy':>7} {'GEMM GF/s':>9} {'encoder':>8} {'enc 2thr':>8} {'decoder':>8}"
              f" {'dec 2thr':>8} {'modrec':>8} {'mod 2thr':>8} {'mod det':>8} {'det 2thr':>8} {'chain':>8} {'chain det':>9}")
        for runtime in args.runtimes:
            for level in args.levels:
                try:
                    gemm = gemm_gflops(1, torch.device("cpu"))
                    copy = copy_rate()
                    enc = med(lambda: flowgraphs.encoder_benchmark(model, level, enc_frames, runtime=runtime))
                    enc2 = med(lambda: flowgraphs.encoder_benchmark(model, level, enc_frames, runtime=runtime,
                                                                    num_threads=2))
                    blobs = [codec.compress(frames[i:i + 16], level, sequence=i // 16) for i in range(0, n, 16)]
                    dec = med(lambda: flowgraphs.decoder_benchmark(model, blobs, runtime=runtime))
                    dec2 = med(lambda: flowgraphs.decoder_benchmark(model, blobs, runtime=runtime, num_threads=2))
                    mod = mod2 = mod_det = mod_det2 = chain = chain_det = float("nan")
                    if have_classifier:
                        mod = med(lambda: flowgraphs.modrec_benchmark(model, frames, runtime=runtime))
                        mod2 = med(lambda: flowgraphs.modrec_benchmark(model, frames, runtime=runtime, num_threads=2))
                        chain = med(lambda: flowgraphs.chain_benchmark(model, level, frames, runtime=runtime))
                        if classifier.detector is not None:
                            mod_det = med(lambda: flowgraphs.modrec_benchmark(model, frames, runtime=runtime,
                                                                              classes_from="detector"))
                            mod_det2 = med(lambda: flowgraphs.modrec_benchmark(model, frames, runtime=runtime,
                                                                               num_threads=2, classes_from="detector"))
                            chain_det = med(lambda: flowgraphs.chain_benchmark(model, level, frames, runtime=runtime,
                                                                               classes_from="detector"))
                except ValueError as exc:
                    print(f"{runtime:>11} skipped: {exc}")
                    break
                print(f"{runtime:>11} {level:>5} {copy:>7.1f} {gemm:>9.1f} {enc:>8.3f} {enc2:>8.3f} {dec:>8.3f} {dec2:>8.3f} {mod:>8.3f} {mod2:>8.3f} {mod_det:>8.3f} {mod_det2:>8.3f}"
                      f" {chain:>8.3f} {chain_det:>9.3f}", flush=True)
        if have_classifier and args.runtimes:
            # the sink fed by a block with GNU Radio's default output buffer: 2-4 frames per call
            small = {(cf, th): med(lambda: flowgraphs.modrec_benchmark(model, frames, runtime=args.runtimes[0],
                                                                       num_threads=th, classes_from=cf,
                                                                       default_buffer=True))
                     for cf in (("classifier", "detector") if classifier.detector is not None else ("classifier",))
                     for th in (1, 2)}
            print(f"modrec_sink fed by a source with GNU Radio's default output buffer ({args.runtimes[0]}, Msps, "
                  "1 / 2 threads): " + ", ".join(f"classes_from={cf} {small[cf, 1]:.3f} / {small[cf, 2]:.3f}"
                                                 for cf in dict.fromkeys(cf for cf, _ in small)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of this process: {peak:.0f} MiB")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="default (shipped, the default), paper or a model directory")
    p.add_argument("--batches", default="1,16,64,256", help="frames per call, comma-separated")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    p.add_argument("--runtimes", default="torch,torchscript,onnx", help="runtimes, comma-separated")
    p.add_argument("--levels", default=None, help="levels, comma-separated (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure (the median is printed)")
    p.add_argument("--min-seconds", type=float, default=0.05, help="least duration of one timed run")
    p.add_argument("--device", default="cpu", help="cpu or cuda (codec figures; blocks run on the CPU)")
    p.add_argument("--flow-frames", type=int, default=256, help="frames per flowgraph run")
    p.add_argument("--encoder-frames", type=int, default=2048,
                   help="frames per encoder-block run (the flow frames repeated; at least --flow-frames)")
    p.add_argument("--flow-repeats", type=int, default=3, help="flowgraph runs per figure")
    p.add_argument("--no-flowgraph", action="store_true", help="skip the GNU Radio flowgraph figures")
    args = p.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]
    args.threads = [int(t) for t in args.threads.split(",")]
    args.runtimes = [r.strip() for r in args.runtimes.split(",")]
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print("--device cuda: no CUDA device here", file=sys.stderr)
            return 2
        args.runtimes = [r for r in args.runtimes if r != "onnx"]
    codec, what = load(args.model, args.device)
    args.levels = list(range(codec.levels)) if args.levels is None else [int(v) for v in args.levels.split(",")]
    rng = np.random.default_rng(0)
    L = codec.frame_len
    import platform
    print(f"model: {what}; torch {torch.__version__}; device {args.device}; {platform.processor() or platform.machine()}"
          f", {__import__('os').cpu_count()} CPUs; runtimes {', '.join(args.runtimes)}")
    costs = level_costs(codec.config)
    print("MACs per frame (network + quantiser distance GEMMs):")
    for c in costs:
        print(f"  level {c['level']}: encode {c['encode_macs'] / 1e6:.2f} + {c['encode_quantizer_macs'] / 1e6:.2f} M,"
              f" decode {c['decode_macs'] / 1e6:.2f} + {c['decode_quantizer_macs'] / 1e6:.2f} M")
    clf_macs = detector_macs = 0
    try:
        clf = hqarf.load_classifier(args.model if args.model not in ("paper", "default") else None)
        clf_macs = classifier_macs(clf)
        if clf.detector is not None:  # the ModRec sink runs the unknown detector on every frame too
            detector_macs = classifier_macs(clf.detector)
            print(f"  ModRec sink: {(clf_macs + detector_macs) / 1e6:.2f} M (classifier {clf_macs / 1e6:.2f} M, "
                  f"unknown detector {detector_macs / 1e6:.2f} M; FFTs not counted)")
            clf_macs += detector_macs
        else:
            print(f"  classifier: {clf_macs / 1e6:.2f} M")
    except hqarf.WeightsError:
        pass
    print()
    best = codec_figures(codec, costs, args, device, rng)
    budgets(costs, best, gemm_gflops(1, device), clf_macs, args, detector_macs)

    print("\nwire bytes per frame (indices + header + per-frame scale + CRC32)")
    print(f"{'level':>5} {'bits/frame':>10} {'1-frame msg':>11} {'16-frame msg':>12} {'overhead@16':>11}"
          f" {'CR cf32 bits':>12} {'CR cf32 msg16':>13}")
    for level in range(codec.levels):
        bits = codec.bits_per_frame(level)
        m1, m16 = codec.message_size(level, 1), codec.message_size(level, 16) / 16
        packed = bits / 8
        print(f"{level:>5} {bits:>10} {m1:>11} {m16:>12.2f} {100 * (m16 - packed) / packed:>10.1f}%"
              f" {codec.compression_ratio(level):>12.1f} {L * 8 / m16:>13.1f}")

    if not args.no_flowgraph and device.type == "cpu":
        flowgraph_figures(codec, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
