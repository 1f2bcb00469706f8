"""LCN on channel-interleaved memory (NHWC and other layouts whose channel stride is the
smallest) runs on staged planar copies of bands of rows for groups of channels (or, where
a group's rows would take too much scratch, on the rows in place, strided). The
result must be the planar layout's, bit for bit: every shape against the bands (taller
and shorter than a band, windows taller than the image), channel counts around the group
size, both directions, every dtype, rectangular windows, odd strides, 1 and 2 threads.
The planar results themselves are checked against the float64 reference elsewhere;
a few are checked here too, so that a staging bug shared by both cannot hide."""
import numpy as np
import pytest

import mpsnorm
import reference as ref

# The last shape's rows are too wide to stage for the widest windows: those run strided.
SHAPES = [(1, 2, 5, 7), (2, 3, 40, 33), (1, 9, 70, 16), (1, 17, 130, 12), (1, 8, 3, 200),
          (2, 16, 64, 64), (1, 8, 63, 24), (1, 7, 129, 18), (1, 3, 20, 3000)]
WINDOWS = [(1, 1), (3, 3), (9, 9), (5, 2), (2, 31), (31, 31)]


def planar_and_interleaved(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) + 0.5).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, dy, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), \
        np.ascontiguousarray(dy.transpose(0, 2, 3, 1))


def run(kind, window, x, dy, layout):
    kw, kh = window
    cls = (mpsnorm.LocalContrastNormalizationGradient if kind == "gradient"
           else mpsnorm.LocalContrastNormalization)
    op = cls(kw, kh, alpha=1.0, beta=0.75, p0=0.9, layout=layout, backend="cpu")
    return op(dy, x) if kind == "gradient" else op(x)


@pytest.mark.parametrize("kind", ["forward", "gradient"])
@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: f"{w[0]}x{w[1]}")
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_nhwc_gives_the_bits_of_nchw(kind, window, shape, restore_num_threads):
    x, dy, xh, dyh = planar_and_interleaved(shape, np.float32, seed=sum(shape) + window[0])
    for threads in (1, 2):
        mpsnorm.set_num_threads(threads)
        planar = run(kind, window, x, dy, "NCHW")
        interleaved = run(kind, window, xh, dyh, "NHWC")
        ref.assert_bits_equal(interleaved.transpose(0, 3, 1, 2), planar)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
@pytest.mark.parametrize("kind", ["forward", "gradient"])
def test_other_dtypes(dtype, kind):
    x, dy, xh, dyh = planar_and_interleaved((2, 11, 70, 21), dtype, seed=3)
    planar = run(kind, (9, 9), x, dy, "NCHW")
    interleaved = run(kind, (9, 9), xh, dyh, "NHWC")
    ref.assert_bits_equal(interleaved.transpose(0, 3, 1, 2), planar)


@pytest.mark.parametrize("kind", ["forward", "gradient"])
@pytest.mark.parametrize("view", ["reversed columns", "every other channel",
                                  "strided output"])
def test_odd_interleaved_strides(kind, view):
    """Channel-innermost views that are not plain NHWC arrays: columns reversed (a negative
    column stride), channels at stride 2, and an output that is itself a strided view."""
    shape = (2, 10, 66, 19)
    x, dy, xh, dyh = planar_and_interleaved(shape, np.float32, seed=5)
    out = None
    if view == "reversed columns":
        xh, dyh = xh[:, :, ::-1, :], dyh[:, :, ::-1, :]
        x, dy = x[:, :, :, ::-1], dy[:, :, :, ::-1]
    elif view == "every other channel":
        wide = np.zeros(xh.shape[:3] + (2 * xh.shape[3],), np.float32)
        wide[..., ::2] = xh
        wide_dy = np.zeros_like(wide)
        wide_dy[..., ::2] = dyh
        xh, dyh = wide[..., ::2], wide_dy[..., ::2]
    else:
        out = np.full(xh.shape[:3] + (2 * xh.shape[3],), ref.SENTINEL, np.float32)
    cls = (mpsnorm.LocalContrastNormalizationGradient if kind == "gradient"
           else mpsnorm.LocalContrastNormalization)
    args = (9, 7)
    planar_op = cls(*args, alpha=1.0, backend="cpu")
    op = cls(*args, alpha=1.0, layout="NHWC", backend="cpu")
    planar = planar_op(dy, x) if kind == "gradient" else planar_op(x)
    kw = {} if out is None else {"out": out[..., ::2]}
    interleaved = op(dyh, xh, **kw) if kind == "gradient" else op(xh, **kw)
    ref.assert_bits_equal(interleaved.transpose(0, 3, 1, 2), planar)
    if out is not None:
        assert np.all(out[..., 1::2] == np.float32(ref.SENTINEL)), "wrote between elements"


@pytest.mark.parametrize("kind", ["forward", "gradient"])
def test_interleaved_against_the_float64_reference(kind):
    shape = (1, 9, 75, 13)
    x, dy, xh, dyh = planar_and_interleaved(shape, np.float32, seed=11)
    params = dict(alpha=1.0, beta=0.75, delta=1 / 1024, p0=0.9, pm=0.0, ps=1.0)
    got = run(kind, (5, 9), xh, dyh, "NHWC").transpose(0, 3, 1, 2)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    if kind == "gradient":
        expected = ref.lcn_gradient(dy64, x64, 5, 9, **params)
    else:
        expected = ref.lcn_forward(x64, 5, 9, **params)
    ref.assert_close(got, expected, np.float32)
