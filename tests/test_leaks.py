"""Leaks: 100,000 calls of each kernel, successful ones and failing ones, leave the process's
resident memory within 1 MiB of where it was after a warm-up and every buffer's reference
count unchanged (a Py_buffer left held on some error path shows as a reference to its
exporter, and as a bytearray that can no longer be resized).

The failing calls go round-robin over every place a call can fail: before a buffer is taken
(not a buffer), while describing it (dtype, byte order), when taking an output (read-only),
when comparing it with the input (shape), in C after every buffer is held (overlap,
alignment, channel count), allocating the output (MemoryError), in out_gamma / out_beta,
and in constructors and parameter setters.

MPSNORM_LEAK_CALLS overrides the 100,000 (CI uses the default). Each test prints its figures
(`pytest -s` shows them): calls made, RSS before/after, delta.
"""

import gc
import os
import sys

import numpy as np
import pytest

import mpsnorm
import reference as ref

pytestmark = pytest.mark.heavy  # minutes: MPSNORM_TEST_FULL=1 (conftest.py)

CALLS = int(os.environ.get("MPSNORM_LEAK_CALLS", "100000"))
WARMUP = max(2000, CALLS // 20)
RSS_LIMIT = 1 << 20
SHAPE = (1, 3, 4, 5)
KERNELS = ("LocalContrastNormalization", "LocalContrastNormalizationGradient",
           "InstanceNormalization", "InstanceNormalizationGradient")


def rss_bytes():
    """Resident set size now (Linux); the peak where /proc is absent (macOS)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class Fixture:
    """A kernel object, its inputs and outputs, and the calls to repeat."""

    def __init__(self, name, shape=SHAPE):
        self.name = name
        self.gradient = name.endswith("Gradient")
        self.cls = getattr(mpsnorm, name)
        rng = np.random.default_rng(1)
        self.kernel = self.cls(3)
        self.x = ref.random_array(rng, shape, np.float32)
        self.dy = ref.random_array(rng, shape, np.float32)
        self.out = np.empty(shape, np.float32)
        self.out_gamma = np.empty(3, np.float32)
        self.out_beta = np.empty(3, np.float32)
        self.args = (self.dy, self.x) if self.gradient else (self.x,)
        # buffers whose reference counts must not move, and a bytearray-backed input
        self.raw = bytearray(self.x.nbytes)
        self.raw_x = np.frombuffer(self.raw, np.float32).reshape(shape)
        self.raw_x[...] = self.x
        self.read_only = np.empty(shape, np.float32)
        self.read_only.flags.writeable = False
        self.wrong_shape = np.empty(shape[:-1] + (shape[-1] + 1,), np.float32)
        self.ints = np.ones(shape, np.int32)
        self.swapped = self.x.astype(">f4")
        misaligned = bytearray(self.x.nbytes + 1)
        self.misaligned = np.frombuffer(misaligned, np.float32, self.x.size, 1).reshape(shape)
        self.huge_base = np.full(1, 0.5, np.float32)
        self.huge = np.broadcast_to(self.huge_base.reshape(()), (10 ** 6, 10 ** 3, 10 ** 3, 10))
        self.short = np.empty(2, np.float32)
        self.vector_ro = np.empty(3, np.float32)
        self.vector_ro.flags.writeable = False
        self.vector_ints = np.empty(3, np.int32)
        self.tracked = [self.x, self.dy, self.out, self.out_gamma, self.out_beta, self.raw_x,
                        self.read_only, self.wrong_shape, self.ints, self.swapped,
                        self.misaligned, self.huge_base, self.huge, self.short, self.vector_ro,
                        self.vector_ints, self.kernel]

    def successes(self):
        k, args = self.kernel, self.args
        calls = [lambda: k(*args), lambda: k(*args, out=self.out),
                 lambda: k(*(args[:-1] + (self.raw_x,)))]
        if self.name == "InstanceNormalizationGradient":
            calls.append(lambda: k(*args, out=self.out, out_gamma=self.out_gamma,
                                   out_beta=self.out_beta))
        return calls

    def failures(self):
        """(call, exception) for every failure point of the call path."""
        k, x = self.kernel, self.x
        grad = self.gradient
        both = (lambda a: (a, a)) if grad else (lambda a: (a,))
        fails = [
            (lambda: k(*both([[1.0]])), TypeError),                         # not a buffer
            (lambda: k(*both(self.ints)), TypeError),                       # dtype
            (lambda: k(*both(self.swapped)), TypeError),                    # byte order
            (lambda: k(*self.args, out=self.read_only), ValueError),        # read-only out
            (lambda: k(*self.args, out=self.wrong_shape), ValueError),      # out shape
            (lambda: k(*self.args, out=x), ValueError),                     # overlap (in C)
            (lambda: k(*both(self.misaligned)), ValueError),                # alignment (in C)
            (lambda: k(*both(self.huge)), MemoryError),                     # allocation
        ]
        if grad:
            fails.append((lambda: k(self.dy, self.wrong_shape), ValueError))  # dy vs x
        if self.name.startswith("Instance"):
            four = np.ones((1, 4, 4, 5), np.float32)  # channel count (in C)
            fails.append((lambda: k(*both(four)), ValueError))
        if self.name == "InstanceNormalizationGradient":
            fails += [
                (lambda: k(*self.args, out_gamma=self.short), ValueError),       # length, C
                (lambda: k(*self.args, out_beta=self.vector_ro), ValueError),    # read-only
                (lambda: k(*self.args, out_gamma=self.vector_ints), TypeError),  # dtype
            ]
        # constructors and setters
        cls = self.cls
        if self.name.startswith("Local"):
            fails += [(lambda: cls(0), ValueError), (lambda: cls(3, backend="gpu"), ValueError),
                      (lambda: setattr(k, "alpha", float("nan")), ValueError)]
        else:
            fails += [(lambda: cls(3, gamma=[1.0, float("inf"), 1.0]), ValueError),
                      (lambda: cls(3, epsilon=-1.0), ValueError),
                      (lambda: setattr(k, "gamma", [1.0, 2.0]), ValueError)]
        return fails


def run_successes(fixture, count):
    calls = fixture.successes()
    for i in range(count):
        calls[i % len(calls)]()


def run_failures(fixture, count):
    fails = fixture.failures()
    for i in range(count):
        fn, exc = fails[i % len(fails)]
        try:
            fn()
        except exc:
            pass
        else:
            raise AssertionError("call #%d did not raise %s" % (i % len(fails), exc.__name__))


def measure(fixture, body, count):
    """Runs body(fixture, WARMUP), then body(fixture, count); returns (before, after) RSS and
    checks the reference counts and the bytearray."""
    body(fixture, WARMUP)
    gc.collect()
    refs = [sys.getrefcount(obj) for obj in fixture.tracked]
    before = rss_bytes()
    body(fixture, count)
    gc.collect()
    after = rss_bytes()
    assert [sys.getrefcount(obj) for obj in fixture.tracked] == refs, "reference counts moved"
    # once the array over the bytearray is dropped, no export of it is left: it can resize
    fixture.tracked = fixture.raw_x = None
    gc.collect()
    fixture.raw.extend(b"\0\0\0\0")
    return before, after


@pytest.mark.parametrize("outcome", ["successful", "failing"])
@pytest.mark.parametrize("name", KERNELS)
def test_calls_do_not_leak(name, outcome):
    fixture = Fixture(name)
    body = run_successes if outcome == "successful" else run_failures
    before, after = measure(fixture, body, CALLS)
    print("\n%s %s: %d calls, RSS %.1f -> %.1f MiB, delta %+d KiB"
          % (name, outcome, CALLS, before / 2 ** 20, after / 2 ** 20, (after - before) // 1024))
    assert after - before <= RSS_LIMIT, "RSS grew by %d bytes over %d %s calls" % (
        after - before, CALLS, outcome)


@pytest.mark.parametrize("name", KERNELS)
def test_threaded_calls_do_not_leak(name, restore_num_threads):
    """Calls large enough to start worker threads (each call creates and joins them)."""
    mpsnorm.set_num_threads(2)
    fixture = Fixture(name, shape=(2, 3, 96, 96))
    count = max(1, CALLS // 10)
    before, after = measure(fixture, run_successes, count)
    print("\n%s threaded: %d calls, RSS delta %+d KiB" % (name, count, (after - before) // 1024))
    assert after - before <= RSS_LIMIT


@pytest.mark.parametrize("name", KERNELS)
def test_objects_do_not_leak(name):
    """Kernel objects made and dropped (each owns an engine), with and without gamma/beta."""
    cls = getattr(mpsnorm, name)
    x = np.ones((1, 3, 4, 5), np.float32)
    gamma = np.linspace(0.5, 1.5, 3)

    args = [x] * (2 if name.endswith("Gradient") else 1)

    def body(_, count):
        for i in range(count):
            if name.startswith("Local"):
                k = cls(3 + (i & 1), alpha=0.5, layout="NHWC" if i & 2 else "NCHW")
            else:
                k = cls(3, gamma=gamma, epsilon=1e-3)
            if i % 64 == 0 and k.layout == "NCHW":
                k(*args)

    holder = Fixture(name)
    holder.tracked = [x, gamma, holder.raw_x]
    before, after = measure(holder, body, CALLS)
    print("\n%s objects: %d made, RSS delta %+d KiB" % (name, CALLS, (after - before) // 1024))
    assert after - before <= RSS_LIMIT
