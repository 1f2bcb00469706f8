"""Speed of mpsnorm's CPU kernels on this machine, beside NumPy/SciPy (and PyTorch, when
installed), side by side in one run: ``python -m mpsnorm bench [--full]`` prints what it
measures; it sets no goals. The repository's ``bench/`` holds the project's goals
(``bench/goals.py``) and the pytest-benchmark suite, both built on this module's timing
logic and reference implementations.

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
    [i - k//2, i + (k-1)//2] (mirrored: [i - (k-1)//2, i + k//2])."""
    # uniform_filter's window for origin 0 is [i - k//2, i + (k-1)//2]
    origin = -1 if (k % 2 == 0 and mirrored) else 0
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
    """docs/SPEC.md's gradient with SciPy box filters (what a NumPy user writes)."""
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
    pad = (k // 2, (k - 1) // 2, k // 2, (k - 1) // 2)

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


# ---- import ----------------------------------------------------------------------------------

_IMPORT_PROBE = r"""
import sys, time
start = time.perf_counter()
import {module}
print(time.perf_counter() - start, "numpy" in sys.modules)
"""


def import_times(modules, runs):
    """The best time of `import <module>` in a fresh interpreter over `runs` interpreters per
    module (taken in turn, so that both see the same machine), and whether importing it
    brought NumPy in. Returns {module: (seconds, numpy imported)}."""
    best = {module: (float("inf"), False) for module in modules}
    for _ in range(runs):
        for module in modules:
            result = subprocess.run([sys.executable, "-c", _IMPORT_PROBE.format(module=module)],
                                    capture_output=True, text=True, timeout=120, check=True)
            seconds, numpy_loaded = result.stdout.split()
            best[module] = (min(best[module][0], float(seconds)),
                            best[module][1] or numpy_loaded == "True")
    return best


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


# ---- framework adapters ----------------------------------------------------------------------

# Training steps (forward + backward, float32) through mpsnorm.torch's and mpsnorm.mlx's layers,
# beside the framework's own layer (or, for LCN, the avg_pool2d composition a user would write)
# and beside the bare kernels (forward, then gradient, into outputs given once).
ADAPTER_INORM_SHAPES = ((32, 32, 128, 128), (8, 64, 64, 64), (1, 16, 16, 16))
ADAPTER_LCN_WINDOW = 9
ADAPTER_CALL_SHAPE = (1, 8, 16, 16)  # (N, C, H, W): MLX's (1, 16, 16, 8)
MLX_LCN_COMPOSITION_SHAPE = (1, 16, 64, 64)


def mlx_modules():
    """(mlx.core, mlx.nn), or None when MLX is not installed."""
    try:
        import mlx.core
        import mlx.nn
    except ImportError:
        return None
    return mlx.core, mlx.nn


def warm_up(fn, seconds=0.3, calls=3):
    """Calls fn for at least `calls` calls and `seconds`: a framework's first calls set
    things up (PyTorch's first instance-norm step took 0.3 s here, the next ones 0.1 ms)."""
    start = time.perf_counter()
    done = 0
    while done < calls or time.perf_counter() - start < seconds:
        fn()
        done += 1


def shape_text(shape):
    return "(" + ",".join(str(v) for v in shape) + ")"


def _bare_kernel_step(kind, shape, layout, np):
    """Forward then gradient kernel on NumPy arrays, every output given once: the floor a
    layer's training step is measured against (instance norm with gamma and beta loaded,
    as the layers load them)."""
    x, dy, out = make_inputs(shape, layout=layout)
    dx = np.empty_like(out)
    if kind == "lcn":
        params = dict(DEFAULT_LCN, layout=layout)
        forward = mpsnorm.LocalContrastNormalization(ADAPTER_LCN_WINDOW, **params)
        gradient = mpsnorm.LocalContrastNormalizationGradient(ADAPTER_LCN_WINDOW, **params)

        def step():
            forward(x, out=out)
            gradient(dy, x, out=dx)
        return step
    channels = shape[1]
    ones, zeros = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    forward = mpsnorm.InstanceNormalization(channels, gamma=ones, beta=zeros, layout=layout)
    gradient = mpsnorm.InstanceNormalizationGradient(channels, gamma=ones, layout=layout)
    dgamma, dbeta = np.empty(channels, np.float32), np.empty(channels, np.float32)

    def step():
        forward(x, out=out)
        gradient(dy, x, out=dx, out_gamma=dgamma, out_beta=dbeta)
    return step


def torch_adapter_steps(kind, shape):
    """{"mpsnorm": mpsnorm.torch's layer, "framework": nn.InstanceNorm2d(affine=True) or the
    avg_pool2d composition (_torch_lcn), "kernels": the bare kernels}: each a training step
    y = layer(x); y.backward(g) on float32 (N, C, H, W), gradients reset to None between
    steps. None when PyTorch is not installed."""
    torch = torch_module()
    if torch is None:
        return None
    np = _numpy()
    import mpsnorm.torch as adapter
    x_values, g_values, _ = make_inputs(shape)
    x = torch.from_numpy(x_values).requires_grad_(True)
    g = torch.from_numpy(g_values)
    if kind == "lcn":
        ours = adapter.LocalContrastNormalization(ADAPTER_LCN_WINDOW, **DEFAULT_LCN)

        def theirs(t):
            return _torch_lcn(torch, t, ADAPTER_LCN_WINDOW, **DEFAULT_LCN)
        parameters = []
    else:
        ours = adapter.InstanceNormalization(shape[1])
        theirs = torch.nn.InstanceNorm2d(shape[1], affine=True)
        parameters = list(ours.parameters()) + list(theirs.parameters())

    def step(layer):
        def run():
            x.grad = None
            for parameter in parameters:
                parameter.grad = None
            layer(x).backward(g)
        return run
    return {"mpsnorm": step(ours), "framework": step(theirs),
            "kernels": _bare_kernel_step(kind, shape, "NCHW", np)}


def _mlx_lcn(mx, nn, x, k, alpha, beta, delta, p0, pm, ps):
    """LCN of an (N, H, W, C) array composed of mlx.nn.AvgPool2d, as a user would write it."""
    pad = [(0, 0), (k // 2, (k - 1) // 2), (k // 2, (k - 1) // 2), (0, 0)]
    pool = nn.AvgPool2d(k, stride=1)

    def box(a):
        return pool(mx.pad(a, pad))

    m = box(x)
    var = mx.maximum(box(x * x) - m * m, 0)
    return pm + ps * (x - p0 * m) * (delta + alpha * var) ** -beta


def mlx_adapter_steps(kind, shape):
    """As torch_adapter_steps, for mpsnorm.mlx's layers beside mlx.nn.InstanceNorm(affine=True)
    or an mlx.nn.AvgPool2d composition: a step is mx.vjp of the layer in x (and weight, bias)
    with cotangent g, evaluated; arrays are (N, H, W, C) for the logical (N, C, H, W) shape.
    None when MLX is not installed."""
    prepared = _mlx_arrays(shape)
    if prepared is None:
        return None
    mx, nn, adapter, (x, g), _ = prepared
    if kind == "lcn":
        ours = adapter.LocalContrastNormalization(ADAPTER_LCN_WINDOW, **DEFAULT_LCN)

        def theirs(t):
            return _mlx_lcn(mx, nn, t, ADAPTER_LCN_WINDOW, **DEFAULT_LCN)
        primals = [x]

        def layer_of(layer):
            return layer
    else:
        channels = shape[1]
        ours = adapter.InstanceNormalization(channels)
        theirs = nn.InstanceNorm(channels, affine=True)
        primals = [x, mx.ones((channels,)), mx.zeros((channels,))]

        def layer_of(layer):
            def apply(t, weight, bias):
                layer.weight, layer.bias = weight, bias
                return layer(t)
            return apply
    mx.eval(primals)

    def step(layer):
        fn = layer_of(layer)

        def run():
            mx.eval(mx.vjp(fn, primals, [g]))
        return run
    return {"mpsnorm": step(ours), "framework": step(theirs),
            "kernels": _bare_kernel_step(kind, shape, "NHWC", _numpy())}


def _mlx_arrays(shape):
    """(mlx.core, mlx.nn, mpsnorm.mlx, (x, g) as evaluated MLX arrays, (x, g, out) as NumPy
    arrays) for the logical (N, C, H, W) `shape` stored NHWC, or None without MLX."""
    modules = mlx_modules()
    if modules is None:
        return None
    mx, nn = modules
    import mpsnorm.mlx as adapter
    arrays = make_inputs(shape, layout="NHWC")
    x, g = mx.array(arrays[0]), mx.array(arrays[1])
    mx.eval(x, g)
    return mx, nn, adapter, (x, g), arrays


def mlx_call_impls(kind):
    """The cost of mpsnorm.mlx on an (1, 16, 16, 8) float32 array: {"forward": the layer,
    evaluated; "forward_kernel": the bare forward kernel on NumPy arrays, output given;
    "value_and_grad": mx.value_and_grad of sum(layer(x) * g), evaluated;
    "value_and_grad_kernels": the bare forward and gradient kernels; "value_and_grad_mlx":
    the same MLX step with x * 1 for the layer (what MLX's own part costs)}, or None."""
    prepared = _mlx_arrays(ADAPTER_CALL_SHAPE)
    if prepared is None:
        return None
    mx, _, adapter, (x, g), (x_values, _, out) = prepared
    np = _numpy()
    channels = ADAPTER_CALL_SHAPE[1]
    if kind == "lcn":
        layer = adapter.LocalContrastNormalization(3, alpha=1.0)
        forward = mpsnorm.LocalContrastNormalization(3, alpha=1.0, layout="NHWC")
    else:
        layer = adapter.InstanceNormalization(channels)
        forward = mpsnorm.InstanceNormalization(channels, gamma=np.ones(channels),
                                                beta=np.zeros(channels), layout="NHWC")
    through_layer = mx.value_and_grad(lambda t: (layer(t) * g).sum())
    through_mlx = mx.value_and_grad(lambda t: (t * 1.0 * g).sum())
    bare = _bare_kernel_step(kind, ADAPTER_CALL_SHAPE, "NHWC", np)
    return {"forward": lambda: mx.eval(layer(x)),
            "forward_kernel": lambda: forward(x_values, out=out),
            "value_and_grad": lambda: mx.eval(through_layer(x)),
            "value_and_grad_kernels": bare,
            "value_and_grad_mlx": lambda: mx.eval(through_mlx(x))}


def mlx_output_copy(shape=(8, 64, 64, 64)):
    """(seconds of mx.array(a) for a float32 NumPy array of `shape` (N, C, H, W), stored
    NHWC, evaluated: the copy each output of mpsnorm.mlx makes; seconds of the bare
    instance-norm forward kernel on it), or None without MLX."""
    modules = mlx_modules()
    if modules is None:
        return None
    mx, _ = modules
    x, _, out = make_inputs(shape, layout="NHWC")
    forward = mpsnorm.InstanceNormalization(shape[1], layout="NHWC")
    return time_pair(lambda: mx.eval(mx.array(out)), lambda: forward(x, out=out), repeat=7)


def _paired(fn_a, fn_b, rep):
    """Best times of two steps, warmed up, then timed alternately in samples of at least
    0.1 s (a step of a few milliseconds is looped: single calls scatter more)."""
    warm_up(fn_a)
    warm_up(fn_b)
    return time_pair(fn_a, fn_b, repeat=max(rep, 7), min_time=0.1)


def adapter_rows(rep, log):
    """The adapters' rows of measure(): training steps against the framework's layer and the
    bare kernels (PyTorch, 2 threads, and MLX), the MLX per-call overhead and output copy."""
    rows = []
    torch = torch_module()
    modules = mlx_modules()
    log(f"adapters: PyTorch {'not installed' if torch is None else _version('torch')}, "
        f"MLX {'not installed' if modules is None else _version('mlx')}")
    cases = [("inorm", shape, "InstanceNormalization", "nn.InstanceNorm2d(affine=True)")
             for shape in ADAPTER_INORM_SHAPES]
    cases.append(("lcn", LCN_SHAPE, f"LocalContrastNormalization({ADAPTER_LCN_WINDOW}, alpha=1)",
                  "the avg_pool2d composition"))
    for kind, shape, layer, framework in cases:
        name = f"{kind}_{'x'.join(str(v) for v in shape)}" if kind == "inorm" else kind
        what = f"torch step {layer} {shape_text(shape)}"
        steps = torch_adapter_steps(kind, shape)
        if steps is None:
            rows.append(Row(f"torch_{name}_vs_framework", f"{what}: over {framework}", None,
                            "PyTorch not installed"))
            rows.append(Row(f"torch_{name}_over_kernels", f"{what}: / bare kernels", None,
                            "PyTorch not installed"))
            continue
        ours, theirs = _paired(steps["mpsnorm"], steps["framework"], rep)
        rows.append(Row(f"torch_{name}_vs_framework", f"{what}: over {framework}",
                        theirs / ours, f"{theirs / ours:.2f}x ({_fmt_ms(ours)} vs "
                                       f"{_fmt_ms(theirs)})"))
        ours, bare = _paired(steps["mpsnorm"], steps["kernels"], rep)
        rows.append(Row(f"torch_{name}_over_kernels", f"{what}: / bare kernels",
                        ours / bare, f"{ours / bare:.2f} ({_fmt_ms(ours)} / {_fmt_ms(bare)})"))
    lcn_layer = f"LocalContrastNormalization({ADAPTER_LCN_WINDOW}, alpha=1)"
    for key, kind, shape, layer, against in (
            ("inorm_vs_framework", "inorm", (8, 64, 64, 64), "InstanceNormalization",
             "framework"),
            ("inorm_over_kernels", "inorm", (8, 64, 64, 64), "InstanceNormalization",
             "kernels"),
            # MLX's AvgPool2d composition takes seconds a step at the larger shape
            ("lcn_vs_framework", "lcn", MLX_LCN_COMPOSITION_SHAPE, lcn_layer, "framework"),
            ("lcn_over_kernels", "lcn", LCN_SHAPE, lcn_layer, "kernels")):
        what = f"mlx step {layer} {shape_text(shape)} NHWC: " + (
            "/ bare kernels" if against == "kernels" else
            f"over {'nn.InstanceNorm(affine=True)' if kind == 'inorm' else 'AvgPool2d composed'}")
        steps = mlx_adapter_steps(kind, shape)
        if steps is None:
            rows.append(Row(f"mlx_{key}", what, None, "MLX not installed"))
            continue
        ours, other = _paired(steps["mpsnorm"], steps[against], rep)
        if against == "kernels":
            rows.append(Row(f"mlx_{key}", what, ours / other,
                            f"{ours / other:.2f} ({_fmt_ms(ours)} / {_fmt_ms(other)})"))
        else:
            rows.append(Row(f"mlx_{key}", what, other / ours,
                            f"{other / ours:.2f}x ({_fmt_ms(ours)} vs {_fmt_ms(other)})"))
    for kind in ("lcn", "inorm"):
        impls = mlx_call_impls(kind)
        for call, bare_call, label in (("forward", "forward_kernel", "forward"),
                                       ("value_and_grad", "value_and_grad_kernels",
                                        "value_and_grad")):
            key = f"mlx_overhead_{kind}_{label}"
            what = f"mlx {kind} {label} (1,16,16,8): adapter - bare kernels"
            if impls is None:
                rows.append(Row(key, what, None, "MLX not installed"))
                continue
            ours, bare = _paired(impls[call], impls[bare_call], rep)
            text = f"{(ours - bare) * 1e6:.1f} us ({ours * 1e6:.1f} us vs {bare * 1e6:.1f} us)"
            if label == "value_and_grad":
                _, alone = _paired(impls[call], impls["value_and_grad_mlx"], rep)
                text += f"; MLX's own step with x * 1: {alone * 1e6:.1f} us"
            rows.append(Row(key, what, ours - bare, text))
    copy = mlx_output_copy()
    what = "mlx output copy mx.array(a), (8,64,64,64) f32 / bare inorm forward"
    if copy is None:
        rows.append(Row("mlx_output_copy", what, None, "MLX not installed"))
    else:
        rows.append(Row("mlx_output_copy", what, copy[0] / copy[1],
                        f"{copy[0] / copy[1]:.2f} ({_fmt_ms(copy[0])} / {_fmt_ms(copy[1])})"))
    return rows


# ---- the measurements ------------------------------------------------------------------------

class Row:
    """One measurement: `key` names it (bench/goals.py attaches goals to keys), `value` is
    the figure (a ratio, a fraction or seconds; None where it cannot be taken here) and
    `text` says it for people, with the figures it comes from."""

    def __init__(self, key, what, value, text):
        self.key, self.what, self.value, self.text = key, what, value, text


def _fmt_ms(seconds):
    return "n/a" if seconds is None else f"{seconds * 1e3:.2f} ms"


def _lcn_grad(shape=LCN_SHAPE, k=9, **kw):
    return lcn_impls("gradient", shape, k, references=False, **kw)[0]["mpsnorm"]


def _inorm_grad(**kw):
    return inorm_impls("gradient", INORM_SHAPE, references=False, **kw)[0]["mpsnorm"]


def measure(full=False, log=None):
    """Every measurement of the bench, in order; `log(line)` hears the context lines
    (bandwidth, versions). Ratios come from the two sides timed alternately (time_pair)."""
    np = _numpy()
    log = log or (lambda line: None)
    rep = 15 if full else 5
    threads = mpsnorm.get_num_threads()
    rows = []
    torch = torch_module()
    log(f"mpsnorm {mpsnorm.__version__} ({'full' if full else 'quick'} run): {threads} intra-op "
        f"threads, NumPy {np.__version__}, "
        f"SciPy {'missing' if scipy_ndimage() is None else _version('scipy')}, "
        f"PyTorch {'not installed' if torch is None else _version('torch')}")
    if torch is not None:
        torch.set_num_threads(threads)

    # instance-norm gradient: against NumPy and PyTorch's backward, and the roofline
    impls, nbytes, _ = inorm_impls("gradient", INORM_SHAPE)
    bw = copy_bandwidth(nbytes, repeat=rep)
    log(f"copy bandwidth on a {nbytes / 2**20:.0f} MiB tensor: {bw / 1e9:.1f} GB/s "
        f"(read + write)")
    t_in, t_np = time_pair(impls["mpsnorm"], impls["numpy"], repeat=max(2, rep // 3))
    rows.append(Row("inorm_grad_vs_numpy", "inorm grad (32,32,128,128) f32: over NumPy",
                    t_np / t_in, f"{t_np / t_in:.1f}x ({_fmt_ms(t_in)} vs {_fmt_ms(t_np)})"))
    if impls["torch"] is not None:
        t_in_torch, t_tb = time_pair(impls["mpsnorm"], impls["torch"], repeat=rep)
        rows.append(Row("inorm_grad_vs_torch", "  over PyTorch's backward alone",
                        t_tb / t_in_torch,
                        f"{t_tb / t_in_torch:.2f}x ({_fmt_ms(t_in_torch)} vs {_fmt_ms(t_tb)})"))
        t_in = min(t_in, t_in_torch)
    else:
        rows.append(Row("inorm_grad_vs_torch", "  over PyTorch's backward alone", None,
                        "PyTorch not installed"))
    frac = roofline_fraction(nbytes, 3, t_in, bw)
    rows.append(Row("inorm_grad_roofline", "  of the roofline (3 tensors / copy bandwidth)",
                    frac, f"{frac:.0%}"))

    # LCN gradient: against SciPy and PyTorch, the roofline, window and plane sizes
    impls, nbytes, _ = lcn_impls("gradient", LCN_SHAPE, 9)
    bw = copy_bandwidth(nbytes, repeat=rep)
    t_l9 = time_call(impls["mpsnorm"], repeat=rep)["best"]
    if impls["numpy"] is not None:
        t_l9_pair, t_sp = time_pair(impls["mpsnorm"], impls["numpy"], repeat=max(2, rep // 3))
        t_l9 = min(t_l9, t_l9_pair)
        rows.append(Row("lcn_grad_vs_scipy",
                        "LCN grad (4,16,256,256) f32 9x9 alpha=1: over NumPy/SciPy",
                        t_sp / t_l9, f"{t_sp / t_l9:.1f}x ({_fmt_ms(t_l9)} vs {_fmt_ms(t_sp)})"))
    else:
        rows.append(Row("lcn_grad_vs_scipy",
                        "LCN grad (4,16,256,256) f32 9x9 alpha=1: over NumPy/SciPy", None,
                        "SciPy not installed"))
    if impls["torch"] is not None:
        t_l9_torch, t_lt = time_pair(impls["mpsnorm"], impls["torch"], repeat=max(2, rep // 3))
        rows.append(Row("lcn_grad_vs_torch", "  over PyTorch's backward alone",
                        t_lt / t_l9_torch, f"{t_lt / t_l9_torch:.1f}x ({_fmt_ms(t_lt)})"))
    frac = roofline_fraction(nbytes, 3, t_l9, bw)
    rows.append(Row("lcn_grad_roofline", "  of the roofline (3 tensors / copy bandwidth)", frac,
                    f"{frac:.0%} ({t_l9 * 1e9 / (nbytes / 4):.2f} ns a pixel)"))
    t3, t31 = time_pair(_lcn_grad(k=3), _lcn_grad(k=31), repeat=rep)
    rows.append(Row("lcn_grad_31_over_3", "LCN grad 31x31 / 3x3", t31 / t3,
                    f"{t31 / t3:.2f} ({_fmt_ms(t31)} / {_fmt_ms(t3)})"))
    large = (1, 16, 2048, 2048)
    t_small, t_large = time_pair(_lcn_grad(), _lcn_grad(shape=large), repeat=max(2, rep // 3))
    pixels_small, pixels_large = np.prod(LCN_SHAPE), np.prod(large)
    per_small, per_large = t_small / pixels_small, t_large / pixels_large
    rows.append(Row("lcn_grad_large_plane", "LCN grad 9x9 per pixel: (1,16,2048,2048) / "
                    "(4,16,256,256)", per_large / per_small,
                    f"{per_large / per_small:.2f} ({per_large * 1e9:.2f} / "
                    f"{per_small * 1e9:.2f} ns)"))

    # import
    times = import_times(("mpsnorm", "numpy"), runs=15 if full else 7)
    (t_mpsnorm, with_numpy), (t_numpy, _) = times["mpsnorm"], times["numpy"]
    rows.append(Row("import_vs_numpy", "import mpsnorm, fresh interpreter: import numpy / it",
                    0.0 if with_numpy else t_numpy / t_mpsnorm,
                    f"{t_numpy / t_mpsnorm:.0f}x ({_fmt_ms(t_mpsnorm)} vs {_fmt_ms(t_numpy)})"
                    + ("; it imported NumPy" if with_numpy else "")))

    # call overhead
    for kernel, label in (("lcn", "LCN grad 3x3 out="),
                          ("inorm", "inorm grad out=, out_gamma=, out_beta=")):
        impls = call_impls(kernel)
        t_add, t_call = time_pair(impls["numpy"], impls["mpsnorm"], repeat=rep, min_time=0.02)
        rows.append(Row(f"call_overhead_{kernel}",
                        f"call (1,1,4,4) {label} / np.add out=", t_call / t_add,
                        f"{t_call / t_add:.2f} ({t_call * 1e6:.2f} us / {t_add * 1e6:.2f} us)"))

    # threads
    for key, name, fn in (("lcn", "LCN grad 9x9", _lcn_grad()),
                          ("inorm", "inorm grad", _inorm_grad())):
        if threads >= 2:
            speedup = thread_speedup(fn, rep)
            rows.append(Row(f"threads_{key}", f"threads: {name} 1 thread / 2 threads", speedup,
                            f"{speedup:.2f}x"))
        else:
            rows.append(Row(f"threads_{key}", f"threads: {name} 1 thread / 2 threads", None,
                            "one CPU: needs two"))
    for key, name, make in (("lcn", "LCN grad 9x9", lambda seed: _lcn_grad()),
                            ("inorm", "inorm grad", lambda seed: _inorm_grad())):
        r = concurrent_ratio(make, rep)
        rows.append(Row(f"concurrent_{key}",
                        f"threads: 2 Python threads concurrent / sequential, {name}", r,
                        f"{r:.2f}"))

    # dtypes, layouts, views
    for key, label, make in (("lcn", "LCN grad 9x9", lambda **kw: _lcn_grad(**kw)),
                             ("inorm", "inorm grad", lambda **kw: _inorm_grad(**kw))):
        base_fn = make()
        for case, what, kw in (("float16", "float16 / float32", dict(dtype="float16")),
                               ("nhwc", "NHWC / NCHW", dict(layout="NHWC")),
                               ("strided", "strided view / contiguous", dict(view="strided"))):
            base, t = time_pair(base_fn, make(**kw), repeat=rep)
            rows.append(Row(f"{key}_{case}", f"{label}: {what}", t / base, f"{t / base:.2f}"))

    # memory
    for key, label, args, layout in (
            ("lcn", "LCN grad 9x9 (4,16,256,256) f32", ("lcn", "gradient", LCN_SHAPE, 9), "NCHW"),
            ("lcn_nhwc", "LCN grad 9x9 (4,16,256,256) f32 NHWC",
             ("lcn", "gradient", LCN_SHAPE, 9), "NHWC"),
            ("inorm", "inorm grad (32,32,128,128) f32", ("inorm", "gradient", INORM_SHAPE, 0),
             "NCHW")):
        m = memory_extra(*args, threads=threads, layout=layout)
        what = f"memory: extra peak of one call, {label}"
        if m is None:
            rows.append(Row(f"memory_{key}", what, None, "n/a (needs Linux /proc)"))
        else:
            extra, tensor = m
            rows.append(Row(f"memory_{key}", what, extra / tensor,
                            f"{extra / 2**20:.1f} MiB = {extra / tensor:.1%} of one tensor"))

    rows += adapter_rows(rep, log)
    return rows


def _version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001
        return "?"


def print_table(header, lines, out=sys.stdout):
    """Columns padded to their widest cell."""
    widths = [max(len(line[i]) for line in [header] + lines) for i in range(len(header))]
    text = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(text, file=out)
    print("-" * len(text), file=out)
    for line in lines:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths)), file=out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m mpsnorm bench",
                                     description="times mpsnorm's CPU kernels on this machine "
                                                 "beside NumPy/SciPy and PyTorch (ratios "
                                                 "measured side by side in one run)")
    parser.add_argument("--full", action="store_true",
                        help="more repetitions (slower, steadier figures)")
    args = parser.parse_args(argv)
    quiet_blas()
    gc.collect()
    rows = measure(full=args.full, log=print)
    from mpsnorm import bench_metal
    rows += bench_metal.measure(full=args.full, log=print)
    print_table(("what", "measured"), [(row.what, row.text) for row in rows])
    return 0


if __name__ == "__main__":
    sys.exit(main())
