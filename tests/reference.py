"""Independent float64 NumPy reference of the mpsnorm numerical contract (docs/SPEC.md).

Nothing here imports mpsnorm. Every function takes arrays in the caller's logical
layout ("NCHW" batches (N, C, H, W) or single images (C, H, W); "NHWC" batches
(N, H, W, C) or single images (H, W, C)), widens them to float64 (float16/float32
inputs are used exactly as rounded), and returns float64 arrays in the same layout.

Parameters are rounded to float32 first and then widened, as the contract demands.

Local contrast normalization is evaluated with DIRECT window loops: one shifted,
zero-padded copy of the plane per window offset, summed. The gradient uses the
docs/SPEC.md formula, with the adjoint window sum Badj implemented as its own direct loop
over the mirrored window. (tests/test_gradcheck.py checks that formula against an
explicit Jacobian and a complex-step Jacobian on tiny inputs.)

The second half of the file holds small test-data helpers shared by the tests:
tolerance checks and the memory forms (strided, reversed, memoryview, read-only).
"""

import numpy as np

# ---------------------------------------------------------------------------
# Tolerances (docs/SPEC.md "Accuracy contract")

TOL = {
    np.dtype(np.float64): 1e-10,
    np.dtype(np.float32): 1e-4,
    np.dtype(np.float16): 1e-2,
}

DTYPES = (np.float32, np.float16, np.float64)
LAYOUTS = ("NCHW", "NHWC")

MPS_LCN_DEFAULTS = dict(alpha=0.0, beta=0.5, delta=1.0 / 1024.0, p0=1.0, pm=0.0, ps=1.0)
LCN_PARAM_NAMES = ("alpha", "beta", "delta", "p0", "pm", "ps")
INORM_DEFAULT_EPSILON = 1e-5


def tol(dtype):
    return TOL[np.dtype(dtype)]


def f32(value):
    """A parameter value as mpsnorm stores it: rounded to float32, widened back."""
    return float(np.float32(value))


def lcn_params(**overrides):
    """Full LCN parameter dict (MPS defaults + overrides), values rounded to float32."""
    unknown = set(overrides) - set(LCN_PARAM_NAMES)
    if unknown:
        raise TypeError("unknown LCN parameters %r" % sorted(unknown))
    p = dict(MPS_LCN_DEFAULTS)
    p.update(overrides)
    return {k: f32(v) for k, v in p.items()}


# ---------------------------------------------------------------------------
# Layout helpers

def to_nchw(a, layout="NCHW", dtype=np.float64):
    """Logical array in `layout` (3-D single image or 4-D batch) -> 4-D NCHW copy of `dtype`."""
    a = np.array(a, dtype=dtype, copy=True)
    if a.ndim == 3:
        a = a[np.newaxis]
    if a.ndim != 4:
        raise ValueError("expected a 3-D or 4-D array, got shape %r" % (a.shape,))
    if layout == "NHWC":
        a = a.transpose(0, 3, 1, 2)
    elif layout != "NCHW":
        raise ValueError("unknown layout %r" % (layout,))
    return np.ascontiguousarray(a)


def from_nchw(a, layout="NCHW", ndim=4):
    """Inverse of to_nchw: 4-D NCHW -> `layout`, dropping the batch axis if ndim == 3."""
    if layout == "NHWC":
        a = a.transpose(0, 2, 3, 1)
    elif layout != "NCHW":
        raise ValueError("unknown layout %r" % (layout,))
    if ndim == 3:
        if a.shape[0] != 1:
            raise ValueError("cannot drop a batch axis of length %d" % a.shape[0])
        a = a[0]
    return np.ascontiguousarray(a)


def nchw_shape(shape, layout="NCHW"):
    """Logical shape in `layout` -> (N, C, H, W)."""
    shape = tuple(shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if layout == "NHWC":
        n, h, w, c = shape
        return (n, c, h, w)
    return shape


def layout_shape(nchw, layout="NCHW", ndim=4):
    """(N, C, H, W) -> logical shape in `layout` (dropping N for ndim == 3)."""
    n, c, h, w = nchw
    shape = (n, c, h, w) if layout == "NCHW" else (n, h, w, c)
    return shape[1:] if ndim == 3 else shape


# ---------------------------------------------------------------------------
# Window sums by direct loops

def window_extent(k):
    """(a, b): the window of position p covers [p - a, p + b] (one more before p for even k)."""
    return k // 2, (k - 1) // 2


def _shifted(f, dj, di):
    """g[..., j, i] = f[..., j + dj, i + di], zero where that lies outside the plane."""
    h, w = f.shape[-2], f.shape[-1]
    g = np.zeros_like(f)
    if abs(dj) >= h or abs(di) >= w:
        return g
    dst_j = slice(max(0, -dj), h - max(0, dj))
    src_j = slice(max(0, dj), h - max(0, -dj))
    dst_i = slice(max(0, -di), w - max(0, di))
    src_i = slice(max(0, di), w - max(0, -di))
    g[..., dst_j, dst_i] = f[..., src_j, src_i]
    return g


def _offset_range(lo, hi, size):
    """Offsets lo..hi inclusive, without those that only ever read outside a plane of `size`."""
    return range(max(lo, -(size - 1)), min(hi, size - 1) + 1) if size > 0 else range(0)


def box_sum(f, kw, kh):
    """B(F)(j, i) = sum of F over rows [j-ah, j+bh], columns [i-aw, i+bw], zero outside.

    Direct loop over every window offset (offsets that can only hit padding are
    skipped: they add exact zeros)."""
    aw, bw = window_extent(kw)
    ah, bh = window_extent(kh)
    h, w = f.shape[-2], f.shape[-1]
    s = np.zeros_like(f)
    for dj in _offset_range(-ah, bh, h):
        for di in _offset_range(-aw, bw, w):
            s += _shifted(f, dj, di)
    return s


def box_sum_adjoint(f, kw, kh):
    """Badj(F)(q) = sum of F(p) over every pixel p whose window contains q.

    q in [p - a, p + b]  <=>  p in [q - b, q + a]: the mirrored window, again a direct loop."""
    aw, bw = window_extent(kw)
    ah, bh = window_extent(kh)
    h, w = f.shape[-2], f.shape[-1]
    s = np.zeros_like(f)
    for dj in _offset_range(-bh, ah, h):
        for di in _offset_range(-bw, aw, w):
            s += _shifted(f, dj, di)
    return s


# ---------------------------------------------------------------------------
# Local contrast normalization

def lcn_core(X, kw, kh, p, clamp=True):
    """Forward on a 4-D NCHW array (float64, or complex128 for complex-step checks).

    Returns (Y, M, VAR, T). `p` holds already-rounded parameters."""
    n = float(kw) * float(kh)
    M = box_sum(X, kw, kh) / n
    VAR = box_sum(X * X, kw, kh) / n - M * M
    if clamp:
        VAR = np.maximum(VAR, 0.0)
    T = p["delta"] + p["alpha"] * VAR
    Y = p["pm"] + p["ps"] * (X - p["p0"] * M) * T ** (-p["beta"])
    return Y, M, VAR, T


def lcn_forward(x, kernel_width, kernel_height=None, layout="NCHW", **params):
    """float64 reference of LocalContrastNormalization."""
    kh = kernel_width if kernel_height is None else kernel_height
    p = lcn_params(**params)
    ndim = np.ndim(x)
    X = to_nchw(x, layout)
    Y = lcn_core(X, kernel_width, kh, p)[0]
    return from_nchw(Y, layout, ndim)


def lcn_gradient(dy, x, kernel_width, kernel_height=None, layout="NCHW", **params):
    """float64 reference of LocalContrastNormalizationGradient (docs/SPEC.md formula).

        D = T^(-beta); A = X - p0*M; U = dY*A*D/T
        dX = ps*(dY*D - (p0/N)*Badj(dY*D) - (2*alpha*beta/N)*(X*Badj(U) - Badj(U*M)))
    """
    kw = kernel_width
    kh = kernel_width if kernel_height is None else kernel_height
    p = lcn_params(**params)
    ndim = np.ndim(x)
    X = to_nchw(x, layout)
    dY = to_nchw(dy, layout)
    if X.shape != dY.shape:
        raise ValueError("dy/x shapes differ")
    n = float(kw) * float(kh)
    _, M, _, T = lcn_core(X, kw, kh, p)
    D = T ** (-p["beta"])
    A = X - p["p0"] * M
    U = dY * A * D / T
    dYD = dY * D
    dX = p["ps"] * (
        dYD
        - (p["p0"] / n) * box_sum_adjoint(dYD, kw, kh)
        - (2.0 * p["alpha"] * p["beta"] / n)
        * (X * box_sum_adjoint(U, kw, kh) - box_sum_adjoint(U * M, kw, kh))
    )
    return from_nchw(dX, layout, ndim)


# ---------------------------------------------------------------------------
# Instance normalization

def _channel_vector(values, c, default):
    if values is None:
        return np.full(c, default, dtype=np.float64)
    v = np.asarray(values, dtype=np.float32).astype(np.float64).reshape(-1)
    if v.shape != (c,):
        raise ValueError("expected %d per-channel values, got %d" % (c, v.size))
    return v


def _plane_stats(X, epsilon):
    """Two-pass (with a correction pass) per-plane mean, population variance, 1/sqrt(var+eps)."""
    mu = X.mean(axis=(2, 3), keepdims=True)
    mu = mu + (X - mu).mean(axis=(2, 3), keepdims=True)
    var = ((X - mu) ** 2).mean(axis=(2, 3), keepdims=True)
    r = 1.0 / np.sqrt(var + f32(epsilon))
    return mu, var, r


def inorm_forward(x, gamma=None, beta=None, epsilon=INORM_DEFAULT_EPSILON, layout="NCHW"):
    """float64 reference of InstanceNormalization."""
    ndim = np.ndim(x)
    X = to_nchw(x, layout)
    c = X.shape[1]
    g = _channel_vector(gamma, c, 1.0)[None, :, None, None]
    b = _channel_vector(beta, c, 0.0)[None, :, None, None]
    if X.size == 0:
        return from_nchw(X.copy(), layout, ndim)
    mu, _, r = _plane_stats(X, epsilon)
    Y = g * ((X - mu) * r) + b
    return from_nchw(Y, layout, ndim)


def inorm_gradient(dy, x, gamma=None, epsilon=INORM_DEFAULT_EPSILON, layout="NCHW"):
    """float64 reference of InstanceNormalizationGradient: returns (dx, dgamma, dbeta).

        dbeta[c]  = sum_{n, pixels} dY
        dgamma[c] = sum_{n, pixels} dY * Xh
        dX        = gamma[c] * r * (dY - mean(dY) - Xh * mean(dY * Xh))
    """
    ndim = np.ndim(x)
    X = to_nchw(x, layout)
    dY = to_nchw(dy, layout)
    if X.shape != dY.shape:
        raise ValueError("dy/x shapes differ")
    c = X.shape[1]
    g = _channel_vector(gamma, c, 1.0)[None, :, None, None]
    if X.size == 0:
        return from_nchw(X.copy(), layout, ndim), np.zeros(c), np.zeros(c)
    mu, _, r = _plane_stats(X, epsilon)
    Xh = (X - mu) * r
    mdy = dY.mean(axis=(2, 3), keepdims=True)
    mdyxh = (dY * Xh).mean(axis=(2, 3), keepdims=True)
    dX = g * r * (dY - mdy - Xh * mdyxh)
    dgamma = (dY * Xh).sum(axis=(0, 2, 3))
    dbeta = dY.sum(axis=(0, 2, 3))
    return from_nchw(dX, layout, ndim), dgamma, dbeta


# ---------------------------------------------------------------------------
# Tolerance check

def max_abs(a):
    a = np.asarray(a, dtype=np.float64)
    return float(np.max(np.abs(a))) if a.size else 0.0


def assert_close(got, ref, dtype, scale_from=(), what="result"):
    """err = |got - ref| <= TOL[dtype] * max(max|ref|, max|s| for s in scale_from), everywhere.

    NaN in got (or ref) fails."""
    got = np.asarray(got).astype(np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, "%s: shape %r, expected %r" % (what, got.shape, ref.shape)
    if ref.size == 0:
        return
    assert np.all(np.isfinite(ref)), "%s: reference is not finite (bad test input)" % what
    scale = max([max_abs(ref)] + [max_abs(s) for s in scale_from])
    bound = tol(dtype) * scale
    err = np.abs(got - ref)
    bad = ~(err <= bound)
    if np.any(bad):
        idx = np.unravel_index(np.argmax(np.where(np.isnan(err), np.inf, err)), err.shape)
        raise AssertionError(
            "%s (%s): %d of %d elements out of tolerance; worst at %r: got %r, expected %r, "
            "err %.3e > bound %.3e (tol %g * scale %.6g)"
            % (what, np.dtype(dtype).name, int(np.count_nonzero(bad)), err.size, idx,
               float(got[idx]), float(ref[idx]), float(err[idx]), bound, tol(dtype), scale))


# ---------------------------------------------------------------------------
# Test data and memory forms

MEMORY_KINDS = ("contiguous", "strided", "reversed", "memoryview", "readonly")
SENTINEL = 7.0


def random_array(rng, shape, dtype, low=-1.0, high=1.0):
    """Uniform random values already rounded to `dtype` (C-contiguous array of `dtype`)."""
    return rng.uniform(low, high, size=shape).astype(dtype)


def as_memory(arr, memory):
    """An object with the same logical content as `arr` in the requested memory form.

    contiguous  C-contiguous numpy array (a copy)
    strided     every-other-element view of a NaN-filled array twice as large per axis
    reversed    negative strides on every axis
    memoryview  memoryview of a C-contiguous copy
    readonly    read-only numpy array
    readonly_memoryview, fortran, strided_memoryview  (extra forms)
    """
    arr = np.asarray(arr)
    nd = arr.ndim
    if memory == "contiguous":
        return np.ascontiguousarray(arr).copy()
    if memory == "strided":
        big = np.full(tuple(2 * s for s in arr.shape), np.nan, dtype=arr.dtype)
        view = big[(slice(None, None, 2),) * nd]
        view[...] = arr
        return view
    if memory == "reversed":
        rev = (slice(None, None, -1),) * nd
        return arr[rev].copy()[rev]
    if memory == "memoryview":
        return memoryview(np.ascontiguousarray(arr).copy())
    if memory == "readonly":
        c = np.ascontiguousarray(arr).copy()
        c.flags.writeable = False
        return c
    if memory == "readonly_memoryview":
        return memoryview(np.ascontiguousarray(arr).copy()).toreadonly()
    if memory == "fortran":
        return np.asfortranarray(arr).copy(order="F")
    if memory == "strided_memoryview":
        return memoryview(as_memory(arr, "strided"))
    raise ValueError("unknown memory kind %r" % (memory,))


def snapshot(obj):
    """A copy of a buffer's logical content (numpy array)."""
    return np.array(np.asarray(obj), copy=True)


def assert_bits_equal(a, b, what="arrays"):
    """Same shape, dtype and bytes (NaN payloads and signed zeros included)."""
    a = np.ascontiguousarray(np.asarray(a))
    b = np.ascontiguousarray(np.asarray(b))
    assert a.shape == b.shape and a.dtype == b.dtype, "%s: %r %s vs %r %s" % (
        what, a.shape, a.dtype, b.shape, b.dtype)
    ua = a.reshape(-1).view(np.uint8).reshape(a.size, a.dtype.itemsize)
    ub = b.reshape(-1).view(np.uint8).reshape(b.size, b.dtype.itemsize)
    diff = np.flatnonzero(np.any(ua != ub, axis=1))
    if diff.size:
        raise AssertionError("%s differ bitwise in %d of %d elements (first at flat index %d)"
                             % (what, diff.size, a.size, int(diff[0])))
