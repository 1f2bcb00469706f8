"""The benchmarks run: `python -m mpsnorm bench` prints its measurements, bench/goals.py
gives each of the project's goals a verdict, and the pytest-benchmark suite in bench/ runs
each case once (--benchmark-disable), its agreement checks included. Speed itself is never
asserted here: the figures live in the benchmark output, not in tests."""
import importlib.util
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.heavy  # minutes: MPSNORM_TEST_FULL=1 (conftest.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
in_source_tree = pytest.mark.skipif(not os.path.isdir(BENCH),
                                    reason="bench/ is in the source tree only")


def goals():
    spec = importlib.util.spec_from_file_location("mpsnorm_bench_goals",
                                                  os.path.join(BENCH, "goals.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GOALS


def run(args, timeout, cwd):
    """Run from `cwd`, outside the source tree: the mpsnorm under test is the one this
    Python imports (an installed wheel, or the editable build), never the tree's by path."""
    return subprocess.run([sys.executable] + args, capture_output=True, text=True,
                          timeout=timeout, cwd=str(cwd))


def test_bench_command_prints_its_measurements_without_goals(tmp_path):
    pytest.importorskip("scipy", reason="the LCN reference needs SciPy (pip install scipy)")
    result = run(["-m", "mpsnorm", "bench"], timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = [line for line in lines if line.startswith("what")]
    assert header and header[0].split() == ["what", "measured"], result.stdout
    for start in ("LCN grad (4,16,256,256) f32 9x9 alpha=1: over NumPy/SciPy",
                  "inorm grad (32,32,128,128) f32: over NumPy", "LCN grad 31x31 / 3x3",
                  "call (1,1,4,4) LCN grad", "memory: extra peak of one call, inorm grad"):
        assert any(line.startswith(start) for line in lines), (start, result.stdout)
    assert not any(line.rstrip().endswith((" yes", " NO")) for line in lines), result.stdout


@in_source_tree
def test_goals_script_gives_every_goal_a_verdict(tmp_path):
    pytest.importorskip("scipy", reason="the LCN reference needs SciPy (pip install scipy)")
    result = run([os.path.join(BENCH, "goals.py")], timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    verdicts = [line.split()[-1] for line in result.stdout.splitlines()
                if line.rstrip().endswith((" yes", " NO", " n/a"))]
    assert len(verdicts) == len(goals()), result.stdout


@in_source_tree
def test_benchmark_suite_runs_each_case_once(tmp_path):
    pytest.importorskip("pytest_benchmark", reason="pip install pytest-benchmark")
    pytest.importorskip("scipy", reason="the LCN reference needs SciPy (pip install scipy)")
    result = run(["-m", "pytest", BENCH, "-q", "--benchmark-disable", "-p",
                  "no:cacheprovider"], timeout=1800, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
