"""The two gradients on the Metal backend beside the CPU backend and PyTorch's mps device, one
group per kernel, shape and dtype (mpsnorm.bench_metal's cases); extra_info of the Metal side
holds the median staging and GPU seconds of its calls (last_metal_seconds). Skipped, with the
reason, where mpsnorm has no Metal backend."""
import pytest

import mpsnorm
from mpsnorm import bench_metal

from conftest import case_id

CASES = [(name, shape, dtype) for name in bench_metal.KERNELS for shape in bench_metal.SHAPES
         for dtype in bench_metal.DTYPES]


@pytest.mark.parametrize("impl", ["metal", "cpu", "torch_mps"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_metal_gradient(benchmark, case, impl):
    if "metal" not in mpsnorm.backends():
        pytest.skip("no Metal backend here: mpsnorm.backends() == %r" % (mpsnorm.backends(),))
    name, shape, dtype = case
    metal, calls = bench_metal.case_calls(name, shape, dtype)
    if calls[impl] is None:
        pytest.skip("PyTorch with an mps device is not installed")
    benchmark.group = "metal %s %s %s" % case
    benchmark.extra_info["implementation"] = impl
    benchmark.pedantic(calls[impl], rounds=10, warmup_rounds=2, iterations=1)
    if impl == "metal":
        staging, gpu = bench_metal.shares(metal, calls["metal"], 5)
        benchmark.extra_info["staging_seconds"] = staging
        benchmark.extra_info["gpu_seconds"] = gpu
