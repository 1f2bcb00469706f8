"""mpsnorm.torch: autograd Functions and nn.Modules whose forward and backward run
mpsnorm's kernels. torch.autograd.gradcheck in float64, agreement with the float64
reference and with torch's own instance norm, float32/float16, strided tensors,
modules (parameters, copies, saving), the training example.

Skipped when PyTorch is not installed; MPSNORM_REQUIRE_TORCH=1 (CI) makes that a
failure."""
import copy
import io
import os
import subprocess
import sys

import numpy as np
import pytest

import reference as ref

if os.environ.get("MPSNORM_REQUIRE_TORCH") == "1":
    import torch
else:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch); "
                                                "MPSNORM_REQUIRE_TORCH=1 makes this fail")

import mpsnorm  # noqa: E402
import mpsnorm.torch as mt  # noqa: E402
from torch.autograd import gradcheck  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def randn(*shape, dtype=torch.float64, seed=0, requires_grad=False):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=dtype).requires_grad_(requires_grad)


def test_import_mpsnorm_does_not_import_torch():
    code = "import sys, mpsnorm; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# -- gradcheck in float64 ----------------------------------------------------------------

LCN_CASES = [
    dict(kernel_size=3, alpha=1.0),
    dict(kernel_size=(3, 4), alpha=1.0, beta=0.75, p0=0.8, pm=0.1, ps=1.5),   # even width
    dict(kernel_size=(4, 2), alpha=2.0, beta=0.5, delta=0.5),
    dict(kernel_size=5),                                                      # MPS defaults
]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", LCN_CASES, ids=lambda c: str(c["kernel_size"]))
def test_lcn_gradcheck(case, layout):
    shape = (2, 3, 5, 6) if layout == "NCHW" else (2, 5, 6, 3)
    x = randn(*shape, requires_grad=True)
    assert gradcheck(lambda t: mt.local_contrast_normalization(t, layout=layout, **case), (x,))


def test_lcn_gradcheck_single_image_and_module():
    layer = mt.LocalContrastNormalization((3, 5), alpha=1.0, beta=0.6)
    assert gradcheck(layer, (randn(2, 6, 7, requires_grad=True),))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_gradcheck(affine, layout):
    shape = (2, 3, 4, 5) if layout == "NCHW" else (2, 4, 5, 3)
    x = randn(*shape, requires_grad=True)
    if affine:
        weight = randn(3, seed=1, requires_grad=True)
        bias = randn(3, seed=2, requires_grad=True)
        assert gradcheck(lambda t, w, b: mt.instance_normalization(t, w, b, layout=layout),
                         (x, weight, bias))
    else:
        assert gradcheck(lambda t: mt.instance_normalization(t, layout=layout), (x,))


def test_instance_norm_module_gradcheck_in_float64():
    layer = mt.InstanceNormalization(3).double()
    with torch.no_grad():
        layer.weight.copy_(randn(3, seed=4))
        layer.bias.copy_(randn(3, seed=5))
    assert layer.weight.dtype == torch.float64
    x = randn(3, 4, 6, requires_grad=True)  # a single (C, H, W) image
    assert gradcheck(layer, (x,))
    # gradcheck of the parameters too, through the module's own forward
    weight, bias = layer.weight, layer.bias
    assert gradcheck(lambda w, b: mt.instance_normalization(x, w, b), (weight, bias))


# -- values ------------------------------------------------------------------------------

def test_lcn_forward_and_backward_match_the_reference():
    x = randn(2, 3, 9, 8, requires_grad=True)
    dy = randn(2, 3, 9, 8, seed=1)
    params = dict(alpha=1.0, beta=0.75, p0=0.9, pm=0.2, ps=1.1)
    y = mt.local_contrast_normalization(x, (5, 3), **params)  # height 5, width 3
    y.backward(dy)
    xn, dyn = x.detach().numpy(), dy.numpy()
    ref.assert_close(y.detach().numpy(), ref.lcn_forward(xn, 3, 5, **params), np.float64)
    ref.assert_close(x.grad.numpy(), ref.lcn_gradient(dyn, xn, 3, 5, **params), np.float64,
                     scale_from=(dyn,))


def test_instance_norm_agrees_with_torch():
    x = randn(3, 4, 7, 6, requires_grad=True)
    x_torch = x.detach().clone().requires_grad_(True)
    ours = mt.InstanceNormalization(4).double()
    theirs = torch.nn.InstanceNorm2d(4, affine=True, eps=float(np.float32(1e-5))).double()
    with torch.no_grad():
        for layer in (ours, theirs):
            layer.weight.copy_(randn(4, seed=1))
            layer.bias.copy_(randn(4, seed=2))
    dy = randn(3, 4, 7, 6, seed=3)
    y, y_torch = ours(x), theirs(x_torch)
    torch.testing.assert_close(y, y_torch, rtol=1e-10, atol=1e-10)
    y.backward(dy)
    y_torch.backward(dy)
    torch.testing.assert_close(x.grad, x_torch.grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ours.bias.grad, theirs.bias.grad, rtol=1e-9, atol=1e-9)


def test_instance_norm_gradients_come_from_the_kernel():
    x = randn(2, 3, 5, 4)
    dy = randn(2, 3, 5, 4, seed=1)
    weight = randn(3, seed=2, requires_grad=True)
    bias = randn(3, seed=3, requires_grad=True)
    xg = x.clone().requires_grad_(True)
    mt.instance_normalization(xg, weight, bias).backward(dy)
    kernel = mpsnorm.InstanceNormalizationGradient(3, gamma=weight.detach().numpy())
    dx, dgamma, dbeta = kernel(dy.numpy(), x.numpy())
    # gamma is float32 inside the kernel; the adapter keeps float64 weights exact.
    np.testing.assert_allclose(xg.grad.numpy(), dx, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(weight.grad.numpy(), dgamma, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bias.grad.numpy(), dbeta, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("memory", ["contiguous", "channels_last", "NHWC"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_instance_norm_parameters_applied_by_the_kernels_match_the_reference(dtype, memory):
    """float32/float16 data: the kernels apply weight and bias (as gamma and beta) in the
    forward and gradient passes; results within the dtype's tolerance of the float64
    reference, outputs and x.grad in x's memory format."""
    layout = "NHWC" if memory == "NHWC" else "NCHW"
    x = randn(2, 3, 5, 4, dtype=dtype)
    if memory == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif memory == "NHWC":
        x = x.permute(0, 2, 3, 1).contiguous()
    x.requires_grad_(True)
    dy = randn(*x.shape, dtype=dtype, seed=1)
    layer = mt.InstanceNormalization(3, layout=layout)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, -1.25, 2.0]))
        layer.bias.copy_(torch.tensor([0.25, 0.0, -3.0]))
    y = layer(x)
    y.backward(dy)
    xn, dyn = x.detach().double().numpy(), dy.double().numpy()
    gamma, beta = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    ref.assert_close(y.detach().numpy(), ref.inorm_forward(xn, gamma, beta, layout=layout),
                     dtype_name(dtype), scale_from=(xn,), what="y")
    dx, dgamma, dbeta = ref.inorm_gradient(dyn, xn, gamma, layout=layout)
    ref.assert_close(x.grad.numpy(), dx, dtype_name(dtype), scale_from=(dyn,), what="dx")
    ref.assert_close(layer.weight.grad.numpy(), dgamma, dtype_name(dtype), scale_from=(dyn,))
    ref.assert_close(layer.bias.grad.numpy(), dbeta, dtype_name(dtype), scale_from=(dyn,))
    assert y.dtype == x.grad.dtype == dtype and layer.weight.grad.dtype == torch.float32
    if memory == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert x.grad.is_contiguous(memory_format=torch.channels_last)


def dtype_name(dtype):
    return str(dtype).rpartition(".")[2]


def test_float64_data_stays_exact_with_float32_or_float64_parameters():
    x = randn(2, 3, 4, 5, requires_grad=True)
    dy = randn(2, 3, 4, 5, seed=1)
    xn, dyn = x.detach().numpy(), dy.numpy()
    xhat = ref.inorm_forward(xn)
    dxhat, dgamma, dbeta = ref.inorm_gradient(dyn, xn)
    values = torch.tensor([0.1, 1.0 + 1e-12, -2.5], dtype=torch.float64)  # not float32 values
    for dtype in (torch.float64, torch.float32):
        weight = values.to(dtype).clone().requires_grad_(True)
        bias = (-values).to(dtype).requires_grad_(True)
        x.grad = None
        y = mt.instance_normalization(x, weight, bias)
        y.backward(dy)
        w = weight.detach().double().numpy()[:, None, None]
        b = bias.detach().double().numpy()[:, None, None]
        ref.assert_close(y.detach().numpy(), w * xhat + b, np.float64, scale_from=(xn,))
        ref.assert_close(x.grad.numpy(), w * dxhat, np.float64, scale_from=(dyn,))
        tolerance = np.float64 if dtype == torch.float64 else np.float32
        assert weight.grad.dtype == bias.grad.dtype == dtype
        ref.assert_close(weight.grad.numpy(), dgamma, tolerance, scale_from=(dyn,))
        ref.assert_close(bias.grad.numpy(), dbeta, tolerance, scale_from=(dyn,))


def test_changed_parameters_reach_the_kernels():
    """The kernels' gamma and beta follow the layer's parameters however they change: an
    optimizer step, or a write through .data (which PyTorch's version counter misses)."""
    x = randn(2, 3, 4, 4, dtype=torch.float32)
    layer = mt.InstanceNormalization(3)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.5)

    def check():
        gamma, beta = layer.weight.detach().numpy(), layer.bias.detach().numpy()
        ref.assert_close(layer(x).detach().numpy(), ref.inorm_forward(x.numpy(), gamma, beta),
                         np.float32, scale_from=(x.numpy(),))

    check()
    layer(x).square().sum().backward()
    optimizer.step()
    check()
    layer.weight.data.mul_(-2.0)
    layer.bias.data.add_(1.0)
    check()
    plain = mt.InstanceNormalizationFunction.apply(x, None, None, layer.kernels)
    ref.assert_close(plain.numpy(), ref.inorm_forward(x.numpy()), np.float32,
                     scale_from=(x.numpy(),))


def test_non_finite_parameters_propagate():
    """float32 gamma/beta refuse inf and nan: such parameters are applied by PyTorch, so the
    result is weight * xhat + bias with its infinities and NaNs (as PyTorch's own layer
    gives non-finite values there), not an error."""
    x = randn(1, 2, 4, 4, dtype=torch.float32)
    weight = torch.tensor([float("inf"), 1.0])
    bias = torch.tensor([0.0, float("nan")])
    ours = mt.instance_normalization(x, weight, bias).numpy()
    expected = (weight.double().numpy()[:, None, None] * ref.inorm_forward(x.numpy())
                + bias.double().numpy()[:, None, None])
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)  # NaN = NaN, inf = inf
    theirs = torch.nn.functional.instance_norm(x, weight=weight, bias=bias)
    assert not torch.isfinite(theirs[0, :]).any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_lower_precisions_match_the_numpy_kernels(dtype):
    x = randn(2, 3, 8, 8, dtype=dtype, requires_grad=True)
    dy = randn(2, 3, 8, 8, dtype=dtype, seed=1)
    y = mt.local_contrast_normalization(x, 3, alpha=1.0)
    assert y.dtype == dtype
    y.backward(dy)
    xn, dyn = x.detach().numpy(), dy.numpy()
    ref.assert_bits_equal(y.detach().numpy(),
                          mpsnorm.LocalContrastNormalization(3, alpha=1.0)(xn), "y")
    ref.assert_bits_equal(x.grad.numpy(),
                          mpsnorm.LocalContrastNormalizationGradient(3, alpha=1.0)(dyn, xn), "dx")
    layer = mt.InstanceNormalization(3)  # float32 parameters
    x.grad = None
    z = layer(x)
    assert z.dtype == dtype
    z.backward(dy)
    assert x.grad.dtype == dtype and layer.weight.grad.dtype == torch.float32
    expected = mpsnorm.InstanceNormalizationGradient(3)(dyn, xn)
    ref.assert_bits_equal(layer.bias.grad.numpy(), expected[2], "dbeta")
    ref.assert_bits_equal(layer.weight.grad.numpy(), expected[1], "dgamma")


def test_non_contiguous_tensors_give_the_contiguous_results():
    base = randn(2, 3, 10, 12)
    strided = randn(2, 4, 20, 12)[:, 1:, ::2].permute(0, 1, 3, 2).transpose(2, 3)
    strided.copy_(base)
    channels_last = base.contiguous(memory_format=torch.channels_last)
    results = []
    for x in (base, strided, channels_last):
        x = x.clone() if x is base else x
        x.requires_grad_(True)
        y = mt.LocalContrastNormalization(3, alpha=1.0)(x)
        z = mt.InstanceNormalization(3).double()(y)
        (z * torch.arange(z.numel(), dtype=z.dtype).view(z.shape)).sum().backward()
        results.append((z.detach(), x.grad))
    assert not strided.is_contiguous()
    assert results[2][1].is_contiguous(memory_format=torch.channels_last)
    for z, grad in results[1:]:  # kernels may sum in another order for other strides
        torch.testing.assert_close(z, results[0][0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grad, results[0][1], rtol=1e-10, atol=1e-10)


def test_nhwc_layout_layers():
    x = randn(2, 5, 6, 3, requires_grad=True)  # (N, H, W, C)
    y = mt.InstanceNormalization(3, layout="NHWC").double()(x)
    expected = ref.inorm_forward(x.detach().numpy(), layout="NHWC")
    ref.assert_close(y.detach().numpy(), expected, np.float64)
    y = mt.LocalContrastNormalization(3, alpha=1.0, layout="NHWC")(x)
    ref.assert_close(y.detach().numpy(),
                     ref.lcn_forward(x.detach().numpy(), 3, layout="NHWC", alpha=1.0), np.float64)


# -- errors ------------------------------------------------------------------------------

def test_second_derivative_is_refused_clearly():
    x = randn(1, 2, 5, 5, requires_grad=True)
    weight = randn(2, seed=1, requires_grad=True)
    bias = randn(2, seed=2, requires_grad=True)
    for layer, name in [(lambda t: mt.local_contrast_normalization(t, 3, alpha=1.0),
                         "LocalContrastNormalization"),
                        (lambda t: mt.instance_normalization(t, weight, bias),
                         "InstanceNormalization")]:
        (grad,) = torch.autograd.grad(layer(x).square().sum(), x, create_graph=True)
        with pytest.raises(RuntimeError, match=f"mpsnorm.torch: {name} is differentiable once"):
            grad.sum().backward()


def test_tensors_off_the_cpu_are_refused():
    x = torch.empty(1, 2, 4, 4, device="meta")
    with pytest.raises(ValueError, match=r"LocalContrastNormalization: x is on device meta; "
                                         r"mpsnorm's kernels take CPU tensors: pass x.cpu\(\)"):
        mt.local_contrast_normalization(x, 3)


def test_unsupported_dtype_and_channel_count_name_the_kernel():
    with pytest.raises(TypeError, match="LocalContrastNormalization: x has unsupported dtype "
                                        "bfloat16"):
        mt.local_contrast_normalization(torch.zeros(1, 1, 4, 4, dtype=torch.bfloat16), 3)
    with pytest.raises(ValueError, match="InstanceNormalization"):
        mt.InstanceNormalization(3)(torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match="weight and bias must both be tensors or both be None"):
        mt.instance_normalization(torch.zeros(1, 3, 4, 4), torch.ones(3), None)
    with pytest.raises(ValueError, match=r"InstanceNormalization: bias must have shape \(3,\), "
                                         r"one value per channel, got \(1, 3\)"):
        mt.instance_normalization(torch.zeros(1, 3, 4, 4), torch.ones(3), torch.zeros(1, 3))
    with pytest.raises(TypeError, match="mpsnorm.torch.local_contrast_normalization: kernel_size "
                                        "must be a positive int or a"):
        mt.local_contrast_normalization(torch.zeros(1, 1, 4, 4), "33")
    with pytest.raises(ValueError, match=r"LocalContrastNormalization: kernel_size must be a "
                                         r"positive int .*, got \(3, 0\)"):
        mt.LocalContrastNormalization((3, 0))


# -- modules -----------------------------------------------------------------------------

def test_modules_parameters_repr_and_copies():
    lcn = mt.LocalContrastNormalization((3, 5), alpha=1.0)
    assert list(lcn.parameters()) == [] and lcn.kernel_size == (3, 5)
    assert "kernel_size=(3, 5), alpha=1.0" in repr(lcn)
    inorm = mt.InstanceNormalization(4)
    assert [name for name, _ in inorm.named_parameters()] == ["weight", "bias"]
    assert torch.equal(inorm.weight, torch.ones(4)) and torch.equal(inorm.bias, torch.zeros(4))
    assert mt.InstanceNormalization(4, affine=False).weight is None
    assert list(mt.InstanceNormalization(4, affine=False).parameters()) == []
    assert inorm.eps == pytest.approx(1e-5, rel=1e-7)  # rounded to float32, as MPS's epsilon
    model = torch.nn.Sequential(lcn, torch.nn.Conv2d(2, 4, 1), inorm)
    x = randn(2, 2, 6, 7, dtype=torch.float32)
    expected = model(x)
    clone = copy.deepcopy(model)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    for other in (clone, loaded):
        torch.testing.assert_close(other(x), expected, rtol=0, atol=0)
    state = model.state_dict()
    assert sorted(state) == ["1.bias", "1.weight", "2.bias", "2.weight"]


def test_training_example_lowers_the_loss():
    script = os.path.join(REPO, "examples", "train_tiny.py")
    if not os.path.isfile(script):
        pytest.skip("examples/train_tiny.py is not beside the tests")
    result = subprocess.run([sys.executable, script, "--steps", "25"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    losses = [float(line.split()[-1]) for line in result.stdout.splitlines()
              if line.startswith("step")]
    assert len(losses) == 6, result.stdout
    assert losses[-1] < 0.5 * losses[0], result.stdout
