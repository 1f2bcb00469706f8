"""Instance-norm forward: mpsnorm against NumPy and PyTorch."""
import pytest

from mpsnorm import bench as mb

from conftest import IMPLEMENTATIONS, case_id

CASES = [(mb.INORM_SHAPE, "float32", "NCHW"), (mb.INORM_SHAPE, "float16", "NCHW")]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_instance_norm_forward(run_case, case, impl):
    shape, dtype, layout = case
    impls, nbytes, _ = mb.inorm_impls("forward", shape, dtype, layout)
    run_case(f"instance_norm_forward {shape} {dtype} {layout}", impl, impls, nbytes, 2)


def test_instance_norm_forward_matches_reference():
    impls, _, _ = mb.inorm_impls("forward", (2, 3, 20, 30))
    mb.check_agreement(impls, 1e-4)
