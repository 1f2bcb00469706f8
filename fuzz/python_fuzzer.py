#!/usr/bin/env python3
"""atheris harness of mpsnorm's Python entry points.

Each input is decoded into one object construction (the four kernel classes: sizes, channel
counts, parameters, gamma/beta, layout, backend -- valid and invalid values of many types),
optionally a parameter change, and one call with inputs and outputs built from real memory in
many forms (dtypes including wrong and byte-swapped ones, ranks 0..5, zero sizes, transposed,
reversed, stepped, zero-stride broadcast and unallocatable broadcast views, memoryviews,
misaligned np.frombuffer views, read-only arrays, bytes, bytearray, array.array, lists) and
outputs that may alias an input.

Properties checked (a violation raises, which atheris reports as a crash):
  * a failure is TypeError, ValueError or MemoryError -- anything else (OverflowError,
    SystemError, a crash of the interpreter) is a finding; a TypeError/ValueError names the
    class (or function) it came from;
  * a failing call leaves every buffer it was given unchanged, bit for bit;
  * a successful call leaves its inputs unchanged and returns the out= object it was given, or
    a new array of the input's shape and dtype.

Also generated: ctypes arrays (whose buffers have NULL strides), numbers beyond the double
range, NumPy complex scalars, datetime64 arrays, and __init__ run again on an object (a
failed one must change nothing) -- each was a defect once (tests/test_bad_input_matrix.py).

Run through fuzz/run.py, or directly:
    python fuzz/python_fuzzer.py -max_total_time=60 NEW_CORPUS_DIR fuzz/corpus/python
"""
import array
import ctypes
import decimal
import fractions
import sys

import atheris

with atheris.instrument_imports(include=["mpsnorm"]):
    import mpsnorm

import numpy as np  # noqa: E402  (after mpsnorm: not instrumented)

CLASSES = (mpsnorm.LocalContrastNormalization, mpsnorm.LocalContrastNormalizationGradient,
           mpsnorm.InstanceNormalization, mpsnorm.InstanceNormalizationGradient)
LCN_PARAMETERS = ("alpha", "beta", "delta", "p0", "pm", "ps")
ALLOWED = (TypeError, ValueError, MemoryError)
DTYPES = [np.float32, np.float16, np.float64, np.float32, np.float32, ">f4", "<f8", np.int32,
          np.bool_, np.complex64, np.uint8, np.int64, "M8[s]"]


class Owners:
    """Every buffer that backs an argument, snapshotted to prove nothing changed."""

    def __init__(self):
        self.owners, self.items = [], []
        self.last = None  # the owner of the buffer made last (None: it has none)

    def add(self, owner):
        self.owners.append(owner)
        self.last = owner
        return owner

    def snapshot(self):
        """Takes the snapshots (once every buffer is filled)."""
        for owner in self.owners:
            if isinstance(owner, np.ndarray) and owner.dtype != object:
                self.items.append((owner, owner.tobytes(order="A")))
            elif isinstance(owner, (bytearray, bytes, array.array)):
                self.items.append((owner, bytes(owner)))

    def unchanged(self, exclude=()):
        for owner, saved in self.items:
            if any(owner is e for e in exclude):
                continue
            now = owner.tobytes(order="A") if isinstance(owner, np.ndarray) else bytes(owner)
            if now != saved:
                raise AssertionError("a buffer changed: %r" % (type(owner),))


@atheris.instrument_func
def number(fdp):
    """A value for a float parameter: usually a float, sometimes another type."""
    kind = fdp.ConsumeIntInRange(0, 11)
    if kind <= 4:
        return fdp.ConsumeRegularFloat()
    if kind == 5:
        return fdp.ConsumeFloat()  # nan, inf too
    if kind == 6:
        return fdp.ConsumeIntInRange(-(1 << 64), 1 << 64)
    if kind == 7:
        return np.float32(fdp.ConsumeRegularFloat())
    if kind == 8:
        return decimal.Decimal(fdp.ConsumeIntInRange(-10, 10)) / 4
    if kind == 9:
        return fdp.PickValueInList(["1.0", None, [1.0], b"1", 1j, np.float64("nan"), 10 ** 400,
                                    -(10 ** 400), fractions.Fraction(10 ** 400, 3),
                                    np.complex128(1 + 2j), np.complex64(1)])
    if kind == 10:
        return np.array([fdp.ConsumeRegularFloat()] * fdp.ConsumeIntInRange(0, 2))
    return fdp.PickValueInList([0.0, 0.5, 1.0, 1 / 1024, -0.0, 3.4028236e38, -1e-45])


@atheris.instrument_func
def integer(fdp, small_high):
    kind = fdp.ConsumeIntInRange(0, 9)
    if kind <= 6:
        return fdp.ConsumeIntInRange(-1, small_high)
    if kind == 7:
        return fdp.ConsumeIntInRange(-(1 << 70), 1 << 70)
    if kind == 8:
        return np.int64(fdp.ConsumeIntInRange(-5, small_high))
    return fdp.PickValueInList([3.0, "3", None, True, np.float64(2.0), [3]])


@atheris.instrument_func
def channel_values(fdp, channels):
    kind = fdp.ConsumeIntInRange(0, 5)
    if kind <= 1:
        return None
    count = channels if kind <= 3 and isinstance(channels, int) and 0 <= channels <= 16 \
        else fdp.ConsumeIntInRange(0, 5)
    if kind == 2:
        return [fdp.ConsumeRegularFloat() for _ in range(count)]
    if kind == 3:
        return np.array([fdp.ConsumeFloat() for _ in range(count)], np.float32)
    if kind == 4:
        return [number(fdp) for _ in range(count)]
    return fdp.PickValueInList([b"abc", "abc", 1.5, object()])


@atheris.instrument_func
def construct(fdp, cls):
    args, kw = construct_arguments(fdp, cls)
    return cls(*args, **kw)


@atheris.instrument_func
def construct_arguments(fdp, cls):
    kw = {}
    if fdp.ConsumeBool():
        kw["layout"] = fdp.PickValueInList(["NCHW", "NHWC", "NHWC", "nchw", None, b"NCHW"])
    if fdp.ConsumeIntInRange(0, 7) == 0:
        kw["backend"] = fdp.PickValueInList(["auto", "cpu", "metal", "gpu", None, 1])
    if cls.__name__.startswith("Local"):
        args = [integer(fdp, 9)]
        if fdp.ConsumeBool():
            args.append(integer(fdp, 9))
        for name in LCN_PARAMETERS:
            if fdp.ConsumeIntInRange(0, 2) == 0:
                kw[name] = number(fdp)
        channels = None
    else:
        channels = integer(fdp, 5)
        args = [channels]
        kw["gamma"] = channel_values(fdp, channels)
        if cls is mpsnorm.InstanceNormalization:
            kw["beta"] = channel_values(fdp, channels)
        if fdp.ConsumeBool():
            kw["epsilon"] = number(fdp)
    return args, kw


@atheris.instrument_func
def values(fdp, shape, dtype):
    size = int(np.prod(shape)) if shape else 1
    seed = fdp.ConsumeIntInRange(0, 1 << 30)
    scale = fdp.PickValueInList([1.0, 1.0, 1e-3, 1e3, 60000.0])
    data = np.random.default_rng(seed).uniform(-scale, scale, size).reshape(shape)
    with np.errstate(all="ignore"):
        return data.astype(dtype)


@atheris.instrument_func
def buffer(fdp, owners, shape, dtype, writable):
    """An object exposing `shape` elements of `dtype` in some memory form (its owner, if it
    has one, is left in owners.last)."""
    owners.last = None
    form = fdp.ConsumeIntInRange(0, 15)
    if form == 15 and not writable:  # a zero-stride view whose copy cannot be allocated
        base = owners.add(np.full(1, 0.5, dtype))
        huge = tuple(shape[:-4]) + (10 ** 6, 10 ** 3, 10 ** 3, 10) if len(shape) >= 4 else \
            (10 ** 6, 10 ** 3, 10 ** 3, 10)
        return np.broadcast_to(base.reshape(()), huge)
    data = values(fdp, shape, dtype)
    nd = data.ndim
    if form == 0 or nd == 0 or data.dtype.kind == "M":  # datetime64: NumPy exports no buffer
        return owners.add(data)
    if form == 1:  # transposed storage
        order = list(range(nd))[::-1]
        store = owners.add(np.ascontiguousarray(data.transpose(order)))
        return store.transpose(np.argsort(order))
    if form == 2:  # reversed
        rev = (slice(None, None, -1),) * nd
        store = owners.add(data[rev].copy())
        return store[rev]
    if form == 3:  # every other element of a larger array
        big = owners.add(np.zeros(tuple(2 * s + 1 for s in shape), data.dtype))
        view = big[(slice(1, None, 2),) * nd]
        view[...] = data
        return view
    if form == 4:  # zero-stride broadcast along the first axis
        one = owners.add(data[:1].copy()) if shape[0] > 0 else owners.add(data.copy())
        view = np.broadcast_to(one, shape)
        return view if not writable else np.lib.stride_tricks.as_strided(
            one, shape, (0,) + one.strides[1:])
    if form == 5:  # memoryview
        return memoryview(owners.add(data))
    if form == 6:  # misaligned frombuffer
        offset = fdp.ConsumeIntInRange(1, 7)
        raw = owners.add(bytearray(data.nbytes + offset))
        view = np.frombuffer(raw, data.dtype, data.size, offset).reshape(shape)
        view[...] = data
        return view
    if form == 7:  # read-only
        data.flags.writeable = False
        return owners.add(data)
    if form == 8:
        return owners.add(bytearray(data.tobytes()))
    if form == 9:
        return bytes(data.tobytes())
    if form == 10 and data.dtype in (np.float32, np.float64):
        return owners.add(array.array("f" if data.dtype == np.float32 else "d",
                                      data.ravel().tolist()))
    if form == 11:
        return data.tolist()
    if form == 12:  # Fortran order
        return owners.add(np.asfortranarray(data))
    if form == 14 and data.dtype in (np.float32, np.float64) and 1 <= nd <= 5 and data.size:
        kind = ctypes.c_float if data.dtype == np.float32 else ctypes.c_double
        for extent in reversed(shape):
            kind = kind * extent
        made = kind()  # a buffer with strides == NULL (C-contiguous)
        owners.add(np.frombuffer(made, data.dtype))[...] = data.ravel()
        return made
    if form == 13:  # strided memoryview
        big = owners.add(np.zeros(tuple(2 * s + 1 for s in shape), data.dtype))
        view = big[(slice(None, -1, 2),) * nd]
        view[...] = data
        return memoryview(view)
    return owners.add(np.ascontiguousarray(data))


# gamma/beta of more channels than this are not read: the values are materialized, and
# between this and UNALLOCATABLE_CHANNELS that would take gigabytes (an honest result, but
# the run's memory limit). From UNALLOCATABLE_CHANNELS on, the read is a MemoryError.
READABLE_CHANNELS = 1 << 12
UNALLOCATABLE_CHANNELS = 1 << 40


def read_attribute(kernel, attribute):
    if not hasattr(type(kernel), attribute):
        raise AttributeError(attribute)
    channels = getattr(kernel, "num_channels", 0)
    if attribute in ("gamma", "beta") and READABLE_CHANNELS < channels < UNALLOCATABLE_CHANNELS:
        return "not read: %d channels" % channels
    return getattr(kernel, attribute)


@atheris.instrument_func
def TestOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    if fdp.ConsumeIntInRange(0, 31) == 0:
        saved = mpsnorm.get_num_threads()
        try:
            mpsnorm.set_num_threads(integer(fdp, 4))
        except ALLOWED as error:
            check_message(error, "set_num_threads")
        finally:
            mpsnorm.set_num_threads(saved)
        return
    cls = CLASSES[fdp.ConsumeIntInRange(0, 3)]
    name = cls.__name__
    try:
        kernel = construct(fdp, cls)
    except ALLOWED as error:
        check_message(error, name)
        return
    if fdp.ConsumeIntInRange(0, 7) == 0:  # __init__ again: a failed one changes nothing
        before = repr(kernel)
        try:
            kernel.__init__(*construct_arguments(fdp, cls)[0], **construct_arguments(fdp, cls)[1])
        except ALLOWED as error:
            check_message(error, name)
            assert repr(kernel) == before, "a failed __init__ changed the object"
    if fdp.ConsumeIntInRange(0, 3) == 0:
        attribute = fdp.PickValueInList(list(LCN_PARAMETERS) + ["gamma", "beta", "epsilon"])
        try:
            before = repr(kernel) + repr(read_attribute(kernel, attribute))
        except AttributeError:
            before = None
        except MemoryError as error:
            check_message(error, name)
            before = None
        if before is not None:
            vector = name.startswith("Instance") and attribute != "epsilon"
            try:
                setattr(kernel, attribute, channel_values(fdp, kernel.num_channels) if vector
                        else number(fdp))
            except ALLOWED as error:
                check_message(error, name)
                after = repr(kernel) + repr(read_attribute(kernel, attribute))
                assert after == before, "a failed setter changed the object"

    rank = fdp.PickValueInList([4, 4, 4, 3, 3, 0, 1, 2, 5])
    shape = tuple(fdp.ConsumeIntInRange(0, 6) for _ in range(rank))
    dtype = fdp.PickValueInList(DTYPES)
    owners = Owners()
    gradient = name.endswith("Gradient")
    args, arg_owners, out_owners = [], [], []
    for _ in range(2 if gradient else 1):
        same = fdp.ConsumeIntInRange(0, 5) != 0 or not args
        arg_shape = shape if same else tuple(fdp.ConsumeIntInRange(0, 6) for _ in range(rank))
        arg_dtype = dtype if same else fdp.PickValueInList(DTYPES)
        args.append(buffer(fdp, owners, arg_shape, arg_dtype, writable=False))
        arg_owners.append(owners.last)
    kw = {}
    out_kind = fdp.ConsumeIntInRange(0, 4)
    if out_kind == 1:
        kw["out"] = buffer(fdp, owners, shape, dtype, writable=True)
        out_owners.append(owners.last)
    elif out_kind == 2:
        kw["out"] = buffer(fdp, owners, shape, fdp.PickValueInList(DTYPES), writable=True)
        out_owners.append(owners.last)
    elif out_kind == 3:  # aliasing an input
        which = fdp.ConsumeIntInRange(0, len(args) - 1)
        kw["out"] = args[which]
        out_owners.append(arg_owners[which])
    if name == "InstanceNormalizationGradient":
        for key in ("out_gamma", "out_beta"):
            if fdp.ConsumeBool():
                length = fdp.ConsumeIntInRange(0, 6)
                kw[key] = buffer(fdp, owners, (length,),
                                 fdp.PickValueInList([np.float32, np.float64, np.float16]),
                                 writable=True)
                out_owners.append(owners.last)
    owners.snapshot()
    try:
        result = kernel(*args, **kw)
    except ALLOWED as error:
        check_message(error, name)
        owners.unchanged()
        return
    # outputs' owners may change; everything else must not
    owners.unchanged(exclude=[o for o in out_owners if o is not None])
    results = result if isinstance(result, tuple) else (result,)
    if kw.get("out") is not None:
        assert results[0] is kw["out"], "out= is not what the call returned"
    else:
        first = np.asarray(args[-1])
        assert isinstance(results[0], np.ndarray) and results[0].shape == first.shape and \
            results[0].dtype == first.dtype, "wrong result array"


@atheris.instrument_func
def check_message(error, name):
    if isinstance(error, MemoryError):
        return
    if name not in str(error):
        raise AssertionError("%s without the name %r: %s" % (type(error).__name__, name, error))


if __name__ == "__main__":
    np.seterr(all="ignore")
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
