"""LCN forward: mpsnorm against SciPy box filters and PyTorch."""
import pytest

from mpsnorm import bench as mb

from conftest import IMPLEMENTATIONS, case_id

CASES = [(mb.LCN_SHAPE, 9, "float32", "NCHW"), (mb.LCN_SHAPE, 9, "float16", "NCHW")]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_lcn_forward(run_case, case, impl):
    shape, k, dtype, layout = case
    impls, nbytes, _ = mb.lcn_impls("forward", shape, k, dtype, layout)
    run_case(f"lcn_forward {shape} {k}x{k} {dtype} {layout}", impl, impls, nbytes, 2)


def test_lcn_forward_matches_reference():
    if mb.scipy_ndimage() is None:
        pytest.skip("SciPy is not installed")
    impls, _, _ = mb.lcn_impls("forward", (1, 2, 40, 50), 9)
    mb.check_agreement(impls, 1e-4)
