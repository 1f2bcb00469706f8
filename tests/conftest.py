"""Shared fixtures for the mpsnorm test suite."""

import os
import sys

import pytest

# The tests import the float64 reference as a plain module (tests/reference.py),
# whatever pytest import mode the project configures.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture
def restore_num_threads():
    """Restores mpsnorm's process-wide thread count after the test."""
    import mpsnorm

    saved = mpsnorm.get_num_threads()
    try:
        yield saved
    finally:
        mpsnorm.set_num_threads(saved)
