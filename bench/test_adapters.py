"""The framework adapters: a training step (forward + backward, float32, 2 threads) through
mpsnorm.torch's and mpsnorm.mlx's layers, beside the framework's own layer
(torch.nn.InstanceNorm2d(affine=True), mlx.nn.InstanceNorm(affine=True); for LCN the
avg_pool2d / AvgPool2d composition a user would write) and beside the bare kernels
(forward, then gradient, outputs given once); and mpsnorm.mlx's cost per call on a
(1,16,16,8) array. The steps and their timing rules are mpsnorm.bench's; the goals are in
goals.py beside this file."""
import pytest

import mpsnorm
from mpsnorm import bench as mb

STEP_IMPLEMENTATIONS = ["mpsnorm", "framework", "kernels"]
TORCH_CASES = [("inorm", shape) for shape in mb.ADAPTER_INORM_SHAPES] + [("lcn", mb.LCN_SHAPE)]
MLX_CASES = [("inorm", (8, 64, 64, 64)), ("lcn", mb.LCN_SHAPE),
             ("lcn", mb.MLX_LCN_COMPOSITION_SHAPE)]
THREADS = 2


def case_id(case):
    return f"{case[0]}-{mb.shape_text(case[1])}"


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    """mpsnorm and PyTorch both on 2 intra-op threads, as the goals are stated."""
    torch = mb.torch_module()
    saved = mpsnorm.get_num_threads(), (torch.get_num_threads() if torch else None)
    mpsnorm.set_num_threads(THREADS)
    if torch is not None:
        torch.set_num_threads(THREADS)
    yield
    mpsnorm.set_num_threads(saved[0])
    if torch is not None:
        torch.set_num_threads(saved[1])


def elements(shape):
    n, c, h, w = shape
    return n * c * h * w


def run_step(benchmark, group, impl, fn, shape):
    """Times one training step: rounds of one call for large tensors, calibrated loops of
    calls for small ones (a 4096-element step takes about 0.1 ms)."""
    benchmark.group = group
    benchmark.extra_info["implementation"] = impl
    # forward reads x and writes y, backward reads x and dy and writes dx
    benchmark.extra_info["bytes_moved"] = 5 * 4 * elements(shape)
    mb.warm_up(fn)
    if elements(shape) < 2**20:
        benchmark(fn)
    else:
        benchmark.pedantic(fn, rounds=5, warmup_rounds=1, iterations=1)


@pytest.mark.parametrize("impl", STEP_IMPLEMENTATIONS)
@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
def test_torch_training_step(benchmark, case, impl):
    kind, shape = case
    steps = mb.torch_adapter_steps(kind, shape)
    if steps is None:
        pytest.skip("PyTorch is not installed")
    run_step(benchmark, f"torch step {kind} {mb.shape_text(shape)} float32", impl, steps[impl],
             shape)


@pytest.mark.parametrize("impl", STEP_IMPLEMENTATIONS)
@pytest.mark.parametrize("case", MLX_CASES, ids=case_id)
def test_mlx_training_step(benchmark, case, impl):
    kind, shape = case
    if (kind, impl) == ("lcn", "framework") and shape != mb.MLX_LCN_COMPOSITION_SHAPE:
        pytest.skip("MLX's AvgPool2d composition takes seconds a step at this shape")
    steps = mb.mlx_adapter_steps(kind, shape)
    if steps is None:
        pytest.skip("MLX is not installed")
    run_step(benchmark, f"mlx step {kind} {mb.shape_text(shape)} float32 NHWC", impl,
             steps[impl], shape)


@pytest.mark.parametrize("impl", ["forward", "forward_kernel", "value_and_grad",
                                  "value_and_grad_kernels", "value_and_grad_mlx"])
@pytest.mark.parametrize("kind", ["lcn", "inorm"])
def test_mlx_call(benchmark, kind, impl):
    """mpsnorm.mlx on a (1,16,16,8) array beside the bare kernels and MLX's own step."""
    impls = mb.mlx_call_impls(kind)
    if impls is None:
        pytest.skip("MLX is not installed")
    benchmark.group = f"mlx call {kind} (1,16,16,8) float32"
    benchmark.extra_info["implementation"] = impl
    mb.warm_up(impls[impl])
    benchmark(impls[impl])


def test_torch_steps_compute_the_framework_gradients():
    """The three sides of a PyTorch case compute the same step (small shapes): the layer's
    x.grad against the framework's."""
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    import mpsnorm.torch as adapter

    x = torch.randn(2, 3, 12, 10, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 3, 12, 10, dtype=torch.float64)
    layers = [(adapter.InstanceNormalization(3).double(),
               torch.nn.InstanceNorm2d(3, affine=True, eps=float(mb._numpy().float32(1e-5)))
               .double()),
              (adapter.LocalContrastNormalization(5, **mb.DEFAULT_LCN),
               lambda t: mb._torch_lcn(torch, t, 5, **mb.DEFAULT_LCN))]
    for ours, theirs in layers:
        grads = []
        for layer in (ours, theirs):
            x.grad = None
            layer(x).backward(g)
            grads.append(x.grad)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-9)
