"""mpsnorm: local contrast and instance normalization, with their gradients,
as Apple's Metal Performance Shaders define them, on Metal or portable C.

Importing mpsnorm does not import NumPy; it is imported the first time a
kernel allocates an output array.
"""
import os

from mpsnorm._mpsnorm import (InstanceNormalization, InstanceNormalizationGradient,
                              LocalContrastNormalization, LocalContrastNormalizationGradient,
                              MPSNormError, MPSNormWarning, backends, get_num_threads,
                              metal_report, set_num_threads)

# The package's version, as setuptools reads it (pyproject.toml); also in mpsnorm.h and mpsnorm.pc.
__version__ = "0.2.0"

__all__ = [
    "InstanceNormalization",
    "InstanceNormalizationGradient",
    "LocalContrastNormalization",
    "LocalContrastNormalizationGradient",
    "MPSNormError",
    "MPSNormWarning",
    "backends",
    "get_include",
    "get_library_dir",
    "get_num_threads",
    "metal_report",
    "set_num_threads",
    "__version__",
]


# Here rather than in mpsnorm.config (which re-exports them): `import mpsnorm` stays cheap.
def get_include() -> str:
    """The directory holding mpsnorm.h (for C) -- pass it with -I."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


def get_library_dir() -> str:
    """The directory holding the shared library libmpsnorm."""
    return os.path.dirname(os.path.abspath(__file__))
