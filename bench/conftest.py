"""Shared helper of the pytest-benchmark suite: every file times mpsnorm and
its references (NumPy/SciPy always, PyTorch when installed) in one group per
kernel and shape, with the bytes moved and the roofline fraction in
extra_info. The implementations and the timing rules live in mpsnorm.bench, which
`python -m mpsnorm bench` uses too; the project's goals are in goals.py beside this file.

    python -m pytest bench/ --benchmark-only
    python bench/goals.py --runs 3
"""
import pytest

from mpsnorm import bench as mb

mb.quiet_blas()

IMPLEMENTATIONS = ["mpsnorm", "numpy", "torch"]
_bandwidth = {}


def copy_bandwidth(nbytes):
    """NumPy's copy bandwidth on a tensor of nbytes, measured once per size."""
    if nbytes not in _bandwidth:
        _bandwidth[nbytes] = mb.copy_bandwidth(nbytes)
    return _bandwidth[nbytes]


@pytest.fixture
def run_case(benchmark):
    """run(group, implementation, impls, tensor_bytes, tensors): times
    impls[implementation] (skipped when that library is absent)."""

    def run(group, name, impls, nbytes, tensors, rounds=5):
        fn = impls.get(name)
        if fn is None:
            pytest.skip(f"{name}: not installed")
        benchmark.group = group
        benchmark.extra_info["implementation"] = name
        benchmark.extra_info["bytes_moved"] = tensors * nbytes
        result = benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1, iterations=1)
        stats = getattr(benchmark, "stats", None)
        if stats is not None and getattr(stats, "stats", None) is not None:
            bandwidth = copy_bandwidth(nbytes)
            benchmark.extra_info["copy_bandwidth_GBps"] = round(bandwidth / 1e9, 2)
            benchmark.extra_info["roofline_fraction"] = round(
                mb.roofline_fraction(nbytes, tensors, stats.stats.min, bandwidth), 3)
        return result

    return run


def case_id(case):
    return "-".join(str(v).replace(" ", "") for v in case)
