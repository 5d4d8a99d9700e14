# SPDX-License-Identifier: GPL-3.0-or-later
"""Read and write IQ recordings: SigMF (https://sigmf.org) and raw interleaved files.

The official `sigmf` package supplies the datatype mapping, the specification version and the
schema every written metadata file is validated against. This module keeps what is gr-hqarf's own:
raw cf32/ci16 files, memory-mapped reading a slice at a time (`Recording.read`; integer samples
come back as complex64 scaled to [-1, 1), as SigMF's reader does) within bounds a hostile file
cannot exceed, the atomic chunked writer, per-frame labels and the hqarf extension. Every failure
is a RecordingError that names the file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tarfile
import warnings
from pathlib import Path

import jsonschema
import numpy as np
import sigmf as sigmf_package
from sigmf.sigmffile import dtype_info
from sigmf.validate import validate as validate_metadata

# The SigMF version of files written from scratch; a rewritten file keeps its input's version.
SIGMF_VERSION = sigmf_package.__specification__
META_EXT, DATA_EXT, ARCHIVE_EXT = ".sigmf-meta", ".sigmf-data", ".sigmf"

# Raw files carry no metadata: the extension (or an explicit format) names the sample type.
RAW_EXTENSIONS = {
    ".cf32": "cf32_le", ".fc32": "cf32_le", ".cfile": "cf32_le", ".bin": "cf32_le",
    ".ci16": "ci16_le", ".sc16": "ci16_le", ".cs16": "ci16_le",
    ".ci8": "ci8", ".sc8": "ci8", ".cs8": "ci8",
    ".cu8": "cu8",
}
FORMAT_ALIASES = {"cf32": "cf32_le", "fc32": "cf32_le", "ci16": "ci16_le", "sc16": "ci16_le",
                  "cs16": "ci16_le", "sc8": "ci8", "cs8": "ci8"}
# Global fields that describe the stored bytes rather than the signal: a rewritten file drops them
# (it is single-channel cf32_le with a checksum of its own; core:version and core:num_channels stay).
STORAGE_FIELDS = ("core:datatype", "core:sha512", "core:trailing_bytes", "core:metadata_only", "core:dataset")

# Bounds on metadata a reader accepts. 32 MiB of JSON is about 300 000 per-frame annotations;
# Python needs roughly 10x that while parsing it. Deeper nesting than SigMF ever uses is refused
# before anything walks it recursively.
MAX_METADATA_BYTES = 32 << 20
MAX_METADATA_DEPTH = 32
# Fields holding a sample or byte count: a non-negative integer wherever they appear.
_COUNT_FIELDS = ("core:sample_start", "core:sample_count", "core:header_bytes")

_DATATYPE = re.compile(r"^(?P<kind>[cr])(?P<base>f32|f64|i32|i16|u32|u16|i8|u8)(?:_(?P<endian>le|be))?$")


class RecordingError(ValueError):
    """A recording that cannot be read or written; the message names the file."""


class RecordingWarning(UserWarning):
    """A recording that can be written but lacks something a reader will want (a sample rate)."""


def parse_datatype(datatype: str, path=None) -> tuple[np.dtype, float, float]:
    """SigMF complex datatype -> (numpy dtype of one component, offset, scale to [-1, 1))."""
    m = _DATATYPE.match(str(datatype))
    where = f"{path}: " if path else ""
    if not m or (m["base"][1:] == "8") != (m["endian"] is None):
        raise RecordingError(f"{where}unknown SigMF datatype {datatype!r} (expected e.g. cf32_le, ci16_le, ci8, "
                             f"cu8: 8-bit types have no endianness, wider ones need _le or _be)")
    if m["kind"] == "r":
        raise RecordingError(f"{where}real-valued datatype {datatype!r}: gr-hqarf needs complex IQ samples")
    info = dtype_info(str(datatype))  # the sigmf package's mapping (the pattern above admits only valid types)
    if not info["is_fixedpoint"]:
        return info["component_dtype"], 0.0, 1.0
    half = 2.0 ** (8 * info["component_size"] - 1)
    return info["component_dtype"], -half if info["is_unsigned"] else 0.0, 1.0 / half


def sigmf_paths(path) -> tuple[Path, Path]:
    """(meta, data) paths of the SigMF recording named by its base name, meta, data or archive name."""
    p = Path(path)
    if p.name.endswith((META_EXT, DATA_EXT, ARCHIVE_EXT)):
        p = p.with_suffix("")
    return p.with_name(p.name + META_EXT), p.with_name(p.name + DATA_EXT)


def detect_format(path, fmt: str | None = None) -> str:
    """'sigmf', 'sigmf-archive' or a SigMF datatype for a raw file, from `fmt` or the file name."""
    p = Path(path)
    if fmt:
        fmt = str(fmt).lower()
        if fmt == "sigmf":
            return "sigmf-archive" if p.name.endswith(ARCHIVE_EXT) else "sigmf"
        datatype = FORMAT_ALIASES.get(fmt, fmt)
        parse_datatype(datatype, p)  # raises on an unknown format, naming the file
        return datatype
    if p.name.endswith(ARCHIVE_EXT):
        return "sigmf-archive"
    if p.name.endswith((META_EXT, DATA_EXT)) or (not p.exists() and sigmf_paths(p)[0].exists()):
        return "sigmf"
    datatype = RAW_EXTENSIONS.get(p.suffix.lower())
    if datatype is None:
        raise RecordingError(f"{p}: cannot tell the format from the file name; give it explicitly "
                             f"(sigmf, cf32, ci16, or a SigMF datatype such as cu8)")
    return datatype


class Recording:
    """A complex IQ recording opened for reading; samples stay on disk until `read`.

    `metadata` is SigMF-shaped for every format: {"global": {...}, "captures": [...],
    "annotations": [...]}; a raw file gets a synthesised global with its datatype.
    """

    def __init__(self, path: Path, datatype: str, metadata: dict, fmt: str, offset: int = 0,
                 size: int | None = None, meta_path: Path | None = None):
        self.path = Path(path)
        self.meta_path = meta_path
        self.datatype = datatype
        self.format = fmt
        self.metadata = metadata
        self._component, self._offset, self._scale = parse_datatype(datatype, self.path)
        try:
            total = self.path.stat().st_size if size is None else size
        except OSError as exc:
            raise RecordingError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        sample_bytes = 2 * self._component.itemsize
        if total % sample_bytes:
            raise RecordingError(f"{self.path}: {total} bytes is not a whole number of {datatype} samples "
                                 f"({sample_bytes} bytes each): truncated, or not {datatype}")
        self.num_samples = total // sample_bytes
        self.data_bytes = total
        if self.num_samples == 0:
            self._raw = np.zeros((0, 2), self._component)
        else:
            try:
                self._raw = np.memmap(self.path, dtype=self._component, mode="r", offset=offset,
                                      shape=(self.num_samples, 2))
            except (OSError, ValueError) as exc:
                raise RecordingError(f"{self.path}: cannot map the samples ({exc})") from None

    @property
    def sample_rate(self) -> float | None:
        rate = self.metadata.get("global", {}).get("core:sample_rate")
        return float(rate) if isinstance(rate, (int, float)) and rate > 0 else None

    def __len__(self) -> int:
        return self.num_samples

    def read(self, start: int = 0, count: int | None = None) -> np.ndarray:
        """Samples [start, start + count) as a complex64 array (a copy, clipped to the recording)."""
        stop = self.num_samples if count is None else min(self.num_samples, start + count)
        raw = self._raw[start:stop]
        if self.datatype == "cf32_le":
            return np.ascontiguousarray(raw).view(np.complex64).reshape(-1).copy()
        parts = raw.astype(np.float32)
        if self._offset:
            parts += np.float32(self._offset)
        if self._scale != 1.0:
            parts *= np.float32(self._scale)
        return (parts[:, 0] + 1j * parts[:, 1]).astype(np.complex64)

    def chunks(self, count: int):
        """Yield (start, samples) slices of at most `count` samples, in order."""
        for start in range(0, self.num_samples, count):
            yield start, self.read(start, count)

    def __repr__(self):
        return f"Recording({str(self.path)!r}, {self.datatype}, {self.num_samples} samples)"


def parse_metadata(text, where, require_datatype: bool = True) -> dict:
    """JSON text (str or UTF-8 bytes) -> checked SigMF metadata (check_metadata), or RecordingError."""
    if len(text) > MAX_METADATA_BYTES:
        raise RecordingError(f"{where}: metadata of {len(text)} bytes, more than the "
                             f"{MAX_METADATA_BYTES >> 20} MiB gr-hqarf reads")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordingError(f"{where}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise RecordingError(f"{where}: metadata nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:  # e.g. an integer of more than 4300 digits
        raise RecordingError(f"{where}: not valid JSON ({exc})") from None
    return check_metadata(meta, where, require_datatype)


def _check_nesting(meta, where) -> None:
    """Iteratively: nesting depth within MAX_METADATA_DEPTH, and no NaN or infinite numbers
    (JSON has none; Python's parser accepts them, and no SigMF writer may write them back)."""
    stack = [(meta, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise RecordingError(f"{where}: metadata holds a NaN or infinite number")
        if isinstance(value, (dict, list)):
            if depth > MAX_METADATA_DEPTH:
                raise RecordingError(f"{where}: metadata nested deeper than {MAX_METADATA_DEPTH} levels")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_metadata(meta, where, require_datatype: bool = True) -> dict:
    """Check the shape of SigMF metadata before anything uses it; fills in missing captures /
    annotations lists. Raises RecordingError naming the first field of the wrong type."""
    if not isinstance(meta, dict) or not isinstance(meta.get("global"), dict):
        raise RecordingError(f"{where}: not SigMF metadata (no \"global\" object)")
    _check_nesting(meta, where)
    for key in ("captures", "annotations"):
        meta.setdefault(key, [])
        if not isinstance(meta[key], list) or not all(isinstance(a, dict) for a in meta[key]):
            raise RecordingError(f"{where}: \"{key}\" must be a list of objects")
        for i, entry in enumerate(meta[key]):
            for name in _COUNT_FIELDS:
                if name in entry and not _is_count(entry[name]):
                    raise RecordingError(f"{where}: {key}[{i}] {name} must be a non-negative integer, "
                                         f"got {entry[name]!r:.40}")
    g = meta["global"]
    if require_datatype and "core:datatype" not in g:
        raise RecordingError(f"{where}: global has no core:datatype")
    if "core:datatype" in g and not isinstance(g["core:datatype"], str):
        raise RecordingError(f"{where}: core:datatype must be a string")
    rate = g.get("core:sample_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))):
        raise RecordingError(f"{where}: core:sample_rate must be a number, got {rate!r:.40}")
    extensions = g.get("core:extensions")
    if extensions is not None and (not isinstance(extensions, list)
                                   or not all(isinstance(e, dict) for e in extensions)):
        raise RecordingError(f"{where}: core:extensions must be a list of objects")
    for name in ("core:trailing_bytes", "core:num_channels"):
        if g.get(name) is not None and not _is_count(g[name]):
            raise RecordingError(f"{where}: {name} must be a non-negative integer, got {g[name]!r:.40}")
    if g.get("core:dataset") is not None and not isinstance(g["core:dataset"], str):
        raise RecordingError(f"{where}: core:dataset must be a string")
    return meta


def _load_meta(text: str, where) -> dict:
    meta = parse_metadata(text, where)
    g = meta["global"]
    if g.get("core:metadata_only"):
        raise RecordingError(f"{where}: a metadata-only recording (core:metadata_only) has no samples")
    if g.get("core:num_channels", 1) not in (1, None):
        raise RecordingError(f"{where}: {g['core:num_channels']} interleaved channels; gr-hqarf reads "
                             f"single-channel recordings")
    return meta


def _byte_range(meta: dict, total: int, where) -> tuple[int, int]:
    """(offset, size) of the samples, allowing SigMF's header and trailing bytes (non-conforming datasets)."""
    header = [c.get("core:header_bytes", 0) or 0 for c in meta["captures"]]  # checked: integers >= 0
    if any(header[1:]):
        raise RecordingError(f"{where}: header bytes inside the data (core:header_bytes after the first "
                             f"capture) are not supported")
    offset = header[0] if header else 0
    trailing = meta["global"].get("core:trailing_bytes", 0) or 0
    if offset + trailing > total:
        raise RecordingError(f"{where}: core:header_bytes {offset} and core:trailing_bytes {trailing} "
                             f"exceed the {total}-byte data file")
    return offset, total - offset - trailing


def open_recording(path, fmt: str | None = None, sample_rate: float | None = None) -> Recording:
    """Open a SigMF recording (by base, .sigmf-meta, .sigmf-data or .sigmf archive name) or a raw file.

    `fmt` ("sigmf", "cf32", "ci16", or any complex SigMF datatype) overrides the file name;
    `sample_rate` (Hz) fills in a missing core:sample_rate (raw files have none).
    """
    kind = detect_format(path, fmt)
    if kind == "sigmf":
        rec = _open_sigmf(path)
    elif kind == "sigmf-archive":
        rec = _open_archive(Path(path))
    else:
        p = Path(path)
        if not p.is_file():
            raise RecordingError(f"{p}: {'not a file' if p.exists() else 'no such file'}")
        meta = {"global": {"core:datatype": kind, "core:version": SIGMF_VERSION},
                "captures": [{"core:sample_start": 0}], "annotations": []}
        rec = Recording(p, kind, meta, "raw")
    if sample_rate and not rec.sample_rate:
        rec.metadata["global"]["core:sample_rate"] = float(sample_rate)
    return rec


def _open_sigmf(path) -> Recording:
    meta_path, data_path = sigmf_paths(path)
    if not meta_path.is_file():
        hint = f" (read {data_path.name} as raw samples with an explicit format)" if data_path.exists() else ""
        raise RecordingError(f"{meta_path}: no such SigMF metadata file{hint}")
    try:
        if meta_path.stat().st_size > MAX_METADATA_BYTES:
            raise RecordingError(f"{meta_path}: {meta_path.stat().st_size} bytes of metadata, more than the "
                                 f"{MAX_METADATA_BYTES >> 20} MiB gr-hqarf reads")
        text = meta_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{meta_path}: cannot read ({exc})") from None
    meta = _load_meta(text, meta_path)
    dataset = meta["global"].get("core:dataset")
    if dataset:  # a non-conforming dataset names its data file
        data_path = meta_path.parent / str(dataset)
    if not data_path.is_file():
        raise RecordingError(f"{data_path}: no such SigMF data file (named by {meta_path.name})")
    datatype = str(meta["global"]["core:datatype"])
    parse_datatype(datatype, meta_path)
    offset, size = _byte_range(meta, data_path.stat().st_size, meta_path)
    return Recording(data_path, datatype, meta, "sigmf", offset, size, meta_path)


def _open_archive(path: Path) -> Recording:
    """A .sigmf archive: an uncompressed tar holding one .sigmf-meta and its .sigmf-data."""
    if not path.is_file():
        raise RecordingError(f"{path}: no such file")
    try:
        with tarfile.open(path, "r:") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            metas = [n for n in members if n.endswith(META_EXT)]
            if len(metas) != 1:
                raise RecordingError(f"{path}: a SigMF archive with {len(metas)} recordings; gr-hqarf "
                                     f"reads archives of exactly one")
            if members[metas[0]].size > MAX_METADATA_BYTES:
                raise RecordingError(f"{path}: {metas[0]} is {members[metas[0]].size} bytes, more than the "
                                     f"{MAX_METADATA_BYTES >> 20} MiB of metadata gr-hqarf reads")
            text = tar.extractfile(members[metas[0]]).read().decode("utf-8")
            data = members.get(metas[0][: -len(META_EXT)] + DATA_EXT)
    except (tarfile.TarError, OSError, UnicodeDecodeError) as exc:
        raise RecordingError(f"{path}: not a readable SigMF archive ({exc})") from None
    meta = _load_meta(text, f"{path}:{metas[0]}")
    if data is None:
        raise RecordingError(f"{path}: archive has no data file beside {metas[0]}")
    datatype = str(meta["global"]["core:datatype"])
    offset, size = _byte_range(meta, data.size, path)
    # The data member is stored verbatim inside the tar, so it can be mapped in place.
    return Recording(path, datatype, meta, "sigmf", data.offset_data + offset, size, path)


def read_recording(path, fmt: str | None = None) -> tuple[np.ndarray, dict]:
    """The whole recording: (complex64 samples, SigMF-shaped metadata dict)."""
    rec = open_recording(path, fmt)
    return rec.read(), rec.metadata


# -- writing ----------------------------------------------------------------------------------
def _declared_extensions(meta: dict) -> list:
    """core:extensions, declaring the hqarf namespace when the file uses it (SigMF asks for it).

    Other undeclared namespaces come from the input and are left as they were: their versions are
    not ours to invent."""
    declared = list(meta["global"].get("core:extensions", []) or [])
    names = {e.get("name") for e in declared if isinstance(e, dict)}
    used = any(k.startswith("hqarf:") for part in (meta["global"], *meta["captures"], *meta["annotations"])
               for k in part)
    if used and "hqarf" not in names:
        declared.append({"name": "hqarf", "version": "0.1.0", "optional": True})
    return declared


class SigMFWriter:
    """Write a cf32_le SigMF recording a chunk at a time; the metadata is written on `close`.

    Both files appear only when `close` succeeds (written under temporary names, then renamed),
    so an interrupted write never leaves a half recording that looks complete.
    """

    def __init__(self, path, sample_rate: float | None = None, global_fields: dict | None = None,
                 captures: list | None = None, annotations: list | None = None):
        self.meta_path, self.data_path = sigmf_paths(path)
        check_metadata({"global": dict(global_fields or {}), "captures": list(captures or []),
                        "annotations": list(annotations or [])}, self.meta_path, require_datatype=False)
        self.global_fields = {k: v for k, v in (global_fields or {}).items() if k not in STORAGE_FIELDS}
        if sample_rate:
            self.global_fields["core:sample_rate"] = float(sample_rate)
        elif not (isinstance(self.global_fields.get("core:sample_rate"), (int, float))
                  and self.global_fields["core:sample_rate"] > 0):
            self.global_fields.pop("core:sample_rate", None)
            warnings.warn(f"{self.meta_path}: no sample rate known, so none is written (core:sample_rate); "
                          "give one where the recording is read or compressed (--sample-rate)", RecordingWarning,
                          stacklevel=2)
        if self.global_fields.get("core:num_channels", 1) != 1:
            raise RecordingError(f"{self.meta_path}: gr-hqarf writes single-channel recordings, "
                                 f"not core:num_channels {self.global_fields['core:num_channels']}")
        self.captures = [dict(c) for c in (captures or [{"core:sample_start": 0}])]
        for c in self.captures:
            c.pop("core:header_bytes", None)
        self.annotations = [dict(a) for a in (annotations or [])]
        self.num_samples = 0
        self._sha = hashlib.sha512()
        self._tmp_data = self.data_path.with_name(f".{self.data_path.name}.{os.getpid()}.tmp")
        try:
            self._file = open(self._tmp_data, "wb")
        except OSError as exc:
            raise RecordingError(f"{self.data_path}: cannot write ({exc.strerror or exc})") from None

    def write(self, samples) -> None:
        data = np.ascontiguousarray(np.asarray(samples).reshape(-1), dtype="<c8").tobytes()
        self._sha.update(data)
        self._file.write(data)
        self.num_samples += len(data) // 8

    def metadata(self) -> dict:
        """The metadata `close` writes, valid under the SigMF schema (checked there)."""
        g = {"core:datatype": "cf32_le", "core:version": SIGMF_VERSION}
        if "core:sample_rate" in self.global_fields:
            g["core:sample_rate"] = self.global_fields["core:sample_rate"]
        g.update(self.global_fields)
        g["core:sha512"] = self._sha.hexdigest()
        meta = {"global": g, "captures": sorted(self.captures, key=lambda c: c.get("core:sample_start", 0)),
                "annotations": sorted(self.annotations, key=lambda a: a.get("core:sample_start", 0))}
        extensions = _declared_extensions(meta)
        if extensions:
            g["core:extensions"] = extensions
        return meta

    def close(self) -> tuple[Path, Path]:
        self._file.close()
        tmp_meta = self.meta_path.with_name(f".{self.meta_path.name}.{os.getpid()}.tmp")
        try:
            meta = self.metadata()
            validate_metadata(meta)
            tmp_meta.write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")
            os.replace(self._tmp_data, self.data_path)
            os.replace(tmp_meta, self.meta_path)
        except jsonschema.ValidationError as exc:
            self.abort()
            raise RecordingError(f"{self.meta_path}: the metadata is not valid SigMF ({exc.message})") from None
        except (OSError, ValueError, TypeError, RecursionError) as exc:
            self.abort()
            tmp_meta.unlink(missing_ok=True)
            raise RecordingError(f"{self.meta_path}: cannot write ({exc})") from None
        except BaseException:
            self.abort()
            tmp_meta.unlink(missing_ok=True)
            raise
        return self.meta_path, self.data_path

    def abort(self) -> None:
        self._file.close()
        self._tmp_data.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_sigmf(path, samples, sample_rate: float | None = None, global_fields: dict | None = None,
                captures: list | None = None, annotations: list | None = None) -> tuple[Path, Path]:
    """Write complex samples as `<path>.sigmf-meta` + `<path>.sigmf-data` (cf32_le); returns both paths.

    `global_fields` adds fields to the global object (namespaced keys such as "hqarf:level" are
    declared in core:extensions); the datatype, version and sha512 are always this file's own.
    """
    with SigMFWriter(path, sample_rate, global_fields, captures, annotations) as writer:
        writer.write(samples)
    return writer.meta_path, writer.data_path


def frame_annotations(labels, frame_len: int, start: int = 0, **fields) -> list:
    """One annotation per frame: core:sample_start/count and core:label; `fields` maps a key to
    one value per frame (e.g. {"hqarf:class_index": [...]}) or a single value for all."""
    out = []
    for i, label in enumerate(labels):
        a = {"core:sample_start": start + i * frame_len, "core:sample_count": frame_len, "core:label": str(label)}
        for key, value in fields.items():
            a[key] = value[i] if isinstance(value, (list, tuple, np.ndarray)) else value
            if isinstance(a[key], np.generic):
                a[key] = a[key].item()
        out.append(a)
    return out


def frame_labels(metadata: dict, num_frames: int, frame_len: int) -> list:
    """The core:label of each frame: the labelled annotation covering most of it (at least half),
    or None. Frame i covers samples [i * frame_len, (i + 1) * frame_len)."""
    best = [(0, None)] * num_frames
    for a in metadata.get("annotations", []):
        label = a.get("core:label")
        start, count = a.get("core:sample_start"), a.get("core:sample_count")
        if label is None or not isinstance(start, int) or not isinstance(count, int) or count <= 0:
            continue
        stop = start + count
        for f in range(max(0, start // frame_len), min(num_frames, -(-stop // frame_len))):
            overlap = min(stop, (f + 1) * frame_len) - max(start, f * frame_len)
            if overlap * 2 >= frame_len and overlap > best[f][0]:
                best[f] = (overlap, str(label))
    return [label for _, label in best]
