"""Concurrency: 8 threads x 1,000 calls sharing one kernel object while another thread keeps
changing its parameters (and the process-wide CPU thread count) between calls.

What is checkable: a call copies the object's parameters once, when it starts, so its result
must be bit-for-bit the serial result for SOME parameter values the object held at that
moment. The mutator toggles two parameters, one after the other (A = (a1, b1) ->
(a2, b1) -> (a2, b2) = B -> (a1, b2) -> A ...), so the object only ever holds the four
combinations {a1, a2} x {b1, b2}. Every result is compared with the serial results of those
four; a result that matches none (a torn read of the parameters, a race on shared scratch, a
wrong thread split) fails. The thread count toggling between 1 and 2 must not change bits
(README: results are bitwise identical for every thread count).

Inputs are shared by all threads too (read-only); outputs are fresh arrays or per-thread out=
buffers. One input is large enough for the CPU backend to start its own worker threads, so
callers' worker pools run side by side.
"""

import itertools
import os
import threading
import time

import numpy as np
import pytest

import mpsnorm
import reference as ref

THREADS = 8
CALLS = int(os.environ.get("MPSNORM_CONCURRENCY_CALLS", "1000"))

# (class name, the two parameters toggled, their two values each)
KERNELS = {
    "LocalContrastNormalization": ("alpha", (0.5, 2.0), "beta", (0.5, 0.75)),
    "LocalContrastNormalizationGradient": ("alpha", (0.5, 2.0), "p0", (1.0, 0.25)),
    "InstanceNormalization": ("gamma", ((1.0, 2.0, 0.5), (-1.0, 0.25, 3.0)),
                              "epsilon", (1e-5, 0.5)),
    "InstanceNormalizationGradient": ("gamma", ((1.0, 2.0, 0.5), (-1.0, 0.25, 3.0)),
                                      "epsilon", (1e-5, 0.5)),
}
SHAPES = [(1, 3, 9, 11), (2, 3, 64, 80)]  # the second one starts the CPU backend's workers


def make(name, values, layout):
    first, _, second, _ = KERNELS[name]
    kw = {first: values[0], second: values[1], "layout": layout}
    return getattr(mpsnorm, name)(3, **kw)


def as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def bits(arrays):
    return tuple(np.ascontiguousarray(a).tobytes() for a in arrays)


def combos(name):
    _, firsts, _, seconds = KERNELS[name]
    return list(itertools.product(firsts, seconds))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_shared_object_with_parameters_changing(name, dtype, layout, restore_num_threads):
    gradient = name.endswith("Gradient")
    rng = np.random.default_rng(42)
    inputs = []
    for shape in SHAPES:
        shape = ref.layout_shape(shape, layout)
        inputs.append(tuple(ref.random_array(rng, shape, dtype)
                            for _ in range(2 if gradient else 1)))

    # serial results, one thread, for every parameter combination the object can hold
    mpsnorm.set_num_threads(1)
    expected = [{bits(as_tuple(make(name, values, layout)(*args))): values
                 for values in combos(name)} for args in inputs]
    for table in expected:
        assert len(table) == 4, "the four parameter combinations must give distinct results"
    mpsnorm.set_num_threads(2)

    first, (a1, a2), second, (b1, b2) = KERNELS[name]
    shared = make(name, (a1, b1), layout)
    done = threading.Event()
    start = threading.Barrier(THREADS + 1)
    toggles = [0]
    errors = []
    seen = [set() for _ in range(THREADS)]

    def mutator():
        start.wait()
        steps = [(first, a2), (second, b2), (first, a1), (second, b1)]
        while not done.is_set():
            attribute, value = steps[toggles[0] % 4]
            setattr(shared, attribute, value)
            if toggles[0] % 16 == 0:
                mpsnorm.set_num_threads(1 + (toggles[0] // 16) % 2)
            toggles[0] += 1
            time.sleep(0)

    def worker(index):
        own_out = [np.empty_like(args[-1]) for args in inputs]
        own_vectors = (np.empty(3, np.float32), np.empty(3, np.float32))
        start.wait()
        try:
            for call in range(CALLS):
                which = (index + call) % len(inputs)
                args = inputs[which]
                if call % 2:
                    kw = {"out": own_out[which]}
                    if name == "InstanceNormalizationGradient":
                        kw["out_gamma"], kw["out_beta"] = own_vectors
                    result = shared(*args, **kw)
                else:
                    result = shared(*args)
                values = expected[which].get(bits(as_tuple(result)))
                if values is None:
                    errors.append("thread %d call %d (input %d): result equals no serial "
                                  "result of the four parameter sets" % (index, call, which))
                    return
                seen[index].add(values)
        except BaseException as error:  # reported below, in the main thread
            errors.append("thread %d: %r" % (index, error))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    changer = threading.Thread(target=mutator)
    for thread in threads + [changer]:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    done.set()
    changer.join(timeout=60)
    assert not errors, errors[:5]
    assert not any(thread.is_alive() for thread in threads + [changer])
    observed = set().union(*seen)
    print("\n%s %s %s: %d threads x %d calls, %d parameter changes, combinations seen %d/4"
          % (name, np.dtype(dtype).name, layout, THREADS, CALLS, toggles[0], len(observed)))
    assert toggles[0] > 0
    assert len(observed) >= 2, "the parameters never changed during the calls"


def test_many_objects_many_threads_bitwise_serial(restore_num_threads):
    """Each thread its own objects of all four kinds, all at once, against serial runs."""
    rng = np.random.default_rng(7)
    shape = (2, 3, 33, 47)
    x = ref.random_array(rng, shape, np.float32)
    dy = ref.random_array(rng, shape, np.float32)

    def run_all():
        return bits(as_tuple(mpsnorm.LocalContrastNormalization(5, alpha=1.0)(x))
                    + as_tuple(mpsnorm.LocalContrastNormalizationGradient(4, 6, alpha=1.0)(dy, x))
                    + as_tuple(mpsnorm.InstanceNormalization(3, gamma=[1, 2, 3])(x))
                    + as_tuple(mpsnorm.InstanceNormalizationGradient(3)(dy, x)))

    mpsnorm.set_num_threads(1)
    serial = run_all()
    mpsnorm.set_num_threads(2)
    mismatches = []

    def worker():
        for _ in range(max(1, CALLS // 20)):
            if run_all() != serial:
                mismatches.append(1)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not mismatches
