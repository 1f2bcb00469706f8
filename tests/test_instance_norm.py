"""InstanceNormalization (forward) against the float64 reference."""

import numpy as np
import pytest

import mpsnorm
import reference as ref
from reference import as_memory, assert_close, random_array, snapshot

SHAPE = (2, 3, 7, 9)          # NCHW
SINGLE = (3, 6, 5)            # CHW
GAMMA = [1.5, -0.75, 0.3]
BETA = [0.2, -1.1, 0.05]


def logical_shape(layout, shape=SHAPE):
    if len(shape) == 4:
        return ref.layout_shape(shape, layout, 4)
    return shape if layout == "NCHW" else (shape[1], shape[2], shape[0])


def check_forward(x, xvals, dtype, layout="NCHW", gamma=None, beta=None, epsilon=None,
                  **call_kw):
    c = ref.nchw_shape(xvals.shape, layout)[1]
    kw = {} if epsilon is None else {"epsilon": epsilon}
    inorm = mpsnorm.InstanceNormalization(c, gamma=gamma, beta=beta, layout=layout, **kw)
    before = snapshot(x)
    y = inorm(x, **call_kw)
    if call_kw.get("out") is None:
        assert type(y) is np.ndarray
        assert y.dtype == np.dtype(dtype)
        assert y.shape == xvals.shape
        assert y.flags.c_contiguous
    expected = ref.inorm_forward(xvals, gamma, beta, layout=layout,
                                 epsilon=ref.INORM_DEFAULT_EPSILON if epsilon is None else epsilon)
    assert_close(y, expected, dtype, scale_from=(xvals,), what="instance norm %s" % layout)
    ref.assert_bits_equal(snapshot(x), before, "input after the call")
    return y


@pytest.mark.parametrize("affine", [False, True], ids=["default_affine", "gamma_beta"])
@pytest.mark.parametrize("memory", ref.MEMORY_KINDS)
@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_dtype_layout_memory(dtype, layout, memory, affine):
    rng = np.random.default_rng(555)
    xvals = random_array(rng, logical_shape(layout), dtype, -2.0, 3.0)
    kw = dict(gamma=GAMMA, beta=BETA) if affine else {}
    check_forward(as_memory(xvals, memory), xvals, dtype, layout, **kw)


@pytest.mark.parametrize("memory", ["fortran", "readonly_memoryview", "strided_memoryview"])
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_other_memory_forms(dtype, memory):
    rng = np.random.default_rng(556)
    xvals = random_array(rng, SHAPE, dtype)
    check_forward(as_memory(xvals, memory), xvals, dtype, gamma=GAMMA, beta=BETA)


@pytest.mark.parametrize("epsilon", [0.0, 1e-5, 1e-3, 0.5, 7.0])
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_epsilon(dtype, epsilon):
    rng = np.random.default_rng(557)
    xvals = random_array(rng, SHAPE, dtype)
    check_forward(xvals, xvals, dtype, gamma=GAMMA, beta=BETA, epsilon=epsilon)


@pytest.mark.parametrize("gamma_kind", ["list", "float32_array", "float64_array", "tuple"])
def test_gamma_beta_containers(gamma_kind):
    rng = np.random.default_rng(558)
    xvals = random_array(rng, SHAPE, np.float64)
    conv = {"list": list, "tuple": tuple,
            "float32_array": lambda v: np.asarray(v, np.float32),
            "float64_array": lambda v: np.asarray(v, np.float64)}[gamma_kind]
    check_forward(xvals, xvals, np.float64, gamma=conv([0.1, 0.2, 0.3]), beta=conv([1, 2, 3]))


def test_gamma_rounded_to_float32():
    """gamma/beta are float32 arrays: a float64 computation uses the rounded values."""
    rng = np.random.default_rng(559)
    xvals = random_array(rng, SHAPE, np.float64)
    gamma = [0.1, 1.0 / 3.0, 2.0 / 7.0]
    beta = [0.7, -1.0 / 3.0, 0.1]
    y = mpsnorm.InstanceNormalization(3, gamma=gamma, beta=beta)(xvals)
    exact = ref.inorm_forward(xvals, None, None)
    naive = exact * np.asarray(gamma)[None, :, None, None] + np.asarray(beta)[None, :, None, None]
    rounded = ref.inorm_forward(xvals, gamma, beta)
    # the test can tell the two apart ...
    assert np.max(np.abs(naive - rounded)) > 100 * ref.tol(np.float64) * ref.max_abs(xvals)
    # ... and mpsnorm matches the rounded one
    assert_close(y, rounded, np.float64, scale_from=(xvals,))


@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_single_image(dtype, layout):
    rng = np.random.default_rng(560)
    xvals = random_array(rng, logical_shape(layout, SINGLE), dtype)
    y = check_forward(xvals, xvals, dtype, layout, gamma=GAMMA, beta=BETA)
    assert y.shape == xvals.shape
    check_forward(as_memory(xvals, "reversed"), xvals, dtype, layout)


@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_constant_planes_and_one_pixel_planes(dtype):
    """var = 0: Xh = 0 and Y = beta exactly (r = 1/sqrt(eps) is finite)."""
    x = np.full((2, 3, 4, 5), 2.5, dtype)
    x[1, 1] = -7.0
    y = check_forward(x, x, dtype, gamma=GAMMA, beta=BETA)
    expected = np.broadcast_to(np.asarray(BETA, np.float32).astype(np.float64)[None, :, None, None],
                               x.shape)
    atol = {np.float16: 1e-3, np.float32: 1e-6, np.float64: 1e-12}[dtype]
    np.testing.assert_allclose(np.asarray(y, np.float64), expected, rtol=0, atol=atol)
    rng = np.random.default_rng(561)
    x1 = random_array(rng, (4, 3, 1, 1), dtype)
    check_forward(x1, x1, dtype, gamma=GAMMA, beta=BETA)


@pytest.mark.parametrize("layout", ref.LAYOUTS)
def test_large_mean_float32(layout):
    """Planes of 1e4 + N(0, 1) noise: the naive float32 E[x^2] - E[x]^2 is garbage here."""
    rng = np.random.default_rng(562)
    means = np.array([1e4, -2.5e4, 3e4])[None, :, None, None]
    x = (means + rng.standard_normal((2, 3, 16, 16))).astype(np.float32)
    xvals = ref.from_nchw(x, layout)
    check_forward(xvals, xvals, np.float32, layout)
    check_forward(xvals, xvals, np.float32, layout, gamma=GAMMA, beta=BETA)


def test_large_mean_float64():
    rng = np.random.default_rng(563)
    means = np.array([1e8, -3e8, 5e7])[None, :, None, None]
    x = means + rng.standard_normal((2, 3, 16, 16))
    check_forward(x, x, np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_larger_planes(dtype):
    rng = np.random.default_rng(564)
    xvals = random_array(rng, (2, 4, 64, 96), dtype, 0.0, 4.0)
    check_forward(xvals, xvals, dtype)
    xn = ref.from_nchw(xvals, "NHWC")
    check_forward(xn, xn, dtype, "NHWC", gamma=[1, 2, 3, 4], beta=[0, -1, 1, 0.5])


@pytest.mark.parametrize("kind", ["contiguous", "strided", "reversed", "memoryview"])
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_out_argument(dtype, kind):
    rng = np.random.default_rng(565)
    xvals = random_array(rng, SHAPE, dtype)
    if kind == "strided":
        owner = np.full((2, 6, 7, 9), ref.SENTINEL, dtype)
        out = owner[:, 1::2]
        mask = np.zeros(owner.shape, bool)
        mask[:, 1::2] = True
    else:
        owner = np.full(SHAPE, ref.SENTINEL, dtype)
        mask = np.ones(SHAPE, bool)
        out = {"contiguous": owner, "reversed": owner[:, ::-1, ::-1],
               "memoryview": memoryview(owner)}[kind]
    inorm = mpsnorm.InstanceNormalization(3, gamma=GAMMA, beta=BETA)
    assert inorm(xvals, out=out) is out
    assert_close(np.asarray(out), ref.inorm_forward(xvals, GAMMA, BETA), dtype,
                 scale_from=(xvals,), what="out=")
    assert np.all(owner[~mask] == ref.SENTINEL)


@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("nchw", [(0, 3, 7, 9), (2, 3, 0, 9), (2, 3, 7, 0)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_zero_size(dtype, nchw, layout):
    shape = ref.layout_shape(nchw, layout)
    x = np.zeros(shape, dtype)
    inorm = mpsnorm.InstanceNormalization(3, layout=layout, gamma=GAMMA, beta=BETA)
    y = inorm(x)
    assert isinstance(y, np.ndarray)
    assert y.shape == shape and y.dtype == np.dtype(dtype)
    out = np.zeros(shape, dtype)
    assert inorm(x, out=out) is out


@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_nonfinite_data_propagates(dtype):
    rng = np.random.default_rng(566)
    xvals = random_array(rng, SHAPE, dtype)
    xvals[0, 1, 3, 4] = np.nan
    xvals[1, 2, 0, 0] = np.inf
    y = np.asarray(mpsnorm.InstanceNormalization(3, gamma=GAMMA, beta=BETA)(xvals), np.float64)
    assert not np.isfinite(y[0, 1, 3, 4])
    assert not np.isfinite(y[1, 2, 0, 0])
    for n, c in [(0, 0), (0, 2), (1, 0), (1, 1)]:
        plane = xvals[n:n + 1, c:c + 1]
        exp = ref.inorm_forward(plane, [GAMMA[c]], [BETA[c]])
        assert_close(y[n:n + 1, c:c + 1], exp, dtype, scale_from=(plane,),
                     what="plane %d,%d" % (n, c))


def test_one_channel_many_images():
    rng = np.random.default_rng(567)
    xvals = random_array(rng, (9, 1, 5, 4), np.float32)
    check_forward(xvals, xvals, np.float32, gamma=[2.0], beta=[-1.0])


@pytest.mark.parametrize("hw", [(1, 1), (1, 127), (1, 128), (1, 129), (16, 16), (257, 1),
                                (31, 33), (128, 129)], ids=lambda s: "%dx%d" % s)
@pytest.mark.parametrize("dtype", ref.DTYPES, ids=lambda d: np.dtype(d).name)
def test_plane_sizes_around_block_boundaries(dtype, hw):
    rng = np.random.default_rng(3000 + hw[0] * 1000 + hw[1])
    xvals = random_array(rng, (2, 2, hw[0], hw[1]), dtype, -1.0, 3.0)
    check_forward(xvals, xvals, dtype, gamma=[0.5, -2.0], beta=[1.0, 0.25])
    xn = ref.from_nchw(xvals, "NHWC")
    check_forward(xn, xn, dtype, "NHWC", gamma=[0.5, -2.0], beta=[1.0, 0.25])


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=lambda d: np.dtype(d).name)
def test_large_magnitudes_low_precision(dtype):
    """|x| up to 300 (x^2 overflows float16) and |x| up to 6e4 in float16."""
    rng = np.random.default_rng(3100)
    xvals = random_array(rng, SHAPE, dtype, -300.0, 300.0)
    check_forward(xvals, xvals, dtype, gamma=GAMMA, beta=BETA)
    xvals = random_array(rng, SHAPE, dtype, -6e4, 6e4)
    check_forward(xvals, xvals, dtype, gamma=GAMMA, beta=BETA)
