"""Gradient kernels against finite differences of the forward kernels (float64).

Also checks the reference's own gradient formulas (docs/SPEC.md) against brute-force
Jacobians built independently of them: an explicit window-membership matrix, and
complex-step differentiation of the reference forward.
"""

import itertools

import numpy as np
import pytest

import reference as ref

LCN_CASES = [
    # (nchw shape, (kw, kh), params)
    ((1, 1, 5, 6), (3, 3), {}),
    ((2, 3, 7, 9), (3, 3), dict(alpha=0.7, beta=0.75, delta=0.05, p0=0.8, pm=0.1, ps=1.3)),
    ((2, 3, 7, 9), (4, 4), dict(alpha=1.0)),
    ((1, 2, 8, 5), (2, 5), dict(alpha=1.0, beta=1.0, delta=0.02)),
    ((1, 2, 6, 7), (5, 2), dict(alpha=1.0, beta=0.3, delta=0.01, p0=0.5)),
    ((2, 1, 4, 9), (1, 1), dict(alpha=0.9, beta=0.6, p0=0.25, ps=-1.2)),
    ((1, 2, 6, 6), (9, 9), dict(alpha=2.0, beta=0.5, delta=0.1)),
    ((1, 1, 7, 3), (8, 1), dict(alpha=0.5, beta=2.0, delta=0.3)),
]


def _case_id(case):
    shape, (kw, kh), params = case
    return "%s-%dx%d-%s" % ("x".join(map(str, shape)), kw, kh,
                            "_".join("%s%g" % kv for kv in sorted(params.items())) or "defaults")


def _mpsnorm():
    import mpsnorm
    return mpsnorm


def _directional_fd(f, x, h, dy, eps):
    """Central difference of <dy, f(x)> along h, with a Richardson step (error O(eps^4))."""
    def d(e):
        return (np.sum(dy * f(x + e * h)) - np.sum(dy * f(x - e * h))) / (2 * e)
    d1, d2 = d(eps), d(eps / 2)
    return (4 * d2 - d1) / 3


def _scale_of_sum(f, x, h, dy, eps):
    """Size of the terms of the directional derivative sum (no cancellation)."""
    jh = (f(x + eps * h) - f(x - eps * h)) / (2 * eps)
    return float(np.sum(np.abs(dy * jh)))


# -- mpsnorm LCN: gradient kernel vs finite differences of the forward kernel ---------------

@pytest.mark.parametrize("case", LCN_CASES, ids=_case_id)
def test_lcn_gradient_directional_fd(case):
    mpsnorm = _mpsnorm()
    shape, (kw, kh), params = case
    rng = np.random.default_rng(100)
    x = rng.uniform(-1, 1, shape)
    dy = rng.standard_normal(shape)
    fwd = mpsnorm.LocalContrastNormalization(kw, kh, **params)
    grad = mpsnorm.LocalContrastNormalizationGradient(kw, kh, **params)
    dx = grad(dy, x)
    for _ in range(4):
        h = rng.standard_normal(shape)
        fd = _directional_fd(fwd, x, h, dy, 1e-4)
        an = float(np.sum(dx * h))
        scale = max(abs(an), _scale_of_sum(fwd, x, h, dy, 1e-4))
        assert abs(fd - an) <= 1e-7 * scale, (fd, an, scale)


@pytest.mark.parametrize("layout", ref.LAYOUTS)
@pytest.mark.parametrize("window", [(3, 3), (4, 2), (2, 3)], ids=lambda w: "%dx%d" % w)
def test_lcn_gradient_per_element_fd(window, layout):
    mpsnorm = _mpsnorm()
    kw, kh = window
    params = dict(alpha=0.8, beta=0.7, delta=0.04, p0=0.9, pm=-0.1, ps=1.1)
    nchw = (2, 2, 4, 5)
    shape = ref.layout_shape(nchw, layout)
    rng = np.random.default_rng(101)
    x = rng.uniform(-1, 1, shape)
    dy = rng.standard_normal(shape)
    fwd = mpsnorm.LocalContrastNormalization(kw, kh, layout=layout, **params)
    dx = mpsnorm.LocalContrastNormalizationGradient(kw, kh, layout=layout, **params)(dy, x)
    fd = np.empty(shape)
    for idx in np.ndindex(*shape):
        e = np.zeros(shape)
        e[idx] = 1.0
        fd[idx] = _directional_fd(fwd, x, e, dy, 1e-4)
    scale = max(np.max(np.abs(fd)), np.max(np.abs(dy)))
    np.testing.assert_allclose(dx, fd, rtol=0, atol=1e-7 * scale)


def test_lcn_gradient_single_image_fd():
    mpsnorm = _mpsnorm()
    params = dict(alpha=1.0, beta=0.75, delta=0.1)
    rng = np.random.default_rng(102)
    x = rng.uniform(-1, 1, (3, 6, 5))
    dy = rng.standard_normal(x.shape)
    fwd = mpsnorm.LocalContrastNormalization(3, 4, **params)
    dx = mpsnorm.LocalContrastNormalizationGradient(3, 4, **params)(dy, x)
    for _ in range(3):
        h = rng.standard_normal(x.shape)
        fd = _directional_fd(fwd, x, h, dy, 1e-4)
        an = float(np.sum(dx * h))
        assert abs(fd - an) <= 1e-7 * max(abs(an), _scale_of_sum(fwd, x, h, dy, 1e-4))


# -- mpsnorm instance norm ---------------------------------------------------------------

INORM_CASES = [
    ((2, 3, 7, 9), [1.5, -0.75, 0.25], [0.5, 0.0, -2.0], 1e-5),
    ((1, 2, 4, 4), None, None, 1e-5),
    ((3, 1, 2, 5), [2.0], [1.0], 0.5),
    ((1, 4, 6, 1), [1.0, 0.5, -1.0, 3.0], [0.0, 0.25, 0.5, 0.75], 0.0),
]


@pytest.mark.parametrize("case", INORM_CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_inorm_gradient_directional_fd(case):
    mpsnorm = _mpsnorm()
    shape, gamma, beta, eps = case
    rng = np.random.default_rng(103)
    x = rng.uniform(-2, 3, shape)
    dy = rng.standard_normal(shape)
    fwd = mpsnorm.InstanceNormalization(shape[1], gamma=gamma, beta=beta, epsilon=eps)
    dx, _, _ = mpsnorm.InstanceNormalizationGradient(shape[1], gamma=gamma, epsilon=eps)(dy, x)
    for _ in range(4):
        h = rng.standard_normal(shape)
        fd = _directional_fd(fwd, x, h, dy, 1e-4)
        an = float(np.sum(dx * h))
        scale = max(abs(an), _scale_of_sum(fwd, x, h, dy, 1e-4))
        assert abs(fd - an) <= 1e-7 * scale, (fd, an, scale)


@pytest.mark.parametrize("layout", ref.LAYOUTS)
def test_inorm_gradient_per_element_fd(layout):
    mpsnorm = _mpsnorm()
    gamma = [1.25, -0.5]
    shape = ref.layout_shape((2, 2, 3, 4), layout)
    rng = np.random.default_rng(104)
    x = rng.uniform(-1, 2, shape)
    dy = rng.standard_normal(shape)
    fwd = mpsnorm.InstanceNormalization(2, gamma=gamma, beta=[0.5, 1.0], layout=layout)
    dx, _, _ = mpsnorm.InstanceNormalizationGradient(2, gamma=gamma, layout=layout)(dy, x)
    fd = np.empty(shape)
    for idx in np.ndindex(*shape):
        e = np.zeros(shape)
        e[idx] = 1.0
        fd[idx] = _directional_fd(fwd, x, e, dy, 1e-4)
    scale = max(np.max(np.abs(fd)), np.max(np.abs(dy)))
    np.testing.assert_allclose(dx, fd, rtol=0, atol=1e-7 * scale)


@pytest.mark.parametrize("case", INORM_CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_inorm_dgamma_dbeta_fd(case):
    """d<dY, Y>/dgamma[c] and /dbeta[c] by central differences in gamma/beta.

    Y is linear in gamma and beta, and the steps (1/4) and values are exact in
    float32, so the differences are exact up to rounding."""
    mpsnorm = _mpsnorm()
    shape, gamma, beta, eps = case
    c = shape[1]
    gamma = [1.0] * c if gamma is None else list(gamma)
    beta = [0.0] * c if beta is None else list(beta)
    rng = np.random.default_rng(105)
    x = rng.uniform(-2, 3, shape)
    dy = rng.standard_normal(shape)
    _, dgamma, dbeta = mpsnorm.InstanceNormalizationGradient(c, gamma=gamma, epsilon=eps)(dy, x)
    fwd = mpsnorm.InstanceNormalization(c, gamma=gamma, beta=beta, epsilon=eps)
    step = 0.25
    for ch in range(c):
        for which, got in (("gamma", dgamma), ("beta", dbeta)):
            vals = {"gamma": list(gamma), "beta": list(beta)}
            plus = list(vals[which])
            minus = list(vals[which])
            plus[ch] += step
            minus[ch] -= step
            setattr(fwd, which, plus)
            yp = fwd(x)
            setattr(fwd, which, minus)
            ym = fwd(x)
            setattr(fwd, which, vals[which])
            fd = (np.sum(dy * yp) - np.sum(dy * ym)) / (2 * step)
            scale = max(abs(fd), float(np.sum(np.abs(dy))))
            assert abs(got[ch] - fd) <= 1e-10 * scale, (which, ch, got[ch], fd)


# -- the reference's gradient formulas vs brute-force Jacobians ------------------------------

def _window_matrix(h, w, kw, kh):
    """B[p, q] = 1 if pixel q (inside the plane) lies in the window of pixel p."""
    P = h * w
    B = np.zeros((P, P))
    for j, i in itertools.product(range(h), range(w)):
        for jj in range(j - kh // 2, j + (kh - 1) // 2 + 1):
            for ii in range(i - kw // 2, i + (kw - 1) // 2 + 1):
                if 0 <= jj < h and 0 <= ii < w:
                    B[j * w + i, jj * w + ii] = 1.0
    return B


def _explicit_jacobian(plane, kw, kh, p):
    """dY(p)/dX(q) for one plane, derived by hand from the forward with the matrix B."""
    h, w = plane.shape
    n = kw * kh
    x = plane.reshape(-1)
    B = _window_matrix(h, w, kw, kh)
    M = B @ x / n
    VAR = B @ (x * x) / n - M * M
    T = p["delta"] + p["alpha"] * VAR
    A = x - p["p0"] * M
    D = T ** (-p["beta"])
    dM = B / n                                            # dM(p)/dX(q)
    dVAR = (2.0 / n) * B * x[None, :] - 2.0 * M[:, None] * dM
    dA = np.eye(x.size) - p["p0"] * dM
    dD = (-p["beta"]) * (T ** (-p["beta"] - 1))[:, None] * p["alpha"] * dVAR
    return p["ps"] * (D[:, None] * dA + A[:, None] * dD)


def _complex_step_jacobian(f, x, hstep=1e-30):
    """J[:, q] = Im f(x + i*h*e_q) / h: derivatives exact to rounding."""
    flat = x.reshape(-1)
    cols = []
    for q in range(flat.size):
        z = flat.astype(np.complex128)
        z[q] += 1j * hstep
        cols.append(np.imag(f(z.reshape(x.shape))).reshape(-1) / hstep)
    return np.stack(cols, axis=1)


REF_WINDOWS = [(1, 1), (2, 2), (3, 3), (4, 4), (2, 5), (5, 2), (3, 4), (7, 9), (4, 1)]
REF_PARAMS = [
    {},
    dict(alpha=1.0),
    dict(alpha=0.7, beta=0.75, delta=0.05, p0=0.8, pm=0.1, ps=1.3),
    dict(alpha=1.5, beta=1.0, delta=0.2, p0=0.3, ps=-0.7),
    dict(alpha=1.0, beta=0.3, delta=0.01),
]


@pytest.mark.parametrize("pidx", range(len(REF_PARAMS)))
@pytest.mark.parametrize("window", REF_WINDOWS, ids=lambda w: "%dx%d" % w)
def test_reference_lcn_gradient_vs_jacobians(window, pidx):
    kw, kh = window
    params = REF_PARAMS[pidx]
    p = ref.lcn_params(**params)
    rng = np.random.default_rng(200 + pidx)
    x = rng.uniform(-1, 1, (1, 2, 4, 5))
    dy = rng.standard_normal(x.shape)
    got = ref.lcn_gradient(dy, x, kw, kh, **params)
    scale = max(ref.max_abs(got), ref.max_abs(dy))
    for c in range(2):
        J = _explicit_jacobian(x[0, c], kw, kh, p)
        bf = (J.T @ dy[0, c].reshape(-1)).reshape(4, 5)
        np.testing.assert_allclose(got[0, c], bf, rtol=0, atol=1e-12 * scale)

    def f(z):
        return ref.lcn_core(z, kw, kh, p, clamp=False)[0]

    Jc = _complex_step_jacobian(f, x)
    bf = (Jc.T @ dy.reshape(-1)).reshape(x.shape)
    np.testing.assert_allclose(got, bf, rtol=0, atol=1e-12 * scale)
    # and the explicit Jacobian is the complex-step one (window geometry included)
    for c in range(2):
        J = _explicit_jacobian(x[0, c], kw, kh, p)
        block = Jc[c * 20:(c + 1) * 20, c * 20:(c + 1) * 20]
        np.testing.assert_allclose(J, block, rtol=0, atol=1e-12 * max(1.0, np.max(np.abs(J))))


def test_reference_lcn_gradient_nhwc_and_single_image():
    params = dict(alpha=0.7, beta=0.75, delta=0.05, p0=0.8, pm=0.1, ps=1.3)
    rng = np.random.default_rng(210)
    x = rng.uniform(-1, 1, (2, 4, 5, 3))          # NHWC
    dy = rng.standard_normal(x.shape)
    g = ref.lcn_gradient(dy, x, 3, 2, layout="NHWC", **params)
    g2 = ref.lcn_gradient(dy.transpose(0, 3, 1, 2), x.transpose(0, 3, 1, 2), 3, 2, **params)
    np.testing.assert_array_equal(g, g2.transpose(0, 2, 3, 1))
    g3 = ref.lcn_gradient(dy[1], x[1], 3, 2, layout="NHWC", **params)
    np.testing.assert_array_equal(g3, g[1])


def _inorm_complex(X, gamma, beta, eps):
    mu = X.mean(axis=(2, 3), keepdims=True)
    var = ((X - mu) ** 2).mean(axis=(2, 3), keepdims=True)
    return gamma[None, :, None, None] * (X - mu) * (var + eps) ** -0.5 + beta[None, :, None, None]


@pytest.mark.parametrize("eps", [1e-5, 0.0, 0.5])
def test_reference_inorm_gradient_vs_complex_step(eps):
    rng = np.random.default_rng(220)
    shape = (2, 3, 3, 4)
    x = rng.uniform(-2, 3, shape)
    dy = rng.standard_normal(shape)
    gamma = np.array([1.5, -0.75, 0.25])
    beta = np.array([0.5, 0.0, -2.0])
    e = ref.f32(eps)
    dx, dgamma, dbeta = ref.inorm_gradient(dy, x, gamma, epsilon=eps)
    J = _complex_step_jacobian(lambda z: _inorm_complex(z, gamma, beta, e), x)
    bf = (J.T @ dy.reshape(-1)).reshape(shape)
    scale = max(ref.max_abs(dx), ref.max_abs(dy))
    np.testing.assert_allclose(dx, bf, rtol=0, atol=1e-12 * scale)
    Jg = _complex_step_jacobian(lambda g: _inorm_complex(x.astype(complex), g, beta, e), gamma)
    Jb = _complex_step_jacobian(lambda b: _inorm_complex(x.astype(complex), gamma, b, e), beta)
    np.testing.assert_allclose(dgamma, Jg.T @ dy.reshape(-1), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dbeta, Jb.T @ dy.reshape(-1), rtol=1e-12, atol=1e-12)
    # forward consistency of the reference with the formula written independently here
    np.testing.assert_allclose(ref.inorm_forward(x, gamma, beta, epsilon=eps),
                               _inorm_complex(x, gamma, beta, e).real, rtol=1e-13, atol=1e-13)
