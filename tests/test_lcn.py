"""LocalContrastNormalization (forward) against the float64 reference."""

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
    return ref.layout_shape(shape, layout, 4) if len(shape) == 4 else (
        shape if layout == "NCHW" else (shape[1], shape[2], shape[0]))


def check_forward(x, xvals, dtype, kw, kh, layout, params, **call_kw):
    """Runs mpsnorm on `x` (any memory form of the logical values `xvals`), checks the output."""
    lcn = mpsnorm.LocalContrastNormalization(kw, kh, layout=layout, **params)
    before = snapshot(x)
    y = lcn(x, **call_kw)
    if "out" not in call_kw or call_kw["out"] is None:
        assert type(y) is np.ndarray
        assert y.dtype == np.dtype(dtype)
        assert y.shape == xvals.shape
        assert y.flags.c_contiguous
    expected = ref.lcn_forward(xvals, kw, kh, layout=layout, **params)
    assert_close(y, expected, dtype, scale_from=(xvals,), what="LCN %dx%d %s" % (kw, kh, layout))
    ref.assert_bits_equal(snapshot(x), before, "input after the call")
    return y


# -- full product dtype x layout x memory, for two windows ------------------------------

@pytest.mark.parametrize("window,pset", [((3, 3), "all_six"), ((4, 4), "alpha1")],
                         ids=["3x3-all_six", "4x4-alpha1"])
@pytest.mark.parametrize("memory", ref.MEMORY_KINDS)
@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_dtype_layout_memory(dtype, layout, memory, window, pset):
    rng = np.random.default_rng(1234)
    xvals = random_array(rng, logical_shape(layout), dtype)
    x = as_memory(xvals, memory)
    check_forward(x, xvals, dtype, window[0], window[1], layout, PARAM_SETS[pset])


@pytest.mark.parametrize("memory", ["fortran", "readonly_memoryview", "strided_memoryview"])
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_other_memory_forms(dtype, memory):
    rng = np.random.default_rng(99)
    xvals = random_array(rng, SHAPE, dtype)
    check_forward(as_memory(xvals, memory), xvals, dtype, 3, 5, "NCHW", PARAM_SETS["all_six"])


def test_offset_and_transposed_views():
    """A view starting mid-buffer, and an NCHW view of NHWC memory (axes permuted)."""
    rng = np.random.default_rng(5)
    base = random_array(rng, (3, 4, 9, 11), np.float32)
    x = base[1:, 1:, 2:, 1:10]
    check_forward(x, np.array(x), np.float32, 3, 3, "NCHW", PARAM_SETS["alpha1"])
    nhwc = random_array(rng, (2, 7, 9, 3), np.float64)
    xt = nhwc.transpose(0, 3, 1, 2)           # logical NCHW, channel stride 1
    check_forward(xt, np.array(xt), np.float64, 4, 2, "NCHW", PARAM_SETS["all_six"])


# -- window x parameter sweeps -----------------------------------------------------------

@pytest.mark.parametrize("pset", list(PARAM_SETS))
@pytest.mark.parametrize("window", WINDOWS, ids=_wid)
def test_windows_params_float64(window, pset):
    rng = np.random.default_rng(2024)
    xvals = random_array(rng, SHAPE, np.float64)
    check_forward(xvals.copy(), xvals, np.float64, window[0], window[1], "NCHW", PARAM_SETS[pset])


@pytest.mark.parametrize("pset", LOWPREC_PARAM_SETS)
@pytest.mark.parametrize("window", WINDOWS, ids=_wid)
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_windows_params_lowprec(dtype, window, pset):
    rng = np.random.default_rng(77)
    xvals = random_array(rng, SHAPE, dtype)
    check_forward(xvals.copy(), xvals, dtype, window[0], window[1], "NCHW", PARAM_SETS[pset])


@pytest.mark.parametrize("window", [(3, 3), (2, 5), (8, 1)], ids=_wid)
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_windows_nhwc(dtype, window):
    rng = np.random.default_rng(31)
    xvals = random_array(rng, logical_shape("NHWC"), dtype)
    check_forward(xvals.copy(), xvals, dtype, window[0], window[1], "NHWC", PARAM_SETS["all_six"])


@pytest.mark.parametrize("beta", [1.0, 0.5, 0.3])
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_beta_special_cases(dtype, beta):
    rng = np.random.default_rng(8)
    xvals = random_array(rng, SHAPE, dtype)
    params = dict(alpha=1.0, beta=beta, delta=0.02)
    check_forward(xvals, xvals, dtype, 5, 5, "NCHW", params)
    check_forward(xvals, xvals, dtype, 2, 3, "NCHW", params)


@pytest.mark.parametrize("window", [(2, 2), (3, 3), (3, 5), (5, 5)], ids=_wid)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_delta_zero_alpha_one(dtype, window):
    """delta = 0: T is the local variance itself (non-zero on a non-constant image)."""
    rng = np.random.default_rng(11)
    xvals = random_array(rng, SHAPE, dtype)
    params = dict(alpha=1.0, delta=0.0)
    expected = ref.lcn_forward(xvals, *window, **params)
    assert np.all(np.isfinite(expected))
    check_forward(xvals, xvals, dtype, window[0], window[1], "NCHW", params)


@pytest.mark.parametrize("window", [(65535, 65535), (65535, 1), (1, 65535), (1001, 999)],
                         ids=_wid)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_huge_windows(dtype, window):
    """Windows far larger than the image: the divisor is still kw*kh."""
    rng = np.random.default_rng(3)
    xvals = random_array(rng, (1, 2, 6, 7), dtype)
    for pset in ("mps_defaults", "all_six"):
        check_forward(xvals, xvals, dtype, window[0], window[1], "NCHW", PARAM_SETS[pset])


@pytest.mark.parametrize("window", [(5, 5), (8, 8), (6, 3)], ids=_wid)
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_larger_image_nonzero_mean(dtype, window):
    rng = np.random.default_rng(21)
    xvals = random_array(rng, (1, 2, 64, 96), dtype, 0.0, 4.0)
    check_forward(xvals, xvals, dtype, window[0], window[1], "NCHW", PARAM_SETS["alpha1"])
    check_forward(xvals, xvals, dtype, window[0], window[1], "NCHW", PARAM_SETS["all_six"])


# -- single images, outputs, sizes ---------------------------------------------------------

@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_single_image(dtype, layout):
    rng = np.random.default_rng(4)
    xvals = random_array(rng, logical_shape(layout, SINGLE), dtype)
    y = check_forward(xvals, xvals, dtype, 3, 4, layout, PARAM_SETS["all_six"])
    assert y.shape == xvals.shape
    y2 = check_forward(as_memory(xvals, "reversed"), xvals, dtype, 2, 2, layout,
                       PARAM_SETS["alpha1"])
    assert y2.ndim == 3


def _out_buffer(shape, dtype, kind):
    """(out object, owning array, mask of owner elements that out covers)."""
    if kind == "contiguous":
        o = np.full(shape, ref.SENTINEL, dtype=dtype)
        return o, o, np.ones(shape, bool)
    if kind == "strided":
        big = np.full(shape[:-1] + (2 * shape[-1] + 1,), ref.SENTINEL, dtype=dtype)
        mask = np.zeros(big.shape, bool)
        mask[..., 1::2] = True
        return big[..., 1::2], big, mask
    if kind == "reversed":
        o = np.full(shape, ref.SENTINEL, dtype=dtype)
        return o[:, ::-1, ::-1, :], o, np.ones(shape, bool)
    if kind == "fortran":
        o = np.full(shape, ref.SENTINEL, dtype=dtype, order="F")
        return o, o, np.ones(shape, bool)
    if kind == "memoryview":
        o = np.full(shape, ref.SENTINEL, dtype=dtype)
        return memoryview(o), o, np.ones(shape, bool)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["contiguous", "strided", "reversed", "fortran", "memoryview"])
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_out_argument(dtype, kind):
    rng = np.random.default_rng(6)
    xvals = random_array(rng, SHAPE, dtype)
    out, owner, mask = _out_buffer(SHAPE, dtype, kind)
    lcn = mpsnorm.LocalContrastNormalization(3, 2, **PARAM_SETS["all_six"])
    got = lcn(xvals, out=out)
    assert got is out
    assert_close(np.asarray(out), ref.lcn_forward(xvals, 3, 2, **PARAM_SETS["all_six"]), dtype,
                 scale_from=(xvals,), what="out=")
    # elements of the owning buffer outside `out` are untouched
    assert np.all(owner[~mask] == ref.SENTINEL)


def test_out_argument_nhwc_single_image():
    rng = np.random.default_rng(66)
    xvals = random_array(rng, (6, 5, 3), np.float32)
    out = np.full((6, 5, 3), ref.SENTINEL, np.float32)
    lcn = mpsnorm.LocalContrastNormalization(2, layout="NHWC", alpha=1.0)
    assert lcn(xvals, out=out) is out
    assert_close(out, ref.lcn_forward(xvals, 2, layout="NHWC", alpha=1.0), np.float32,
                 scale_from=(xvals,))


def test_repeated_calls_same_object():
    rng = np.random.default_rng(61)
    lcn = mpsnorm.LocalContrastNormalization(3, alpha=1.0)
    for shape in [(1, 1, 4, 4), (2, 3, 7, 9), (1, 2, 12, 3)]:
        xvals = random_array(rng, shape, np.float64)
        assert_close(lcn(xvals), ref.lcn_forward(xvals, 3, alpha=1.0), np.float64,
                     scale_from=(xvals,))


@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("nchw", [(0, 3, 7, 9), (2, 3, 0, 9), (2, 3, 7, 0), (2, 0, 7, 9)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_zero_size(dtype, nchw, layout):
    shape = ref.layout_shape(nchw, layout)
    x = np.zeros(shape, dtype)
    lcn = mpsnorm.LocalContrastNormalization(3, layout=layout)
    y = lcn(x)
    assert isinstance(y, np.ndarray)
    assert y.shape == shape and y.dtype == np.dtype(dtype)
    out = np.zeros(shape, dtype)
    assert lcn(x, out=out) is out


def test_zero_size_single_image():
    lcn = mpsnorm.LocalContrastNormalization(2)
    y = lcn(np.zeros((3, 0, 5), np.float32))
    assert y.shape == (3, 0, 5) and y.dtype == np.float32


# -- explicit window geometry (hand-computed, independent of the reference) ----------------

@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_even_window_direction_impulse(dtype):
    """kw = kh = 2: the window of (j, i) is rows [j-1, j], columns [i-1, i] (MPS's placement:
    one more pixel up and to the left).

    With alpha = 0, delta = 1, p0 = 1: Y = X - M. An impulse 1 at (2, 3) gives
    M = 1/4 at the pixels whose window contains it: rows 2..3, columns 3..4."""
    x = np.zeros((1, 1, 5, 6), dtype)
    x[0, 0, 2, 3] = 1
    expected = np.zeros((5, 6))
    expected[2:4, 3:5] = -0.25
    expected[2, 3] = 0.75
    y = mpsnorm.LocalContrastNormalization(2, delta=1.0)(x)
    np.testing.assert_allclose(np.asarray(y, np.float64)[0, 0], expected, rtol=0, atol=1e-3)


@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_rectangular_window_direction_impulse(dtype):
    """kw = 4, kh = 1: columns [i-2, i+1]; the impulse at column 3 reaches columns 2..5.

    pm = 0.5, ps = 2, p0 = 1, delta = 1, alpha = 0: Y = 0.5 + 2*(X - M), M = X-sum/4."""
    x = np.zeros((1, 1, 3, 7), dtype)
    x[0, 0, 1, 3] = 1
    expected = np.full((3, 7), 0.5)
    expected[1, 2:6] = 0.5 - 0.5
    expected[1, 3] = 0.5 + 2 * 0.75
    y = mpsnorm.LocalContrastNormalization(4, 1, delta=1.0, pm=0.5, ps=2.0)(x)
    np.testing.assert_allclose(np.asarray(y, np.float64)[0, 0], expected, rtol=0, atol=1e-3)


def test_constant_image_interior_is_pm():
    """alpha = 1 on a constant plane: inside (windows fully in the image) A = 0, so Y = pm."""
    x = np.full((1, 1, 9, 9), 3.0)
    y = mpsnorm.LocalContrastNormalization(3, alpha=1.0, pm=0.25)(x)
    np.testing.assert_allclose(y[0, 0, 1:-1, 1:-1], 0.25, rtol=0, atol=1e-12)


# -- non-finite data -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_nonfinite_data_propagates(dtype):
    rng = np.random.default_rng(13)
    xvals = random_array(rng, SHAPE, dtype)
    xvals[0, 1, 3, 4] = np.nan
    xvals[1, 2, 2, 2] = np.inf
    xvals[1, 0, 6, 8] = -np.inf
    lcn = mpsnorm.LocalContrastNormalization(3, **PARAM_SETS["all_six"])
    y = np.asarray(lcn(xvals), np.float64)
    assert not np.isfinite(y[0, 1, 3, 4])
    assert not np.isfinite(y[1, 2, 2, 2])
    assert not np.isfinite(y[1, 0, 6, 8])
    # every plane without a non-finite value is unaffected (planes are independent)
    for n, c in itertools.product(range(SHAPE[0]), range(SHAPE[1])):
        if (n, c) in [(0, 1), (1, 2), (1, 0)]:
            continue
        plane = xvals[n:n + 1, c:c + 1]
        assert_close(y[n:n + 1, c:c + 1],
                     ref.lcn_forward(plane, 3, **PARAM_SETS["all_six"]), dtype,
                     scale_from=(plane,), what="plane %d,%d" % (n, c))


# -- the reference itself ------------------------------------------------------------------

def _pixel_loop_lcn(plane, kw, kh, p):
    """Per-pixel loops straight from the docs/SPEC.md text (slow; tiny planes only)."""
    h, w = plane.shape
    y = np.empty_like(plane)
    n = kw * kh
    for j in range(h):
        for i in range(w):
            s = s2 = 0.0
            for jj in range(j - kh // 2, j + (kh - 1) // 2 + 1):
                for ii in range(i - kw // 2, i + (kw - 1) // 2 + 1):
                    if 0 <= jj < h and 0 <= ii < w:
                        s += plane[jj, ii]
                        s2 += plane[jj, ii] ** 2
            m = s / n
            var = max(s2 / n - m * m, 0.0)
            t = p["delta"] + p["alpha"] * var
            y[j, i] = p["pm"] + p["ps"] * (plane[j, i] - p["p0"] * m) * t ** (-p["beta"])
    return y


@pytest.mark.parametrize("window", [(1, 1), (2, 2), (3, 3), (4, 4), (2, 5), (6, 3), (12, 11)],
                         ids=_wid)
def test_reference_matches_pixel_loops(window):
    rng = np.random.default_rng(17)
    x = rng.standard_normal((1, 2, 5, 6))
    params = PARAM_SETS["all_six"]
    got = ref.lcn_forward(x, *window, **params)
    p = ref.lcn_params(**params)
    for c in range(2):
        np.testing.assert_allclose(got[0, c], _pixel_loop_lcn(x[0, c], *window, p),
                                   rtol=1e-13, atol=1e-13)


# -- sizes on both sides of block / row-group boundaries -------------------------------------

def _windows_around(w, h):
    """Window sizes below, at and above the plane's width/height, and multiples of them."""
    kws = sorted({1, 2, 3, max(1, w - 1), w, w + 1, 2 * w, 2 * w + 1})
    khs = sorted({1, 2, max(1, h - 1), h, h + 1, 2 * h + 1})
    return [(kw, kh) for kw in kws for kh in khs]


@pytest.mark.parametrize("h", [1, 2, 3, 4, 5, 8, 9, 13])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: np.dtype(d).name)
def test_plane_sizes_and_window_boundaries(dtype, h):
    rng = np.random.default_rng(1000 + h)
    params = PARAM_SETS["all_six"]
    for w in (1, 2, 4, 5, 9):
        xvals = random_array(rng, (1, 2, h, w), dtype)
        for kw, kh in _windows_around(w, h):
            lcn = mpsnorm.LocalContrastNormalization(kw, kh, **params)
            assert_close(lcn(xvals), ref.lcn_forward(xvals, kw, kh, **params), dtype,
                         scale_from=(xvals,), what="h=%d w=%d window %dx%d" % (h, w, kw, kh))


@pytest.mark.parametrize("window", [(5, 5), (4, 4), (15, 3)], ids=_wid)
@pytest.mark.parametrize("layout", ref.LAYOUTS)
def test_image_like_float32_values(layout, window):
    """Pixel values 0..255 on a 256 x 384 plane: sums over long rows must not lose the
    local statistics (a float32 running sum over the whole row would)."""
    rng = np.random.default_rng(1100)
    base = rng.integers(0, 256, size=(1, 2, 256, 384)).astype(np.float32)
    # smooth regions (small local variance) next to noisy ones
    base[:, :, 100:140, 200:300] = 200.0 + rng.standard_normal((1, 2, 40, 100)).astype(np.float32)
    xvals = ref.from_nchw(base, layout)
    for pset in ("alpha1", "all_six", "mps_defaults"):
        check_forward(xvals, xvals, np.float32, window[0], window[1], layout, PARAM_SETS[pset])


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=lambda d: np.dtype(d).name)
def test_large_magnitudes_low_precision(dtype):
    """|x| up to 300: x^2 overflows float16, so arithmetic must run in float32 or wider."""
    rng = np.random.default_rng(1101)
    xvals = random_array(rng, SHAPE, dtype, -300.0, 300.0)
    check_forward(xvals, xvals, dtype, 3, 3, "NCHW", PARAM_SETS["alpha1"])
    check_forward(xvals, xvals, dtype, 4, 2, "NCHW", dict(alpha=1.0, beta=1.0, delta=1.0))
    check_forward(xvals, xvals, dtype, 5, 5, "NCHW", dict(alpha=0.0, delta=4.0))


# -- the even-window placement, in numbers worked by hand --------------------------------

def test_even_window_gradient_sums_the_adjoint_window():
    """With alpha = 0, dX = D * (dY - Badj(dY) / N), D = delta^-1/2, and Badj sums the outputs
    whose window holds the pixel: for kw = 2 those are columns q and q+1."""
    dy = np.array([1.0, 0.0, 0.0, 0.0, 0.0, 2.0]).reshape(1, 1, 1, 6)
    x = np.zeros_like(dy)
    dx = mpsnorm.LocalContrastNormalizationGradient(2, 1)(dy, x)
    d = 1024.0 ** 0.5
    # Badj(dY) = [dY0 + dY1, dY1 + dY2, ..., dY5] = [1, 0, 0, 0, 2, 2]
    np.testing.assert_array_equal(dx.reshape(6), d * (dy.reshape(6) - np.array(
        [1.0, 0.0, 0.0, 0.0, 2.0, 2.0]) / 2))
