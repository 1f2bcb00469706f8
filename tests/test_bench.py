"""The benchmarks run and report every goal: `python -m mpsnorm bench` prints a row per
goal of the performance table with a verdict, and the pytest-benchmark suite in bench/
runs each case once (--benchmark-disable), its agreement checks included. Speed itself
is never asserted here: the figures live in the benchmark output, not in tests."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")

# The start of the row of each goal in the performance table.
GOAL_ROWS = [
    "  speed-up over PyTorch backward alone",
    "  roofline (3 tensors / copy bandwidth)",
    "  speed-up over NumPy/SciPy",
    "LCN grad 31x31 / 3x3",
    "call overhead (1,1,4,4) LCN grad",
    "call overhead (1,1,4,4) inorm grad",
    "threads: LCN grad 9x9 1 thread / 2 threads",
    "threads: inorm grad 1 thread / 2 threads",
    "threads: 2 Python threads concurrent / sequential, LCN grad 9x9",
    "threads: 2 Python threads concurrent / sequential, inorm grad",
    "LCN grad 9x9: float16 / float32",
    "LCN grad 9x9: NHWC / NCHW",
    "LCN grad 9x9: strided view / contiguous",
    "inorm grad: float16 / float32",
    "inorm grad: NHWC / NCHW",
    "inorm grad: strided view / contiguous",
    "memory: extra peak of one call, LCN grad",
    "memory: extra peak of one call, inorm grad",
]


def run(args, timeout, cwd):
    """Run from `cwd`, outside the source tree: the mpsnorm under test is the one this
    Python imports (an installed wheel, or the editable build), never the tree's by path."""
    return subprocess.run([sys.executable] + args, capture_output=True, text=True,
                          timeout=timeout, cwd=str(cwd))


def has_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def test_bench_command_reports_every_goal(tmp_path):
    pytest.importorskip("scipy", reason="the LCN reference needs SciPy (pip install scipy)")
    import mpsnorm
    result = run(["-m", "mpsnorm", "bench"], timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    goals = [g for g in GOAL_ROWS
             if mpsnorm.get_num_threads() >= 2 or "1 thread / 2 threads" not in g]
    for goal in goals:
        rows = [line for line in lines if line.startswith(goal)]
        assert rows, f"no row for {goal!r} in:\n{result.stdout}"
        verdicts = [row.split()[-1] for row in rows]  # a goal's row and any info rows
        if "PyTorch" in goal and not has_torch():
            assert set(verdicts) == {"n/a"}, rows
        else:
            assert {"yes", "NO"} & set(verdicts), f"no verdict in {rows!r}"


@pytest.mark.skipif(not os.path.isdir(BENCH), reason="bench/ is in the source tree only")
def test_benchmark_suite_runs_each_case_once(tmp_path):
    pytest.importorskip("pytest_benchmark", reason="pip install pytest-benchmark")
    pytest.importorskip("scipy", reason="the LCN reference needs SciPy (pip install scipy)")
    result = run(["-m", "pytest", BENCH, "-q", "--benchmark-disable", "-p",
                  "no:cacheprovider"], timeout=1800, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
