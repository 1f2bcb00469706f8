"""Shared fixtures for the mpsnorm test suite, and the opt-in for its heavy groups.

`python -m pytest tests` runs every kernel, dtype, layout, memory form and error class in a
few minutes. Tests marked `heavy` (sanitizer and fuzzer builds, the installed-wheel run, the
largest tensors, leak and stress loops) take longer: they run with MPSNORM_TEST_FULL=1, which
.ci/run sets, and are skipped with that reason otherwise.
"""

import os
import sys

import pytest

# The tests import the float64 reference as a plain module (tests/reference.py),
# whatever pytest import mode the project configures.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

FULL = os.environ.get("MPSNORM_TEST_FULL") == "1"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "heavy: a slow group that runs only with MPSNORM_TEST_FULL=1 (.ci/run)")


def pytest_collection_modifyitems(config, items):
    if FULL:
        return
    skip = pytest.mark.skip(reason="heavy: runs with MPSNORM_TEST_FULL=1 (as .ci/run does)")
    for item in items:
        if "heavy" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def restore_num_threads():
    """Restores mpsnorm's process-wide thread count after the test."""
    import mpsnorm

    saved = mpsnorm.get_num_threads()
    try:
        yield saved
    finally:
        mpsnorm.set_num_threads(saved)
