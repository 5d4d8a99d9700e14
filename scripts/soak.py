# SPDX-License-Identifier: GPL-3.0-or-later
"""Soak: a sensor and a cloud flowgraph in two processes over ZMQ on 127.0.0.1, for a long time.

    ./dev.sh soak --frames 100000 --level 2          # README "Robustness"; --help for the rest

This process runs the cloud (ZMQ SUB -> hqarf.decoder -> hqarf.modrec_sink) and starts the sensor
(labelled frames -> hqarf.encoder -> ZMQ PUB) as a child process. Before any frame is sent the
sensor publishes probe messages until the cloud has received one (flowgraphs.Handshake), so no
PDU is lost to ZMQ's slow-joiner window. The sensor paces its source at `--rate` frames per second (default: a share
of what this machine's decoder + classifier sustain, measured at start); a pace the cloud cannot
hold shows as a growing decoder queue and, past its bound, as `dropped_overflow`.

At the end the cloud is drained (flowgraphs.Cloud.drain semantics: everything queued is decoded
and classified), then the figures are printed: frames sent / received / decoded / classified,
frames lost by cause (each counter that can lose a frame, and `unaccounted`: frames the sensor
sent that no counter explains), sequence gaps, reorders, duplicates, and the resident memory of
both processes sampled over the run, with a check that it is flat after the warm-up (the first
`--warmup` share of the frames): the largest sample after warm-up within `--rss-tolerance` (5 %)
of the sample at the end of warm-up. Exit 0 when nothing is unaccounted and memory is flat
(`--no-rss-check` to judge only the counts, as the short CI soak does); `--json FILE` writes it all.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


MARK = "SOAK "  # the child's protocol lines; anything else it prints (GNU Radio's log) is passed on


def say(obj) -> None:
    print(MARK + json.dumps(obj), flush=True)


def hear(child) -> dict:
    """The child's next protocol line as a dict ({} at its end); other lines go to stderr."""
    for line in child.stdout:
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
        sys.stderr.write("sensor: " + line)
    return {}


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def frame_pool(classifier, frames_per_class: int, frame_len: int, recording=None):
    """Labelled frames to repeat: the sample recording's, or (no recording) noise labelled -1."""
    import numpy as np
    from gnuradio.hqarf import flowgraphs
    recording = Path(recording) if recording else flowgraphs.DEFAULT_RECORDING
    if recording.exists() and classifier.frame_len == frame_len:
        frames, labels = flowgraphs.load_labelled_frames(recording, classifier.classes, frames_per_class, frame_len)
        if len(frames):
            return frames.astype(np.complex64), labels.astype(np.int64)
    rng = np.random.default_rng(0)
    frames = (rng.standard_normal((64, frame_len)) + 1j * rng.standard_normal((64, frame_len))).astype(np.complex64)
    return frames, np.full(64, -1, np.int64)


# -- sensor (child process) ------------------------------------------------------------------------
def make_source_block():
    import numpy as np
    import pmt
    from gnuradio import gr
    from gnuradio.hqarf._vocabulary import TAG_TRUE_LABEL
    from gnuradio.hqarf.encoder import TAG_FLUSH

    class SoakSource(gr.sync_block):
        """`total` frames drawn in turn from a pool, a true_label tag at each frame start, an
        hqarf_flush tag on the last sample; waits for `gate`, then paces at `rate` frames/s."""

        def __init__(self, pool, labels, total, rate, gate, chunk=16):
            gr.sync_block.__init__(self, "hqarf_soak_source", in_sig=None, out_sig=[np.complex64])
            self.pool, self.labels = pool, labels
            self.L = pool.shape[1]
            self.total, self.rate, self.gate, self.chunk = total, rate, gate, chunk
            self.sent = 0
            self.began = None
            self._key, self._flush = pmt.intern(TAG_TRUE_LABEL), pmt.intern(TAG_FLUSH)
            self.set_output_multiple(self.L)

        def work(self, input_items, output_items):
            if self.began is None:
                while not self.gate.wait(0.05):
                    pass
                self.began = time.monotonic()
            if self.sent >= self.total:
                return -1
            if self.rate > 0:  # pace: frame k leaves no earlier than k / rate s after the start
                ahead = self.sent / self.rate - (time.monotonic() - self.began)
                if ahead > 0:
                    time.sleep(min(ahead, 0.05))
                    if ahead > 0.05:
                        return 0
            out = output_items[0]
            n = min(self.chunk, len(out) // self.L, self.total - self.sent)
            base = self.nitems_written(0)
            for k in range(n):
                i = (self.sent + k) % len(self.pool)
                out[k * self.L:(k + 1) * self.L] = self.pool[i]
                if self.labels[i] >= 0:
                    self.add_item_tag(0, base + k * self.L, self._key, pmt.from_long(int(self.labels[i])))
            self.sent += n
            if self.sent == self.total:
                self.add_item_tag(0, base + n * self.L - 1, self._flush, pmt.PMT_T)
            return n * self.L

    return SoakSource


def run_sensor(args) -> int:
    import numpy as np  # noqa: F401
    import pmt
    from gnuradio import blocks, gr, zeromq  # noqa: F401
    from gnuradio.hqarf import encoder, flowgraphs, load_classifier, load_codec
    gr.logging().set_default_level(gr.log_levels.warn)
    codec = load_codec(args.model)
    pool, labels = frame_pool(load_classifier(args.model), args.frames_per_class, codec.frame_len)
    gate = threading.Event()
    tb = gr.top_block("hqarf soak sensor")
    source = make_source_block()(pool, labels, args.frames, args.rate, gate)
    enc = encoder(model=args.model or "", level=args.level, frames_per_pdu=args.frames_per_pdu,
                  num_threads=args.threads)
    pub = zeromq.pub_msg_sink("tcp://127.0.0.1:*", 100, True)
    counter = flowgraphs.PduCounter()
    tb.connect(source, enc)
    tb.msg_connect(enc, "pdus", pub, "in")
    tb.msg_connect(enc, "pdus", counter, "in")
    tb.start()
    say({"address": pub.last_endpoint()})
    probe = pmt.intern(flowgraphs.PROBE)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "probe":
            pub.to_basic_block()._post(pmt.intern("in"), probe)
        elif cmd == "go":
            gate.set()
            tb.wait()
            say({"sensor": {**enc.counters(), "pdus_published": counter.pdus,
                            "payload_bytes": counter.payload_bytes, "socket_bytes": counter.serialized_bytes,
                            "source_frames": source.sent}})
        elif cmd == "exit":
            break
    tb.stop()
    tb.wait()
    return 0


# -- cloud (this process) --------------------------------------------------------------------------
def measure_capacity(codec, classifier, level: int, frames) -> float:
    """Frames per second this process's decoder + classifier sustain on `frames` (a few batches)."""
    import numpy as np
    batch = np.asarray(frames[:64])
    codes = codec.encode(batch, level)
    codec.decode(codes, level), classifier.classify(batch)  # warm-up
    began, n = time.monotonic(), 0
    while time.monotonic() - began < 1.0 or n < 128:
        classifier.classify(codec.decode(codes, level))
        n += len(batch)
    return n / (time.monotonic() - began)


def run_cloud(args) -> dict:
    import pmt
    from gnuradio import gr, zeromq
    from gnuradio.hqarf import decoder, flowgraphs, load_classifier, load_codec, modrec_sink
    gr.logging().set_default_level(gr.log_levels.warn)
    codec, classifier = load_codec(args.model), load_classifier(args.model)
    pool, _ = frame_pool(classifier, args.frames_per_class, codec.frame_len)
    capacity = None
    if args.rate is None:
        capacity = measure_capacity(codec, classifier, args.level, pool)
        args.rate = max(1.0, args.rate_share * capacity)
    child_cmd = [sys.executable, "-u", str(Path(__file__).resolve()), "--role", "sensor",
                 "--frames", str(args.frames), "--level", str(args.level), "--rate", repr(args.rate),
                 "--frames-per-pdu", str(args.frames_per_pdu), "--frames-per-class", str(args.frames_per_class),
                 "--threads", str(args.threads)] + (["--model", args.model] if args.model else [])
    child = subprocess.Popen(child_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ)
    result = {"frames": args.frames, "level": args.level, "rate_fps": args.rate, "capacity_fps": capacity,
              "frames_per_pdu": args.frames_per_pdu, "model": codec.fingerprint_hex}
    tb, stopped = None, False
    try:
        hello = hear(child)
        if "address" not in hello:
            raise RuntimeError(f"the sensor process did not start (exit {child.wait()})")
        tb = gr.top_block("hqarf soak cloud")
        sub = zeromq.sub_msg_source(hello["address"], 100, False)
        filt = flowgraphs.Handshake()
        dec = decoder(model=args.model or "", max_queue=args.max_queue, num_threads=args.threads)
        sink = modrec_sink(model=args.model or "", num_threads=args.threads)
        tb.msg_connect(sub, "out", filt, "in")
        tb.msg_connect(filt, "out", dec, "pdus")
        tb.connect(dec, sink)
        tb.start()
        # Handshake: probes until one arrives (ZMQ PUB drops what it sends before the subscription).
        deadline = time.monotonic() + args.connect_timeout
        while filt.probes == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no probe from the sensor in {args.connect_timeout} s")
            child.stdin.write("probe\n")
            child.stdin.flush()
            time.sleep(0.1)
        samples, stop_sampling = [], threading.Event()
        began = time.monotonic()

        def sample():
            printed = time.monotonic()
            while True:
                c = dec.counters()
                samples.append({"t": round(time.monotonic() - began, 2), "classified": sink.frames(),
                                "cloud_rss_mib": rss_mib(os.getpid()), "sensor_rss_mib": rss_mib(child.pid),
                                "queued_frames": c["queued_frames"]})
                if args.progress_s and time.monotonic() - printed >= args.progress_s:
                    printed = time.monotonic()
                    last = samples[-1]
                    print(f"  t={last['t']:.0f}s: {c['received_frames']} frames received, {last['classified']} "
                          f"classified, {last['queued_frames']} queued, {c['frames_dropped']} dropped; RSS cloud "
                          f"{last['cloud_rss_mib'] or 0:.0f} MiB, sensor {last['sensor_rss_mib'] or 0:.0f} MiB",
                          file=sys.stderr, flush=True)
                if stop_sampling.wait(args.sample_s):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        child.stdin.write("go\n")
        child.stdin.flush()
        sensor = hear(child).get("sensor")
        if sensor is None:
            raise RuntimeError(f"the sensor process ended without its figures (exit {child.wait()})")
        # Everything the sensor published is on its way: wait until it arrived or stopped arriving.
        last, last_change = -1, time.monotonic()
        while filt.passed < sensor["pdus_published"] and time.monotonic() - last_change < args.idle_timeout:
            if filt.passed != last:
                last, last_change = filt.passed, time.monotonic()
            time.sleep(0.05)
        # Drain: the decoder finishes once its queue is out, the sink once it classified the rest.
        dec.to_basic_block()._post(pmt.intern("system"), pmt.cons(pmt.intern("done"), pmt.from_long(1)))
        deadline = time.monotonic() + args.drain_timeout
        detail = sink.to_basic_block().detail()
        while not detail.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        drained = bool(detail.done())
        elapsed = time.monotonic() - began
        stop_sampling.set()
        sampler.join()
        tb.stop()
        tb.wait()
        stopped = True
        flowgraphs.account_stop(dec, sink)
        child.stdin.write("exit\n")
        child.stdin.flush()
        child.wait(timeout=60)
    finally:
        if tb is not None and not stopped:
            tb.stop()
            tb.wait()
        if child.poll() is None:
            child.kill()
            child.wait()
    c, m = dec.counters(), sink.counters()
    sent = sensor["frames_encoded"]
    lost = {"sensor_unsent_at_stop": sensor["frames_unsent"], "sensor_encode_failed": sensor["frames_failed"],
            "decoder_dropped_frames": c["frames_dropped"], "decoder_decode_failed": c["frames_failed"],
            "decoder_queue_at_stop": c["lost_at_stop_frames"], "sink_unread_at_stop": m["lost_at_stop_frames"]}
    in_transit = sent - c["received_frames"]
    accounted = sum(v for k, v in lost.items() if k.startswith(("decoder", "sink")))
    unaccounted = sent - m["frames"] - accounted - in_transit
    result.update({
        "seconds": round(elapsed, 1), "drained": drained,
        "frames_offered": sensor["source_frames"], "frames_sent": sent, "pdus_sent": sensor["pdus_sent"],
        "pdus_received": c["received"], "frames_received": c["received_frames"],
        "frames_decoded": c["decoded_frames"], "frames_classified": m["frames"],
        "accuracy": sink.accuracy(), "unknown": m["unknown"],
        "lost": lost, "lost_in_transit_frames": in_transit, "unaccounted_frames": unaccounted,
        "sequence_gaps": c["sequence_gaps"], "missing_messages": c["missing_messages"],
        "reordered": c["reordered"], "duplicates": c["dropped_duplicate"],
        "dropped": {k: v for k, v in c.items() if k.startswith("dropped_") and v},
        "encoder_backlog_growths": sensor["backlog_growths"], "socket_bytes": sensor["socket_bytes"],
        "queued_frames_max": max((s["queued_frames"] for s in samples), default=0),
        "rss": samples})
    result["rss_check"] = rss_check(samples, args.frames, args.warmup, args.rss_tolerance)
    return result


def rss_check(samples, frames: int, warmup: float, tolerance: float) -> dict:
    """Per process: RSS at the end of warm-up (first sample with >= warmup x frames classified),
    the largest sample after it, growth, and whether it is within tolerance."""
    out = {}
    after = [s for s in samples if s["classified"] >= warmup * frames]
    for key in ("cloud_rss_mib", "sensor_rss_mib"):
        values = [s[key] for s in after if s[key] is not None]
        if len(values) < 2:
            out[key[:-8]] = {"samples": len(values), "flat": None}
            continue
        base, top = values[0], max(values)
        growth = (top - base) / base
        out[key[:-8]] = {"samples": len(values), "after_warmup_mib": round(base, 1),
                         "max_mib": round(top, 1), "end_mib": round(values[-1], 1),
                         "growth_pct": round(100 * growth, 2), "flat": growth <= tolerance}
    return out


def report(r: dict, out=sys.stdout) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    cap = f", cloud capacity measured {r['capacity_fps']:.0f} frames/s" if r["capacity_fps"] else ""
    p(f"soak: {r['frames']} frames at level {r['level']}, {r['frames_per_pdu']} frames per PDU, "
      f"{'paced at %.0f frames/s' % r['rate_fps'] if r['rate_fps'] > 0 else 'unpaced'}{cap}; model {r['model']}; "
      f"{r['seconds']} s")
    acc = f", accuracy {r['accuracy']:.3f}" if r["accuracy"] is not None else ""
    p(f"  frames sent {r['frames_sent']} in {r['pdus_sent']} PDUs / received {r['frames_received']} "
      f"in {r['pdus_received']} PDUs / decoded {r['frames_decoded']} / classified {r['frames_classified']}"
      f"{acc}, {r['unknown']} flagged unknown")
    lost = ", ".join(f"{k} {v}" for k, v in r["lost"].items())
    p(f"  lost by cause: {lost}, in transit {r['lost_in_transit_frames']}; unaccounted {r['unaccounted_frames']}")
    p(f"  sequence gaps {r['sequence_gaps']} (missing {r['missing_messages']}), reorders {r['reordered']}, "
      f"duplicates {r['duplicates']}; drops {r['dropped'] or 0}; decoder queue at most {r['queued_frames_max']} "
      f"frames; encoder backlog growths {r['encoder_backlog_growths']}; drained {r['drained']}")
    rss = r["rss"]
    if rss:
        picks = [rss[int(i * (len(rss) - 1) / 5)] for i in range(6)]
        p("  resident memory (MiB) over time: " + "; ".join(
            f"t={s['t']:.0f}s {s['classified']} fr: cloud {s['cloud_rss_mib']:.0f}, sensor "
            f"{(s['sensor_rss_mib'] or 0):.0f}" for s in picks))
    for name, c in r["rss_check"].items():
        if c.get("flat") is None:
            p(f"  {name} memory after warm-up: too few samples ({c['samples']}) to judge")
        else:
            p(f"  {name} memory after warm-up: {c['after_warmup_mib']} MiB -> max {c['max_mib']} MiB "
              f"({c['growth_pct']:+.2f} %), end {c['end_mib']} MiB: {'flat' if c['flat'] else 'GROWING'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=10000, help="frames the sensor sends (default %(default)s)")
    p.add_argument("--level", type=int, default=2)
    p.add_argument("--model", default=None, help="model directory (default: the shipped model)")
    p.add_argument("--frames-per-pdu", type=int, default=16)
    p.add_argument("--rate", type=float, default=None, help="frames/s (default: --rate-share of the measured capacity)")
    p.add_argument("--rate-share", type=float, default=0.5)
    p.add_argument("--frames-per-class", type=int, default=32, help="pool of labelled frames to repeat")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-queue", type=int, default=1024, help="decoder max_queue (messages)")
    p.add_argument("--warmup", type=float, default=0.2, help="share of the frames counted as warm-up")
    p.add_argument("--rss-tolerance", type=float, default=0.05)
    p.add_argument("--no-rss-check", action="store_true", help="judge only the counts (short soaks)")
    p.add_argument("--sample-s", type=float, default=1.0, help="memory sampling period")
    p.add_argument("--progress-s", type=float, default=60.0, help="progress line on stderr this often (0: none)")
    p.add_argument("--connect-timeout", type=float, default=120.0)
    p.add_argument("--idle-timeout", type=float, default=60.0, help="give up waiting for PDUs after this long without one")
    p.add_argument("--drain-timeout", type=float, default=600.0)
    p.add_argument("--json", default=None, help="write every figure and memory sample here")
    p.add_argument("--role", choices=["cloud", "sensor"], default="cloud", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for p_ in (ROOT / "shim",):
        if str(p_) not in sys.path:
            sys.path.insert(0, str(p_))
    if args.role == "sensor":
        return run_sensor(args)
    if args.frames < 1:
        p.error("--frames must be at least 1")
    try:
        r = run_cloud(args)
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        return 2
    report(r)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    flat = all(c.get("flat") is not False for c in r["rss_check"].values())
    ok = r["unaccounted_frames"] == 0 and r["drained"] and (args.no_rss_check or flat)
    print(f"soak: {'PASS' if ok else 'FAIL'} ({r['unaccounted_frames']} frames unaccounted"
          f"{'' if args.no_rss_check else ', memory ' + ('flat' if flat else 'growing')})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
