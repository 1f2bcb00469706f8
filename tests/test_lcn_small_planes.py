"""LCN on tiny planes (a few dozen pixels), which the CPU backend evaluates window by window
rather than in streams: every dtype, both directions and the parameter sets that reach each
power of T, against the float64 reference; the same bits for either memory order, strided
views and any thread count; a NaN reaches exactly the outputs the reference says."""
import numpy as np
import pytest

import mpsnorm
import reference as ref
from reference import assert_close, random_array

PARAMS = {
    "mps_defaults": {},
    "alpha1": dict(alpha=1.0),
    "all_six": dict(alpha=0.7, beta=0.75, delta=0.05, p0=0.8, pm=0.1, ps=1.3),
    "beta1": dict(alpha=1.0, beta=1.0),
    "beta03": dict(alpha=1.0, beta=0.3, delta=0.01),
}
# planes and windows on both sides of the window-by-window bound (64 pixels, 512 terms)
PLANES = [(1, 1), (1, 5), (2, 2), (3, 4), (4, 4), (5, 3), (8, 8), (4, 16), (9, 9)]
WINDOWS = [(1, 1), (2, 2), (3, 3), (2, 3), (4, 4), (5, 1), (9, 9)]
DTYPES = [np.float64, np.float32, np.float16]


def _kernel(gradient, window, layout="NCHW", **params):
    cls = (mpsnorm.LocalContrastNormalizationGradient if gradient
           else mpsnorm.LocalContrastNormalization)
    return cls(window[0], window[1], layout=layout, **params)


def _run(kernel, gradient, dy, x):
    return kernel(dy, x) if gradient else kernel(x)


def _expected(gradient, dy, x, window, **params):
    if gradient:
        return ref.lcn_gradient(dy, x, window[0], window[1], **params)
    return ref.lcn_forward(x, window[0], window[1], **params)


@pytest.mark.parametrize("gradient", [False, True], ids=["forward", "gradient"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("pset", sorted(PARAMS))
def test_tiny_planes_match_the_reference(pset, dtype, gradient):
    rng = np.random.default_rng(7100)
    params = PARAMS[pset]
    for h, w in PLANES:
        dy = random_array(rng, (2, 3, h, w), dtype)
        x = random_array(rng, (2, 3, h, w), dtype, -2.0, 3.0)
        for window in WINDOWS:
            got = _run(_kernel(gradient, window, **params), gradient, dy, x)
            assert got.dtype == np.dtype(dtype) and got.shape == x.shape
            assert_close(got, _expected(gradient, dy, x, window, **params), dtype,
                         scale_from=(dy,) if gradient else (x,),
                         what="%dx%d plane, %dx%d window" % (h, w, window[0], window[1]))


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_tiny_planes_with_a_large_mean(dtype):
    rng = np.random.default_rng(7101)
    mean = 1e4 if dtype == np.float32 else 100.0
    x = (mean + rng.standard_normal((1, 4, 6, 6))).astype(dtype)
    dy = random_array(rng, x.shape, dtype)
    for window in [(3, 3), (4, 4), (6, 6)]:
        for gradient in (False, True):
            got = _run(_kernel(gradient, window, alpha=1.0), gradient, dy, x)
            assert_close(got, _expected(gradient, dy, x, window, alpha=1.0), dtype,
                         scale_from=(dy,) if gradient else (x,),
                         what="mean %g, %dx%d window" % (mean, window[0], window[1]))


@pytest.mark.parametrize("gradient", [False, True], ids=["forward", "gradient"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_tiny_planes_give_the_same_bits_in_any_memory_and_thread_count(dtype, gradient):
    rng = np.random.default_rng(7102)
    saved = mpsnorm.get_num_threads()
    try:
        for h, w in [(3, 4), (4, 4), (8, 8)]:
            dy = random_array(rng, (3, 5, h, w), dtype)
            x = random_array(rng, (3, 5, h, w), dtype)
            for window in [(2, 2), (3, 3)]:
                mpsnorm.set_num_threads(1)
                want = _run(_kernel(gradient, window, alpha=1.3), gradient, dy, x)
                mpsnorm.set_num_threads(2)
                again = _run(_kernel(gradient, window, alpha=1.3), gradient, dy, x)
                ref.assert_bits_equal(again, want, "2 threads against 1")
                nhwc = _run(_kernel(gradient, window, "NHWC", alpha=1.3), gradient,
                            ref.from_nchw(dy, "NHWC"), ref.from_nchw(x, "NHWC"))
                ref.assert_bits_equal(np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2)), want,
                                      "NHWC against NCHW")
                wide_dy = np.zeros((3, 5, h, 2 * w), dtype)
                wide_x = np.zeros((3, 5, h, 2 * w), dtype)
                wide_dy[..., ::2], wide_x[..., ::2] = dy, x
                strided = _run(_kernel(gradient, window, alpha=1.3), gradient,
                               wide_dy[..., ::2], wide_x[..., ::2])
                ref.assert_bits_equal(strided, want, "strided views against contiguous")
    finally:
        mpsnorm.set_num_threads(saved)


@pytest.mark.parametrize("gradient", [False, True], ids=["forward", "gradient"])
@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_a_non_finite_pixel_reaches_what_the_reference_says(bad, gradient):
    rng = np.random.default_rng(7103)
    x = random_array(rng, (1, 2, 6, 7), np.float64)
    dy = random_array(rng, x.shape, np.float64)
    x[0, 1, 2, 3] = bad
    for window in [(3, 3), (2, 4)]:
        got = _run(_kernel(gradient, window, alpha=1.0), gradient, dy, x)
        with np.errstate(invalid="ignore"):
            want = _expected(gradient, dy, x, window, alpha=1.0)
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
        assert not np.isfinite(got).all()
        finite = np.isfinite(want)
        assert_close(got[finite], want[finite], np.float64,
                     what="finite outputs, %dx%d window" % window)

