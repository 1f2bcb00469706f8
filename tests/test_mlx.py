"""mpsnorm.mlx: MLX custom functions and nn.Modules whose forward and vjp run mpsnorm's
kernels. Gradients through mx.grad / mx.value_and_grad against central differences of
the float64 reference, for every layer, float32 and float16, both layouts, odd and even
windows; agreement with mlx.nn.InstanceNorm; zero-copy inputs; errors; the training
example and the README's example.

Skipped when MLX is not installed; MPSNORM_REQUIRE_MLX=1 (CI) makes that a failure."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import reference as ref

if os.environ.get("MPSNORM_REQUIRE_MLX") == "1":
    import mlx.core as mx
else:
    mx = pytest.importorskip("mlx.core", reason='MLX is not installed (pip install "mlx[cpu]" '
                                                "on Linux); MPSNORM_REQUIRE_MLX=1 makes this "
                                                "fail")

import mlx.nn as nn  # noqa: E402

import mpsnorm  # noqa: E402
import mpsnorm.mlx as mm  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLX_DTYPES = {"float32": mx.float32, "float16": mx.float16, "float64": mx.float64}


def random(shape, dtype="float32", seed=0, low=-1.0, high=1.0):
    """(NumPy array rounded to dtype, the same values as an evaluated MLX array)."""
    values = ref.random_array(np.random.default_rng(seed), shape, dtype, low, high)
    array = mx.array(values, dtype=MLX_DTYPES[dtype])
    mx.eval(array)
    return values, array


def central_differences(loss, value, h=1e-6):
    """d loss / d value by central differences, element by element, in float64. With the
    float64 reference and values of order 1 this is accurate to about 1e-8 relative, far
    inside the float32 and float16 tolerances it is held to."""
    point = np.array(value, dtype=np.float64)
    flat = point.reshape(-1)
    gradient = np.empty(flat.size)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + h
        up = loss(point)
        flat[i] = saved - h
        down = loss(point)
        flat[i] = saved
        gradient[i] = (up - down) / (2 * h)
    return gradient.reshape(point.shape)


def shape_in(layout, n=2, c=3, h=5, w=6):
    return (n, h, w, c) if layout == "NHWC" else (n, c, h, w)


def channel_axis_shape(layout):
    return (-1,) if layout == "NHWC" else (-1, 1, 1)


def test_import_mpsnorm_does_not_import_mlx():
    code = "import sys, mpsnorm; assert 'mlx' not in sys.modules, 'mlx imported'; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# -- gradients against finite differences ----------------------------------------------------

LCN_CASES = [
    dict(kernel_size=3, alpha=1.0),                                              # odd
    dict(kernel_size=(4, 2), alpha=1.0, beta=0.75, p0=0.8, pm=0.1, ps=1.5),      # even
    dict(kernel_size=(3, 4), alpha=2.0, beta=0.5, delta=0.5),                    # odd x even
    dict(kernel_size=2),                                                         # MPS defaults
]


def lcn_case_id(case):
    return str(case["kernel_size"]).replace(" ", "")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", LCN_CASES, ids=lcn_case_id)
def test_lcn_gradient_matches_finite_differences(case, layout, dtype):
    params = {k: v for k, v in case.items() if k != "kernel_size"}
    size = case["kernel_size"]
    height, width = (size, size) if isinstance(size, int) else size
    x64, x = random(shape_in(layout), dtype, seed=1)
    dy64, dy = random(shape_in(layout), dtype, seed=2)
    layer = mm.LocalContrastNormalization(size, layout=layout, **params)

    def reference_loss(point):
        return float(np.sum(ref.lcn_forward(point, width, height, layout=layout, **params)
                            * dy64))

    expected = central_differences(reference_loss, x64)
    by_layer = mx.grad(lambda t: (layer(t) * dy).sum())(x)
    value, by_function = mx.value_and_grad(
        lambda t: (mm.local_contrast_normalization(t, size, layout=layout, **params)
                   * dy).sum())(x)
    for got in (by_layer, by_function):
        assert got.dtype == MLX_DTYPES[dtype] and got.shape == x.shape
        ref.assert_close(np.asarray(got), expected, dtype, scale_from=(dy64,), what="dx")
    y = layer(x)
    assert y.dtype == MLX_DTYPES[dtype]
    ref.assert_close(np.asarray(y), ref.lcn_forward(x64, width, height, layout=layout, **params),
                     dtype, scale_from=(x64,), what="y")


def affine_loss(x64, dy64, layout, epsilon=1e-5):
    """float64 loss sum((w * xhat + b) * dy) of x, w, b, with xhat from the reference:
    weight and bias stay unrounded, so their differences are not lost to float32."""
    shape = channel_axis_shape(layout)

    def loss(x, w, b):
        xhat = ref.inorm_forward(x, epsilon=epsilon, layout=layout)
        return float(np.sum((w.reshape(shape) * xhat + b.reshape(shape)) * dy64))

    return loss


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_instance_norm_gradients_match_finite_differences(layout, dtype):
    x64, x = random(shape_in(layout, h=4, w=5), dtype, seed=3)
    dy64, dy = random(x64.shape, dtype, seed=4)
    w64, weight = random((3,), "float32", seed=5, low=0.5, high=1.5)
    b64, bias = random((3,), "float32", seed=6)
    loss = affine_loss(x64, dy64, layout)
    expected = (central_differences(lambda p: loss(p, w64, b64), x64),
                central_differences(lambda p: loss(x64, p, b64), w64),
                central_differences(lambda p: loss(x64, w64, p), b64))

    layer = mm.InstanceNormalization(3, layout=layout)
    layer.weight, layer.bias = weight, bias
    _, by_layer = nn.value_and_grad(layer, lambda model, t: (model(t) * dy).sum())(layer, x)
    dx_layer = mx.grad(lambda t: (layer(t) * dy).sum())(x)
    by_function = mx.grad(
        lambda t, w, b: (mm.instance_normalization(t, w, b, layout=layout) * dy).sum(),
        argnums=(0, 1, 2))(x, weight, bias)
    for got in ((dx_layer, by_layer["weight"], by_layer["bias"]), by_function):
        assert got[0].dtype == MLX_DTYPES[dtype] and got[1].dtype == got[2].dtype == mx.float32
        for what, value, exact in zip(("dx", "dweight", "dbias"), got, expected):
            ref.assert_close(np.asarray(value), exact, dtype, scale_from=(dy64,), what=what)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_instance_norm_without_parameters_matches_finite_differences(layout, dtype):
    x64, x = random(shape_in(layout, n=1, h=3, w=7)[1:], dtype, seed=7)  # a single image
    dy64, dy = random(x64.shape, dtype, seed=8)
    loss = affine_loss(x64, dy64, layout)
    ones, zeros = np.ones(3), np.zeros(3)
    expected = central_differences(lambda p: loss(p, ones, zeros), x64)
    layer = mm.InstanceNormalization(3, affine=False, layout=layout)
    assert layer.parameters() == {}
    for fn in (layer, lambda t: mm.instance_normalization(t, layout=layout)):
        got = mx.grad(lambda t: (fn(t) * dy).sum())(x)
        ref.assert_close(np.asarray(got), expected, dtype, scale_from=(dy64,), what="dx")


def test_float64_is_exact_with_either_parameter_dtype():
    """float64 data: float32 parameters are applied by the kernels, float64 ones (here not
    float32 values) by NumPy in float64; both within the float64 tolerance."""
    layout = "NHWC"
    x64, x = random(shape_in(layout), "float64", seed=9)
    dy64, dy = random(x64.shape, "float64", seed=10)
    xhat = ref.inorm_forward(x64, layout=layout)
    dxhat, dgamma, dbeta = ref.inorm_gradient(dy64, x64, layout=layout)
    w64 = np.array([0.1, 1.0 + 1e-12, -2.5])
    for dtype in (mx.float64, mx.float32):
        weight, bias = mx.array(w64, dtype=dtype), mx.array(-w64, dtype=dtype)
        w, b = np.asarray(weight, np.float64), np.asarray(bias, np.float64)
        y = mm.instance_normalization(x, weight, bias)
        assert y.dtype == mx.float64
        ref.assert_close(np.asarray(y), w * xhat + b, np.float64, scale_from=(x64,), what="y")
        grads = mx.grad(lambda t, p, q: (mm.instance_normalization(t, p, q) * dy).sum(),
                        argnums=(0, 1, 2))(x, weight, bias)
        assert [g.dtype for g in grads] == [mx.float64, dtype, dtype]
        ref.assert_close(np.asarray(grads[0]), w * dxhat, np.float64, scale_from=(dy64,),
                         what="dx")
        for got, exact in zip(grads[1:], (dgamma, dbeta)):
            tolerance = np.float64 if dtype == mx.float64 else np.float32
            ref.assert_close(np.asarray(got), exact, tolerance, scale_from=(dy64,))
    lcn = mx.grad(lambda t: (mm.local_contrast_normalization(t, 4, alpha=1.0) * dy).sum())(x)
    ref.assert_close(np.asarray(lcn), ref.lcn_gradient(dy64, x64, 4, layout=layout, alpha=1.0),
                     np.float64, scale_from=(dy64,), what="LCN dx")


def test_instance_norm_agrees_with_mlx_nn_instance_norm():
    """Where the semantics coincide: (N, H, W, C) batches, affine, float32."""
    _, x = random((3, 7, 6, 4), seed=11)
    dy64, dy = random((3, 7, 6, 4), seed=12)
    _, weight = random((4,), seed=13, low=0.5, high=1.5)
    _, bias = random((4,), seed=14)
    ours = mm.InstanceNormalization(4)
    theirs = nn.InstanceNorm(4, affine=True)
    results = []
    for layer in (ours, theirs):
        layer.weight, layer.bias = weight, bias
        y = layer(x)
        _, grads = nn.value_and_grad(layer, lambda model, t: (model(t) * dy).sum())(layer, x)
        dx = mx.grad(lambda t: (layer(t) * dy).sum())(x)
        results.append([np.asarray(v) for v in (y, dx, grads["weight"], grads["bias"])])
    for what, got, expected in zip(("y", "dx", "dweight", "dbias"), *results):
        ref.assert_close(got, expected, np.float32, scale_from=(dy64,), what=what)


def test_changed_parameters_reach_the_kernels():
    """The kernels' gamma and beta follow the layer's parameters after an optimizer step."""
    import mlx.optimizers as optim

    x64, x = random((2, 4, 5, 3), seed=17)
    layer = mm.InstanceNormalization(3)
    optimizer = optim.SGD(learning_rate=0.5)

    def check():
        expected = ref.inorm_forward(x64, np.asarray(layer.weight), np.asarray(layer.bias),
                                     layout="NHWC")
        ref.assert_close(np.asarray(layer(x)), expected, np.float32, scale_from=(x64,))

    check()
    ramp = mx.arange(x.size).reshape(x.shape) / x.size
    _, grads = nn.value_and_grad(layer, lambda m, t: (m(t) * ramp).sum())(layer, x)
    optimizer.update(layer, grads)
    mx.eval(layer.parameters())
    assert not np.allclose(np.asarray(layer.bias), 0)
    check()


# -- memory ----------------------------------------------------------------------------------

class Spy:
    """Wraps a kernel object, recording what each call is given."""

    def __init__(self, kernel):
        self.kernel, self.calls = kernel, []

    def __getattr__(self, name):
        return getattr(self.kernel, name)

    def __call__(self, *arrays, **outputs):
        self.calls.append((arrays, outputs))
        return self.kernel(*arrays, **outputs)


def address(array):
    return np.asarray(array).__array_interface__["data"][0]


@pytest.mark.parametrize("layer", [mm.LocalContrastNormalization(3, alpha=1.0),
                                   mm.InstanceNormalization(4)], ids=lambda l: type(l).__name__)
def test_inputs_are_read_in_place_and_never_written(layer):
    base = mx.random.normal((2, 4, 5, 6), key=mx.random.key(0))
    x = mx.transpose(base, (0, 2, 3, 1))  # a strided view of base: (N, H, W, C)
    mx.eval(base)
    before = np.array(base)
    forward, gradient = layer.kernels
    spies = (Spy(forward), Spy(gradient))
    object.__setattr__(layer, "_kernels", spies)
    try:
        dx = mx.grad(lambda t: (layer(t) ** 2).sum())(x)
        mx.eval(dx)
    finally:
        object.__setattr__(layer, "_kernels", (forward, gradient))
    (forward_args, forward_outputs), = spies[0].calls
    (gradient_args, gradient_outputs), = spies[1].calls
    for outputs in (forward_outputs, gradient_outputs):  # NumPy's memory, never MLX's
        assert list(outputs) == ["out"] and type(outputs["out"]) is np.ndarray
    for given in (forward_args[0], gradient_args[1]):
        assert isinstance(given, mx.array)
        assert address(given) == address(base)  # the view's memory: no copy
        assert not memoryview(given).c_contiguous
    np.testing.assert_array_equal(np.array(base), before)
    contiguous = mx.array(np.ascontiguousarray(np.asarray(x)))
    expected = mx.grad(lambda t: (layer(t) ** 2).sum())(contiguous)
    np.testing.assert_allclose(np.asarray(dx), np.asarray(expected), rtol=1e-6, atol=1e-6)


def test_results_survive_later_calls_that_reuse_output_memory():
    """Large outputs are written into reused NumPy memory and copied into MLX at once."""
    layer = mm.LocalContrastNormalization(3, alpha=1.0)
    first_values, first = random((2, 256, 512, 4), seed=18)  # 4 MiB: cached memory
    y1 = layer(first)
    snapshot = np.array(y1)
    for seed in (19, 20):
        mx.eval(layer(random((2, 256, 512, 4), seed=seed)[1]))
    np.testing.assert_array_equal(np.asarray(y1), snapshot)
    ref.assert_close(snapshot, ref.lcn_forward(first_values, 3, layout="NHWC", alpha=1.0),
                     np.float32, scale_from=(first_values,))


def test_lazily_built_inputs_are_evaluated_first():
    x64, x = random((2, 6, 5, 3), seed=15)
    lazy = (x * 2.0 + 1.0) - 1.0  # not evaluated yet
    y = mm.local_contrast_normalization(lazy, 3, alpha=1.0)
    ref.assert_close(np.asarray(y), ref.lcn_forward(x64 * 2, 3, layout="NHWC", alpha=1.0),
                     np.float32, scale_from=(x64,))
    z = mm.InstanceNormalization(3)(lazy)
    ref.assert_close(np.asarray(z), ref.inorm_forward(x64 * 2, layout="NHWC"), np.float32,
                     scale_from=(x64,))


def test_non_finite_parameters_propagate():
    """float32 gamma/beta refuse inf and nan: such parameters are applied outside the
    kernel, so the result is weight * xhat + bias with its infinities and NaNs (as
    mlx.nn.InstanceNorm's), not an error."""
    x64, x = random((1, 4, 4, 2), seed=16)
    weight, bias = mx.array([np.inf, 1.0]), mx.array([0.0, np.nan])
    ours = np.asarray(mm.instance_normalization(x, weight, bias))
    expected = np.asarray(weight) * ref.inorm_forward(x64, layout="NHWC") + np.asarray(bias)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)  # NaN = NaN, inf = inf
    theirs = nn.InstanceNorm(2, affine=True)
    theirs.weight, theirs.bias = weight, bias
    np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(np.asarray(theirs(x))))


# -- errors ----------------------------------------------------------------------------------

LCN_FN = "mpsnorm.mlx.local_contrast_normalization"
INORM_FN = "mpsnorm.mlx.instance_normalization"


@pytest.mark.parametrize("dtype", [mx.bfloat16, mx.int32, mx.uint8, mx.bool_, mx.complex64],
                         ids=str)
def test_unsupported_dtypes_are_refused_by_name(dtype):
    x = mx.zeros((1, 4, 4, 2), dtype=dtype)
    name = str(dtype).rpartition(".")[2]
    with pytest.raises(TypeError, match=f"{LCN_FN}: x has unsupported dtype {name}; expected "
                                        "float32, float16 or float64"):
        mm.local_contrast_normalization(x, 3)
    with pytest.raises(TypeError, match=f"{INORM_FN}: x has unsupported dtype {name}"):
        mm.instance_normalization(x)
    with pytest.raises(TypeError, match=f"InstanceNormalization: x has unsupported dtype {name}"):
        mm.InstanceNormalization(2)(x)
    with pytest.raises(TypeError, match=f"{INORM_FN}: weight has unsupported dtype {name}"):
        mm.instance_normalization(mx.zeros((1, 4, 4, 2)), mx.ones((2,), dtype=dtype),
                                  mx.zeros((2,)))


@pytest.mark.parametrize("shape", [(4, 4), (2, 1, 4, 4, 2), ()], ids=str)
def test_wrong_ranks_are_refused_with_the_shape(shape):
    x = mx.zeros(shape)
    with pytest.raises(ValueError, match=re.escape(
            f"{LCN_FN}: x must be a 4-D batch or a 3-D image, (N, H, W, C) or (H, W, C) in "
            f"layout 'NHWC', got shape {shape}")):
        mm.local_contrast_normalization(x, 3)
    with pytest.raises(ValueError, match=re.escape(f"(N, C, H, W) or (C, H, W) in layout "
                                                   f"'NCHW', got shape {shape}")):
        mm.InstanceNormalization(2, layout="NCHW")(x)


@pytest.mark.parametrize("kernel_size, error", [
    (0, ValueError), (-3, ValueError), ((3, 0), ValueError), (2.5, TypeError),
    ("3", TypeError), ((3,), TypeError), ((3, 3, 3), TypeError), (True, TypeError),
    ((3, None), TypeError), (None, TypeError)], ids=repr)
def test_bad_kernel_sizes_are_refused_with_the_value(kernel_size, error):
    x = mx.zeros((1, 4, 4, 1))
    message = re.escape(f"must be a positive int or a (height, width) pair of positive ints, "
                        f"got {kernel_size!r}")
    with pytest.raises(error, match=f"{LCN_FN}: kernel_size {message}"):
        mm.local_contrast_normalization(x, kernel_size)
    with pytest.raises(error, match=f"LocalContrastNormalization: kernel_size {message}"):
        mm.LocalContrastNormalization(kernel_size)


def test_other_bad_arguments_are_refused_clearly():
    x = mx.zeros((1, 4, 4, 3))
    with pytest.raises(TypeError, match=f"{LCN_FN}: x must be an mlx.core.array, got ndarray"):
        mm.local_contrast_normalization(np.zeros((1, 4, 4, 3), np.float32), 3)
    with pytest.raises(ValueError, match=f"{LCN_FN}: layout must be 'NCHW' or 'NHWC', got 'HWC'"):
        mm.local_contrast_normalization(x, 3, layout="HWC")
    with pytest.raises(ValueError, match=r"InstanceNormalization: x has 3 channels in layout "
                                         r"'NHWC' \(shape \(1, 4, 4, 3\)\), expected 4"):
        mm.InstanceNormalization(4)(x)
    with pytest.raises(ValueError, match=f"{INORM_FN}: weight and bias must both be arrays or "
                                         "both be None"):
        mm.instance_normalization(x, mx.ones((3,)))
    with pytest.raises(ValueError, match=re.escape(f"{INORM_FN}: bias must have shape (3,), one "
                                                   "value per channel, got (1, 3)")):
        mm.instance_normalization(x, mx.ones((3,)), mx.zeros((1, 3)))


def test_transformations_it_cannot_follow_are_refused():
    x = mx.ones((1, 4, 4, 2))
    layer = mm.InstanceNormalization(2)
    with pytest.raises(ValueError, match="InstanceNormalization: differentiable once"):
        mx.grad(lambda t: mx.grad(lambda u: (layer(u) ** 2).sum())(t).sum())(x)
    with pytest.raises(ValueError, match=f"{LCN_FN}: differentiable once"):
        mx.grad(lambda t: mx.grad(
            lambda u: (mm.local_contrast_normalization(u, 3, alpha=1.0) ** 2).sum())(t).sum())(x)
    with pytest.raises(ValueError, match="InstanceNormalization: no forward-mode derivative"):
        mx.jvp(layer, [x], [x])
    with pytest.raises(ValueError, match="do not run inside mx.compile or mx.vmap"):
        mx.compile(lambda t: mm.local_contrast_normalization(t, 3))(x)
    with pytest.raises(ValueError, match="do not run inside mx.compile or mx.vmap"):
        mx.vmap(layer)(mx.ones((2, 1, 4, 4, 2)))


# -- layers, examples ------------------------------------------------------------------------

def test_layers_parameters_and_repr():
    lcn = mm.LocalContrastNormalization((3, 5), alpha=1.0)
    assert lcn.parameters() == {} and lcn.kernel_size == (3, 5)
    assert lcn.kernels[0].kernel_height == 3 and lcn.kernels[0].kernel_width == 5
    assert "kernel_size=(3, 5), alpha=1.0" in repr(lcn) and "layout='NHWC'" in repr(lcn)
    inorm = mm.InstanceNormalization(4)
    assert sorted(inorm.trainable_parameters()) == ["bias", "weight"]
    np.testing.assert_array_equal(np.asarray(inorm.weight), np.ones(4, np.float32))
    np.testing.assert_array_equal(np.asarray(inorm.bias), np.zeros(4, np.float32))
    assert inorm.eps == pytest.approx(1e-5, rel=1e-7) and inorm.layout == "NHWC"
    assert isinstance(inorm.kernels[1], mpsnorm.InstanceNormalizationGradient)


def run_example(arguments):
    return subprocess.run([sys.executable] + arguments, capture_output=True, text=True,
                          timeout=300)


def test_training_example_lowers_the_loss():
    script = os.path.join(REPO, "examples", "train_tiny_mlx.py")
    if not os.path.isfile(script):
        pytest.skip("examples/train_tiny_mlx.py is not beside the tests")
    result = run_example([script, "--steps", "25"])
    assert result.returncode == 0, result.stderr
    losses = [float(line.split()[-1]) for line in result.stdout.splitlines()
              if line.startswith("step")]
    assert len(losses) == 6, result.stdout
    assert losses[-1] < 0.5 * losses[0], result.stdout


def test_readme_example_runs(tmp_path):
    readme = os.path.join(REPO, "README.md")
    if not os.path.isfile(readme):
        pytest.skip("README.md is not beside the tests")
    text = open(readme, encoding="utf-8").read()
    section = text.split("\n## MLX\n", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
