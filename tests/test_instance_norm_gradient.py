"""InstanceNormalizationGradient (dx, dgamma, dbeta) against the float64 reference."""

import numpy as np
import pytest

import mpsnorm
import reference as ref
from reference import as_memory, assert_close, random_array, snapshot

SHAPE = (2, 3, 7, 9)          # NCHW
SINGLE = (3, 6, 5)            # CHW
GAMMA = [1.5, -0.75, 0.3]


def logical_shape(layout, shape=SHAPE):
    if len(shape) == 4:
        return ref.layout_shape(shape, layout, 4)
    return shape if layout == "NCHW" else (shape[1], shape[2], shape[0])


def param_dtype(dtype):
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def make_pair(rng, shape, dtype, low=-2.0, high=3.0):
    dy = random_array(rng, shape, dtype)
    x = random_array(rng, shape, dtype, low, high)
    return dy, x


def check_gradient(dy, x, dyvals, xvals, dtype, layout="NCHW", gamma=None, epsilon=None,
                   **call_kw):
    c = ref.nchw_shape(xvals.shape, layout)[1]
    kw = {} if epsilon is None else {"epsilon": epsilon}
    grad = mpsnorm.InstanceNormalizationGradient(c, gamma=gamma, layout=layout, **kw)
    before_dy, before_x = snapshot(dy), snapshot(x)
    result = grad(dy, x, **call_kw)
    assert isinstance(result, tuple) and len(result) == 3
    dx, dgamma, dbeta = result
    if call_kw.get("out") is None:
        assert type(dx) is np.ndarray
        assert dx.dtype == np.dtype(dtype)
        assert dx.shape == xvals.shape
        assert dx.flags.c_contiguous
    for name, v in (("dgamma", dgamma), ("dbeta", dbeta)):
        if call_kw.get("out_" + name[1:]) is None:
            assert type(v) is np.ndarray, name
            assert v.shape == (c,), name
            assert v.dtype == param_dtype(dtype), name
    eps = ref.INORM_DEFAULT_EPSILON if epsilon is None else epsilon
    edx, edgamma, edbeta = ref.inorm_gradient(dyvals, xvals, gamma, epsilon=eps, layout=layout)
    what = "instance norm gradient %s" % layout
    assert_close(dx, edx, dtype, scale_from=(dyvals,), what=what + " dx")
    assert_close(dgamma, edgamma, dtype, scale_from=(dyvals,), what=what + " dgamma")
    assert_close(dbeta, edbeta, dtype, scale_from=(dyvals,), what=what + " dbeta")
    ref.assert_bits_equal(snapshot(dy), before_dy, "dy after the call")
    ref.assert_bits_equal(snapshot(x), before_x, "x after the call")
    return result


@pytest.mark.parametrize("affine", [False, True], ids=["gamma_default", "gamma_set"])
@pytest.mark.parametrize("memory", ref.MEMORY_KINDS)
@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_dtype_layout_memory(dtype, layout, memory, affine):
    rng = np.random.default_rng(777)
    dyv, xv = make_pair(rng, logical_shape(layout), dtype)
    check_gradient(as_memory(dyv, memory), as_memory(xv, memory), dyv, xv, dtype, layout,
                   gamma=GAMMA if affine else None)


@pytest.mark.parametrize("mem_dy,mem_x", [("strided", "reversed"), ("reversed", "memoryview"),
                                          ("readonly", "strided"), ("fortran", "contiguous"),
                                          ("readonly_memoryview", "strided_memoryview")])
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_mixed_memory_forms(dtype, mem_dy, mem_x):
    rng = np.random.default_rng(778)
    dyv, xv = make_pair(rng, SHAPE, dtype)
    check_gradient(as_memory(dyv, mem_dy), as_memory(xv, mem_x), dyv, xv, dtype, gamma=GAMMA)


def test_dy_and_x_may_be_the_same_buffer():
    rng = np.random.default_rng(779)
    xv = random_array(rng, SHAPE, np.float64)
    check_gradient(xv, xv, xv, xv, np.float64, gamma=GAMMA)


@pytest.mark.parametrize("epsilon", [0.0, 1e-5, 1e-3, 0.5, 7.0])
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_epsilon(dtype, epsilon):
    rng = np.random.default_rng(780)
    dyv, xv = make_pair(rng, SHAPE, dtype)
    check_gradient(dyv, xv, dyv, xv, dtype, gamma=GAMMA, epsilon=epsilon)


@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_single_image(dtype, layout):
    rng = np.random.default_rng(781)
    dyv, xv = make_pair(rng, logical_shape(layout, SINGLE), dtype)
    dx, _, _ = check_gradient(dyv, xv, dyv, xv, dtype, layout, gamma=GAMMA)
    assert dx.shape == xv.shape
    check_gradient(as_memory(dyv, "strided"), as_memory(xv, "reversed"), dyv, xv, dtype, layout)


def test_dgamma_dbeta_sum_over_batch():
    """dgamma/dbeta of a batch equal the sums of the per-image results (reference sums)."""
    rng = np.random.default_rng(782)
    dyv, xv = make_pair(rng, (4, 3, 5, 6), np.float64)
    grad = mpsnorm.InstanceNormalizationGradient(3, gamma=GAMMA)
    _, dgamma, dbeta = grad(dyv, xv)
    _, edg, edb = ref.inorm_gradient(dyv, xv, GAMMA)
    np.testing.assert_allclose(edb, dyv.sum(axis=(0, 2, 3)), rtol=1e-13)
    assert_close(dgamma, edg, np.float64, scale_from=(dyv,))
    assert_close(dbeta, edb, np.float64, scale_from=(dyv,))
    per_image_g = np.zeros(3)
    per_image_b = np.zeros(3)
    for n in range(4):
        _, g1, b1 = ref.inorm_gradient(dyv[n], xv[n], GAMMA)
        per_image_g += g1
        per_image_b += b1
    np.testing.assert_allclose(edg, per_image_g, rtol=1e-12, atol=1e-12)
    assert_close(dgamma, per_image_g, np.float64, scale_from=(dyv,))
    assert_close(dbeta, per_image_b, np.float64, scale_from=(dyv,))


def test_dgamma_does_not_depend_on_gamma():
    rng = np.random.default_rng(783)
    dyv, xv = make_pair(rng, SHAPE, np.float64)
    _, g1, b1 = mpsnorm.InstanceNormalizationGradient(3)(dyv, xv)
    _, g2, b2 = mpsnorm.InstanceNormalizationGradient(3, gamma=[5.0, -2.0, 0.0])(dyv, xv)
    _, edg, edb = ref.inorm_gradient(dyv, xv)
    for g in (g1, g2):
        assert_close(g, edg, np.float64, scale_from=(dyv,))
    for b in (b1, b2):
        assert_close(b, edb, np.float64, scale_from=(dyv,))


@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_zero_gamma_channel_has_zero_dx(dtype):
    rng = np.random.default_rng(784)
    dyv, xv = make_pair(rng, SHAPE, dtype)
    dx, _, _ = check_gradient(dyv, xv, dyv, xv, dtype, gamma=[1.0, 0.0, -2.0])
    assert np.all(np.asarray(dx)[:, 1] == 0)


@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_constant_planes(dtype):
    """var = 0, Xh = 0: dX = gamma*r*(dY - mean(dY)), dgamma = 0."""
    rng = np.random.default_rng(785)
    x = np.full((2, 3, 4, 5), 1.5, dtype)
    dy = random_array(rng, x.shape, dtype)
    check_gradient(dy, x, dy, x, dtype, gamma=GAMMA, epsilon=0.25)


@pytest.mark.parametrize("layout", ref.LAYOUTS)
def test_large_mean_float32(layout):
    """Planes of 1e4 + 10*N(0, 1) noise: the naive float32 variance is far off."""
    rng = np.random.default_rng(786)
    means = np.array([1e4, -2.5e4, 3e4])[None, :, None, None]
    x = (means + 10.0 * rng.standard_normal((2, 3, 16, 16))).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    xv, dyv = ref.from_nchw(x, layout), ref.from_nchw(dy, layout)
    check_gradient(dyv, xv, dyv, xv, np.float32, layout)
    check_gradient(dyv, xv, dyv, xv, np.float32, layout, gamma=GAMMA)


def test_large_mean_float64():
    rng = np.random.default_rng(787)
    means = np.array([1e4, -3e4, 5e3])[None, :, None, None]
    x = means + rng.standard_normal((2, 3, 16, 16))
    dy = rng.standard_normal(x.shape)
    check_gradient(dy, x, dy, x, np.float64, gamma=GAMMA)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_larger_planes(dtype):
    rng = np.random.default_rng(788)
    dyv, xv = make_pair(rng, (2, 4, 64, 96), dtype, 0.0, 4.0)
    check_gradient(dyv, xv, dyv, xv, dtype)
    dyn, xn = ref.from_nchw(dyv, "NHWC"), ref.from_nchw(xv, "NHWC")
    check_gradient(dyn, xn, dyn, xn, dtype, "NHWC", gamma=[1, 2, 3, 4])


@pytest.mark.parametrize("kind", ["contiguous", "strided", "reversed", "memoryview"])
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_out_arguments(dtype, kind):
    rng = np.random.default_rng(789)
    dyv, xv = make_pair(rng, SHAPE, dtype)
    pdt = param_dtype(dtype)
    if kind == "strided":
        owner = np.full((2, 3, 7, 19), ref.SENTINEL, dtype)
        out = owner[..., 1::2]
        mask = np.zeros(owner.shape, bool)
        mask[..., 1::2] = True
        gowner = np.full(7, ref.SENTINEL, pdt)
        bowner = np.full(9, ref.SENTINEL, pdt)
        out_g, out_b = gowner[::3], bowner[::-4]
        gmask = np.zeros(7, bool)
        gmask[::3] = True
        bmask = np.zeros(9, bool)
        bmask[::-4] = True
    else:
        owner = np.full(SHAPE, ref.SENTINEL, dtype)
        mask = np.ones(SHAPE, bool)
        gowner = np.full(3, ref.SENTINEL, pdt)
        bowner = np.full(3, ref.SENTINEL, pdt)
        gmask = bmask = np.ones(3, bool)
        if kind == "contiguous":
            out, out_g, out_b = owner, gowner, bowner
        elif kind == "reversed":
            out, out_g, out_b = owner[::-1, ::-1], gowner[::-1], bowner[::-1]
        else:
            out, out_g, out_b = memoryview(owner), memoryview(gowner), memoryview(bowner)
    grad = mpsnorm.InstanceNormalizationGradient(3, gamma=GAMMA)
    dx, dgamma, dbeta = grad(dyv, xv, out=out, out_gamma=out_g, out_beta=out_b)
    assert dx is out and dgamma is out_g and dbeta is out_b
    edx, edg, edb = ref.inorm_gradient(dyv, xv, GAMMA)
    assert_close(np.asarray(out), edx, dtype, scale_from=(dyv,), what="out=")
    assert_close(np.asarray(out_g), edg, dtype, scale_from=(dyv,), what="out_gamma=")
    assert_close(np.asarray(out_b), edb, dtype, scale_from=(dyv,), what="out_beta=")
    assert np.all(owner[~mask] == ref.SENTINEL)
    assert np.all(gowner[~gmask] == ref.SENTINEL)
    assert np.all(bowner[~bmask] == ref.SENTINEL)


def test_out_only_some():
    rng = np.random.default_rng(790)
    dyv, xv = make_pair(rng, SHAPE, np.float32)
    out_b = np.full(3, ref.SENTINEL, np.float32)
    dx, dgamma, dbeta = mpsnorm.InstanceNormalizationGradient(3)(dyv, xv, out_beta=out_b)
    assert dbeta is out_b
    assert type(dx) is np.ndarray and type(dgamma) is np.ndarray
    edx, edg, edb = ref.inorm_gradient(dyv, xv)
    assert_close(dx, edx, np.float32, scale_from=(dyv,))
    assert_close(dgamma, edg, np.float32, scale_from=(dyv,))
    assert_close(out_b, edb, np.float32, scale_from=(dyv,))


@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("nchw", [(0, 3, 7, 9), (2, 3, 0, 9), (2, 3, 7, 0)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_zero_size(dtype, nchw, layout):
    shape = ref.layout_shape(nchw, layout)
    x = np.zeros(shape, dtype)
    dy = np.zeros(shape, dtype)
    grad = mpsnorm.InstanceNormalizationGradient(3, layout=layout, gamma=GAMMA)
    dx, dgamma, dbeta = grad(dy, x)
    assert isinstance(dx, np.ndarray)
    assert dx.shape == shape and dx.dtype == np.dtype(dtype)
    for v in (dgamma, dbeta):
        assert v.shape == (3,) and v.dtype == param_dtype(dtype)
        assert np.all(v == 0)
    out = np.zeros(shape, dtype)
    og = np.full(3, ref.SENTINEL, param_dtype(dtype))
    ob = np.full(3, ref.SENTINEL, param_dtype(dtype))
    r = grad(dy, x, out=out, out_gamma=og, out_beta=ob)
    assert r[0] is out and r[1] is og and r[2] is ob
    assert np.all(og == 0) and np.all(ob == 0)


@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_nonfinite_data_propagates(dtype):
    rng = np.random.default_rng(791)
    dyv, xv = make_pair(rng, SHAPE, dtype)
    xv[0, 1, 3, 4] = np.nan
    dyv[1, 2, 0, 0] = np.inf
    dx, dgamma, dbeta = mpsnorm.InstanceNormalizationGradient(3, gamma=GAMMA)(dyv, xv)
    dx = np.asarray(dx, np.float64)
    assert not np.isfinite(dx[0, 1, 3, 4])
    assert not np.isfinite(dx[1, 2, 0, 0])
    assert not np.isfinite(dgamma[1]) and not np.isfinite(dgamma[2])
    assert not np.isfinite(dbeta[2])
    for n, c in [(0, 0), (0, 2), (1, 0), (1, 1)]:
        sl = (slice(n, n + 1), slice(c, c + 1))
        edx, _, _ = ref.inorm_gradient(dyv[sl], xv[sl], [GAMMA[c]])
        assert_close(dx[sl], edx, dtype, scale_from=(dyv[sl],), what="plane %d,%d" % (n, c))
    _, edg, edb = ref.inorm_gradient(dyv[:, :1], xv[:, :1], [GAMMA[0]])
    assert_close(dgamma[:1], edg, dtype, scale_from=(dyv[:, :1],), what="dgamma[0]")
    assert_close(dbeta[:2], ref.inorm_gradient(dyv[:, :2], xv[:, :2], GAMMA[:2])[2], dtype,
                 scale_from=(dyv[:, :2],), what="dbeta[:2]")


@pytest.mark.parametrize("hw", [(1, 1), (1, 127), (1, 128), (1, 129), (16, 16), (257, 1),
                                (31, 33), (128, 129)], ids=lambda s: "%dx%d" % s)
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_plane_sizes_around_block_boundaries(dtype, hw):
    rng = np.random.default_rng(4000 + hw[0] * 1000 + hw[1])
    dyv, xv = make_pair(rng, (3, 2, hw[0], hw[1]), dtype, -1.0, 3.0)
    check_gradient(dyv, xv, dyv, xv, dtype, gamma=[0.5, -2.0])
    dyn, xn = ref.from_nchw(dyv, "NHWC"), ref.from_nchw(xv, "NHWC")
    check_gradient(dyn, xn, dyn, xn, dtype, "NHWC", gamma=[0.5, -2.0])


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=lambda d: np.dtype(d).name)
def test_large_magnitudes_low_precision(dtype):
    rng = np.random.default_rng(4100)
    dyv = random_array(rng, SHAPE, dtype, -300.0, 300.0)
    xv = random_array(rng, SHAPE, dtype, -300.0, 300.0)
    check_gradient(dyv, xv, dyv, xv, dtype, gamma=GAMMA)
    xv = random_array(rng, SHAPE, dtype, -6e4, 6e4)
    check_gradient(dyv, xv, dyv, xv, dtype, gamma=GAMMA)
