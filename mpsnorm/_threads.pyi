# Stub of the extension module mpsnorm/_threads.pyx.
from typing import SupportsIndex

def get_num_threads() -> int:
    """Threads a CPU kernel call splits its work over."""

def set_num_threads(n: SupportsIndex) -> None:
    """Sets the CPU backend's thread count for later calls (1 .. 1024)."""
