"""Invalid arguments: exception type, message (class/function name + offending value),
and nothing written to any preallocated output, nothing changed in any input."""

import numpy as np
import pytest

import mpsnorm
import reference as ref
from reference import assert_bits_equal, snapshot

SHAPE = (2, 3, 7, 9)
LCN_NAMES = ("LocalContrastNormalization", "LocalContrastNormalizationGradient")
INORM_NAMES = ("InstanceNormalization", "InstanceNormalizationGradient")
ALL_NAMES = LCN_NAMES + INORM_NAMES
LCN_PARAMS = ref.LCN_PARAM_NAMES


def cls_of(name):
    return getattr(mpsnorm, name)


def make(name, **kw):
    """A valid kernel object of class `name` (3x3 window / 3 channels) with extra kwargs."""
    return cls_of(name)(3, **kw)


def n_inputs(name):
    return 2 if name.endswith("Gradient") else 1


# every (kernel class, input position): dy is position 0 and x position 1 of a gradient
INPUT_SLOTS = [(name, pos) for name in ALL_NAMES for pos in range(n_inputs(name))]
SLOT_IDS = ["%s-%s" % (name, ("dy", "x")[pos] if n_inputs(name) == 2 else "x")
            for name, pos in INPUT_SLOTS]


def check_raises(exc, name, fn, *values, protect=()):
    """fn() raises exc; message has `name` and every string in `values`; buffers unchanged."""
    before = [snapshot(p) for p in protect]
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    assert name in msg, "class/function name %r not in message %r" % (name, msg)
    for v in values:
        assert v in msg, "offending value %r not in message %r" % (v, msg)
    for i, (p, b) in enumerate(zip(protect, before)):
        assert_bits_equal(snapshot(p), b, "buffer #%d after the failed call" % i)
    return msg


def good_inputs(name, shape=SHAPE, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    return [ref.random_array(rng, shape, dtype) for _ in range(n_inputs(name))]


def sentinel_outputs(name, shape=SHAPE, dtype=np.float32):
    """kwargs with sentinel-filled out (and out_gamma/out_beta), and the arrays to protect."""
    out = np.full(shape, ref.SENTINEL, dtype)
    kw = {"out": out}
    if name == "InstanceNormalizationGradient":
        pdt = np.float64 if np.dtype(dtype) == np.float64 else np.float32
        kw["out_gamma"] = np.full(3, ref.SENTINEL, pdt)
        kw["out_beta"] = np.full(3, ref.SENTINEL, pdt)
    return kw, list(kw.values())


# -- constructor arguments -----------------------------------------------------------------

@pytest.mark.parametrize("kw,bad", [
    (dict(kernel_width=0), "0"), (dict(kernel_width=-3), "-3"),
    (dict(kernel_width=65536), "65536"), (dict(kernel_width=3, kernel_height=0), "0"),
    (dict(kernel_width=3, kernel_height=-1), "-1"),
    (dict(kernel_width=3, kernel_height=70000), "70000"),
    (dict(kernel_width=1 << 40), str(1 << 40)),
])
@pytest.mark.parametrize("name", LCN_NAMES)
def test_lcn_bad_kernel_size(name, kw, bad):
    check_raises(ValueError, name, lambda: cls_of(name)(**kw), bad)


@pytest.mark.parametrize("value", ["3", 3.5, [3]])
@pytest.mark.parametrize("name", LCN_NAMES)
def test_lcn_kernel_size_wrong_type(name, value):
    check_raises(TypeError, name, lambda: cls_of(name)(value))
    check_raises(TypeError, name, lambda: cls_of(name)(3, value))


@pytest.mark.parametrize("name", LCN_NAMES)
def test_lcn_kernel_width_none(name):
    check_raises(TypeError, name, lambda: cls_of(name)(None))


@pytest.mark.parametrize("value,text", [(float("nan"), "nan"), (float("inf"), "inf"),
                                        (float("-inf"), "-inf")])
@pytest.mark.parametrize("param", LCN_PARAMS)
@pytest.mark.parametrize("name", LCN_NAMES)
def test_lcn_nonfinite_parameter(name, param, value, text):
    check_raises(ValueError, name, lambda: cls_of(name)(3, **{param: value}), text)
    k = make(name, **{param: 0.25})
    check_raises(ValueError, name, lambda: setattr(k, param, value), text)
    assert getattr(k, param) == 0.25


@pytest.mark.parametrize("param", LCN_PARAMS)
@pytest.mark.parametrize("name", LCN_NAMES)
def test_lcn_parameter_overflowing_float32(name, param):
    """1e39 is finite as a double but rounds to inf in float32: not a finite parameter."""
    check_raises(ValueError, name, lambda: cls_of(name)(3, **{param: 1e39}))
    k = make(name, **{param: 0.25})
    check_raises(ValueError, name, lambda: setattr(k, param, -1e39))
    assert getattr(k, param) == 0.25


@pytest.mark.parametrize("value", ["notanumber", None, [1.0]])
@pytest.mark.parametrize("param", LCN_PARAMS)
@pytest.mark.parametrize("name", LCN_NAMES)
def test_lcn_parameter_wrong_type(name, param, value):
    texts = ("notanumber",) if value == "notanumber" else ()
    check_raises(TypeError, name, lambda: cls_of(name)(3, **{param: value}), *texts)
    k = make(name, **{param: 0.25})
    check_raises(TypeError, name, lambda: setattr(k, param, value), *texts)
    assert getattr(k, param) == 0.25


@pytest.mark.parametrize("name", ALL_NAMES)
def test_bad_layout(name):
    check_raises(ValueError, name, lambda: make(name, layout="NCWH"), "NCWH")
    check_raises(ValueError, name, lambda: make(name, layout="CHWN"), "CHWN")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_bad_backend(name):
    check_raises(ValueError, name, lambda: make(name, backend="gpu"), "gpu")


@pytest.mark.parametrize("name", ALL_NAMES)
def test_metal_backend_absent(name):
    if "metal" in mpsnorm.backends():
        pytest.skip("Metal is available on this machine")
    check_raises(ValueError, name, lambda: make(name, backend="metal"), "cpu")


@pytest.mark.parametrize("value", [0, -1, -(1 << 40)])
@pytest.mark.parametrize("name", INORM_NAMES)
def test_inorm_bad_num_channels(name, value):
    check_raises(ValueError, name, lambda: cls_of(name)(value), str(value))


@pytest.mark.parametrize("value,text", [(-0.5, "-0.5"), (-1e-3, "-0.001"),
                                        (float("nan"), "nan"), (float("inf"), "inf"),
                                        (float("-inf"), "-inf")])
@pytest.mark.parametrize("name", INORM_NAMES)
def test_inorm_bad_epsilon(name, value, text):
    check_raises(ValueError, name, lambda: cls_of(name)(3, epsilon=value), text)
    k = cls_of(name)(3, epsilon=0.5)
    check_raises(ValueError, name, lambda: setattr(k, "epsilon", value), text)
    assert k.epsilon == 0.5


@pytest.mark.parametrize("name", INORM_NAMES)
def test_inorm_epsilon_wrong_type(name):
    check_raises(TypeError, name, lambda: cls_of(name)(3, epsilon="notanumber"), "notanumber")
    k = cls_of(name)(3)
    check_raises(TypeError, name, lambda: setattr(k, "epsilon", "notanumber"), "notanumber")


def _vector_attrs(name):
    return ("gamma", "beta") if name == "InstanceNormalization" else ("gamma",)


@pytest.mark.parametrize("name", INORM_NAMES)
def test_inorm_gamma_beta_wrong_length(name):
    for attr in _vector_attrs(name):
        check_raises(ValueError, name, lambda: cls_of(name)(3, **{attr: [1.0, 2.0]}), "2")
        check_raises(ValueError, name, lambda: cls_of(name)(3, **{attr: [1.0] * 5}), "5")
        check_raises(ValueError, name, lambda: cls_of(name)(3, **{attr: []}), "0")
        k = cls_of(name)(3, **{attr: [0.5, 0.25, 0.125]})
        check_raises(ValueError, name, lambda: setattr(k, attr, [1.0, 2.0, 3.0, 4.0]), "4")
        assert list(getattr(k, attr)) == [0.5, 0.25, 0.125]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("name", INORM_NAMES)
def test_inorm_gamma_beta_nonfinite(name, bad):
    for attr in _vector_attrs(name):
        check_raises(ValueError, name, lambda: cls_of(name)(3, **{attr: [1.0, bad, 1.0]}))
        k = cls_of(name)(3, **{attr: [0.5, 0.25, 0.125]})
        check_raises(ValueError, name, lambda: setattr(k, attr, [1.0, 1.0, bad]))
        assert list(getattr(k, attr)) == [0.5, 0.25, 0.125]


@pytest.mark.parametrize("name", INORM_NAMES)
def test_inorm_gamma_beta_wrong_type(name):
    for attr in _vector_attrs(name):
        check_raises(TypeError, name, lambda: cls_of(name)(3, **{attr: ["a", "b", "c"]}))
        check_raises(TypeError, name, lambda: cls_of(name)(3, **{attr: 1.5}))


# -- call arguments: inputs ------------------------------------------------------------------

NON_BUFFERS = [[[1.0, 2.0]], None, "abc", 3, 2.5]


@pytest.mark.parametrize("bad", NON_BUFFERS, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("name,position", INPUT_SLOTS, ids=SLOT_IDS)
def test_non_buffer_input(name, position, bad):
    k = make(name)
    inputs = good_inputs(name)
    out_kw, outs = sentinel_outputs(name)
    args = list(inputs)
    args[position] = bad
    check_raises(TypeError, name, lambda: k(*args, **out_kw), protect=inputs + outs)


BAD_DTYPES = [np.int32, np.int64, np.complex64, np.bool_, np.uint8, np.int16, np.complex128,
              np.longdouble]


@pytest.mark.parametrize("dtype", BAD_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name,position", INPUT_SLOTS, ids=SLOT_IDS)
def test_unsupported_dtype(name, position, dtype):
    if np.dtype(dtype) == np.dtype(np.float64):
        pytest.skip("longdouble is float64 on this platform")
    k = make(name)
    inputs = good_inputs(name)
    out_kw, outs = sentinel_outputs(name)
    args = list(inputs)
    args[position] = np.ones(SHAPE, dtype)
    check_raises(TypeError, name, lambda: k(*args, **out_kw), protect=args + outs)
    # without out= too
    check_raises(TypeError, name, lambda: k(*args), protect=args)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_4d_uint8_buffer_input(name):
    k = make(name)
    mv = memoryview(bytearray(int(np.prod(SHAPE)))).cast("B", SHAPE)
    check_raises(TypeError, name, lambda: k(*([mv] * n_inputs(name))))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_bytes_object_input(name):
    """A bytes object is a 1-D buffer of format 'B': an unsupported dtype (TypeError)."""
    k = make(name)
    # zero-size with a bad dtype is still a bad dtype
    args = [np.zeros((0, 3, 7, 9), np.int32)] * n_inputs(name)
    check_raises(TypeError, name, lambda: k(*args))
    data = bytes(int(np.prod(SHAPE)) * 4)
    args = [data] * n_inputs(name)
    check_raises(TypeError, name, lambda: k(*args))


@pytest.mark.parametrize("shape", [(5,), (4, 5), (1, 3, 2, 4, 5), (), (1, 1, 3, 2, 4, 5)],
                         ids=lambda s: "%dD" % len(s))
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ALL_NAMES)
def test_wrong_rank(name, dtype, shape):
    k = make(name)
    args = [np.ones(shape, dtype) for _ in range(n_inputs(name))]
    check_raises(ValueError, name, lambda: k(*args), repr(shape), protect=args)


@pytest.mark.parametrize("name", LCN_NAMES[1:] + INORM_NAMES[1:])
def test_gradient_shapes_differ(name):
    k = make(name)
    dy = np.ones((2, 3, 7, 9), np.float32)
    x = np.ones((2, 3, 7, 8), np.float32)
    out_kw, outs = sentinel_outputs(name)
    for a, b in ((dy, x), (x, dy)):
        with pytest.raises(ValueError) as info:
            k(a, b, **out_kw)
        msg = str(info.value)
        assert name in msg
        assert "(2, 3, 7, 9)" in msg or "(2, 3, 7, 8)" in msg, msg
    assert np.all(outs[0] == ref.SENTINEL)
    for o in outs[1:]:
        assert np.all(o == ref.SENTINEL)
    # 3-D against 4-D of the same element count
    check_raises(ValueError, name, lambda: k(np.ones((3, 7, 9), np.float32),
                                             np.ones((1, 3, 7, 9), np.float32)))


@pytest.mark.parametrize("dts", [(np.float32, np.float64), (np.float64, np.float32),
                                 (np.float16, np.float32), (np.float32, np.float16)],
                         ids=lambda d: "%s-%s" % (np.dtype(d[0]).name, np.dtype(d[1]).name))
@pytest.mark.parametrize("name", LCN_NAMES[1:] + INORM_NAMES[1:])
def test_gradient_dtypes_differ(name, dts):
    k = make(name)
    rng = np.random.default_rng(3)
    dy = ref.random_array(rng, SHAPE, dts[0])
    x = ref.random_array(rng, SHAPE, dts[1])
    for odt in dts:
        out_kw, outs = sentinel_outputs(name, dtype=odt)
        check_raises(ValueError, name, lambda: k(dy, x, **out_kw), protect=[dy, x] + outs)
    check_raises(ValueError, name, lambda: k(dy, x), protect=[dy, x])


@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("name", INORM_NAMES)
def test_inorm_channel_count_mismatch(name, layout):
    k = make(name, layout=layout)
    shape = ref.layout_shape((2, 4, 7, 9), layout)
    args = [np.ones(shape, np.float32) for _ in range(n_inputs(name))]
    out_kw, outs = sentinel_outputs(name, shape)
    check_raises(ValueError, name, lambda: k(*args, **out_kw), "4", protect=args + outs)
    single = ref.layout_shape((1, 2, 7, 9), layout, 3)
    args = [np.ones(single, np.float32) for _ in range(n_inputs(name))]
    check_raises(ValueError, name, lambda: k(*args), "2", protect=args)


# -- call arguments: outputs -----------------------------------------------------------------

@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ALL_NAMES)
def test_read_only_out(name, dtype):
    k = make(name)
    inputs = good_inputs(name, dtype=dtype)
    out_kw, outs = sentinel_outputs(name, dtype=dtype)
    out_kw["out"].flags.writeable = False
    check_raises(ValueError, name, lambda: k(*inputs, **out_kw), protect=inputs + outs)
    out_kw["out"] = memoryview(np.full(SHAPE, ref.SENTINEL, dtype)).toreadonly()
    check_raises(ValueError, name, lambda: k(*inputs, **out_kw),
                 protect=inputs + [out_kw["out"]] + outs[1:])
    # bytes are a read-only buffer too
    out_kw["out"] = bytes(np.full(SHAPE, ref.SENTINEL, dtype).tobytes())
    with pytest.raises((ValueError, TypeError)) as info:
        k(*inputs, **out_kw)
    assert name in str(info.value)


@pytest.mark.parametrize("out_shape", [(2, 3, 7, 8), (2, 3, 9, 7), (3, 7, 9), (1, 2, 3, 7, 9),
                                       (2 * 3 * 7 * 9,)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ALL_NAMES)
def test_wrong_shape_out(name, out_shape):
    k = make(name)
    inputs = good_inputs(name)
    out_kw, outs = sentinel_outputs(name)
    bad = np.full(out_shape, ref.SENTINEL, np.float32)
    out_kw["out"] = bad
    check_raises(ValueError, name, lambda: k(*inputs, **out_kw), repr(out_shape),
                 protect=inputs + [bad] + outs[1:])


@pytest.mark.parametrize("out_dtype", [np.float64, np.float16, np.int32, np.complex64],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ALL_NAMES)
def test_wrong_dtype_out(name, out_dtype):
    """A supported dtype that differs from the input's: ValueError; an unsupported one: TypeError."""
    k = make(name)
    inputs = good_inputs(name)                      # float32
    out_kw, outs = sentinel_outputs(name)
    bad = np.full(SHAPE, ref.SENTINEL, out_dtype)
    out_kw["out"] = bad
    exc = ValueError if np.dtype(out_dtype).kind == "f" else TypeError
    check_raises(exc, name, lambda: k(*inputs, **out_kw), protect=inputs + [bad] + outs[1:])


@pytest.mark.parametrize("name", ALL_NAMES)
def test_non_buffer_out(name):
    k = make(name)
    inputs = good_inputs(name)
    out_kw, outs = sentinel_outputs(name)
    out_kw["out"] = [[0.0]]
    check_raises(TypeError, name, lambda: k(*inputs, **out_kw), protect=inputs + outs[1:])


@pytest.mark.parametrize("which", ["same", "reversed_view", "transposed_view", "partial"])
@pytest.mark.parametrize("name,position", INPUT_SLOTS, ids=SLOT_IDS)
def test_out_overlaps_input(name, position, which):
    k = make(name)
    rng = np.random.default_rng(5)
    if which == "partial":
        # the input and the output share one image of a larger buffer
        base = ref.random_array(rng, (3, 3, 7, 9), np.float32)
        inp, out = base[:2], base[1:]
    elif which == "transposed_view":
        square = ref.random_array(rng, (2, 3, 9, 9), np.float32)
        inp, out = square, square.transpose(0, 1, 3, 2)
    else:
        shape = (2, 3, 9, 9)
        inp = ref.random_array(rng, shape, np.float32)
        out = inp if which == "same" else inp[::-1, :, ::-1]
    inputs = good_inputs(name, inp.shape)
    inputs[position] = inp
    out_kw, outs = sentinel_outputs(name, inp.shape)
    out_kw["out"] = out
    check_raises(ValueError, name, lambda: k(*inputs, **out_kw), protect=inputs + outs[1:])


# -- instance-norm gradient: out_gamma / out_beta -----------------------------------------------

GRAD = "InstanceNormalizationGradient"


@pytest.mark.parametrize("which", ["out_gamma", "out_beta"])
@pytest.mark.parametrize("bad_shape", [(4,), (2,), (1, 3), (3, 1), ()],
                         ids=lambda s: "x".join(map(str, s)) or "scalar")
def test_out_gamma_beta_wrong_shape(which, bad_shape):
    k = make(GRAD)
    inputs = good_inputs(GRAD)
    out_kw, outs = sentinel_outputs(GRAD)
    bad = np.full(bad_shape, ref.SENTINEL, np.float32)
    out_kw[which] = bad
    msg = check_raises(ValueError, GRAD, lambda: k(*inputs, **out_kw),
                       protect=inputs + outs + [bad])
    # the offending value: the shape tuple, or for a 1-D vector its length
    ok = repr(bad_shape) in msg or (len(bad_shape) == 1 and str(bad_shape[0]) in msg)
    assert ok, "offending shape %r not in message %r" % (bad_shape, msg)


@pytest.mark.parametrize("in_dtype,bad_dtype", [(np.float32, np.float64), (np.float32, np.float16),
                                                (np.float16, np.float16), (np.float16, np.float64),
                                                (np.float64, np.float32)],
                         ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("which", ["out_gamma", "out_beta"])
def test_out_gamma_beta_wrong_dtype(which, in_dtype, bad_dtype):
    k = make(GRAD)
    inputs = good_inputs(GRAD, dtype=in_dtype)
    out_kw, outs = sentinel_outputs(GRAD, dtype=in_dtype)
    bad = np.full(3, ref.SENTINEL, bad_dtype)
    out_kw[which] = bad
    check_raises(ValueError, GRAD, lambda: k(*inputs, **out_kw), protect=inputs + outs + [bad])


@pytest.mark.parametrize("which", ["out_gamma", "out_beta"])
def test_out_gamma_beta_read_only(which):
    k = make(GRAD)
    inputs = good_inputs(GRAD)
    out_kw, outs = sentinel_outputs(GRAD)
    out_kw[which].flags.writeable = False
    check_raises(ValueError, GRAD, lambda: k(*inputs, **out_kw), protect=inputs + outs)


@pytest.mark.parametrize("case", ["gamma_in_out", "beta_in_out", "gamma_is_beta",
                                  "gamma_in_x", "beta_in_dy", "gamma_beta_interleaved_overlap"])
def test_out_gamma_beta_overlap(case):
    k = make(GRAD)
    dy, x = good_inputs(GRAD)
    out = np.full(SHAPE, ref.SENTINEL, np.float32)
    og = np.full(3, ref.SENTINEL, np.float32)
    ob = np.full(3, ref.SENTINEL, np.float32)
    protect = [dy, x, out, og, ob]
    if case == "gamma_in_out":
        og = out.reshape(-1)[5:8]
    elif case == "beta_in_out":
        ob = out[1, 2, 3, 4:7]
    elif case == "gamma_is_beta":
        ob = og
    elif case == "gamma_in_x":
        og = x.reshape(-1)[:3]
    elif case == "beta_in_dy":
        ob = dy[0, 0, 0, ::3]
    else:
        buf = np.full(5, ref.SENTINEL, np.float32)
        og, ob = buf[0:3], buf[2:5]
        protect.append(buf)
    check_raises(ValueError, GRAD, lambda: k(dy, x, out=out, out_gamma=og, out_beta=ob),
                 protect=protect)


@pytest.mark.parametrize("which", ["out_gamma", "out_beta"])
def test_out_gamma_beta_non_buffer(which):
    k = make(GRAD)
    inputs = good_inputs(GRAD)
    out_kw, outs = sentinel_outputs(GRAD)
    out_kw[which] = [0.0, 0.0, 0.0]
    check_raises(TypeError, GRAD, lambda: k(*inputs, **out_kw), protect=inputs + outs)


# -- module functions ------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, -1, 1025, -(1 << 40), 1 << 40])
def test_set_num_threads_bad(n, restore_num_threads):
    before = mpsnorm.get_num_threads()
    check_raises(ValueError, "set_num_threads", lambda: mpsnorm.set_num_threads(n), str(n))
    assert mpsnorm.get_num_threads() == before


def test_set_num_threads_wrong_type(restore_num_threads):
    before = mpsnorm.get_num_threads()
    check_raises(TypeError, "set_num_threads", lambda: mpsnorm.set_num_threads("2"))
    check_raises(TypeError, "set_num_threads", lambda: mpsnorm.set_num_threads(2.5))
    assert mpsnorm.get_num_threads() == before


# -- odd but legal-looking buffers: handled correctly or refused cleanly ------------------------

@pytest.mark.parametrize("name", ALL_NAMES)
def test_unaligned_input_correct_or_refused(name):
    """Data not aligned to the element size: either computed correctly or a ValueError."""
    rng = np.random.default_rng(8)
    vals = [ref.random_array(rng, SHAPE, np.float32) for _ in range(n_inputs(name))]
    unaligned = []
    for v in vals:
        raw = bytearray(v.nbytes + 1)
        a = np.frombuffer(raw, dtype=np.float32, offset=1, count=v.size).reshape(SHAPE)
        a[...] = v
        assert a.ctypes.data % 4 != 0
        unaligned.append(a)
    k = make(name)
    try:
        got = k(*unaligned)
    except ValueError as e:
        assert name in str(e)
        return
    expected = _reference(name, vals)
    got = got if isinstance(got, tuple) else (got,)
    for g, e in zip(got, expected):
        ref.assert_close(g, e, np.float32, scale_from=(vals[0],))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_non_native_byte_order_correct_or_refused(name):
    rng = np.random.default_rng(9)
    vals = [ref.random_array(rng, SHAPE, np.float32) for _ in range(n_inputs(name))]
    swapped = [v.astype(v.dtype.newbyteorder()) for v in vals]
    k = make(name)
    try:
        got = k(*swapped)
    except (TypeError, ValueError) as e:
        assert name in str(e)
        return
    expected = _reference(name, vals)
    got = got if isinstance(got, tuple) else (got,)
    for g, e in zip(got, expected):
        ref.assert_close(np.asarray(g).astype(np.float64), e, np.float32, scale_from=(vals[0],))


def _reference(name, vals):
    if name == "LocalContrastNormalization":
        return (ref.lcn_forward(vals[0], 3),)
    if name == "LocalContrastNormalizationGradient":
        return (ref.lcn_gradient(vals[0], vals[1], 3),)
    if name == "InstanceNormalization":
        return (ref.inorm_forward(vals[0]),)
    return ref.inorm_gradient(vals[0], vals[1])
