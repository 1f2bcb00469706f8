"""Property-based tests (hypothesis): every kernel, on random shapes (zero sizes included),
dtypes, layouts (NCHW / NHWC, 4-D batches and 3-D single images), windows and parameters,
with inputs and outputs placed in memory at random (storage order, offsets, steps of either
sign, zero-stride broadcast inputs, NumPy arrays or memoryviews), against the float64
reference of tests/reference.py with docs/SPEC.md's tolerances.

Besides the values, each example checks that the inputs are unchanged bit for bit, that
nothing outside an out= view's elements was written (the rest of its buffer keeps its
sentinel), and that a rerun gives the same bits.

Examples per test: MPSNORM_HYPOTHESIS_EXAMPLES (default 150). With CI set the run is
derandomized (the same examples each run, so CI is reproducible); elsewhere each run draws
new ones. No example database is written; a failure prints the example and a reproduce blob.
"""

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import mpsnorm  # noqa: E402
import reference as ref  # noqa: E402
from reference import assert_bits_equal, assert_close, snapshot  # noqa: E402

EXAMPLES = int(os.environ.get("MPSNORM_HYPOTHESIS_EXAMPLES", "150"))
settings.register_profile(
    "mpsnorm", max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SETTINGS = settings.get_profile("mpsnorm")

SENTINEL = 7.0


# -- memory placement ---------------------------------------------------------------------------

@st.composite
def placements(draw, ndim, broadcast=False):
    """How one array of `ndim` axes sits in memory."""
    return dict(
        order=draw(st.permutations(range(ndim))),          # storage order of the axes
        steps=draw(st.lists(st.sampled_from([1, 2, -1, -3]), min_size=ndim, max_size=ndim)),
        offsets=draw(st.lists(st.integers(0, 2), min_size=ndim, max_size=ndim)),
        memoryview=draw(st.booleans()),
        broadcast=(draw(st.sets(st.integers(0, ndim - 1), max_size=2)) if broadcast
                   else set()),
    )


def _view(base, place, shape):
    """The strided view of `base` with logical `shape` that `place` describes."""
    view = base.transpose(np.argsort(place["order"]))
    index = []
    for axis, extent in enumerate(shape):
        step, offset = abs(place["steps"][axis]), place["offsets"][axis]
        index.append(slice(offset, offset + step * extent, step))
    view = view[tuple(index)]
    flips = tuple(slice(None, None, -1 if s < 0 else 1) for s in place["steps"])
    return view[flips]


class Placed:
    """A buffer holding `values` (logical order) where `place` says; the rest is SENTINEL."""

    def __init__(self, values, place, writable):
        values = np.asarray(values)
        shape = values.shape
        extents = [place["offsets"][a] + abs(place["steps"][a]) * max(shape[a], 1) + 1
                   for a in range(values.ndim)]
        storage = [extents[a] for a in place["order"]]
        self.base = np.full(storage, SENTINEL, values.dtype)
        self.view = _view(self.base, place, shape)
        self.view[...] = values
        mask = np.zeros(storage, bool)
        _view(mask, place, shape)[...] = True
        self.outside = ~mask
        if not writable:
            self.base.flags.writeable = False
        self.object = memoryview(self.view) if place["memoryview"] else self.view

    def check_outside_untouched(self, what):
        outside = self.base[self.outside]
        assert_bits_equal(outside, np.full(outside.shape, SENTINEL, self.base.dtype),
                          "%s: elements outside the view" % what)


def make_input(rng, shape, dtype, place, center, spread):
    """An input of `shape` whose broadcast axes are constant (zero stride in memory)."""
    reduced = tuple(1 if a in place["broadcast"] else n for a, n in enumerate(shape))
    values = (center + spread * rng.uniform(-1.0, 1.0, size=reduced)).astype(dtype)
    placed = Placed(values, place, writable=False)
    obj = placed.object
    if place["broadcast"]:
        obj = np.broadcast_to(placed.view, shape)
        if place["memoryview"]:
            obj = memoryview(obj)
    logical = np.broadcast_to(values, shape).astype(np.float64)
    return obj, logical, placed


# -- shared drawing -----------------------------------------------------------------------------

DTYPES = [np.float32, np.float16, np.float64]


@st.composite
def tensors(draw, count):
    """dtype, layout, logical shape (3-D or 4-D), `count` inputs and an out= placement."""
    dtype = draw(st.sampled_from(DTYPES))
    layout = draw(st.sampled_from(ref.LAYOUTS))
    ndim = draw(st.sampled_from([3, 4]))
    n = draw(st.integers(0, 3)) if ndim == 4 else 1
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(0, 11)), draw(st.integers(0, 11))
    shape = ref.layout_shape((n, c, h, w), layout, ndim)
    seed = draw(st.integers(0, 2 ** 32 - 1))
    center = draw(st.sampled_from([0.0, 0.0, 1.5, -3.0]))
    spread = draw(st.sampled_from([1.0, 1.0, 0.05, 4.0]))
    rng = np.random.default_rng(seed)
    made = [make_input(rng, shape, dtype, draw(placements(ndim, broadcast=True)), center,
                       spread) for _ in range(count)]
    out_place = draw(st.none() | placements(ndim))
    return dtype, layout, shape, made, out_place


def call_checked(kernel, made, out_place, extra_kw=None):
    """Calls kernel(*inputs, out=...) and checks inputs and out's surroundings; returns the
    result(s) as a list of arrays and the rerun's."""
    objects = [m[0] for m in made]
    before = [snapshot(obj) for obj in objects]
    kw = dict(extra_kw or {})
    out = None
    if out_place is not None:
        shape = np.asarray(objects[-1]).shape
        dtype = np.asarray(objects[-1]).dtype
        out = Placed(np.full(shape, -SENTINEL, dtype), out_place, writable=True)
        kw["out"] = out.object
    result = kernel(*objects, **kw)
    results = list(result) if isinstance(result, tuple) else [result]
    if out is not None:
        assert results[0] is kw["out"]
        out.check_outside_untouched("out")
    for obj, saved in zip(objects, before):
        assert_bits_equal(snapshot(obj), saved, "an input after the call")
    arrays = [np.asarray(r) for r in results]
    again = kernel(*objects)
    again = list(again) if isinstance(again, tuple) else [again]
    if out is None:
        for first, second in zip(arrays, again):
            assert_bits_equal(first, second, "a rerun")
    return arrays


def float32s(low, high):
    """float32 values in [low, high] (bounds rounded inward to float32)."""
    lo, hi = np.float32(low), np.float32(high)
    if float(lo) < low:
        lo = np.nextafter(lo, np.float32(np.inf))
    if float(hi) > high:
        hi = np.nextafter(hi, np.float32(-np.inf))
    return st.floats(float(lo), float(hi), allow_nan=False, width=32)


def f32(draw, low, high):
    return draw(float32s(low, high))


# -- the four kernels ---------------------------------------------------------------------------

@st.composite
def lcn_params(draw, dtype):
    """Window and parameters; for float16 the ranges keep every result inside float16."""
    small = np.dtype(dtype) == np.float16
    return dict(kernel_width=draw(st.integers(1, 25)), kernel_height=draw(st.integers(1, 25)),
                alpha=f32(draw, 0.0, 1.0 if small else 3.0),
                beta=f32(draw, 0.0, 1.0 if small else 2.0),
                delta=f32(draw, 0.1 if small else 1e-3, 4.0),
                p0=f32(draw, -3.0, 3.0), pm=f32(draw, -3.0, 3.0), ps=f32(draw, -3.0, 3.0))


@SETTINGS
@given(data=st.data())
def test_lcn_forward_matches_reference(data):
    dtype, layout, shape, made, out_place = data.draw(tensors(1))
    p = data.draw(lcn_params(dtype))
    kernel = mpsnorm.LocalContrastNormalization(layout=layout, **p)
    (y,) = call_checked(kernel, made, out_place)
    kw, kh = p.pop("kernel_width"), p.pop("kernel_height")
    x = made[0][1]
    expected = ref.lcn_forward(x, kw, kh, layout=layout, **p)
    assert_close(y, expected, dtype, scale_from=(x,), what="LCN %s %s" % (layout, shape))


@SETTINGS
@given(data=st.data())
def test_lcn_gradient_matches_reference(data):
    dtype, layout, shape, made, out_place = data.draw(tensors(2))
    p = data.draw(lcn_params(dtype))
    kernel = mpsnorm.LocalContrastNormalizationGradient(layout=layout, **p)
    (dx,) = call_checked(kernel, made, out_place)
    kw, kh = p.pop("kernel_width"), p.pop("kernel_height")
    dy, x = made[0][1], made[1][1]
    expected = ref.lcn_gradient(dy, x, kw, kh, layout=layout, **p)
    assert_close(dx, expected, dtype, scale_from=(dy,), what="LCN grad %s %s" % (layout, shape))


def channels_of(shape, layout):
    return ref.nchw_shape(shape, layout)[1]


def channel_values(data, count):
    return data.draw(st.none() | st.lists(float32s(-3.0, 3.0), min_size=count,
                                          max_size=count))


def epsilon_of(data, dtype):
    return data.draw(float32s(1e-3 if np.dtype(dtype) == np.float16 else 1e-5, 1.0))


@SETTINGS
@given(data=st.data())
def test_instance_norm_forward_matches_reference(data):
    dtype, layout, shape, made, out_place = data.draw(tensors(1))
    c = channels_of(shape, layout)
    gamma, beta, eps = channel_values(data, c), channel_values(data, c), epsilon_of(data, dtype)
    kernel = mpsnorm.InstanceNormalization(c, gamma=gamma, beta=beta, epsilon=eps,
                                           layout=layout)
    (y,) = call_checked(kernel, made, out_place)
    x = made[0][1]
    expected = ref.inorm_forward(x, gamma, beta, epsilon=eps, layout=layout)
    assert_close(y, expected, dtype, scale_from=(x,), what="inorm %s %s" % (layout, shape))


@SETTINGS
@given(data=st.data())
def test_instance_norm_gradient_matches_reference(data):
    dtype, layout, shape, made, out_place = data.draw(tensors(2))
    c = channels_of(shape, layout)
    gamma, eps = channel_values(data, c), epsilon_of(data, dtype)
    kernel = mpsnorm.InstanceNormalizationGradient(c, gamma=gamma, epsilon=eps, layout=layout)
    vector_dtype = np.float64 if np.dtype(dtype) == np.float64 else np.float32
    extra, placed_vectors = {}, []
    for name in ("out_gamma", "out_beta"):
        place = data.draw(st.none() | placements(1))
        if place is not None:
            placed = Placed(np.full(c, -SENTINEL, vector_dtype), place, writable=True)
            extra[name] = placed.object
            placed_vectors.append((name, placed))
    dx, dgamma, dbeta = call_checked(kernel, made, out_place, extra)
    for name, placed in placed_vectors:
        placed.check_outside_untouched(name)
    dy, x = made[0][1], made[1][1]
    edx, edgamma, edbeta = ref.inorm_gradient(dy, x, gamma, epsilon=eps, layout=layout)
    what = "inorm grad %s %s" % (layout, shape)
    assert_close(dx, edx, dtype, scale_from=(dy,), what=what + " dx")
    assert_close(dgamma, edgamma, dtype, scale_from=(dy,), what=what + " dgamma")
    assert_close(dbeta, edbeta, dtype, scale_from=(dy,), what=what + " dbeta")
