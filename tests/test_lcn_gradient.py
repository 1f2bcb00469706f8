"""LocalContrastNormalizationGradient against the float64 reference (docs/SPEC.md formula)."""

import itertools

import numpy as np
import pytest

import mpsnorm
import reference as ref
from reference import as_memory, assert_close, random_array, snapshot

SHAPE = (2, 3, 7, 9)          # NCHW
SINGLE = (3, 6, 5)            # CHW

PARAM_SETS = {
    "mps_defaults": {},
    "alpha1": dict(alpha=1.0),
    "all_six": dict(alpha=0.7, beta=0.75, delta=0.05, p0=0.8, pm=0.1, ps=1.3),
    "beta1": dict(alpha=1.0, beta=1.0),
    "beta03": dict(alpha=1.0, beta=0.3, delta=0.01),
    "beta0": dict(alpha=1.0, beta=0.0, pm=0.25),
    "p0_zero_neg_ps": dict(alpha=0.5, p0=0.0, ps=-0.8, pm=-0.2),
    "beta2": dict(alpha=2.0, beta=2.0, delta=0.5),
    "neg_beta": dict(alpha=1.0, beta=-0.5, delta=0.2),
}
LOWPREC_PARAM_SETS = ("mps_defaults", "alpha1", "all_six", "beta1", "beta03")

WINDOWS = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (8, 8), (3, 5), (5, 3), (4, 1), (1, 4),
           (2, 7), (15, 15), (10, 17), (64, 3)]


def _wid(w):
    return "%dx%d" % w


def logical_shape(layout, shape=SHAPE):
    if len(shape) == 4:
        return ref.layout_shape(shape, layout, 4)
    return shape if layout == "NCHW" else (shape[1], shape[2], shape[0])


def make_pair(rng, shape, dtype, low=-1.0, high=1.0):
    dy = random_array(rng, shape, dtype)
    x = random_array(rng, shape, dtype, low, high)
    return dy, x


def check_gradient(dy, x, dyvals, xvals, dtype, kw, kh, layout, params, **call_kw):
    grad = mpsnorm.LocalContrastNormalizationGradient(kw, kh, layout=layout, **params)
    before_dy, before_x = snapshot(dy), snapshot(x)
    dx = grad(dy, x, **call_kw)
    if call_kw.get("out") is None:
        assert type(dx) is np.ndarray
        assert dx.dtype == np.dtype(dtype)
        assert dx.shape == xvals.shape
        assert dx.flags.c_contiguous
    expected = ref.lcn_gradient(dyvals, xvals, kw, kh, layout=layout, **params)
    assert_close(dx, expected, dtype, scale_from=(dyvals,),
                 what="LCN gradient %dx%d %s" % (kw, kh, layout))
    ref.assert_bits_equal(snapshot(dy), before_dy, "dy after the call")
    ref.assert_bits_equal(snapshot(x), before_x, "x after the call")
    return dx


# -- full product dtype x layout x memory, for two windows ------------------------------

@pytest.mark.parametrize("window,pset", [((3, 3), "all_six"), ((4, 4), "alpha1")],
                         ids=["3x3-all_six", "4x4-alpha1"])
@pytest.mark.parametrize("memory", ref.MEMORY_KINDS)
@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_dtype_layout_memory(dtype, layout, memory, window, pset):
    rng = np.random.default_rng(4321)
    dyv, xv = make_pair(rng, logical_shape(layout), dtype)
    check_gradient(as_memory(dyv, memory), as_memory(xv, memory), dyv, xv, dtype,
                   window[0], window[1], layout, PARAM_SETS[pset])


@pytest.mark.parametrize("mem_dy,mem_x", [("strided", "reversed"), ("reversed", "memoryview"),
                                          ("readonly", "strided"), ("fortran", "contiguous"),
                                          ("readonly_memoryview", "strided_memoryview")])
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_mixed_memory_forms(dtype, mem_dy, mem_x):
    rng = np.random.default_rng(98)
    dyv, xv = make_pair(rng, SHAPE, dtype)
    check_gradient(as_memory(dyv, mem_dy), as_memory(xv, mem_x), dyv, xv, dtype, 3, 5, "NCHW",
                   PARAM_SETS["all_six"])


def test_dy_and_x_may_be_the_same_buffer():
    rng = np.random.default_rng(12)
    xv = random_array(rng, SHAPE, np.float64)
    check_gradient(xv, xv, xv, xv, np.float64, 3, 3, "NCHW", PARAM_SETS["all_six"])


# -- window x parameter sweeps -----------------------------------------------------------

@pytest.mark.parametrize("pset", list(PARAM_SETS))
@pytest.mark.parametrize("window", WINDOWS, ids=_wid)
def test_windows_params_float64(window, pset):
    rng = np.random.default_rng(2025)
    dyv, xv = make_pair(rng, SHAPE, np.float64)
    check_gradient(dyv, xv, dyv, xv, np.float64, window[0], window[1], "NCHW", PARAM_SETS[pset])


@pytest.mark.parametrize("pset", LOWPREC_PARAM_SETS)
@pytest.mark.parametrize("window", WINDOWS, ids=_wid)
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_windows_params_lowprec(dtype, window, pset):
    rng = np.random.default_rng(78)
    dyv, xv = make_pair(rng, SHAPE, dtype)
    check_gradient(dyv, xv, dyv, xv, dtype, window[0], window[1], "NCHW", PARAM_SETS[pset])


@pytest.mark.parametrize("window", [(3, 3), (2, 5), (8, 1)], ids=_wid)
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_windows_nhwc(dtype, window):
    rng = np.random.default_rng(32)
    dyv, xv = make_pair(rng, logical_shape("NHWC"), dtype)
    check_gradient(dyv, xv, dyv, xv, dtype, window[0], window[1], "NHWC", PARAM_SETS["all_six"])


@pytest.mark.parametrize("beta", [1.0, 0.5, 0.3])
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_beta_special_cases(dtype, beta):
    rng = np.random.default_rng(9)
    dyv, xv = make_pair(rng, SHAPE, dtype)
    params = dict(alpha=1.0, beta=beta, delta=0.02)
    check_gradient(dyv, xv, dyv, xv, dtype, 5, 5, "NCHW", params)
    check_gradient(dyv, xv, dyv, xv, dtype, 2, 3, "NCHW", params)


@pytest.mark.parametrize("window", [(2, 2), (3, 3), (3, 5), (5, 5)], ids=_wid)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_delta_zero_alpha_one(dtype, window):
    rng = np.random.default_rng(10)
    dyv, xv = make_pair(rng, SHAPE, dtype)
    params = dict(alpha=1.0, delta=0.0)
    assert np.all(np.isfinite(ref.lcn_gradient(dyv, xv, *window, **params)))
    check_gradient(dyv, xv, dyv, xv, dtype, window[0], window[1], "NCHW", params)


@pytest.mark.parametrize("window", [(65535, 65535), (65535, 1), (1, 65535), (1001, 999)],
                         ids=_wid)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_huge_windows(dtype, window):
    rng = np.random.default_rng(2)
    dyv, xv = make_pair(rng, (1, 2, 6, 7), dtype)
    for pset in ("mps_defaults", "all_six"):
        check_gradient(dyv, xv, dyv, xv, dtype, window[0], window[1], "NCHW", PARAM_SETS[pset])


@pytest.mark.parametrize("window", [(5, 5), (8, 8), (6, 3)], ids=_wid)
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_larger_image_nonzero_mean(dtype, window):
    rng = np.random.default_rng(22)
    dyv, xv = make_pair(rng, (1, 2, 64, 96), dtype, 0.0, 4.0)
    for pset in ("alpha1", "all_six"):
        check_gradient(dyv, xv, dyv, xv, dtype, window[0], window[1], "NCHW", PARAM_SETS[pset])


# -- single images, outputs, sizes ---------------------------------------------------------

@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_single_image(dtype, layout):
    rng = np.random.default_rng(40)
    dyv, xv = make_pair(rng, logical_shape(layout, SINGLE), dtype)
    dx = check_gradient(dyv, xv, dyv, xv, dtype, 3, 4, layout, PARAM_SETS["all_six"])
    assert dx.shape == xv.shape
    check_gradient(as_memory(dyv, "strided"), as_memory(xv, "reversed"), dyv, xv, dtype, 2, 2,
                   layout, PARAM_SETS["alpha1"])


@pytest.mark.parametrize("kind", ["contiguous", "strided", "reversed", "memoryview"])
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_out_argument(dtype, kind):
    rng = np.random.default_rng(60)
    dyv, xv = make_pair(rng, SHAPE, dtype)
    if kind == "strided":
        owner = np.full(SHAPE[:2] + (2 * SHAPE[2], SHAPE[3]), ref.SENTINEL, dtype)
        out = owner[:, :, ::2, :]
        mask = np.zeros(owner.shape, bool)
        mask[:, :, ::2, :] = True
    else:
        owner = np.full(SHAPE, ref.SENTINEL, dtype)
        mask = np.ones(SHAPE, bool)
        out = {"contiguous": owner, "reversed": owner[::-1, :, :, ::-1],
               "memoryview": memoryview(owner)}[kind]
    grad = mpsnorm.LocalContrastNormalizationGradient(4, 3, **PARAM_SETS["all_six"])
    got = grad(dyv, xv, out=out)
    assert got is out
    assert_close(np.asarray(out), ref.lcn_gradient(dyv, xv, 4, 3, **PARAM_SETS["all_six"]),
                 dtype, scale_from=(dyv,), what="out=")
    assert np.all(owner[~mask] == ref.SENTINEL)


@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("nchw", [(0, 3, 7, 9), (2, 3, 0, 9), (2, 3, 7, 0), (2, 0, 7, 9)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_zero_size(dtype, nchw, layout):
    shape = ref.layout_shape(nchw, layout)
    x = np.zeros(shape, dtype)
    dy = np.zeros(shape, dtype)
    grad = mpsnorm.LocalContrastNormalizationGradient(3, layout=layout)
    dx = grad(dy, x)
    assert isinstance(dx, np.ndarray)
    assert dx.shape == shape and dx.dtype == np.dtype(dtype)
    out = np.zeros(shape, dtype)
    assert grad(dy, x, out=out) is out


def test_zero_dy_gives_zero_dx():
    rng = np.random.default_rng(1)
    xv = random_array(rng, SHAPE, np.float64)
    dx = mpsnorm.LocalContrastNormalizationGradient(3, **PARAM_SETS["all_six"])(
        np.zeros_like(xv), xv)
    assert np.all(dx == 0)


@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_nonfinite_data_propagates(dtype):
    rng = np.random.default_rng(14)
    dyv, xv = make_pair(rng, SHAPE, dtype)
    xv[0, 1, 3, 4] = np.nan
    dyv[1, 2, 2, 2] = np.inf
    grad = mpsnorm.LocalContrastNormalizationGradient(3, **PARAM_SETS["all_six"])
    dx = np.asarray(grad(dyv, xv), np.float64)
    assert not np.isfinite(dx[0, 1, 3, 4])
    assert not np.isfinite(dx[1, 2, 2, 2])
    for n, c in itertools.product(range(SHAPE[0]), range(SHAPE[1])):
        if (n, c) in [(0, 1), (1, 2)]:
            continue
        sl = (slice(n, n + 1), slice(c, c + 1))
        assert_close(dx[sl], ref.lcn_gradient(dyv[sl], xv[sl], 3, **PARAM_SETS["all_six"]),
                     dtype, scale_from=(dyv[sl],), what="plane %d,%d" % (n, c))


# -- sizes on both sides of block / row-group boundaries -------------------------------------

def _windows_around(w, h):
    kws = sorted({1, 2, 3, max(1, w - 1), w, w + 1, 2 * w, 2 * w + 1})
    khs = sorted({1, 2, max(1, h - 1), h, h + 1, 2 * h + 1})
    return [(kw, kh) for kw in kws for kh in khs]


@pytest.mark.parametrize("h", [1, 2, 3, 4, 5, 8, 9, 13])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
def test_plane_sizes_and_window_boundaries(dtype, h):
    rng = np.random.default_rng(2000 + h)
    params = PARAM_SETS["all_six"]
    for w in (1, 2, 4, 5, 9):
        dyv, xv = make_pair(rng, (1, 2, h, w), dtype)
        for kw, kh in _windows_around(w, h):
            grad = mpsnorm.LocalContrastNormalizationGradient(kw, kh, **params)
            assert_close(grad(dyv, xv), ref.lcn_gradient(dyv, xv, kw, kh, **params), dtype,
                         scale_from=(dyv,), what="h=%d w=%d window %dx%d" % (h, w, kw, kh))


@pytest.mark.parametrize("window", [(5, 5), (4, 4), (15, 3)], ids=_wid)
@pytest.mark.parametrize("layout", ref.LAYOUTS)
def test_image_like_float32_values(layout, window):
    rng = np.random.default_rng(2100)
    base = rng.integers(0, 256, size=(1, 2, 256, 384)).astype(np.float32)
    base[:, :, 100:140, 200:300] = 200.0 + rng.standard_normal((1, 2, 40, 100)).astype(np.float32)
    dy = rng.standard_normal(base.shape).astype(np.float32)
    xv, dyv = ref.from_nchw(base, layout), ref.from_nchw(dy, layout)
    for pset in ("alpha1", "all_six", "mps_defaults"):
        check_gradient(dyv, xv, dyv, xv, np.float32, window[0], window[1], layout,
                       PARAM_SETS[pset])


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=lambda d: np.dtype(d).name)
def test_large_magnitudes_low_precision(dtype):
    rng = np.random.default_rng(2101)
    dyv = random_array(rng, SHAPE, dtype)
    xv = random_array(rng, SHAPE, dtype, -300.0, 300.0)
    check_gradient(dyv, xv, dyv, xv, dtype, 3, 3, "NCHW", PARAM_SETS["alpha1"])
    check_gradient(dyv, xv, dyv, xv, dtype, 4, 2, "NCHW", dict(alpha=1.0, beta=1.0, delta=1.0))
    check_gradient(dyv, xv, dyv, xv, dtype, 5, 5, "NCHW", dict(alpha=0.0, delta=4.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["float32", "float16"])
def test_one_pixel_window_on_large_mean_planes(dtype):
    """A 1x1 window has no variance: T = delta, and the alpha term of the gradient is 0,
    although its two halves are large where delta is small and the planes' mean is large
    (here about 1500 times dY each, against a result of about 2 times dY)."""
    rng = np.random.default_rng(77)
    x = (40.0 + 4.0 * rng.uniform(-1, 1, (2, 3, 9, 11))).astype(dtype)
    dy = rng.uniform(-1, 1, x.shape).astype(dtype)
    params = dict(alpha=0.7, beta=0.75, delta=0.05, p0=0.8, pm=0.1, ps=1.3)
    dx = mpsnorm.LocalContrastNormalizationGradient(1, **params)(dy, x)
    expected = ref.lcn_gradient(dy, x, 1, **params)
    assert_close(dx, expected, dtype, scale_from=(dy,), what="1x1 gradient, mean 40")
