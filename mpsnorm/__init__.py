"""mpsnorm: local contrast and instance normalization, with their gradients,
as Apple's Metal Performance Shaders define them, on Metal or portable C.

Importing mpsnorm does not import NumPy; it is imported the first time a
kernel allocates an output array.
"""
from mpsnorm._mpsnorm import (InstanceNormalization, InstanceNormalizationGradient,
                              LocalContrastNormalization, LocalContrastNormalizationGradient,
                              backends, get_num_threads, set_num_threads)
from mpsnorm._version import __version__
from mpsnorm.config import get_include, get_library_dir
from mpsnorm.errors import MPSNormError

__all__ = [
    "InstanceNormalization",
    "InstanceNormalizationGradient",
    "LocalContrastNormalization",
    "LocalContrastNormalizationGradient",
    "MPSNormError",
    "backends",
    "get_include",
    "get_library_dir",
    "get_num_threads",
    "set_num_threads",
    "__version__",
]
