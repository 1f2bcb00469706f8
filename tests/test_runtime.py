"""Runtime behaviour: backends, version, threads, lazy numpy, GIL release, determinism."""

import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import numpy as np
import pytest

import mpsnorm
import reference as ref
from reference import assert_bits_equal, random_array

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_python(code, timeout=120):
    """Runs `code` in a fresh interpreter outside the source tree (so the installed package is
    the one imported); returns (stdout, seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tempfile.gettempdir(),
                          capture_output=True, text=True, timeout=timeout)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, "subprocess failed:\n%s\n%s" % (proc.stdout, proc.stderr)
    return proc.stdout, elapsed


# -- module-level API --------------------------------------------------------------------------

def test_backends():
    b = mpsnorm.backends()
    assert isinstance(b, tuple)
    assert all(isinstance(s, str) for s in b)
    assert "cpu" in b
    assert set(b) <= {"cpu", "metal"}
    if sys.platform != "darwin":
        assert b == ("cpu",)


def test_version():
    v = mpsnorm.__version__
    assert isinstance(v, str)
    assert re.match(r"^\d+\.\d+\.\d+", v), v
    header = os.path.join(REPO, "mpsnorm", "include", "mpsnorm.h")
    if os.path.exists(header):
        m = re.search(r'#define\s+MPSNORM_VERSION_STRING\s+"([^"]+)"', open(header).read())
        assert m and v.startswith(m.group(1)), (v, m and m.group(1))


def test_error_class():
    assert issubclass(mpsnorm.MPSNormError, RuntimeError)
    assert not issubclass(mpsnorm.MPSNormError, (ValueError, TypeError))


def test_num_threads_round_trip(restore_num_threads):
    assert isinstance(restore_num_threads, int) and restore_num_threads >= 1
    for n in (1, 2, 3, 8, 1024, 1):
        assert mpsnorm.set_num_threads(n) is None
        got = mpsnorm.get_num_threads()
        assert type(got) is int and got == n


def test_import_does_not_import_numpy():
    out, elapsed = run_python("""
        import sys, time
        t0 = time.perf_counter()
        import mpsnorm
        t1 = time.perf_counter()
        print("numpy" in sys.modules)
        print(sorted(m for m in sys.modules if m == "numpy" or m.startswith("numpy.")))
        print(t1 - t0)
        print(mpsnorm.backends())
        print(mpsnorm.get_num_threads())
        print("numpy" in sys.modules)
    """)
    lines = out.strip().splitlines()
    assert lines[0] == "False", "import mpsnorm imported numpy: %s" % lines[1]
    assert lines[5] == "False", "backends()/get_num_threads() imported numpy"


def test_default_num_threads_is_cpu_count():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no sched_getaffinity")
    out, _ = run_python("""
        import os, mpsnorm
        print(mpsnorm.get_num_threads(), len(os.sched_getaffinity(0)))
    """)
    got, cpus = map(int, out.split())
    assert got == min(cpus, 1024)


# -- GIL release ------------------------------------------------------------------------------

def test_gil_released_during_kernel(restore_num_threads):
    """A Python thread keeps running while another thread is inside a long kernel call.

    The spinning thread takes a timestamp every few iterations while holding the GIL.
    The main thread reads the clock (holding the GIL) right before and right after each
    kernel call. If the call kept the GIL, the spinning thread could only run in the
    interpreter's switch slots around the call (a few ms at its start and end), leaving
    one gap spanning nearly the whole call; if the GIL is released, the timestamps fill
    the call evenly. No speed threshold: only the spread of progress within each call."""
    mpsnorm.set_num_threads(1)             # leave a CPU for the spinning thread
    shape = (8, 16, 512, 512)
    rng = np.random.default_rng(0)
    x = rng.random(shape)
    dy = rng.random(shape)
    out = np.empty(shape)
    grad = mpsnorm.LocalContrastNormalizationGradient(5, alpha=1.0)

    stamps = []
    stop = threading.Event()

    def spin():
        i = 0
        while not stop.is_set():
            i += 1
            if i % 16 == 0:
                stamps.append(time.perf_counter())

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    windows = []
    try:
        time.sleep(0.05)
        total = 0.0
        while (total < 1.0 or len(windows) < 2) and len(windows) < 20:
            t0 = time.perf_counter()
            grad(dy, x, out=out)
            t1 = time.perf_counter()
            windows.append((t0, t1))
            total += t1 - t0
            time.sleep(0.01)
    finally:
        stop.set()
        t.join()
    s = np.asarray(stamps)
    report = []
    good = 0
    for a, b in windows:
        inside = s[(s > a) & (s < b)]
        largest_gap = float(np.max(np.diff(np.concatenate([[a], inside, [b]]))))
        report.append((round(b - a, 4), inside.size, round(largest_gap / (b - a), 3)))
        if inside.size >= 100 and largest_gap < 0.25 * (b - a):
            good += 1
    # (call seconds, timestamps inside, largest gap as a fraction of the call)
    assert good >= max(1, (len(windows) + 1) // 2), \
        "the spinning thread stalled during the kernel calls: %r" % (report,)


# -- determinism --------------------------------------------------------------------------------

def _run_all_kernels(dtype, layout, shape_nchw, seed=0):
    rng = np.random.default_rng(seed)
    shape = ref.layout_shape(shape_nchw, layout)
    x = random_array(rng, shape, dtype, -1.0, 2.0)
    dy = random_array(rng, shape, dtype)
    c = shape_nchw[1]
    params = dict(alpha=0.7, beta=0.75, delta=0.05, p0=0.8, pm=0.1, ps=1.3)
    gamma = list(np.linspace(-1.5, 2.0, c))
    beta = list(np.linspace(0.5, -0.5, c))
    results = {
        "lcn": mpsnorm.LocalContrastNormalization(5, 4, layout=layout, **params)(x),
        "lcn_grad": mpsnorm.LocalContrastNormalizationGradient(5, 4, layout=layout,
                                                               **params)(dy, x),
        "inorm": mpsnorm.InstanceNormalization(c, gamma=gamma, beta=beta, layout=layout)(x),
    }
    dx, dg, db = mpsnorm.InstanceNormalizationGradient(c, gamma=gamma, layout=layout)(dy, x)
    results.update(inorm_grad_dx=dx, inorm_grad_dgamma=dg, inorm_grad_dbeta=db)
    return results


@pytest.mark.parametrize("shape", [(3, 5, 33, 47), (1, 1, 130, 70), (16, 2, 3, 5)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_bitwise_identical_across_thread_counts(dtype, layout, shape, restore_num_threads):
    base = None
    for n in (1, 2, 3, 8, 5):
        mpsnorm.set_num_threads(n)
        res = _run_all_kernels(dtype, layout, shape)
        if base is None:
            base = res
            continue
        for key in base:
            assert_bits_equal(res[key], base[key], "%s with %d threads vs 1 thread" % (key, n))


@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_rerun_gives_identical_bits(dtype):
    a = _run_all_kernels(dtype, "NCHW", (2, 3, 17, 19), seed=4)
    b = _run_all_kernels(dtype, "NCHW", (2, 3, 17, 19), seed=4)
    for key in a:
        assert_bits_equal(a[key], b[key], key + " rerun")


def test_thread_count_results_are_also_correct(restore_num_threads):
    """The per-thread-count results are not just equal but right (vs the reference)."""
    rng = np.random.default_rng(12)
    x = random_array(rng, (3, 5, 33, 47), np.float64)
    dy = random_array(rng, x.shape, np.float64)
    for n in (1, 3, 8):
        mpsnorm.set_num_threads(n)
        ref.assert_close(mpsnorm.LocalContrastNormalizationGradient(4, alpha=1.0)(dy, x),
                         ref.lcn_gradient(dy, x, 4, alpha=1.0), np.float64, scale_from=(dy,))
        _, dg, _ = mpsnorm.InstanceNormalizationGradient(5)(dy, x)
        ref.assert_close(dg, ref.inorm_gradient(dy, x)[1], np.float64, scale_from=(dy,))


def _kernel_calls():
    params = dict(alpha=1.0, beta=0.75, delta=0.05)
    lcn = mpsnorm.LocalContrastNormalization(5, **params)
    lcn_g = mpsnorm.LocalContrastNormalizationGradient(4, 3, **params)
    inorm = mpsnorm.InstanceNormalization(3, gamma=[1.0, -2.0, 0.5], beta=[0.0, 1.0, 2.0])
    inorm_g = mpsnorm.InstanceNormalizationGradient(3, gamma=[1.0, -2.0, 0.5])
    return {
        "lcn": lambda dy, x: (lcn(x),),
        "lcn_grad": lambda dy, x: (lcn_g(dy, x),),
        "inorm": lambda dy, x: (inorm(x),),
        "inorm_grad": lambda dy, x: tuple(inorm_g(dy, x)),
    }


@pytest.mark.parametrize("kernel", ["lcn", "lcn_grad", "inorm", "inorm_grad"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_concurrent_calls_share_one_kernel_object(kernel, dtype):
    call = _kernel_calls()[kernel]
    rng = np.random.default_rng(21)
    inputs = [(random_array(rng, (4, 3, 40, 37), dtype), random_array(rng, (4, 3, 40, 37), dtype))
              for _ in range(6)]
    serial = [call(dy, x) for dy, x in inputs]
    results = {}
    errors = []
    barrier = threading.Barrier(len(inputs))

    def worker(i):
        try:
            barrier.wait()
            results[i] = [call(*inputs[i]) for _ in range(4)]
        except BaseException as e:        # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, reps in results.items():
        for r in reps:
            for got, exp in zip(r, serial[i]):
                assert_bits_equal(got, exp, "%s input %d concurrent vs serial" % (kernel, i))
    # and the serial results are correct
    dy, x = inputs[0]
    if kernel == "lcn":
        ref.assert_close(serial[0][0], ref.lcn_forward(x, 5, alpha=1.0, beta=0.75, delta=0.05),
                         dtype, scale_from=(x,))
    elif kernel == "inorm_grad":
        ref.assert_close(serial[0][0], ref.inorm_gradient(dy, x, [1.0, -2.0, 0.5])[0], dtype,
                         scale_from=(dy,))


def test_concurrent_calls_with_out(restore_num_threads):
    mpsnorm.set_num_threads(2)
    grad = mpsnorm.LocalContrastNormalizationGradient(3, alpha=1.0)
    rng = np.random.default_rng(22)
    dy = random_array(rng, (2, 3, 64, 64), np.float32)
    x = random_array(rng, (2, 3, 64, 64), np.float32)
    expected = grad(dy, x)
    outs = [np.full(x.shape, ref.SENTINEL, np.float32) for _ in range(6)]

    def worker(o):
        for _ in range(3):
            grad(dy, x, out=o)

    threads = [threading.Thread(target=worker, args=(o,)) for o in outs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in outs:
        assert_bits_equal(o, expected, "concurrent out=")
