"""LCN gradient: mpsnorm against SciPy box filters and PyTorch autograd."""
import pytest

from mpsnorm import bench as mb

from conftest import IMPLEMENTATIONS, case_id

SHAPE = mb.LCN_SHAPE
CASES = [(SHAPE, 9, "float32", "NCHW"), (SHAPE, 3, "float32", "NCHW"),
         (SHAPE, 31, "float32", "NCHW"), (SHAPE, 9, "float16", "NCHW"),
         (SHAPE, 9, "float32", "NHWC")]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_lcn_gradient(run_case, case, impl):
    shape, k, dtype, layout = case
    impls, nbytes, _ = mb.lcn_impls("gradient", shape, k, dtype, layout)
    run_case(f"lcn_gradient {shape} {k}x{k} {dtype} {layout}", impl, impls, nbytes, 3)


def test_lcn_gradient_matches_reference():
    if mb.scipy_ndimage() is None:
        pytest.skip("SciPy is not installed")
    impls, _, _ = mb.lcn_impls("gradient", (1, 2, 40, 50), 9)
    mb.check_agreement(impls, 1e-4)
    impls, _, _ = mb.lcn_impls("gradient", (1, 2, 40, 50), 4, layout="NHWC")
    mb.check_agreement(impls, 1e-4)


@pytest.mark.parametrize("impl", ["mpsnorm", "numpy"])
def test_lcn_gradient_call_overhead(benchmark, impl):
    """A (1,1,4,4) call with out= beside np.add(a, b, out=c) on the same arrays."""
    benchmark.group = "lcn_gradient call (1,1,4,4) float32 out= vs np.add out="
    benchmark.extra_info["implementation"] = impl
    benchmark(mb.call_impls("lcn")[impl])
