"""The Metal backend on a Mac with a GPU: every kernel x dtype x layout against
the CPU backend and the float64 reference, within docs/SPEC.md's tolerances, plus
the CPU fallback of what MPS cannot do.

Runs only where mpsnorm.backends() contains "metal"; elsewhere every test is
skipped with the reason. Set MPSNORM_REQUIRE_METAL=1 to turn that skip into a
failure (on a machine that must have Metal). Whether a hosted CI runner exposes
a GPU that MPS supports is the runner's affair: these tests run where it does.
On Linux, tests/test_metal_fake.py runs this file against the fake Metal/MPS.
"""

import os
import threading

import numpy as np
import pytest

import mpsnorm
import reference as ref
from reference import as_memory, assert_close, random_array

BACKENDS = mpsnorm.backends()
HAVE_METAL = "metal" in BACKENDS


@pytest.fixture(autouse=True)
def metal_required():
    if HAVE_METAL:
        return
    reason = "no Metal backend here: mpsnorm.backends() == %r" % (BACKENDS,)
    if os.environ.get("MPSNORM_REQUIRE_METAL") == "1":
        pytest.fail("MPSNORM_REQUIRE_METAL=1 but " + reason)
    pytest.skip(reason)


DTYPES = (np.float32, np.float16)
SHAPE = (2, 5, 9, 11)  # N, C, H, W: C = 5 needs two MPS texture slices
LARGE_SHAPE = (2, 8, 96, 96)  # 288 KiB of float32: backend="auto" sends it to Metal
MEMORIES = ("contiguous", "strided", "reversed")  # zero-copy and staged paths
LCN_WINDOWS = (1, 2, 3, 4, 5, 8)
LCN_PARAMS = {
    "mps_defaults": {},
    "all_six": dict(alpha=0.7, beta=0.75, delta=0.05, p0=0.8, pm=0.1, ps=1.3),
}


def dtype_id(dtype):
    return np.dtype(dtype).name


def logical(layout, shape=SHAPE):
    return ref.layout_shape(shape, layout, 4)


def assert_matches(got_metal, got_cpu, expected, dtype, scale_from, what):
    """Metal within the docs/SPEC.md tolerance of the float64 reference and of the CPU backend."""
    assert got_metal.dtype == got_cpu.dtype, what
    assert_close(got_metal, expected, dtype, scale_from=scale_from, what=what + " vs float64")
    assert_close(got_metal, got_cpu.astype(np.float64), dtype, scale_from=scale_from,
                 what=what + " vs cpu")


# ---- local contrast normalization --------------------------------------------

@pytest.mark.parametrize("pname", sorted(LCN_PARAMS))
@pytest.mark.parametrize("k", LCN_WINDOWS)
@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_lcn_forward(dtype, layout, k, pname):
    params = LCN_PARAMS[pname]
    rng = np.random.default_rng(11 + k)
    x = random_array(rng, logical(layout), dtype)
    metal = mpsnorm.LocalContrastNormalization(k, k, layout=layout, backend="metal", **params)
    cpu = mpsnorm.LocalContrastNormalization(k, k, layout=layout, backend="cpu", **params)
    expected = ref.lcn_forward(x, k, k, layout=layout, **params)
    y_cpu = cpu(x)
    for memory in MEMORIES:
        y = metal(as_memory(x, memory))
        assert metal.last_backend == "metal"
        assert_matches(y, y_cpu, expected, dtype, (x,), "LCN %dx%d %s %s" % (k, k, layout, memory))


@pytest.mark.parametrize("pname", sorted(LCN_PARAMS))
@pytest.mark.parametrize("k", LCN_WINDOWS)
@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_lcn_gradient(dtype, layout, k, pname):
    params = LCN_PARAMS[pname]
    rng = np.random.default_rng(23 + k)
    x = random_array(rng, logical(layout), dtype)
    dy = random_array(rng, logical(layout), dtype)
    metal = mpsnorm.LocalContrastNormalizationGradient(k, k, layout=layout, backend="metal",
                                                       **params)
    cpu = mpsnorm.LocalContrastNormalizationGradient(k, k, layout=layout, backend="cpu", **params)
    expected = ref.lcn_gradient(dy, x, k, k, layout=layout, **params)
    dx_cpu = cpu(dy, x)
    for memory in MEMORIES:
        dx = metal(as_memory(dy, memory), as_memory(x, memory))
        assert metal.last_backend == "metal"
        assert_matches(dx, dx_cpu, expected, dtype, (dy,),
                       "LCN gradient %dx%d %s %s" % (k, k, layout, memory))


# ---- instance normalization --------------------------------------------------

GAMMA = [1.5, -0.75, 0.3, 2.0, 0.5]
BETA = [0.25, -1.0, 0.0, 0.5, 3.0]


@pytest.mark.parametrize("epsilon", [1e-5, 1e-2])
@pytest.mark.parametrize("affine", [False, True], ids=["default_affine", "gamma_beta"])
@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_instance_norm_forward(dtype, layout, affine, epsilon):
    gamma, beta = (GAMMA, BETA) if affine else (None, None)
    rng = np.random.default_rng(5)
    x = random_array(rng, logical(layout), dtype, -2.0, 3.0)
    c = SHAPE[1]
    metal = mpsnorm.InstanceNormalization(c, gamma=gamma, beta=beta, epsilon=epsilon,
                                          layout=layout, backend="metal")
    cpu = mpsnorm.InstanceNormalization(c, gamma=gamma, beta=beta, epsilon=epsilon,
                                        layout=layout, backend="cpu")
    expected = ref.inorm_forward(x, gamma, beta, epsilon=epsilon, layout=layout)
    y_cpu = cpu(x)
    for memory in MEMORIES:
        y = metal(as_memory(x, memory))
        assert metal.last_backend == "metal"
        assert_matches(y, y_cpu, expected, dtype, (x,),
                       "instance norm %s %s" % (layout, memory))


@pytest.mark.parametrize("epsilon", [1e-5, 1e-2])
@pytest.mark.parametrize("affine", [False, True], ids=["default_gamma", "gamma"])
@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_instance_norm_gradient(dtype, layout, affine, epsilon):
    gamma = GAMMA if affine else None
    rng = np.random.default_rng(9)
    x = random_array(rng, logical(layout), dtype, -2.0, 3.0)
    dy = random_array(rng, logical(layout), dtype)
    c = SHAPE[1]
    metal = mpsnorm.InstanceNormalizationGradient(c, gamma=gamma, epsilon=epsilon,
                                                  layout=layout, backend="metal")
    cpu = mpsnorm.InstanceNormalizationGradient(c, gamma=gamma, epsilon=epsilon, layout=layout,
                                                backend="cpu")
    edx, edgamma, edbeta = ref.inorm_gradient(dy, x, gamma, epsilon=epsilon, layout=layout)
    dx_cpu, dgamma_cpu, dbeta_cpu = cpu(dy, x)
    for memory in MEMORIES:
        dx, dgamma, dbeta = metal(as_memory(dy, memory), as_memory(x, memory))
        assert metal.last_backend == "metal"
        what = "instance norm gradient %s %s" % (layout, memory)
        assert dgamma.dtype == np.float32 and dbeta.dtype == np.float32
        assert_matches(dx, dx_cpu, edx, dtype, (dy,), what + " dx")
        assert_matches(dgamma, dgamma_cpu, edgamma, dtype, (dy,), what + " dgamma")
        assert_matches(dbeta, dbeta_cpu, edbeta, dtype, (dy,), what + " dbeta")


# ---- cached kernels: parameters change between calls --------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_parameters_change_between_calls(dtype):
    rng = np.random.default_rng(3)
    x = random_array(rng, SHAPE, dtype)
    lcn = mpsnorm.LocalContrastNormalization(3, backend="metal", alpha=1.0)
    for alpha, beta in ((1.0, 0.5), (0.25, 0.75), (2.0, 1.0)):
        lcn.alpha, lcn.beta = alpha, beta
        expected = ref.lcn_forward(x, 3, 3, alpha=alpha, beta=beta)
        assert_close(lcn(x), expected, dtype, scale_from=(x,), what="LCN alpha %g" % alpha)
    inorm = mpsnorm.InstanceNormalization(SHAPE[1], backend="metal")
    for gamma, epsilon in ((None, 1e-5), (GAMMA, 1e-5), (GAMMA[::-1], 1e-2), (None, 1e-3)):
        inorm.gamma = gamma
        inorm.epsilon = epsilon
        expected = ref.inorm_forward(x, gamma, None, epsilon=epsilon)
        assert_close(inorm(x), expected, dtype, scale_from=(x,),
                     what="instance norm gamma %r eps %g" % (gamma, epsilon))


def test_kernel_sizes_change_between_calls():
    rng = np.random.default_rng(4)
    x = random_array(rng, SHAPE, np.float32)
    for k in (3, 5, 3, 1):
        lcn = mpsnorm.LocalContrastNormalization(k, backend="metal", alpha=1.0)
        assert_close(lcn(x), ref.lcn_forward(x, k, k, alpha=1.0), np.float32, scale_from=(x,),
                     what="LCN %dx%d" % (k, k))


def test_threads_share_one_object():
    rng = np.random.default_rng(8)
    inputs = [random_array(rng, SHAPE, np.float32) for _ in range(8)]
    lcn = mpsnorm.LocalContrastNormalizationGradient(5, backend="metal", alpha=1.0)
    expected = [lcn(dy, dy[::-1].copy()) for dy in inputs]
    results = [None] * len(inputs)

    def work(i):
        for _ in range(3):
            results[i] = lcn(inputs[i], inputs[i][::-1].copy())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        ref.assert_bits_equal(got, want, "threaded Metal result")


# ---- what MPS cannot do --------------------------------------------------------

def test_auto_falls_back_to_cpu_for_unequal_kernel():
    rng = np.random.default_rng(6)
    x = random_array(rng, SHAPE, np.float32)
    lcn = mpsnorm.LocalContrastNormalization(3, 5, backend="auto", alpha=1.0)
    assert lcn.backend == "metal"
    y = lcn(x)
    assert lcn.last_backend == "cpu"
    assert_close(y, ref.lcn_forward(x, 3, 5, alpha=1.0), np.float32, scale_from=(x,),
                 what="LCN 3x5 fallback")
    square = mpsnorm.LocalContrastNormalization(3, 3, backend="auto", alpha=1.0)
    square(np.zeros(LARGE_SHAPE, np.float32))
    assert square.last_backend == "metal"


def small_call_bytes():
    """The size below which backend="auto" keeps a call on the CPU (README, Metal)."""
    return int(os.environ.get("MPSNORM_METAL_MIN_CALL_BYTES") or 256 * 1024)


def test_auto_keeps_small_calls_on_the_cpu():
    limit = small_call_bytes()
    if limit == 0:
        pytest.skip("MPSNORM_METAL_MIN_CALL_BYTES=0 sends every call to Metal")
    rng = np.random.default_rng(8)
    lcn = mpsnorm.LocalContrastNormalization(3, backend="auto")
    width = 128  # float32 rows of 512 bytes
    below = random_array(rng, (1, 1, max(1, (limit - 1) // 4 // width), width), np.float32)
    if below.nbytes < limit:
        lcn(below)
        assert lcn.last_backend == "cpu"
    at = random_array(rng, (1, 1, -(-limit // (4 * width)), width), np.float32)
    assert_close(lcn(at), ref.lcn_forward(at, 3, 3), np.float32, scale_from=(at,),
                 what="LCN at the small-call bound")
    assert lcn.last_backend == "metal"


def test_auto_falls_back_to_cpu_for_float64():
    rng = np.random.default_rng(7)
    x = random_array(rng, SHAPE, np.float64)
    inorm = mpsnorm.InstanceNormalization(SHAPE[1], backend="auto")
    y = inorm(x)
    assert inorm.last_backend == "cpu"
    assert_close(y, ref.inorm_forward(x), np.float64, scale_from=(x,), what="float64 fallback")


def test_explicit_metal_refuses_unequal_kernel():
    x = np.zeros(SHAPE, dtype=np.float32)
    lcn = mpsnorm.LocalContrastNormalization(3, 5, backend="metal")
    with pytest.raises(ValueError, match="kernelWidth must be equal to kernelHeight"):
        lcn(x)
    grad = mpsnorm.LocalContrastNormalizationGradient(2, 4, backend="metal")
    with pytest.raises(ValueError):
        grad(x, x)


def test_explicit_metal_refuses_float64():
    x = np.zeros(SHAPE, dtype=np.float64)
    with pytest.raises(ValueError, match="float64"):
        mpsnorm.InstanceNormalization(SHAPE[1], backend="metal")(x)
