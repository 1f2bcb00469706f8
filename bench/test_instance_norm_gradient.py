"""Instance-norm gradient: mpsnorm against NumPy and PyTorch's backward alone."""
import pytest

from mpsnorm import bench as mb

from conftest import IMPLEMENTATIONS, case_id

SHAPE = mb.INORM_SHAPE
CASES = [(SHAPE, "float32", "NCHW"), (SHAPE, "float16", "NCHW"), (SHAPE, "float32", "NHWC")]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_instance_norm_gradient(run_case, case, impl):
    shape, dtype, layout = case
    impls, nbytes, _ = mb.inorm_impls("gradient", shape, dtype, layout)
    run_case(f"instance_norm_gradient {shape} {dtype} {layout}", impl, impls, nbytes, 3)


def test_instance_norm_gradient_matches_reference():
    impls, _, _ = mb.inorm_impls("gradient", (2, 3, 20, 30))
    mb.check_agreement(impls, 1e-4)


@pytest.mark.parametrize("impl", ["mpsnorm", "numpy"])
def test_instance_norm_gradient_call_overhead(benchmark, impl):
    """A (1,1,4,4) call with out=, out_gamma=, out_beta= beside np.add(a, b, out=c)."""
    benchmark.group = "instance_norm_gradient call (1,1,4,4) float32 out= vs np.add out="
    benchmark.extra_info["implementation"] = impl
    benchmark(mb.call_impls("inorm")[impl])
