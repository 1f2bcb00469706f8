"""Speed of mpsnorm's CPU kernels against NumPy/SciPy (and PyTorch, when installed),
side by side in one run: ``python -m mpsnorm bench [--full]``.

This module is the one place that holds the timing logic and the reference
implementations; the pytest-benchmark suite in ``bench/`` imports them.

* Reference LCN: SciPy box filters (``scipy.ndimage.uniform_filter``), the
  usual NumPy way; PyTorch: ``avg_pool2d`` + autograd.
* Reference instance norm: NumPy reductions; PyTorch: ``F.instance_norm`` +
  autograd (the backward timed alone, the forward already done).
* Roofline: the bytes a kernel must move (gradients read x and dy and write
  dx: 3 tensors; forwards 2) over the copy bandwidth NumPy reaches on a
  tensor of the same size in the same run.

NumPy, SciPy and PyTorch are imported lazily; a missing one is reported in the
table, never an error. Before NumPy is first imported, its BLAS is limited to one
thread (unless OPENBLAS_NUM_THREADS is set): no reference here uses BLAS, and
OpenBLAS's idle worker spinning took a share of a core from the threads under test
(1 -> 2 thread speed-ups of about 1.5x instead of about 1.95x on a 2-core machine).
"""
import argparse
import gc
import os
import statistics
import subprocess
import sys
import threading
import time

import mpsnorm

DEFAULT_LCN = dict(alpha=1.0, beta=0.5, delta=1.0 / 1024.0, p0=1.0, pm=0.0, ps=1.0)
INORM_SHAPE = (32, 32, 128, 128)
LCN_SHAPE = (4, 16, 256, 256)


# ---- optional libraries ----------------------------------------------------------------------

def quiet_blas():
    """Limits OpenBLAS to one thread if NumPy is not imported yet (see the module's notes)."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _numpy():
    import numpy
    return numpy


def scipy_ndimage():
    """scipy.ndimage, or None when SciPy is not installed."""
    try:
        import scipy.ndimage
    except ImportError:
        return None
    return scipy.ndimage


def torch_module():
    """torch, or None when PyTorch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


# ---- timing ----------------------------------------------------------------------------------

def time_call(fn, repeat=5, warmup=1, min_time=0.0):
    """Best and median wall time of fn() in seconds over `repeat` calls (after
    `warmup` calls); small calls are looped so each sample lasts min_time."""
    for _ in range(warmup):
        fn()
    loops = 1
    if min_time > 0:
        t0 = time.perf_counter()
        fn()
        single = time.perf_counter() - t0
        loops = max(1, int(min_time / max(single, 1e-9)))
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        samples.append((time.perf_counter() - t0) / loops)
    return {"best": min(samples), "median": statistics.median(samples), "samples": samples}


def time_pair(fn_a, fn_b, repeat=5, min_time=0.0):
    """Best wall times (a, b) of two calls timed alternately, a sample of each per round:
    a ratio of the two is then taken under the same conditions even when the machine's
    speed drifts during the run (as on a shared virtual machine)."""
    timers = []
    for fn in (fn_a, fn_b):
        fn()  # warm-up
        loops = 1
        if min_time > 0:
            t0 = time.perf_counter()
            fn()
            loops = max(1, int(min_time / max(time.perf_counter() - t0, 1e-9)))
        timers.append((fn, loops, []))
    for _ in range(repeat):
        for fn, loops, samples in timers:
            t0 = time.perf_counter()
            for _ in range(loops):
                fn()
            samples.append((time.perf_counter() - t0) / loops)
    return min(timers[0][2]), min(timers[1][2])


def copy_bandwidth(nbytes, repeat=5):
    """Bytes per second NumPy's copy moves (read + write) on arrays of nbytes."""
    np = _numpy()
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.zeros_like(src)
    t = time_call(lambda: np.copyto(dst, src), repeat=repeat)["best"]
    return 2 * src.nbytes / t


def roofline_fraction(tensor_bytes, tensors, seconds, bandwidth):
    """Time the memory traffic alone would take over the measured time."""
    return tensors * tensor_bytes / bandwidth / seconds


# ---- inputs ----------------------------------------------------------------------------------

def make_inputs(shape, dtype="float32", layout="NCHW", view="contiguous", seed=0):
    """x, dy and an output array, logical (N, C, H, W) shape, stored NCHW or NHWC;
    view "strided" gives every second element of arrays twice as wide."""
    np = _numpy()
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    stored = (n, h, w, c) if layout == "NHWC" else (n, c, h, w)
    if view == "strided":
        stored = stored[:-1] + (2 * stored[-1],)
    arrays = []
    for k in range(3):
        a = rng.standard_normal(stored, dtype=np.float32).astype(dtype)
        if k == 0:
            a += 0.5
        if view == "strided":
            a = a[..., ::2]
        arrays.append(a)
    return arrays[0], arrays[1], arrays[2]


def nchw(a, layout):
    """The logical NCHW view of an array stored in `layout`."""
    return a.transpose(0, 3, 1, 2) if layout == "NHWC" else a


# ---- LCN references --------------------------------------------------------------------------

def _box_mean(ndimage, a, k, mirrored):
    """Zero-padded window mean over H, W of a logical NCHW array; window of pixel i:
    [i - (k-1)//2, i + k//2] (mirrored: [i - k//2, i + (k-1)//2])."""
    # uniform_filter's window for origin 0 is [i - k//2, i + (k-1)//2]
    origin = 0 if (k % 2 == 1 or mirrored) else -1
    return ndimage.uniform_filter(a, size=(1, 1, k, k), mode="constant", cval=0.0,
                                  origin=(0, 0, origin, origin))


def lcn_forward_numpy(x, k, alpha=1.0, beta=0.5, delta=1.0 / 1024.0, p0=1.0, pm=0.0, ps=1.0):
    np = _numpy()
    ndimage = scipy_ndimage()
    x = x.astype(np.float32, copy=False)
    m = _box_mean(ndimage, x, k, False)
    var = np.maximum(_box_mean(ndimage, x * x, k, False) - m * m, 0)
    return pm + ps * (x - p0 * m) * (delta + alpha * var) ** -beta


def lcn_gradient_numpy(dy, x, k, alpha=1.0, beta=0.5, delta=1.0 / 1024.0, p0=1.0, pm=0.0,
                       ps=1.0):
    """SPEC.md's gradient with SciPy box filters (what a NumPy user writes)."""
    np = _numpy()
    ndimage = scipy_ndimage()
    x = x.astype(np.float32, copy=False)
    dy = dy.astype(np.float32, copy=False)
    m = _box_mean(ndimage, x, k, False)
    var = np.maximum(_box_mean(ndimage, x * x, k, False) - m * m, 0)
    t = delta + alpha * var
    d = t ** -beta
    g = dy * d
    u = g * (x - p0 * m) / t
    return ps * (g - p0 * _box_mean(ndimage, g, k, True)
                 - 2 * alpha * beta * (x * _box_mean(ndimage, u, k, True)
                                       - _box_mean(ndimage, u * m, k, True)))


def _torch_lcn(torch, xt, k, alpha, beta, delta, p0, pm, ps):
    f = torch.nn.functional
    pad = ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2)

    def box(a):
        return f.avg_pool2d(f.pad(a, pad), k, stride=1)

    m = box(xt)
    var = torch.clamp(box(xt * xt) - m * m, min=0)
    return pm + ps * (xt - p0 * m) * (delta + alpha * var) ** -beta


# ---- the cases -------------------------------------------------------------------------------

def lcn_impls(kind, shape, k, dtype="float32", layout="NCHW", view="contiguous", params=None,
              references=True):
    """({"mpsnorm": fn, "numpy": fn or None, "torch": fn or None}, bytes of one tensor,
    (x, dy, out)); references=False leaves out NumPy and PyTorch."""
    np = _numpy()
    params = dict(DEFAULT_LCN if params is None else params)
    x, dy, out = make_inputs(shape, dtype, layout, view)
    impls = {}
    if kind == "gradient":
        op = mpsnorm.LocalContrastNormalizationGradient(k, layout=layout, **params)
        impls["mpsnorm"] = lambda: op(dy, x, out=out)
    else:
        op = mpsnorm.LocalContrastNormalization(k, layout=layout, **params)
        impls["mpsnorm"] = lambda: op(x, out=out)
    xl, dyl = nchw(x, layout), nchw(dy, layout)
    if not references:
        return impls, x.size * x.itemsize, (x, dy, out)
    if scipy_ndimage() is not None:
        if kind == "gradient":
            impls["numpy"] = lambda: lcn_gradient_numpy(dyl, xl, k, **params)
        else:
            impls["numpy"] = lambda: lcn_forward_numpy(xl, k, **params)
    else:
        impls["numpy"] = None
    torch = torch_module()
    if torch is not None and dtype != "float16":
        xt = torch.from_numpy(np.ascontiguousarray(xl, dtype=np.float32))
        dyt = torch.from_numpy(np.ascontiguousarray(dyl, dtype=np.float32))
        if kind == "gradient":
            xt.requires_grad_(True)
            yt = _torch_lcn(torch, xt, k, **params)
            impls["torch"] = lambda: torch.autograd.grad(yt, xt, dyt, retain_graph=True)
        else:
            impls["torch"] = lambda: _torch_lcn(torch, xt, k, **params)
    else:
        impls["torch"] = None
    return impls, x.size * x.itemsize, (x, dy, out)


def inorm_forward_numpy(x, eps=1e-5):
    np = _numpy()
    x = x.astype(np.float32, copy=False)
    mu = x.mean(axis=(2, 3), keepdims=True)
    var = x.var(axis=(2, 3), keepdims=True)
    return (x - mu) / np.sqrt(var + eps)


def inorm_gradient_numpy(dy, x, eps=1e-5):
    np = _numpy()
    x = x.astype(np.float32, copy=False)
    dy = dy.astype(np.float32, copy=False)
    mu = x.mean(axis=(2, 3), keepdims=True)
    r = 1 / np.sqrt(x.var(axis=(2, 3), keepdims=True) + eps)
    xh = (x - mu) * r
    return r * (dy - dy.mean(axis=(2, 3), keepdims=True)
                - xh * (dy * xh).mean(axis=(2, 3), keepdims=True))


def inorm_impls(kind, shape, dtype="float32", layout="NCHW", view="contiguous",
                references=True):
    """As lcn_impls, for instance normalization."""
    np = _numpy()
    x, dy, out = make_inputs(shape, dtype, layout, view)
    channels = shape[1]
    impls = {}
    if kind == "gradient":
        op = mpsnorm.InstanceNormalizationGradient(channels, layout=layout)
        impls["mpsnorm"] = lambda: op(dy, x, out=out)
    else:
        op = mpsnorm.InstanceNormalization(channels, layout=layout)
        impls["mpsnorm"] = lambda: op(x, out=out)
    xl, dyl = nchw(x, layout), nchw(dy, layout)
    if not references:
        return impls, x.size * x.itemsize, (x, dy, out)
    if kind == "gradient":
        impls["numpy"] = lambda: inorm_gradient_numpy(dyl, xl)
    else:
        impls["numpy"] = lambda: inorm_forward_numpy(xl)
    torch = torch_module()
    if torch is not None and dtype != "float16":
        xt = torch.from_numpy(np.ascontiguousarray(xl, dtype=np.float32))
        dyt = torch.from_numpy(np.ascontiguousarray(dyl, dtype=np.float32))
        f = torch.nn.functional
        if kind == "gradient":
            xt.requires_grad_(True)
            yt = f.instance_norm(xt, eps=1e-5)
            impls["torch"] = lambda: torch.autograd.grad(yt, xt, dyt, retain_graph=True)
        else:
            impls["torch"] = lambda: f.instance_norm(xt, eps=1e-5)
    else:
        impls["torch"] = None
    return impls, x.size * x.itemsize, (x, dy, out)


def call_impls(kernel):
    """The cost of a call on a (1,1,4,4) float32 tensor with every output given: mpsnorm's
    gradient `kernel` ("lcn": 3x3, alpha=1; "inorm": out_gamma/out_beta too) beside
    np.add(a, b, out=c) on the same arrays (the "numpy" entry)."""
    np = _numpy()
    a = np.linspace(0.5, 1.5, 16, dtype=np.float32).reshape(1, 1, 4, 4)
    b, c = a[..., ::-1].copy(), np.empty_like(a)
    if kernel == "lcn":
        op = mpsnorm.LocalContrastNormalizationGradient(3, alpha=1.0)
        call = lambda: op(a, b, out=c)  # noqa: E731
    else:
        op = mpsnorm.InstanceNormalizationGradient(1)
        dgamma, dbeta = np.empty(1, np.float32), np.empty(1, np.float32)
        call = lambda: op(a, b, out=c, out_gamma=dgamma, out_beta=dbeta)  # noqa: E731
    return {"mpsnorm": call, "numpy": lambda: np.add(a, b, out=c), "torch": None}


def check_agreement(impls, tol):
    """Largest |mpsnorm - numpy| relative to max |numpy|: the comparison is like for like."""
    np = _numpy()
    if impls.get("numpy") is None:
        return None
    got = impls["mpsnorm"]()
    if isinstance(got, tuple):
        got = got[0]
    ref = impls["numpy"]()
    got = got.astype(np.float64)
    if got.shape != ref.shape:  # NHWC storage against the logical NCHW reference
        got = got.transpose(0, 3, 1, 2)
    err = float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30))
    assert err <= tol, f"mpsnorm and the NumPy reference disagree: {err:.3g} > {tol}"
    return err


# ---- memory ----------------------------------------------------------------------------------

_MEMORY_PROBE = r"""
import gc, sys, json
import numpy as np, mpsnorm
from mpsnorm import bench
kind, op, shape, k, dtype, layout, threads = json.loads(sys.argv[1])
mpsnorm.set_num_threads(threads)
if op == "lcn":
    impls, nbytes, arrays = bench.lcn_impls(kind, tuple(shape), k, dtype, layout,
                                            references=False)
else:
    impls, nbytes, arrays = bench.inorm_impls(kind, tuple(shape), dtype, layout,
                                              references=False)
run = impls["mpsnorm"]
for a in arrays:
    a[...] = a  # touched
gc.collect()
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) restarts from the current RSS
before = status("VmHWM")
run()
print(json.dumps({"extra": status("VmHWM") - before, "tensor": nbytes}))
"""


def memory_extra(op, kind, shape, k=9, dtype="float32", threads=2, layout="NCHW"):
    """Peak memory a call adds on top of its inputs and output (Linux:
    /proc/self/status VmHWM, reset before the call), in a fresh process.
    Returns (extra bytes, bytes of one tensor), or None where unsupported."""
    if not (sys.platform.startswith("linux") and os.path.exists("/proc/self/clear_refs")):
        return None
    import json
    arg = json.dumps([kind, op, list(shape), k, dtype, layout, threads])
    try:
        # every allocation of 64 KiB or more gets fresh pages, so the peak
        # shows it (glibc otherwise reuses heap pages that are already resident)
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
        result = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, arg], capture_output=True,
                                text=True, timeout=300, env=env)
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except Exception:  # noqa: BLE001 - a probe that cannot run is reported as n/a
        return None
    return data["extra"], data["tensor"]


# ---- threads ---------------------------------------------------------------------------------

def concurrent_ratio(make_fn, repeat):
    """Wall time of two Python threads running a call each (own data, one
    intra-op thread) over the time of the two calls one after the other."""
    fns = [make_fn(seed) for seed in (1, 2)]
    previous = mpsnorm.get_num_threads()
    mpsnorm.set_num_threads(1)

    def both():
        threads = [threading.Thread(target=fn) for fn in fns]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    try:
        sequential, concurrent = time_pair(lambda: (fns[0](), fns[1]()), both, repeat)
    finally:
        mpsnorm.set_num_threads(previous)
    return concurrent / sequential


def thread_speedup(fn, repeat):
    """Time with one intra-op thread over time with two, timed alternately."""
    previous = mpsnorm.get_num_threads()

    def on(n):
        def call():
            mpsnorm.set_num_threads(n)
            fn()
        return call

    try:
        one, two = time_pair(on(1), on(2), repeat)
    finally:
        mpsnorm.set_num_threads(previous)
    return one / two


# ---- the report ------------------------------------------------------------------------------

def _fmt_ms(seconds):
    return "n/a" if seconds is None else f"{seconds * 1e3:.2f} ms"


def _row(rows, what, figure, goal, ok):
    rows.append((what, figure, goal, "n/a" if ok is None else ("yes" if ok else "NO")))


def run_report(full=False, out=sys.stdout):
    """Measures every goal and prints the table; returns the rows."""
    np = _numpy()
    rep = 15 if full else 5
    threads = mpsnorm.get_num_threads()
    rows = []
    notes = []
    print(f"mpsnorm {mpsnorm.__version__} bench ({'full' if full else 'quick'}): "
          f"{threads} intra-op threads, NumPy {np.__version__}, "
          f"SciPy {'missing' if scipy_ndimage() is None else _version('scipy')}, "
          f"PyTorch {'not installed' if torch_module() is None else _version('torch')}",
          file=out)
    torch = torch_module()
    if torch is not None:
        torch.set_num_threads(threads)

    # instance-norm gradient vs PyTorch's backward, and its roofline
    impls, nbytes, _ = inorm_impls("gradient", INORM_SHAPE)
    bw = copy_bandwidth(nbytes, repeat=rep)
    # each ratio from one alternating pair of timings (time_pair)
    t_in, t_np = time_pair(impls["mpsnorm"], impls["numpy"], repeat=max(2, rep // 3))
    t_tb = None
    if impls["torch"]:
        t_in_torch, t_tb = time_pair(impls["mpsnorm"], impls["torch"], repeat=rep)
    print(f"copy bandwidth on a {nbytes / 2**20:.0f} MiB tensor: {bw / 1e9:.1f} GB/s "
          f"(read + write)", file=out)
    speedup_np = t_np / t_in
    if t_tb is not None:
        speedup_torch = t_tb / t_in_torch
        t_in = min(t_in, t_in_torch)
    _row(rows, "inorm grad (32,32,128,128) f32: mpsnorm", _fmt_ms(t_in), "", None)
    _row(rows, "  speed-up over NumPy", f"{speedup_np:.1f}x", "", None)
    if t_tb is None:
        _row(rows, "  speed-up over PyTorch backward alone", "torch not installed", ">= 3x", None)
    else:
        _row(rows, "  speed-up over PyTorch backward alone",
             f"{speedup_torch:.2f}x ({_fmt_ms(t_tb)})", ">= 3x", speedup_torch >= 3)
    frac = roofline_fraction(nbytes, 3, t_in, bw)
    _row(rows, "  roofline (3 tensors / copy bandwidth)", f"{frac:.0%}", ">= 60%", frac >= 0.6)

    # LCN gradient vs SciPy, roofline, window sizes
    impls, nbytes, _ = lcn_impls("gradient", LCN_SHAPE, 9)
    bw = copy_bandwidth(nbytes, repeat=rep)
    t_l9 = time_call(impls["mpsnorm"], repeat=rep)["best"]
    if impls["numpy"] is not None:
        t_l9_pair, t_sp = time_pair(impls["mpsnorm"], impls["numpy"], repeat=max(2, rep // 3))
        t_l9 = min(t_l9, t_l9_pair)
        _row(rows, "LCN grad (4,16,256,256) f32 9x9 alpha=1: mpsnorm", _fmt_ms(t_l9), "", None)
        _row(rows, "  speed-up over NumPy/SciPy (uniform_filter)",
             f"{t_sp / t_l9:.1f}x ({_fmt_ms(t_sp)})", ">= 30x", t_sp / t_l9 >= 30)
    else:
        _row(rows, "LCN grad (4,16,256,256) f32 9x9 alpha=1: mpsnorm", _fmt_ms(t_l9), "", None)
        _row(rows, "  speed-up over NumPy/SciPy", "SciPy not installed", ">= 30x", None)
    if impls["torch"] is not None:
        t_l9_torch, t_lt = time_pair(impls["mpsnorm"], impls["torch"], repeat=max(2, rep // 3))
        _row(rows, "  speed-up over PyTorch backward alone", f"{t_lt / t_l9_torch:.1f}x", "",
             None)
    frac = roofline_fraction(nbytes, 3, t_l9, bw)
    _row(rows, "  roofline (3 tensors / copy bandwidth)", f"{frac:.0%}", ">= 33%", frac >= 0.33)
    t_k = dict(zip((3, 31), time_pair(
        *[lcn_impls("gradient", LCN_SHAPE, k, references=False)[0]["mpsnorm"] for k in (3, 31)],
        repeat=rep)))
    ratio = t_k[31] / t_k[3]
    _row(rows, "LCN grad 31x31 / 3x3", f"{ratio:.2f} ({_fmt_ms(t_k[31])} / {_fmt_ms(t_k[3])})",
         "<= 1.3", ratio <= 1.3)

    # call overhead
    t_add = {}
    for kernel, label in (("lcn", "LCN grad 3x3 out="),
                          ("inorm", "inorm grad out=, out_gamma=, out_beta=")):
        impls = call_impls(kernel)
        t_add[kernel], t_call = time_pair(impls["numpy"], impls["mpsnorm"], repeat=rep,
                                          min_time=0.02)
        ratio = t_call / t_add[kernel]
        _row(rows, f"call overhead (1,1,4,4) {label} / np.add out=",
             f"{ratio:.2f} ({t_call * 1e6:.2f} us / {t_add[kernel] * 1e6:.2f} us)", "<= 2",
             ratio <= 2)

    # threads
    if threads >= 2:
        for name, fn in (("LCN grad 9x9",
                          lcn_impls("gradient", LCN_SHAPE, 9, references=False)[0]["mpsnorm"]),
                         ("inorm grad",
                          inorm_impls("gradient", INORM_SHAPE, references=False)[0]["mpsnorm"])):
            speedup = thread_speedup(fn, rep)
            _row(rows, f"threads: {name} 1 thread / 2 threads", f"{speedup:.2f}x", ">= 1.7x",
                 speedup >= 1.7)
    else:
        notes.append("one CPU: the thread rows need two")
    for name, make in (
            ("LCN grad 9x9", lambda s: lcn_impls("gradient", LCN_SHAPE, 9,
                                                 references=False)[0]["mpsnorm"]),
            ("inorm grad", lambda s: inorm_impls("gradient", INORM_SHAPE,
                                                 references=False)[0]["mpsnorm"])):
        r = concurrent_ratio(make, rep)
        _row(rows, f"threads: 2 Python threads concurrent / sequential, {name}", f"{r:.2f}",
             "<= 0.6", r <= 0.6)

    # dtypes and layouts
    for label, make in (
            ("LCN grad 9x9", lambda **kw: lcn_impls("gradient", LCN_SHAPE, 9, references=False,
                                                    **kw)[0]["mpsnorm"]),
            ("inorm grad", lambda **kw: inorm_impls("gradient", INORM_SHAPE, references=False,
                                                    **kw)[0]["mpsnorm"])):
        base_fn = make()
        for what, kw, limit in (("float16 / float32", dict(dtype="float16"), 1.3),
                                ("NHWC / NCHW", dict(layout="NHWC"), 1.3),
                                ("strided view / contiguous", dict(view="strided"), 2.0)):
            base, t = time_pair(base_fn, make(**kw), repeat=rep)
            _row(rows, f"{label}: {what}", f"{t / base:.2f}", f"<= {limit}", t / base <= limit)

    # memory
    for label, args, layout in (
            ("LCN grad 9x9 (4,16,256,256) f32", ("lcn", "gradient", LCN_SHAPE, 9), "NCHW"),
            ("LCN grad 9x9 (4,16,256,256) f32 NHWC", ("lcn", "gradient", LCN_SHAPE, 9), "NHWC"),
            ("inorm grad (32,32,128,128) f32", ("inorm", "gradient", INORM_SHAPE, 0), "NCHW")):
        m = memory_extra(*args, threads=threads, layout=layout)
        if m is None:
            _row(rows, f"memory: extra peak of one call, {label}", "n/a (needs Linux /proc)",
                 "O(threads x plane)", None)
        else:
            extra, tensor = m
            _row(rows, f"memory: extra peak of one call, {label}",
                 f"{extra / 2**20:.1f} MiB = {extra / tensor:.1%} of one tensor",
                 "O(threads x plane)", extra < 0.25 * tensor)

    _print_table(rows, out)
    for note in notes:
        print(f"note: {note}", file=out)
    return rows


def _version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001
        return "?"


def _print_table(rows, out):
    widths = [max(len(r[i]) for r in rows + [("what", "measured", "goal", "met")])
              for i in range(4)]
    header = ("what", "measured", "goal", "met")
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line, file=out)
    print("-" * len(line), file=out)
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)), file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mpsnorm bench",
                                     description="mpsnorm's CPU kernels against NumPy/SciPy "
                                                 "and PyTorch (ratios measured in one run)")
    parser.add_argument("--full", action="store_true",
                        help="more repetitions (slower, steadier figures)")
    args = parser.parse_args(argv)
    quiet_blas()
    gc.collect()
    run_report(full=args.full)
    return 0


if __name__ == "__main__":
    sys.exit(main())
