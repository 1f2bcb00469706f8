"""The bad-input matrix: one table of invalid calls that tests/test_bad_input.py does not
already make (byte order, misaligned buffers, zero-size and absurd sizes, strides that leave
the address space, outputs that write an element twice or interleave with an input, values at
the float32 and int64 edges, uninitialized and re-initialized objects, attribute and arity
errors, the module functions).

Each row names the kernel class (or "module"), a category, the exception type and the words
its message must contain. The row's builder returns the call and the buffers it must leave
untouched; after the call fails the test checks them bit for bit, checks the object's state
(parameters, threads) did not change, and that the object still gives the same bits as a
freshly made one.

The last section holds the reproducers of defects found while writing this matrix (a crash
on ctypes arrays, a heap over-read after a failed re-__init__, failed re-__init__ calls that
changed the object, an OverflowError, a datetime64 ValueError without the class name, a NumPy
complex parameter accepted) and by the Python fuzzer (a gamma/beta getter's MemoryError
without a message); they are fixed and stay as regression tests.
"""

import array
import decimal
import os
import subprocess
import sys
import textwrap
from collections import namedtuple

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import mpsnorm
import reference as ref
from reference import assert_bits_equal, snapshot

L = "LocalContrastNormalization"
LG = "LocalContrastNormalizationGradient"
IN = "InstanceNormalization"
IG = "InstanceNormalizationGradient"
MODULE = "module"
KERNELS = (L, LG, IN, IG)

SHAPE = (2, 3, 7, 9)
# Every category the issue lists, and the names used for them in the table.
CATEGORIES = {"type", "dtype", "rank", "shape", "channels", "kernel_size", "parameter",
              "read_only_out", "misshapen_out", "mistyped_out", "overlapping_out", "byte_order",
              "alignment", "zero_size", "absurd_size", "state", "arity"}

Case = namedtuple("Case", "id kernel category exc fragments named build")
Call = namedtuple("Call", "fn protect kernel fresh state")
CASES = []


def case(case_id, kernel, category, exc, *fragments, named=True):
    """Registers a row. `named`: the message must also name the class / function."""
    assert category in CATEGORIES, category

    def register(build):
        CASES.append(Case(case_id, kernel, category, exc, fragments, named, build))
        return build
    return register


def call(fn, protect=(), kernel=None, fresh=None, state=None):
    """fn: the invalid call. protect: buffers it must not change. kernel/fresh: the object
    used and a factory of an identical fresh one (checked to still agree bit for bit).
    state: returns a comparable snapshot of what the failed call must not change."""
    if kernel is not None and state is None:
        state = lambda: repr(kernel)  # noqa: E731 -- every parameter is in the repr
    return Call(fn, list(protect), kernel, fresh, state)


def cls(name):
    return getattr(mpsnorm, name)


def is_gradient(name):
    return name.endswith("Gradient")


def inputs(name, shape=SHAPE, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [ref.random_array(rng, shape, dtype) for _ in range(2 if is_gradient(name) else 1)]


def outputs(name, shape=SHAPE, dtype=np.float32):
    """Sentinel-filled out= (and out_gamma / out_beta) keyword arguments."""
    kw = {"out": np.full(shape, ref.SENTINEL, dtype)}
    if name == IG:
        vector = np.float64 if np.dtype(dtype) == np.float64 else np.float32
        channels = ref.nchw_shape(shape)[1] if len(shape) == 4 else shape[0]
        kw["out_gamma"] = np.full(channels, ref.SENTINEL, vector)
        kw["out_beta"] = np.full(channels, ref.SENTINEL, vector)
    return kw


def misaligned(shape, dtype, offset, fill=ref.SENTINEL):
    """A writable array whose data sits `offset` bytes into a bytearray (not aligned)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    raw = bytearray(count * dtype.itemsize + offset)
    result = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape)
    result[...] = fill
    assert result.ctypes.data % dtype.itemsize != 0
    return result


def kernel_call(name, args, kw, make_args=(3,), make_kw=None, protect_extra=(), unsafe=(),
                agree=True):
    """The standard row body: a kernel object called with args/kw. Every NumPy argument is
    protected except those in `unsafe` (views that must never be read: absurd shapes,
    strides past the address space), whose base arrays go in protect_extra instead."""
    make_kw = make_kw or {}
    k = cls(name)(*make_args, **make_kw)
    arrays = [a for a in list(args) + list(kw.values()) if isinstance(a, np.ndarray)]
    protect = [a for a in arrays if not any(a is u for u in unsafe)] + list(protect_extra)
    fresh = (lambda: cls(name)(*make_args, **make_kw)) if agree else None
    return call(lambda: k(*args, **kw), protect, k, fresh)


# -- byte order --------------------------------------------------------------------------------

@case("lcn-x-big-endian-float32", L, "byte_order", TypeError, "x", "byte order", ">f")
def _():
    (x,) = inputs(L)
    return kernel_call(L, [x.astype(">f4")], outputs(L))


@case("lcn-grad-dy-big-endian-float16", LG, "byte_order", TypeError, "dy", "byte order", ">e")
def _():
    dy, x = inputs(LG, dtype=np.float16)
    return kernel_call(LG, [dy.astype(">f2"), x], outputs(LG, dtype=np.float16))


@case("inorm-x-big-endian-float64", IN, "byte_order", TypeError, "x", "byte order", ">d")
def _():
    (x,) = inputs(IN, dtype=np.float64)
    return kernel_call(IN, [x.astype(">f8")], outputs(IN, dtype=np.float64))


@case("inorm-grad-x-big-endian", IG, "byte_order", TypeError, "x", "byte order")
def _():
    dy, x = inputs(IG)
    return kernel_call(IG, [dy, x.astype(">f4")], outputs(IG))


@case("lcn-out-big-endian", L, "byte_order", TypeError, "out", "byte order")
def _():
    kw = outputs(L)
    kw["out"] = kw["out"].astype(">f4")
    return kernel_call(L, inputs(L), kw)


@case("inorm-grad-out-gamma-big-endian", IG, "byte_order", TypeError, "out_gamma", "byte order")
def _():
    kw = outputs(IG)
    kw["out_gamma"] = kw["out_gamma"].astype(">f4")
    return kernel_call(IG, inputs(IG), kw)


@case("inorm-grad-out-beta-big-endian-float64", IG, "byte_order", TypeError, "out_beta",
      "byte order")
def _():
    kw = outputs(IG, dtype=np.float64)
    kw["out_beta"] = kw["out_beta"].astype(">f8")
    return kernel_call(IG, inputs(IG, dtype=np.float64), kw)


# -- alignment (np.frombuffer on an offset bytearray) and strides of partial elements -----------

@case("lcn-x-misaligned-float32", L, "alignment", ValueError, "x", "aligned")
def _():
    (x,) = inputs(L)
    return kernel_call(L, [misaligned(SHAPE, np.float32, 1, x)], outputs(L))


@case("lcn-grad-dy-misaligned-float16", LG, "alignment", ValueError, "dy", "aligned")
def _():
    dy, x = inputs(LG, dtype=np.float16)
    return kernel_call(LG, [misaligned(SHAPE, np.float16, 1, dy), x],
                       outputs(LG, dtype=np.float16))


@case("inorm-x-misaligned-float64-by-4", IN, "alignment", ValueError, "x", "aligned")
def _():
    (x,) = inputs(IN, dtype=np.float64)
    return kernel_call(IN, [misaligned(SHAPE, np.float64, 4, x)], outputs(IN, dtype=np.float64))


@case("inorm-grad-out-misaligned", IG, "alignment", ValueError, "out data", "aligned")
def _():
    kw = outputs(IG)
    kw["out"] = misaligned(SHAPE, np.float32, 2)
    return kernel_call(IG, inputs(IG), kw)


@case("inorm-grad-out-gamma-misaligned", IG, "alignment", ValueError, "out_gamma", "aligned")
def _():
    kw = outputs(IG)
    kw["out_gamma"] = misaligned((3,), np.float32, 1)
    return kernel_call(IG, inputs(IG), kw)


@case("lcn-grad-x-stride-of-partial-elements", LG, "alignment", ValueError, "x",
      "not a multiple", "6 bytes")
def _():
    dy, _ = inputs(LG, shape=(1, 1, 2, 3))
    base = np.zeros(64, np.float32)
    x = as_strided(base, shape=(1, 1, 2, 3), strides=(0, 0, 24, 6), writeable=False)
    return kernel_call(LG, [dy, x], outputs(LG, shape=(1, 1, 2, 3)), protect_extra=[base])


@case("inorm-out-stride-of-partial-elements", IN, "alignment", ValueError, "out",
      "not a multiple")
def _():
    (x,) = inputs(IN, shape=(1, 3, 2, 2), dtype=np.float64)
    base = np.full(64, ref.SENTINEL, np.float64)
    out = as_strided(base, shape=(1, 3, 2, 2), strides=(0, 100, 36, 12))
    return kernel_call(IN, [x], {"out": out}, protect_extra=[base])


# -- zero-size dimensions ------------------------------------------------------------------------

@case("inorm-zero-channels", IN, "zero_size", ValueError, "0 channels", "3")
def _():
    return kernel_call(IN, [np.zeros((2, 0, 7, 9), np.float32)], {})


@case("lcn-zero-batch-out-shape-differs", L, "zero_size", ValueError, "(0, 3, 7, 8)")
def _():
    return kernel_call(L, [np.zeros((0, 3, 7, 9), np.float32)],
                       {"out": np.zeros((0, 3, 7, 8), np.float32)})


@case("lcn-grad-zero-batch-shapes-differ", LG, "zero_size", ValueError, "(0, 3, 8, 9)")
def _():
    return kernel_call(LG, [np.zeros((0, 3, 7, 9), np.float32),
                            np.zeros((0, 3, 8, 9), np.float32)], {})


@case("inorm-grad-zero-batch-out-gamma-length", IG, "zero_size", ValueError, "out_gamma",
      "length 3", "2")
def _():
    kw = outputs(IG, shape=(0, 3, 7, 9))
    kw["out_gamma"] = np.full(2, ref.SENTINEL, np.float32)
    return kernel_call(IG, inputs(IG, shape=(0, 3, 7, 9)), kw)


@case("lcn-zero-batch-read-only-out", L, "zero_size", ValueError, "out", "read-only")
def _():
    out = np.zeros((0, 3, 7, 9), np.float32)
    out.flags.writeable = False
    return kernel_call(L, [np.zeros((0, 3, 7, 9), np.float32)], {"out": out})


@case("inorm-zero-height-out-dtype-differs", IN, "zero_size", ValueError, "float64", "float32")
def _():
    return kernel_call(IN, [np.zeros((2, 3, 0, 9), np.float32)],
                       {"out": np.zeros((2, 3, 0, 9), np.float64)})


@case("inorm-grad-zero-width-out-beta-int32", IG, "zero_size", TypeError, "out_beta", "int32")
def _():
    kw = outputs(IG, shape=(2, 3, 7, 0))
    kw["out_beta"] = np.zeros(3, np.int32)
    return kernel_call(IG, inputs(IG, shape=(2, 3, 7, 0)), kw)


# -- absurd sizes: outputs that cannot be allocated, strides past the address space, limits ------

def broadcast(value, shape, dtype):
    """A read-only zero-stride view of one element (no memory behind the shape)."""
    base = np.full(1, value, dtype)
    return np.broadcast_to(base.reshape(()), shape), base


HUGE = (10 ** 6, 10 ** 3, 10 ** 3, 10)


@case("lcn-out-none-unallocatable", L, "absurd_size", MemoryError, "allocate", named=False)
def _():
    x, base = broadcast(0.5, HUGE, np.float32)
    return kernel_call(L, [x], {}, protect_extra=[base], unsafe=[x])


@case("lcn-grad-out-none-unallocatable-float16", LG, "absurd_size", MemoryError, "allocate",
      named=False)
def _():
    x, base = broadcast(0.5, HUGE, np.float16)
    return kernel_call(LG, [x, x], {}, protect_extra=[base], unsafe=[x])


@case("inorm-out-none-unallocatable", IN, "absurd_size", MemoryError, "allocate", named=False)
def _():
    x, base = broadcast(0.5, (10 ** 6, 10, 10 ** 3, 10 ** 3), np.float32)
    return kernel_call(IN, [x], {}, make_args=(10,), protect_extra=[base], unsafe=[x])


@case("inorm-grad-nhwc-out-none-unallocatable", IG, "absurd_size", MemoryError, "allocate",
      named=False)
def _():
    x, base = broadcast(0.5, HUGE, np.float32)
    return kernel_call(IG, [x, x], {}, make_args=(10,), make_kw={"layout": "NHWC"},
                       protect_extra=[base], unsafe=[x])


def far_strided(step_bytes, writeable=False):
    """Shape (4, 1, 1, 1) with a first-axis stride so large the span leaves the address space
    (never dereferenced: validation must refuse it first)."""
    base = np.full(1, ref.SENTINEL, np.float32)
    view = as_strided(base, shape=(4, 1, 1, 1), strides=(step_bytes, 4, 4, 4),
                      writeable=writeable)
    return view, base


@case("lcn-x-stride-beyond-address-space", L, "absurd_size", ValueError, "x", "address space")
def _():
    x, base = far_strided(1 << 62)
    return kernel_call(L, [x], outputs(L, shape=(4, 1, 1, 1)), protect_extra=[base],
                       unsafe=[x])


@case("inorm-x-negative-stride-beyond-address-space", IN, "absurd_size", ValueError, "x",
      "address space")
def _():
    x, base = far_strided(-(1 << 62))
    return kernel_call(IN, [x], outputs(IN, shape=(4, 1, 1, 1)), make_args=(1,),
                       protect_extra=[base], unsafe=[x])


@case("lcn-grad-out-stride-beyond-address-space", LG, "absurd_size", ValueError, "out",
      "address space")
def _():
    out, base = far_strided(1 << 62, writeable=True)
    dy, x = inputs(LG, shape=(4, 1, 1, 1))
    return kernel_call(LG, [dy, x], {"out": out}, protect_extra=[base], unsafe=[out])


@case("lcn-kernel-width-beyond-int64", L, "kernel_size", ValueError, "kernel_width",
      "out of range", str(1 << 63))
def _():
    return call(lambda: mpsnorm.LocalContrastNormalization(1 << 63))


@case("lcn-grad-kernel-height-below-int64", LG, "kernel_size", ValueError, "kernel_height",
      "out of range")
def _():
    return call(lambda: mpsnorm.LocalContrastNormalizationGradient(3, -(1 << 63) - 1))


@case("inorm-num-channels-beyond-int64", IN, "absurd_size", ValueError, "num_channels",
      "out of range", str(1 << 64))
def _():
    return call(lambda: mpsnorm.InstanceNormalization(1 << 64))


@case("inorm-grad-num-channels-2**40-vs-3", IG, "channels", ValueError, "3 channels",
      str(1 << 40))
def _():
    return kernel_call(IG, inputs(IG), outputs(IG), make_args=(1 << 40,), agree=False)


# -- kernel sizes and parameters of numpy / decimal types, at the float32 edges -------------------

@case("lcn-kernel-width-numpy-int64-zero", L, "kernel_size", ValueError, "kernel_width", "0")
def _():
    return call(lambda: mpsnorm.LocalContrastNormalization(np.int64(0)))


@case("lcn-grad-kernel-width-numpy-float64", LG, "type", TypeError, "kernel_width")
def _():
    return call(lambda: mpsnorm.LocalContrastNormalizationGradient(np.float64(3.0)))


@case("inorm-num-channels-float", IN, "type", TypeError, "num_channels", "3.0")
def _():
    return call(lambda: mpsnorm.InstanceNormalization(3.0))


@case("lcn-alpha-decimal-nan", L, "parameter", ValueError, "alpha", "finite")
def _():
    return call(lambda: mpsnorm.LocalContrastNormalization(3, alpha=decimal.Decimal("NaN")))


@case("lcn-alpha-decimal-signaling-nan", L, "type", TypeError, "alpha", "sNaN")
def _():
    return call(lambda: mpsnorm.LocalContrastNormalization(3, alpha=decimal.Decimal("sNaN")))


@case("lcn-alpha-numpy-array", L, "type", TypeError, "alpha")
def _():
    return call(lambda: mpsnorm.LocalContrastNormalization(3, alpha=np.array([1.0, 2.0])))


@case("lcn-grad-delta-just-past-float32-max", LG, "parameter", ValueError, "delta",
      "finite in float32")
def _():
    k = mpsnorm.LocalContrastNormalizationGradient(3, delta=0.25)
    # FLT_MAX = 3.4028234663852886e38 rounds to itself; FLT_MAX * (1 + 2**-25) rounds to inf
    assert np.isfinite(np.float32(3.4028234663852886e38))
    return call(lambda: setattr(k, "delta", 3.4028236e38), kernel=k,
                fresh=lambda: mpsnorm.LocalContrastNormalizationGradient(3, delta=0.25))


@case("lcn-grad-ps-numpy-float32-inf", LG, "parameter", ValueError, "ps", "inf")
def _():
    k = mpsnorm.LocalContrastNormalizationGradient(3, ps=2.0)
    return call(lambda: setattr(k, "ps", np.float32("inf")), kernel=k,
                fresh=lambda: mpsnorm.LocalContrastNormalizationGradient(3, ps=2.0))


@case("inorm-gamma-overflows-float32", IN, "parameter", ValueError, "gamma[1]",
      "finite in float32")
def _():
    return call(lambda: mpsnorm.InstanceNormalization(3, gamma=[1.0, 1e39, 1.0]))


@case("inorm-epsilon-negative-subnormal", IN, "parameter", ValueError, "epsilon", ">= 0")
def _():
    # -1e-45 rounds to the negative float32 subnormal -1.4e-45 (not to -0.0)
    assert np.float32(-1e-45) < 0
    return call(lambda: mpsnorm.InstanceNormalization(3, epsilon=-1e-45))


@case("inorm-grad-gamma-bytes", IG, "type", TypeError, "gamma")
def _():
    return call(lambda: mpsnorm.InstanceNormalizationGradient(3, gamma=b"abc"))


# -- types, dtypes and ranks of inputs that test_bad_input.py does not try ------------------------

@case("lcn-x-object-dtype", L, "dtype", TypeError, "x", "'O'")
def _():
    x = np.ones(SHAPE, dtype=object)
    return kernel_call(L, [x], outputs(L), unsafe=[x])  # object arrays have no bits to compare


@case("lcn-grad-dy-structured-dtype", LG, "dtype", TypeError, "dy", "unsupported dtype")
def _():
    (_, x) = inputs(LG)
    return kernel_call(LG, [np.zeros(SHAPE, dtype=[("a", "f4")]), x], outputs(LG))


@case("inorm-float16-x-float32-out", IN, "dtype", ValueError, "float32", "float16")
def _():
    return kernel_call(IN, inputs(IN, dtype=np.float16), outputs(IN))


@case("inorm-grad-out-gamma-int32", IG, "mistyped_out", TypeError, "out_gamma", "int32")
def _():
    kw = outputs(IG)
    kw["out_gamma"] = np.zeros(3, np.int32)
    return kernel_call(IG, inputs(IG), kw)


@case("lcn-x-array-array-1d", L, "rank", ValueError, "x", "1-D")
def _():
    x = array.array("f", [0.5] * 63)
    return kernel_call(L, [x], {}, protect_extra=[np.frombuffer(x, np.float32)])


@case("inorm-nhwc-2d-input", IN, "rank", ValueError, "x", "(N, H, W, C)", "2-D")
def _():
    return kernel_call(IN, [np.ones((7, 9), np.float32)], {}, make_kw={"layout": "NHWC"})


@case("lcn-grad-dy-batch-1-for-x-batch-2", LG, "shape", ValueError, "(1, 3, 7, 9)",
      "(2, 3, 7, 9)")
def _():
    dy, _ = inputs(LG, shape=(1, 3, 7, 9))
    _, x = inputs(LG)
    return kernel_call(LG, [dy, x], outputs(LG))  # no broadcasting


@case("inorm-grad-nhwc-dy-in-nchw-shape", IG, "shape", ValueError, "(2, 3, 7, 9)",
      "(2, 7, 9, 3)")
def _():
    (dy,) = inputs(IN)
    (x,) = inputs(IN, shape=(2, 7, 9, 3))
    return kernel_call(IG, [dy, x], {}, make_kw={"layout": "NHWC"})


# -- outputs: mistyped, misshapen, writing an element twice, interleaved with an input ----------

@case("lcn-out-zero-stride", L, "overlapping_out", ValueError, "out would", "more than once")
def _():
    base = np.full(1, ref.SENTINEL, np.float32)
    out = as_strided(base, shape=SHAPE, strides=(0, 0, 0, 0))
    return kernel_call(L, inputs(L), {"out": out}, protect_extra=[base])


@case("inorm-out-rows-overlap", IN, "overlapping_out", ValueError, "out would",
      "more than once")
def _():
    base = np.full(2 * 3 * 7 * 9, ref.SENTINEL, np.float32)
    out = as_strided(base, shape=SHAPE, strides=(4 * 189, 4 * 63, 4 * 4, 4))  # rows 4 apart
    return kernel_call(IN, inputs(IN), {"out": out}, protect_extra=[base])


@case("inorm-grad-out-gamma-zero-stride", IG, "overlapping_out", ValueError, "out_gamma",
      "more than once")
def _():
    kw = outputs(IG)
    base = np.full(1, ref.SENTINEL, np.float32)
    kw["out_gamma"] = as_strided(base, shape=(3,), strides=(0,))
    return kernel_call(IG, inputs(IG), kw, protect_extra=[base])


@case("lcn-grad-out-interleaved-with-dy", LG, "overlapping_out", ValueError,
      "out overlaps dy")
def _():
    # Element-disjoint but interleaved: the span rule (README, header) refuses it.
    base = np.full((2, 3, 7, 18), ref.SENTINEL, np.float32)
    dy, out = base[..., ::2], base[..., 1::2]
    dy[...] = 0.25
    (_, x) = inputs(LG)
    return kernel_call(LG, [dy, x], {"out": out}, protect_extra=[base])


@case("inorm-grad-out-gamma-interleaved-with-out-beta", IG, "overlapping_out", ValueError,
      "out_gamma overlaps out_beta")
def _():
    kw = outputs(IG)
    base = np.full(6, ref.SENTINEL, np.float32)
    kw["out_gamma"], kw["out_beta"] = base[::2], base[1::2]
    return kernel_call(IG, inputs(IG), kw, protect_extra=[base])


@case("lcn-grad-out-bytearray", LG, "mistyped_out", TypeError, "out", "uint8")
def _():
    raw = bytearray(b"\x07" * (4 * int(np.prod(SHAPE))))
    return kernel_call(LG, inputs(LG), {"out": raw},
                       protect_extra=[np.frombuffer(raw, np.uint8)])


@case("inorm-out-array-array-1d", IN, "misshapen_out", ValueError, "out", "1-D")
def _():
    out = array.array("f", [7.0] * int(np.prod(SHAPE)))
    return kernel_call(IN, inputs(IN), {"out": out},
                       protect_extra=[np.frombuffer(out, np.float32)])


@case("lcn-4d-out-for-3d-x", L, "misshapen_out", ValueError, "(1, 3, 7, 9)", "(3, 7, 9)")
def _():
    return kernel_call(L, inputs(L, shape=(3, 7, 9)), outputs(L, shape=(1, 3, 7, 9)))


@case("lcn-grad-nhwc-out-in-nchw-shape", LG, "misshapen_out", ValueError, "(2, 3, 7, 9)",
      "(2, 7, 9, 3)")
def _():
    return kernel_call(LG, inputs(LG, shape=(2, 7, 9, 3)), outputs(LG), make_kw={"layout": "NHWC"})


@case("inorm-grad-out-beta-read-only-memoryview", IG, "read_only_out", ValueError, "out_beta",
      "read-only")
def _():
    kw = outputs(IG)
    held = np.full(3, ref.SENTINEL, np.float32)
    kw["out_beta"] = memoryview(held).toreadonly()
    return kernel_call(IG, inputs(IG), kw, protect_extra=[held])


@case("inorm-out-read-only-broadcast", IN, "read_only_out", ValueError, "out", "read-only")
def _():
    out, base = broadcast(7.0, SHAPE, np.float32)
    return kernel_call(IN, inputs(IN), {"out": out}, protect_extra=[base])


# -- objects: uninitialized, re-initialized with bad values, read-only attributes, arity -------

@case("lcn-uninitialized-call", L, "state", ValueError, "not initialized")
def _():
    k = mpsnorm.LocalContrastNormalization.__new__(mpsnorm.LocalContrastNormalization)
    x = inputs(L)
    return call(lambda: k(*x), protect=x)


@case("inorm-grad-uninitialized-call", IG, "state", ValueError, "not initialized")
def _():
    k = mpsnorm.InstanceNormalizationGradient.__new__(mpsnorm.InstanceNormalizationGradient)
    args, kw = inputs(IG), outputs(IG)
    return call(lambda: k(*args, **kw), protect=args + list(kw.values()))


@case("lcn-grad-reinit-bad-kernel-width", LG, "state", ValueError, "kernel_width", "0")
def _():
    k = mpsnorm.LocalContrastNormalizationGradient(5, alpha=0.5, layout="NHWC")
    return call(lambda: k.__init__(0, alpha=2.0), kernel=k,
                fresh=lambda: mpsnorm.LocalContrastNormalizationGradient(5, alpha=0.5,
                                                                         layout="NHWC"))


@case("lcn-set-kernel-width", L, "state", AttributeError, "kernel_width", "not writable",
      named=False)
def _():
    k = mpsnorm.LocalContrastNormalization(3)
    return call(lambda: setattr(k, "kernel_width", 5), kernel=k,
                fresh=lambda: mpsnorm.LocalContrastNormalization(3))


@case("inorm-set-num-channels", IN, "state", AttributeError, "num_channels", "not writable",
      named=False)
def _():
    k = mpsnorm.InstanceNormalization(3)
    return call(lambda: setattr(k, "num_channels", 4), kernel=k,
                fresh=lambda: mpsnorm.InstanceNormalization(3))


@case("inorm-grad-set-layout", IG, "state", AttributeError, "layout", "not writable",
      named=False)
def _():
    k = mpsnorm.InstanceNormalizationGradient(3)
    return call(lambda: setattr(k, "layout", "NHWC"), kernel=k,
                fresh=lambda: mpsnorm.InstanceNormalizationGradient(3))


@case("inorm-layout-none", IN, "type", ValueError, "layout", "None")
def _():
    return call(lambda: mpsnorm.InstanceNormalization(3, layout=None))


@case("inorm-grad-layout-bytes", IG, "type", ValueError, "layout", "b'NCHW'")
def _():
    return call(lambda: mpsnorm.InstanceNormalizationGradient(3, layout=b"NCHW"))


@case("lcn-backend-none", L, "type", ValueError, "backend", "None")
def _():
    return call(lambda: mpsnorm.LocalContrastNormalization(3, backend=None))


@case("lcn-grad-positional-out", LG, "arity", TypeError, "positional argument", named=False)
def _():
    dy, x = inputs(LG)
    out = np.full(SHAPE, ref.SENTINEL, np.float32)
    return kernel_call(LG, [dy, x, out], {})


@case("inorm-unknown-keyword", IN, "arity", TypeError, "output", named=False)
def _():
    return kernel_call(IN, inputs(IN), {"output": np.full(SHAPE, ref.SENTINEL, np.float32)})


@case("inorm-grad-missing-x", IG, "arity", TypeError, "positional argument", named=False)
def _():
    return kernel_call(IG, inputs(IG)[:1], outputs(IG))


# -- module functions --------------------------------------------------------------------------

def module_call(fn):
    return call(fn, state=mpsnorm.get_num_threads)


@case("set-num-threads-none", MODULE, "type", TypeError, "set_num_threads", "None")
def _():
    return module_call(lambda: mpsnorm.set_num_threads(None))


@case("set-num-threads-numpy-float", MODULE, "type", TypeError, "set_num_threads")
def _():
    return module_call(lambda: mpsnorm.set_num_threads(np.float32(2.0)))


@case("set-num-threads-beyond-int64", MODULE, "absurd_size", ValueError, "set_num_threads",
      "out of range")
def _():
    return module_call(lambda: mpsnorm.set_num_threads(1 << 64))


@case("set-num-threads-no-argument", MODULE, "arity", TypeError, "set_num_threads")
def _():
    return module_call(lambda: mpsnorm.set_num_threads())


@case("backends-with-argument", MODULE, "arity", TypeError, "backends")
def _():
    return module_call(lambda: mpsnorm.backends("cpu"))


@case("get-num-threads-with-argument", MODULE, "arity", TypeError, "get_num_threads")
def _():
    return module_call(lambda: mpsnorm.get_num_threads(1))


@case("get-include-with-argument", MODULE, "arity", TypeError, "get_include")
def _():
    return module_call(lambda: mpsnorm.get_include("c"))


# -- the tests -----------------------------------------------------------------------------------

def _results(kernel, args):
    got = kernel(*args)
    return got if isinstance(got, tuple) else (got,)


def _still_agrees(kernel, fresh):
    """The object that saw the failed call gives the bits a fresh identical one gives."""
    name = type(kernel).__name__
    shape = SHAPE if kernel.layout == "NCHW" else (2, 7, 9, 3)
    args = inputs(name, shape=shape, seed=11)
    if name.startswith("Instance"):
        channels = kernel.num_channels
        shape = (2, channels, 7, 9) if kernel.layout == "NCHW" else (2, 7, 9, channels)
        args = inputs(name, shape=shape, seed=11)
    for got, expected in zip(_results(kernel, args), _results(fresh(), args)):
        assert_bits_equal(got, expected, "%s after the failed call" % name)


@pytest.mark.parametrize("row", CASES, ids=[c.id for c in CASES])
def test_invalid_call(row, restore_num_threads):
    made = row.build()
    before = [snapshot(p) for p in made.protect]
    state = made.state() if made.state else None
    with pytest.raises(row.exc) as info:
        made.fn()
    message = str(info.value)
    if row.named:
        name = row.kernel if row.kernel != MODULE else None
        assert name is None or name in message, "%r not in %r" % (name, message)
    for fragment in row.fragments:
        assert fragment in message, "%r not in message %r" % (fragment, message)
    for i, (buffer, saved) in enumerate(zip(made.protect, before)):
        assert_bits_equal(snapshot(buffer), saved, "buffer #%d after the failed call" % i)
    if made.state:
        assert made.state() == state, "state changed by the failed call"
    if made.kernel is not None and made.fresh is not None:
        _still_agrees(made.kernel, made.fresh)


def test_matrix_size_and_coverage():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert len(CASES) >= 40, len(CASES)
    assert {c.kernel for c in CASES} == set(KERNELS) | {MODULE}
    assert {c.category for c in CASES} == CATEGORIES
    for kernel in KERNELS:
        assert sum(c.kernel == kernel for c in CASES) >= 8, kernel


# -- regressions: defects found while building the matrix (now fixed) -----------------------------

def run_isolated(code):
    """Runs `code` in a fresh interpreter: a crash there fails the test, not the suite."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120, cwd=os.path.dirname(os.path.abspath(__file__)))


CTYPES_CASES = {
    "x": "k = mpsnorm.LocalContrastNormalization(3); k(arr(2, 3, 7, 9))",
    "out": "k = mpsnorm.InstanceNormalization(3); x = np.ones((1, 3, 4, 4), np.float32); "
           "k(x, out=arr(1, 3, 4, 4))",
    "out_gamma": "k = mpsnorm.InstanceNormalizationGradient(3); "
                 "x = np.ones((1, 3, 4, 4), np.float32); k(x, x, out_gamma=arr(3))",
}


@pytest.mark.parametrize("slot", sorted(CTYPES_CASES))
def test_ctypes_array_is_computed_or_refused_without_crashing(slot):
    """Was: a ctypes array exports a Py_buffer with strides == NULL (allowed for C-contiguous
    data) and _tensor.pyx read view.strides[axis]: SIGSEGV. Computed now, equal to NumPy's."""
    result = run_isolated("""
        import ctypes
        import numpy as np
        import mpsnorm

        def arr(*shape):
            kind = ctypes.c_float
            for extent in reversed(shape):
                kind = kind * extent
            return kind()

        try:
            %s
        except (TypeError, ValueError) as error:
            print("refused:", error)
        else:
            print("computed")
    """ % CTYPES_CASES[slot])
    assert result.returncode == 0, "interpreter died with status %d: %s" % (
        result.returncode, result.stderr[-2000:])
    assert result.stdout.strip().splitlines()[-1] in ("computed",) or \
        result.stdout.startswith("refused: ") and "Normalization" in result.stdout


def test_ctypes_array_gives_numpys_bits():
    import ctypes
    rng = np.random.default_rng(4)
    values = ref.random_array(rng, (2, 3, 7, 9), np.float32)
    buffer = ((((ctypes.c_float * 9) * 7) * 3) * 2)()
    np.frombuffer(buffer, np.float32)[:] = values.ravel()
    out = ((((ctypes.c_float * 9) * 7) * 3) * 2)()
    k = mpsnorm.LocalContrastNormalization(3, alpha=1.0)
    assert k(buffer, out=out) is out
    assert_bits_equal(np.frombuffer(out, np.float32).reshape(values.shape), k(values))


def test_failed_reinit_keeps_inorm_channel_count():
    """Was: _setup stored the new num_channels before gamma/beta were validated; after a
    failed re-__init__ num_channels was 4 with 3-value gamma/beta, and the next call read
    gamma[3]/beta[3] past the end of a bytes object (AddressSanitizer: heap-buffer-overflow in
    validate.c check_channel_values)."""
    k = mpsnorm.InstanceNormalization(3, gamma=[1.0, 2.0, 3.0], beta=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        k.__init__(4, gamma=[1.0, 2.0])
    assert k.num_channels == 3
    assert len(k.gamma) == k.num_channels and len(k.beta) == k.num_channels
    with pytest.raises(ValueError, match="4 channels"):
        k(np.ones((1, 4, 5, 5), np.float32))


@pytest.mark.parametrize("name", [L, IN])
def test_failed_reinit_changes_nothing(name):
    """Was: the LCN object's engine was freed before the new one was made (a failed
    re-__init__ left it 'not initialized'); the instance-norm object kept the new epsilon."""
    if name == L:
        k = mpsnorm.LocalContrastNormalization(3, alpha=0.5)
        bad = dict(alpha=1.0, backend="gpu")
    else:
        k = mpsnorm.InstanceNormalization(3, epsilon=0.5)
        bad = dict(epsilon=0.25, layout="bad")
    before = repr(k)
    with pytest.raises(ValueError):
        k.__init__(3, **bad)
    assert repr(k) == before
    k(np.ones((1, 3, 4, 4), np.float32))


@pytest.mark.parametrize("where", ["alpha", "epsilon", "gamma"])
def test_parameter_beyond_double_range_is_a_named_value_error(where):
    """Was: to_float32 let float()'s OverflowError through, without class or parameter."""
    import fractions
    if where == "alpha":
        fn = lambda: mpsnorm.LocalContrastNormalization(3, alpha=10 ** 400)  # noqa: E731
    elif where == "epsilon":
        fn = lambda: mpsnorm.InstanceNormalization(  # noqa: E731
            3, epsilon=fractions.Fraction(10 ** 400, 3))
    else:
        fn = lambda: mpsnorm.InstanceNormalizationGradient(3, gamma=[1, 10 ** 400, 1])  # noqa
    with pytest.raises(ValueError) as info:
        fn()
    assert where in str(info.value) and "Normalization" in str(info.value)


def test_datetime_input_is_a_named_type_error():
    """Was: NumPy's ValueError for a dtype it cannot export went through unnamed."""
    k = mpsnorm.LocalContrastNormalization(3)
    with pytest.raises(TypeError) as info:
        k(np.zeros(SHAPE, "M8[s]"))
    assert "LocalContrastNormalization" in str(info.value)


def test_numpy_complex_parameter_is_a_type_error():
    """Was: float(np.complex128) drops the imaginary part with a ComplexWarning only, so
    alpha=np.complex128(1+2j) was accepted as 1.0 (alpha=1j is a TypeError)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TypeError):
            mpsnorm.LocalContrastNormalization(3, alpha=np.complex128(1 + 2j))


@pytest.mark.parametrize("name, attribute", [(IN, "gamma"), (IN, "beta"), (IG, "gamma")])
def test_default_channel_values_too_large_to_allocate_are_a_named_memory_error(name, attribute):
    """Was (found by the Python fuzzer): reading the default gamma/beta of an object with an
    absurd channel count raised a MemoryError without a message. The object stays usable."""
    kernel = cls(name)(2 ** 60)
    with pytest.raises(MemoryError) as info:
        getattr(kernel, attribute)
    assert name in str(info.value) and attribute in str(info.value)
    assert str(2 ** 60) in str(info.value)
    assert kernel.num_channels == 2 ** 60 and kernel.epsilon == np.float32(1e-5)
