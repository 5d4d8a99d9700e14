# SPDX-License-Identifier: GPL-3.0-or-later
"""Inference runtimes for the codec and the classifier: eager PyTorch, TorchScript (frozen) and
ONNX Runtime, chosen by name, with per-caller thread control.

Every backend runs the model's own functions as whole functions per level: `model.encode(x, level)`
and `model.decode(idx, level)` (the codec) and `net(x)` (the classifier), wrapped in small modules
that are traced (TorchScript) or exported (`torch.onnx`) from the weights in memory. Nothing is
re-implemented and nothing is downloaded, so a model whose decoding path changes is exported as it is.

- "torch": eager PyTorch (the default). The reference.
- "torchscript": `torch.jit.trace` + `torch.jit.freeze(optimize_numerics=False)`, built lazily per
  level at first use, in memory only (a TorchScript file is code; it is never loaded from disk).
  Same kernels as eager torch: identical codes and reconstructions (tested at every level).
- "onnx": ONNX Runtime, CPU. Each instance has its own thread pools (true per-block threads).
  The exported graphs are cached beside the weights (or under ~/.cache/hqarf when that folder is not
  writable), named by the weights fingerprint and the torch / onnxruntime versions. ORT's kernels
  round differently (latents within ~1e-5), so a token whose two nearest codewords are within
  rounding of each other can take the other one: codes agree to about 1 token in 10^4-10^5, not
  bit for bit; see README "Speed".

Threads: a caller's `num_threads` n > 1 runs its chunks of frames on n worker threads of one
intra-op thread each (`Runtime.map`; a batch smaller than n chunks is cut into n pieces), not
each chunk on n intra-op threads, which at 16-frame chunks mostly synchronises (session 22, 2
cores, 2048 frames: encode at level 0 10.2 Msps on one thread, 14.5 on two intra-op threads, 17.3
on two workers; level 4 1.27 / 1.69 / 2.11). A frame's result does not depend on its batch (the
codes are one thread's). torch's thread count is process-wide: `torch_threads(n)` lets calls that
want the same count run together and makes a call that wants another count wait until they are
done, so one block's setting never changes another block's call in flight. n = 0 leaves torch's
setting alone.
"""
from __future__ import annotations

import contextlib
import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn

RUNTIMES = ("torch", "torchscript", "onnx")
DEFAULT_RUNTIME = "torch"
ONNX_OPSET = 17
# Bumped whenever model.encode / model.decode compute in another way (so a graph exported by older
# code is not read from the cache): 2 = the projection folded into the search, decoders' first
# convolution from per-codeword tables.
GRAPH_VERSION = 2

_cond = threading.Condition()
_active = 0          # calls running under the current torch thread count
_current = None      # the count they run under


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a torch call under `n` intra-op threads without changing other callers' calls in flight."""
    global _active, _current
    n = int(n or 0)
    if n <= 0:
        yield
        return
    with _cond:
        while _active and _current != n:
            _cond.wait()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        _current = n
        _active += 1
    try:
        yield
    finally:
        with _cond:
            _active -= 1
            if not _active:
                _cond.notify_all()


def check_runtime(name) -> str:
    name = str(name or DEFAULT_RUNTIME).lower()
    if name not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {name!r}")
    if name == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise ValueError(f"runtime 'onnx' needs onnxruntime ({exc}); install requirements/requirements.txt "
                             f"with -c requirements/constraints.txt") from None
    return name


class _LevelFunction(nn.Module):
    """model.encode or model.decode at one level, as a module to trace or export."""

    def __init__(self, model, method: str, level: int):
        super().__init__()
        self.model, self.method, self.level = model, method, level
        self.eval()

    def forward(self, x):
        return getattr(self.model, self.method)(x, self.level)


class _Whole(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net
        self.eval()

    def forward(self, x):
        return self.net(x)


def cache_dir(weights_dir, fingerprint: str) -> Path:
    """Where exported graphs of the model with `fingerprint` go: beside its weights, or ~/.cache."""
    candidates = []
    if weights_dir is not None:
        candidates.append(Path(weights_dir) / ".hqarf-cache")
    candidates.append(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hqarf")
    for base in candidates:
        try:
            base.mkdir(parents=True, exist_ok=True)
            probe = base / f".probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
            return base
        except OSError:
            continue
    return None


class Runtime:
    """Runs wrapped model functions ("encode", level) / ("decode", level) / ("net", None) on a backend.

    `call(kind, level, array)` takes a numpy array (float32 IQ, or int64 indices) and returns a numpy
    array; `map(kind, level, array, chunk)` splits it into chunks of `chunk` frames and, with
    num_threads n > 1, runs them on n worker threads of one intra-op thread each (module docstring).
    Graphs are built lazily, once per (kind, level)."""

    def __init__(self, module: nn.Module, runtime: str = DEFAULT_RUNTIME, num_threads: int = 0,
                 device="cpu", fingerprint: str = "", weights_dir=None, example=None):
        self.name = check_runtime(runtime)
        self.module = module
        self.device = torch.device(device)
        self.num_threads = int(num_threads or 0)
        # n > 1: n workers, each call on one thread (torch_threads(1), one ONNX Runtime thread)
        self.workers = self.num_threads if self.num_threads > 1 else 1
        self._call_threads = 1 if self.workers > 1 else self.num_threads
        # threads start at the first submit, so a pool costs nothing until used
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="hqarf-runtime") if self.workers > 1 else None
        self.fingerprint = fingerprint
        self.weights_dir = weights_dir
        self._example = example            # (kind, level) -> example input tensor for tracing/export
        self._graphs: dict = {}
        self._lock = threading.Lock()
        if self.name == "onnx" and self.device.type != "cpu":
            raise ValueError("runtime 'onnx' runs on the CPU only (use torch or torchscript with a GPU)")

    def _wrapper(self, kind, level):
        if kind in ("encode", "decode"):
            return _LevelFunction(self.module, kind, level)
        return _Whole(self.module)

    def _graph(self, kind, level):
        key = (kind, level)
        graph = self._graphs.get(key)
        if graph is None:
            with self._lock:
                graph = self._graphs.get(key)
                if graph is None:
                    graph = self._build(kind, level)
                    self._graphs[key] = graph
        return graph

    def _build(self, kind, level):
        wrapper = self._wrapper(kind, level)
        example = self._example(kind, level).to(self.device)
        was_training = self.module.training
        try:
            with torch.no_grad(), torch_threads(self._call_threads):
                if self.name == "torchscript":
                    traced = torch.jit.trace(wrapper, (example,), check_trace=False)
                    return torch.jit.freeze(traced.eval(), optimize_numerics=False)
                return self._onnx_session(wrapper, example, kind, level)
        finally:
            self.module.train(was_training)

    def _onnx_session(self, wrapper, example, kind, level):
        import warnings

        import onnxruntime as ort
        name = f"{kind}{'' if level is None else level}"
        base = cache_dir(self.weights_dir, self.fingerprint) if self.fingerprint else None
        path = None
        if base is not None:
            tag = f"{self.fingerprint}-{name}-torch{torch.__version__}-ort{ort.__version__}-op{ONNX_OPSET}-g{GRAPH_VERSION}"
            path = base / (tag.replace("+", "_") + ".onnx")
        blob = path.read_bytes() if path is not None and path.exists() else None
        if blob is None:
            buf = io.BytesIO()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(wrapper, (example,), buf, dynamo=False, input_names=["x"],
                                  output_names=["y"], opset_version=ONNX_OPSET,
                                  dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
            blob = buf.getvalue()
            if path is not None:
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                try:
                    tmp.write_bytes(blob)
                    os.replace(tmp, path)
                except OSError:
                    pass
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._call_threads or 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        return ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])

    def call(self, kind: str, level, array: np.ndarray) -> np.ndarray:
        """One forward pass of the wrapped function on `array` (numpy in, numpy out)."""
        if self.name == "onnx":
            return self._graph(kind, level).run(None, {"x": np.ascontiguousarray(array)})[0]
        with torch.inference_mode() if self.name == "torch" else torch.no_grad(), torch_threads(self._call_threads):
            x = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
            if self.name == "torch":
                if kind == "encode":
                    y = self.module.encode(x, level)
                elif kind == "decode":
                    y = self.module.decode(x, level)
                else:
                    y = self.module(x)
            else:
                y = self._graph(kind, level)(x)
            return y.cpu().numpy()

    def map(self, kind: str, level, array: np.ndarray, chunk: int) -> list:
        """`call` on consecutive pieces of at most `chunk` frames of `array`, in order: a list of numpy
        arrays. With several workers the pieces run concurrently (torch and ONNX Runtime release the
        GIL inside their kernels), and a batch of fewer than workers x chunk frames is cut into one
        piece per worker (a 16-frame PDU into two of 8 on two threads). A frame's result does not
        depend on its batch: codes are the same, reconstructions equal or within float rounding
        (tests/test_runtime.py)."""
        n = len(array)
        if self.workers == 1 or n < 2:
            return [self.call(kind, level, array[i:i + chunk]) for i in range(0, n, chunk)]
        pieces = np.array_split(array, max(-(-n // chunk), min(self.workers, n)))

        def work(run):
            return [self.call(kind, level, pieces[i]) for i in run]
        # contiguous runs of pieces per worker, one run per worker
        runs = np.array_split(np.arange(len(pieces)), min(self.workers, len(pieces)))
        futures = [self._pool.submit(work, run) for run in runs]
        return [out for f in futures for out in f.result()]
