# SPDX-License-Identifier: GPL-3.0-or-later
"""The gr-hqarf command: compress, decompress, classify and inspect IQ recordings with an HQARF model.

Each subcommand is a thin layer over the codec core (codec.py), the recording reader (sigmf.py)
and the compressed-file format (container.py). Expected failures print one line and exit 1
(2 for usage errors); `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from . import __version__
from . import container as container_io
from . import sigmf
from ._checks import check_level
from .codec import load_codec
from .classifier import CLASSES_FROM, load_classifier
from .container import ContainerError
from .frames import pad_to_frames
from .model_info import pretty_lines
from .sigmf import RecordingError
from .weights import WeightsError, manifest_path
from .wire import WireFormatError

PROG = "gr-hqarf"
EXPECTED_ERRORS = (RecordingError, ContainerError, WireFormatError, WeightsError, ValueError, OSError)

DESCRIPTION = """\
Compress, decompress, classify and inspect IQ recordings with an HQARF model
(learned compression of 1024-sample complex frames at 5 levels).

Recordings: SigMF (name.sigmf-meta + name.sigmf-data, or a .sigmf archive; any
complex datatype), raw complex float32 (.cf32 .fc32 .cfile .bin) or interleaved
int16 (.ci16 .sc16); --format overrides the file name. --model is a model
directory (codec.json + codec.safetensors [+ classifier.*]); without it the
shipped default model is used."""

EPILOG = """\
examples:
  gr-hqarf info
  gr-hqarf compress examples/data/6mod_sample.sigmf-meta -o sample.hqarf --level 2
  gr-hqarf decompress sample.hqarf -o sample_l2          # sample_l2.sigmf-meta/-data
  gr-hqarf classify examples/data/6mod_sample.sigmf-meta --level 4 --summary-only
  gr-hqarf classify sample.hqarf
  gr-hqarf demo"""


class UsageError(Exception):
    """Arguments that parse but do not fit the model or the input (exit status 2)."""


# -- helpers ---------------------------------------------------------------------------------
def _progress(total: int, desc: str, quiet: bool):
    from tqdm.auto import tqdm
    # disable=None: a bar only on a terminal, never in pipes, logs or tests
    return tqdm(total=total, desc=desc, unit="frame", disable=True if quiet else None, leave=False,
                file=sys.stderr, dynamic_ncols=True)


def _check_level(codec, level) -> int:
    try:
        return check_level(level, codec.levels)
    except ValueError:
        raise UsageError(f"--level {level} is not a level of this model (0..{codec.levels - 1})") from None


def _same_file(a: Path, b: Path | None) -> bool:
    return b is not None and Path(os.path.abspath(a)) == Path(os.path.abspath(b))


def _open_recording(args) -> sigmf.Recording:
    path = Path(args.input)
    if container_io.is_compressed_file(path):
        raise UsageError(f"{path} is a gr-hqarf compressed file, not a recording (use decompress)")
    recording = sigmf.open_recording(path, args.format, args.sample_rate)
    if recording.num_samples == 0:
        raise RecordingError(f"{recording.path}: no samples: nothing to {args.command}")
    return recording


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}" if b else "n/a"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _frames_note(samples: int, frame_len: int) -> str:
    frames = -(-samples // frame_len)
    tail = samples - (frames - 1) * frame_len if frames else 0
    pad = f"; last frame {tail} samples, zero-padded" if frames and tail != frame_len else ""
    return f"{_plural(frames, 'frame')} ({_plural(samples, 'sample')}{pad})"


# -- compress --------------------------------------------------------------------------------
def cmd_compress(args) -> int:
    recording = _open_recording(args)
    codec = load_codec(args.model, exemplars=False)  # encoding never reads the bank
    level = _check_level(codec, args.level)
    out = Path(args.output)
    if _same_file(out, recording.path) or _same_file(out, recording.meta_path):
        raise UsageError(f"output {out} would overwrite the input")
    frames = -(-recording.num_samples // codec.frame_len)
    with _progress(frames, "compress", args.quiet) as bar:
        header = container_io.compress_recording(codec, recording, out, level, args.frames_per_message,
                                                 on_frames=bar.update)
    size = out.stat().st_size
    cf32_bytes = recording.num_samples * 8
    print(f"compressed {args.input} -> {out}")
    print(f"  level {level}: {codec.tokens(level)} indices x {codec.bits_per_index} bits = "
          f"{codec.bits_per_frame(level)} bits per frame; model {codec.fingerprint_hex}")
    print(f"  {_frames_note(recording.num_samples, codec.frame_len)} in "
          f"{_plural(header.message_count, 'message')} of up to {header.frames_per_message} frames")
    print(f"  bytes in {recording.data_bytes} ({recording.datatype}), bytes out {size} "
          f"(header and metadata {len(header.to_bytes())})")
    print(f"  compression ratio {_ratio(recording.data_bytes, size)} vs the input file, "
          f"{_ratio(cf32_bytes, size)} vs cf32 ({codec.compression_ratio(level):.1f} counting index bits only)")
    return 0


# -- decompress ------------------------------------------------------------------------------
def cmd_decompress(args) -> int:
    codec = load_codec(args.model, exemplars=not args.no_exemplars)
    meta_path, data_path = sigmf.sigmf_paths(args.output)
    if _same_file(Path(args.input), meta_path) or _same_file(Path(args.input), data_path):
        raise UsageError(f"output {args.output} would overwrite the input")
    with container_io.CompressedFile(args.input) as compressed:
        header = compressed.header
        meta = header.metadata if isinstance(header.metadata, dict) else {}
        global_fields = dict(meta.get("global", {}))
        global_fields.update({"hqarf:level": header.level, "hqarf:fingerprint": header.fingerprint,
                              "hqarf:original_datatype": header.datatype})
        writer = sigmf.SigMFWriter(args.output, header.sample_rate, global_fields,
                                   meta.get("captures"), meta.get("annotations"))
        try:
            with _progress(header.frame_count, "decompress", args.quiet) as bar:
                for samples in compressed.samples(codec, on_frames=bar.update):
                    writer.write(samples)
        except BaseException:
            writer.abort()
            raise
        writer.close()
    rate = f", sample rate {header.sample_rate:g} Hz" if header.sample_rate else ""
    print(f"decompressed {args.input} -> {meta_path} + {data_path.name}")
    print(f"  level {header.level}, model {header.fingerprint}: {_plural(writer.num_samples, 'sample')} "
          f"({_plural(header.frame_count, 'frame')}){rate}")
    return 0


# -- classify --------------------------------------------------------------------------------
def _classify_source(args, frame_len: int):
    """(description, SigMF metadata, sample count, chunks(on_frames) -> iterator of sample chunks)."""
    path = Path(args.input)
    if container_io.is_compressed_file(path):
        if args.level is not None:
            raise UsageError(f"--level applies to recordings; {path} is already compressed (decoded at its own level)")
        codec = load_codec(args.model, exemplars=not args.no_exemplars)
        compressed = container_io.CompressedFile(path)
        header = compressed.header
        try:
            compressed.check(codec)
        except BaseException:
            compressed.close()
            raise

        def chunks(on_frames):
            with compressed:
                yield from compressed.samples(codec, on_frames)
        source = f"level {header.level} reconstruction, decompressed from {path.name}"
        return source, header.metadata, header.sample_count, chunks

    recording = _open_recording(args)
    codec = None
    if args.level is not None:
        codec = load_codec(args.model, exemplars=not args.no_exemplars)
        _check_level(codec, args.level)
        if codec.frame_len != frame_len:
            raise UsageError(f"the codec's frames ({codec.frame_len}) and the classifier's ({frame_len}) differ")

    def chunks(on_frames):
        step = container_io.CHUNK_FRAMES * frame_len
        for start, samples in recording.chunks(step):
            if codec is not None:
                # Through the wire format, as a receiver would see it: one message per chunk.
                frames = pad_to_frames(samples, frame_len)
                samples = codec.decompress(codec.compress(frames, args.level)).reshape(-1)[: len(samples)]
            if on_frames:
                on_frames(-(-len(samples) // frame_len))
            yield samples
    source = (f"level {args.level} reconstruction of {path.name}" if codec is not None
              else f"original samples of {path.name}")
    return source, recording.metadata, recording.num_samples, chunks


def cmd_classify(args) -> int:
    classifier = load_classifier(args.classifier or args.model)
    try:
        classifier.check_classes_from(args.classes_from)
    except ValueError as exc:
        raise UsageError(f"--classes-from {args.classes_from}: {exc}") from None
    frame_len = classifier.frame_len
    source, metadata, num_samples, chunks = _classify_source(args, frame_len)
    classes = classifier.classes
    num_frames = -(-num_samples // frame_len)
    labels = sigmf.frame_labels(metadata if isinstance(metadata, dict) else {}, num_frames, frame_len)
    labelled = any(label is not None for label in labels)

    threshold = classifier.unknown_threshold if args.unknown_threshold is None else args.unknown_threshold
    predictions, confidences, unknowns = [], [], []
    if not args.summary_only:
        print(f"{'frame':>7} {'sample':>11}  {'class':<14}{'confidence':>10}{'unknown':>9}"
              + ("  label" if labelled else ""))
    with _progress(num_frames, "classify", args.quiet or not args.summary_only) as bar:
        done = 0
        for samples in chunks(bar.update):
            frames = pad_to_frames(samples, frame_len)
            result = classifier.classify(frames, threshold, args.classes_from)
            pred, conf, unk = result["prediction"], result["confidence"], result["unknown"]
            predictions.append(pred)
            confidences.append(conf)
            unknowns.append(unk)
            if not args.summary_only:
                for i, (p, c) in enumerate(zip(pred, conf)):
                    f = done + i
                    line = f"{f:>7} {f * frame_len:>11}  {classes[p]:<14}{c:>10.3f}{'yes' if unk[i] else 'no':>9}"
                    if labelled:
                        label = labels[f]
                        line += f"  {label or '-'}" + ("" if label is None or label == classes[p] else "  (wrong)")
                    if (f + 1) * frame_len > num_samples:
                        line += f"  [partial: {num_samples - f * frame_len} samples, zero-padded]"
                    print(line)
            done += len(frames)
    pred = np.concatenate(predictions) if predictions else np.zeros(0, np.int64)
    conf = np.concatenate(confidences) if confidences else np.zeros(0, np.float32)
    unknown = np.concatenate(unknowns) if unknowns else np.zeros(0, bool)
    _print_summary(source, classes, pred, conf, labels)
    if threshold is None:
        print("unknown: this model has no unknown detector (no frame can be flagged)")
    else:
        print(f"unknown: {int(unknown.sum())} of {_plural(len(unknown), 'frame')} look like none of the classes "
              f"(unknown score above {threshold:.3g})")
    return 0


def _print_summary(source, classes, pred, conf, labels) -> None:
    n = len(pred)
    print(f"summary: {_plural(n, 'frame')}, {source}")
    if n:
        counts = np.bincount(pred, minlength=len(classes))
        width = max(len(c) for c in classes)
        for k, name in enumerate(classes):
            share = counts[k] / n
            mean_conf = f"mean confidence {conf[pred == k].mean():.3f}" if counts[k] else ""
            bar = "#" * round(40 * share)
            print(f"  {name:<{width}} {counts[k]:>7} {100 * share:5.1f} % {bar:<40} {mean_conf}".rstrip())
    index = {c: k for k, c in enumerate(classes)}
    known = [(f, index[label]) for f, label in enumerate(labels) if label in index]
    unknown = sum(1 for label in labels if label is not None and label not in index)
    if not known:
        if unknown:
            print(f"labels: {unknown} frames labelled, none with a class this classifier knows")
        return
    frames, truth = map(np.array, zip(*known))
    correct = pred[frames] == truth
    note = f"; {unknown} frames with labels the classifier does not know were skipped" if unknown else ""
    print(f"accuracy {correct.mean():.3f} ({int(correct.sum())} of {len(known)} labelled frames){note}")
    per_class = [f"{name} {correct[truth == k].mean():.2f}" for k, name in enumerate(classes) if (truth == k).any()]
    print("  per class: " + ", ".join(per_class))


# -- info ------------------------------------------------------------------------------------
def _info_compressed(path: Path) -> int:
    h = container_io.open_header(path)
    g = h.metadata.get("global", {}) if isinstance(h.metadata, dict) else {}
    print(f"compressed file   {path} ({path.stat().st_size} bytes, format version {h.version})")
    print(f"model fingerprint {h.fingerprint}")
    print(f"level             {h.level}")
    print(f"samples           {_frames_note(h.sample_count, h.frame_len)}, "
          f"{_plural(h.message_count, 'message')} of up to {h.frames_per_message} frames")
    print(f"original          {h.datatype}" + (f", {h.sample_rate:g} Hz" if h.sample_rate else ""))
    extra = {k: v for k, v in g.items() if k not in ("core:datatype", "core:version", "core:sample_rate",
                                                      "core:sha512", "core:extensions")}
    if extra:
        print("metadata")
        print("\n".join(pretty_lines(extra)))
    return 0


def cmd_info(args) -> int:
    target = args.model or args.model_arg
    if target and Path(target).is_file() and container_io.is_compressed_file(target):
        return _info_compressed(Path(target))
    codec = load_codec(target)
    where = manifest_path(target, "codec")
    print(f"model        {where}")
    print(f"fingerprint  {codec.fingerprint_hex}")
    print(f"frames       {codec.frame_len} complex samples; codebook of {codec.codebook_size} codewords, "
          f"{codec.bits_per_index} bits per index")
    print(f"levels       {codec.levels}")
    print()
    head = ("level", "indices", "bits/frame", "CR vs cf32", "CR vs ci16",
            "bytes 1 frame", "bytes 16 frames", "CR vs cf32, 16-frame messages", "decoded as")
    print("  ".join(head))
    for level in range(codec.levels):
        b1, b16 = codec.message_size(level, 1), codec.message_size(level, 16)
        row = (level, codec.tokens(level), codec.bits_per_frame(level), f"{codec.compression_ratio(level, 64):.1f}",
               f"{codec.compression_ratio(level, 32):.1f}", b1, b16, f"{16 * codec.frame_len * 8 / b16:.1f}",
               codec.rendering(level))
        print("  ".join(f"{v:>{len(h)}}" for v, h in zip(row, head)))
    manifest = codec.manifest
    if manifest.get("classes"):
        print(f"\nclasses      {', '.join(manifest['classes'])}")
    for key in ("provenance", "metrics"):
        if manifest.get(key):
            print(f"\n{key}")
            print("\n".join(pretty_lines(manifest[key])))
    try:
        clf = load_classifier(target)
        print(f"\nclassifier   {len(clf.classes)} classes: {', '.join(clf.classes)} "
              f"(fingerprint {clf.manifest.get('fingerprint', '?')})")
    except WeightsError as exc:
        print(f"\nclassifier   none usable ({exc})")
    return 0


# -- demo ------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    try:
        from . import flowgraphs
    except ImportError as exc:
        raise UsageError(f"the demo needs gnuradio.hqarf.flowgraphs and GNU Radio ({exc})") from None
    kwargs = {"model": args.model}
    if args.levels is not None:
        kwargs["levels"] = args.levels
    if args.frames_per_class is not None:
        kwargs["frames_per_class"] = args.frames_per_class
    flowgraphs.run_demo(**kwargs)  # prints its table; raises on failure
    return 0


def _levels(text: str) -> list:
    try:
        levels = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated levels such as 0,2,4, got {text!r}") from None
    if not levels:
        raise argparse.ArgumentTypeError("no levels given")
    return levels


# -- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(
                                    prog, max_help_position=24))
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--debug", action="store_true", help="show a traceback instead of a one-line error")
    sub = p.add_subparsers(dest="command", title="commands")

    def model_arg(sp, help_text="model directory or codec.json (default: the shipped model)"):
        sp.add_argument("--model", "-m", metavar="M", help=help_text)

    def input_args(sp):
        sp.add_argument("--format", "-f", metavar="F",
                        help="input format: sigmf, cf32, ci16 or a complex SigMF datatype such as cu8 "
                             "(default: from the file name)")
        sp.add_argument("--sample-rate", type=float, metavar="HZ",
                        help="sample rate of a raw input (SigMF recordings carry their own)")

    def quiet_arg(sp):
        sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    def exemplars_arg(sp):
        sp.add_argument("--no-exemplars", action="store_true",
                        help="decode every level with the decoder network, not with the model's exemplar bank "
                             "(real frames of the class at its levels; `gr-hqarf info` lists them)")

    c = sub.add_parser("compress", help="recording -> compressed file",
                       description="Compress a recording into a gr-hqarf file: frames of the model's length "
                                   "(the last one zero-padded), encoded at one level, in wire messages.")
    c.add_argument("input", metavar="IN", help="SigMF recording (any of its file names) or raw IQ file")
    c.add_argument("--output", "-o", metavar="OUT", required=True, help="compressed file to write (e.g. x.hqarf)")
    c.add_argument("--level", "-l", type=int, required=True, metavar="L",
                   help="compression level, 0 (best quality) .. levels-1 (smallest)")
    model_arg(c)
    input_args(c)
    c.add_argument("--frames-per-message", type=int, default=container_io.FRAMES_PER_MESSAGE, metavar="N",
                   help="frames per wire message (default %(default)s)")
    quiet_arg(c)
    c.set_defaults(func=cmd_compress)

    d = sub.add_parser("decompress", help="compressed file -> SigMF recording",
                       description="Decompress a gr-hqarf file into OUT.sigmf-meta + OUT.sigmf-data (cf32_le), "
                                   "with the original length, sample rate and metadata.")
    d.add_argument("input", metavar="IN", help="file written by gr-hqarf compress")
    d.add_argument("--output", "-o", metavar="OUT", required=True,
                   help="SigMF base name (OUT.sigmf-meta and OUT.sigmf-data are written)")
    model_arg(d, "the model that compressed IN (default: the shipped model)")
    exemplars_arg(d)
    quiet_arg(d)
    d.set_defaults(func=cmd_decompress)

    k = sub.add_parser("classify", help="modulation class of every frame",
                       description="Classify every frame of a recording or compressed file with the ModRec "
                                   "classifier; with core:label annotations, also the accuracy.")
    k.add_argument("input", metavar="IN", help="recording, or a compressed file (decompressed first)")
    model_arg(k, "model directory with codec and classifier (default: the shipped model)")
    k.add_argument("--classifier", metavar="C", help="classifier directory or classifier.json (default: --model)")
    k.add_argument("--level", "-l", type=int, metavar="L",
                   help="classify the level-L reconstruction of a recording (compress + decompress first)")
    input_args(k)
    k.add_argument("--summary-only", "-s", action="store_true", help="no line per frame, only the summary")
    k.add_argument("--unknown-threshold", type=float, metavar="T", default=None,
                   help="flag a frame unknown when its unknown score (0-1) exceeds T (default: the model's)")
    k.add_argument("--classes-from", choices=CLASSES_FROM, default="classifier",
                   help="classifier (default): the class from the ModRec classifier, the unknown score from the "
                        "unknown detector; detector: both from the unknown detector (one network, about 2x faster)")
    exemplars_arg(k)
    quiet_arg(k)
    k.set_defaults(func=cmd_classify)

    i = sub.add_parser("info", help="a model's levels, rates and provenance (or a compressed file's header)",
                       description="Print a model's levels, bits and compression ratios, message sizes, "
                                   "fingerprint, provenance and metrics; given a compressed file, its header.")
    i.add_argument("model_arg", nargs="?", metavar="MODEL", help="model directory, codec.json or compressed file")
    model_arg(i, "the same as MODEL")
    i.set_defaults(func=cmd_info)

    m = sub.add_parser("demo", help="run the loopback demo flowgraph",
                       description="Run the GNU Radio loopback demo (gnuradio.hqarf.flowgraphs.run_demo).")
    model_arg(m)
    m.add_argument("--levels", type=_levels, metavar="0,2,4", help="levels to run")
    m.add_argument("--frames-per-class", type=int, metavar="N", help="frames of each class")
    m.set_defaults(func=cmd_demo)
    return p


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse has printed them
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if getattr(args, "func", None) is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: a command is required (compress, decompress, classify, info, demo)", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():  # the library's warnings (no sample rate known) as one line each
            warnings.showwarning = lambda message, *_: print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr)
            return int(args.func(args) or 0)
    except UsageError as exc:
        if args.debug:
            raise
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `gr-hqarf classify x | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except EXPECTED_ERRORS as exc:
        if args.debug:
            raise
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
