# SPDX-License-Identifier: GPL-3.0-or-later
"""Fuzz the readers of gr-hqarf's compressed files and SigMF recordings through the command.

Every mutated file goes through `gr-hqarf decompress`, `info` and `classify` (compressed files)
or `compress` and `classify` (SigMF metadata), in process (cli.main). A run passes when no
exception escapes main(), every refusal is one `gr-hqarf: error:` line with a non-zero exit, and
no file is left behind but the outputs of accepted inputs.

    ./dev.sh fuzz --count 100000          # the long run (README "Robustness"); --seed to vary

Mutations (`apply`): structured ones rewrite the header's metadata JSON (a node replaced by a
value of another type, deleted, nested deeply, inflated) or a fixed header field, then recompute
the header CRC so the reader gets past it; raw ones flip, cut or insert bytes, resealed or not.
tests/test_fuzz_readers.py drives the same `apply` with hypothesis.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "shim", ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np  # noqa: E402

from gnuradio.hqarf import cli, container, sigmf  # noqa: E402

FIELDS = ("version", "level", "frames_per_message", "frame_len", "sample_count", "sample_rate", "meta_len")
_FIELD_INDEX = {"version": 1, "level": 2, "frames_per_message": 3, "frame_len": 4, "sample_count": 5,
                "sample_rate": 6, "meta_len": 9}
# Replacement values for metadata nodes: wrong types, nulls, extremes, deep nesting.
SPECIAL_VALUES = [None, 5, -1, 2 ** 70, 1.5, "x", True, [], {}, [1, 2], [5], {"a": None},
                  [[[[[[[[[[0]]]]]]]]]], "9" * 30, float(1e308)]


def split(blob: bytes):
    """(fixed header fields, metadata JSON bytes, messages part) of a compressed file."""
    fields = list(container._FIXED.unpack_from(blob))
    meta_len = fields[9]
    meta = zlib.decompress(blob[container._FIXED.size: container._FIXED.size + meta_len])
    return fields, meta, blob[container._FIXED.size + meta_len + 4:]


def join(fields, meta_json: bytes, messages: bytes, meta_len=None) -> bytes:
    packed = zlib.compress(meta_json)
    fields = list(fields)
    fields[9] = len(packed) if meta_len is None else meta_len
    body = container._FIXED.pack(*fields) + packed
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF) + messages


def _slots(node, out):
    """Every (container, key) slot of a JSON tree, preorder."""
    if isinstance(node, dict):
        for k in list(node):
            out.append((node, k))
            _slots(node[k], out)
    elif isinstance(node, list):
        for i in range(len(node)):
            out.append((node, i))
            _slots(node[i], out)
    return out


def mutate_json(meta: dict, where: int, value, delete: bool = False) -> dict:
    """Replace (or delete) the `where`-th slot of the tree (modulo the number of slots)."""
    slots = _slots(meta, [])
    if not slots:
        return value if isinstance(value, dict) else {"global": value}
    parent, key = slots[where % len(slots)]
    if delete:
        del parent[key]
    else:
        parent[key] = value
    return meta


def apply(blob: bytes, mutation: tuple) -> bytes:
    """One mutation of a compressed file; see the module docstring."""
    kind = mutation[0]
    if kind in ("meta", "meta_delete"):
        fields, meta, messages = split(blob)
        tree = mutate_json(json.loads(meta), mutation[1], mutation[2] if kind == "meta" else None,
                           delete=kind == "meta_delete")
        return join(fields, json.dumps(tree).encode(), messages)
    if kind == "meta_text":  # any bytes as the metadata, compressed and sealed
        fields, _, messages = split(blob)
        return join(fields, mutation[1], messages)
    if kind == "deep":  # nesting far beyond anything SigMF uses
        fields, _, messages = split(blob)
        return join(fields, b'{"global": {"x": ' + b"[" * mutation[1] + b"]" * mutation[1] + b"}}", messages)
    if kind == "inflate":  # metadata that inflates to mutation[1] bytes
        fields, meta, messages = split(blob)
        pad = b" " * max(0, mutation[1] - len(meta))
        return join(fields, meta[:-1] + pad + meta[-1:], messages)
    if kind == "field":
        fields, meta, messages = split(blob)
        index = _FIELD_INDEX[mutation[1]]
        limits = {1: 0xFF, 2: 0xFF, 3: 0xFFFF, 4: 0xFFFFFFFF, 5: 2 ** 64 - 1, 9: 0xFFFFFFFF}
        value = mutation[2]
        if index == 6:
            fields[index] = float(value)
        else:
            fields[index] = int(value) % (limits[index] + 1)
        return join(fields, meta, messages, meta_len=fields[9] if index == 9 else None)
    if kind == "byte":
        out = bytearray(blob)
        out[mutation[1] % len(out)] = mutation[2] & 0xFF
        out = bytes(out)
        return reseal_header(out) if mutation[3] else out
    if kind == "cut":
        return blob[: mutation[1] % (len(blob) + 1)]
    if kind == "insert":
        at = mutation[1] % (len(blob) + 1)
        return blob[:at] + mutation[2] + blob[at:]
    if kind == "raw":
        return mutation[1]
    raise ValueError(f"unknown mutation {kind!r}")


def reseal_header(blob: bytes) -> bytes:
    """Recompute the header CRC if the metadata length still points inside the file."""
    if len(blob) < container._FIXED.size:
        return blob
    meta_len = container._FIXED.unpack_from(blob)[9]
    end = container._FIXED.size + meta_len
    if end + 4 > len(blob):
        return blob
    return blob[:end] + struct.pack("<I", zlib.crc32(blob[:end]) & 0xFFFFFFFF) + blob[end + 4:]


def random_mutation(rng: random.Random, blob: bytes) -> tuple:
    kind = rng.choice(["meta"] * 6 + ["meta_delete", "meta_text", "deep", "inflate", "field", "field",
                                      "byte", "byte", "cut", "insert", "raw"])
    if kind == "meta":
        return kind, rng.randrange(1000), rng.choice(SPECIAL_VALUES)
    if kind == "meta_delete":
        return kind, rng.randrange(1000)
    if kind == "meta_text":
        return kind, rng.choice([b"", b"null", b"[]", b"{", b'{"global": {}}', b"\xff\xfe", b"1" * 5000,
                                 b'{"global": {"core:sample_rate": NaN}}', os.urandom(rng.randrange(64))])
    if kind == "deep":
        return kind, rng.choice([40, 1000, 100_000])
    if kind == "inflate":
        return kind, rng.choice([1 << 20, 40 << 20])
    if kind == "field":
        name = rng.choice(FIELDS)
        return kind, name, rng.choice([0, 1, 2, 5, 255, 1024, 1025, 65535, 2 ** 31, 2 ** 63, -1]
                                      if name != "sample_rate" else [0, -1, float("nan"), float("inf"), 1e300])
    if kind == "byte":
        return kind, rng.randrange(len(blob)), rng.randrange(256), rng.random() < 0.7
    if kind == "cut":
        return kind, rng.randrange(len(blob) + 1)
    if kind == "insert":
        return kind, rng.randrange(len(blob) + 1), os.urandom(rng.randrange(1, 16))
    return kind, os.urandom(rng.randrange(200))


class Corpus:
    """A tiny model, a labelled recording and its compressed file in `directory`."""

    def __init__(self, directory, model=None):
        from conftest import make_classifier, make_codec
        self.directory = Path(directory)
        self.model = Path(model) if model else make_classifier(make_codec(self.directory / "model"))
        rng = np.random.default_rng(0)
        x = (rng.standard_normal(3 * 1024 + 100) + 1j * rng.standard_normal(3 * 1024 + 100)).astype(np.complex64)
        annotations = sigmf.frame_annotations(["4ask", "2fsk", "16psk"], 1024)
        sigmf.write_sigmf(self.directory / "rec", x, 1e6, annotations=annotations,
                          global_fields={"core:description": "fuzz corpus"})
        self.meta_text = (self.directory / "rec.sigmf-meta").read_text()
        self.compressed = self.directory / "rec.hqarf"
        with contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main(["compress", str(self.directory / "rec.sigmf-meta"), "-o", str(self.compressed),
                           "-l", "2", "-m", str(self.model), "-q", "--frames-per-message", "2"])
        assert rc == 0
        self.blob = self.compressed.read_bytes()
        self.work = self.directory / "work"
        self.work.mkdir(exist_ok=True)


def cache_models() -> None:
    """Load each model once: model loading is not what is fuzzed, and it dominates the run time."""
    import functools
    cli.load_codec = functools.lru_cache(maxsize=4)(cli.load_codec)
    cli.load_classifier = functools.lru_cache(maxsize=4)(cli.load_classifier)


def check_commands(corpus: Corpus, commands) -> list:
    """Run each argv through cli.main; returns a list of problems (empty: all well)."""
    problems, leftovers = [], []
    for argv in commands:
        before = set(os.listdir(corpus.work))
        out, err = io.StringIO(), io.StringIO()
        rc = None
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = cli.main([str(a) for a in argv])
        except BaseException as exc:  # what must never happen: a traceback
            problems.append(f"{argv[0]}: {type(exc).__name__}: {exc}"[:300])
        lines = err.getvalue().strip().splitlines()
        if rc not in (0, None) and (len(lines) != 1 or not lines[0].startswith("gr-hqarf: error: ")):
            problems.append(f"{argv[0]}: exit {rc} without one error line: {err.getvalue()[:200]!r}")
        # a refused input leaves no file at all; an accepted one only its outputs (no temp files)
        new = set(os.listdir(corpus.work)) - before
        leftovers += [n for n in new if rc != 0 or n.endswith(".tmp")]
    if leftovers:
        problems.append(f"left behind: {sorted(leftovers)}")
    for name in os.listdir(corpus.work):
        (corpus.work / name).unlink()
    return problems


def check_compressed(corpus: Corpus, data: bytes) -> list:
    path = corpus.work / "in.hqarf"
    path.write_bytes(data)
    problems = check_commands(corpus, [
        ["decompress", path, "-o", corpus.work / "out", "-m", corpus.model, "-q"],
        ["info", path],
        ["classify", path, "-m", corpus.model, "-s", "-q"]])
    return problems


def check_sigmf(corpus: Corpus, meta_text: bytes) -> list:
    (corpus.work / "in.sigmf-meta").write_bytes(meta_text)
    os.link(corpus.directory / "rec.sigmf-data", corpus.work / "in.sigmf-data")
    return check_commands(corpus, [
        ["compress", corpus.work / "in.sigmf-meta", "-o", corpus.work / "c.hqarf", "-l", "4", "-m", corpus.model, "-q"],
        ["classify", corpus.work / "in.sigmf-meta", "-m", corpus.model, "-s", "-q"]])


def sigmf_mutation(corpus: Corpus, rng: random.Random) -> bytes:
    meta = json.loads(corpus.meta_text)
    if rng.random() < 0.85:
        meta = mutate_json(meta, rng.randrange(1000), rng.choice(SPECIAL_VALUES), delete=rng.random() < 0.15)
        return json.dumps(meta).encode()
    return rng.choice([b"[" * 100_000, b"", os.urandom(40), b'{"global": {"core:datatype": "cf32_le", '
                       b'"core:trailing_bytes": 1000000000000}}'])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=1000, help="mutated compressed files (default %(default)s)")
    p.add_argument("--sigmf-count", type=int, default=None, help="mutated SigMF metadata files (default count/10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop the compressed-file loop after this long and report what was done")
    args = p.parse_args(argv)
    from gnuradio import gr
    gr.logging().set_default_level(gr.log_levels.err)
    cache_models()
    import torch
    torch.set_num_threads(1)  # tiny models, a shared machine: one thread is the fastest
    rng = random.Random(args.seed)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hqarf-fuzz-") as tmp:
        corpus = Corpus(tmp)
        failures, kinds, costly = [], {}, {}
        done = 0
        for i in range(args.count):
            if args.max_seconds is not None and time.monotonic() - began > args.max_seconds:
                break
            done = i + 1
            mutation = random_mutation(rng, corpus.blob)
            kinds[mutation[0]] = kinds.get(mutation[0], 0) + 1
            if mutation[0] in ("deep", "inflate"):  # the same few big files: build each once
                data = costly.get(mutation) or costly.setdefault(mutation, apply(corpus.blob, mutation))
            else:
                data = apply(corpus.blob, mutation)
            for problem in check_compressed(corpus, data):
                failures.append((i, mutation[:2], problem))
            if (i + 1) % 5000 == 0:
                print(f"  {i + 1} compressed files, {len(failures)} problems, "
                      f"{time.monotonic() - began:.0f} s", flush=True)
        sigmf_count = done // 10 if args.sigmf_count is None else args.sigmf_count
        for i in range(sigmf_count):
            for problem in check_sigmf(corpus, sigmf_mutation(corpus, rng)):
                failures.append((f"sigmf {i}", "", problem))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracebacks = sum(1 for f in failures if "left behind" not in f[2] and "without one error line" not in f[2])
    leftovers = sum(1 for f in failures if "left behind" in f[2])
    print(f"fuzz: {done} compressed files x 3 commands, {sigmf_count} SigMF metadata files x 2 commands, "
          f"seed {args.seed}: {tracebacks} tracebacks, {leftovers} runs leaving files, "
          f"{len(failures)} problems in all; peak RSS {peak:.0f} MiB; {time.monotonic() - began:.0f} s")
    print("  mutations: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    for failure in failures[:20]:
        print("  ", *failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
