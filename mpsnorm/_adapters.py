"""What the framework adapters (mpsnorm.torch, mpsnorm.mlx) share: the window size a
layer is given, the kernel objects a layer runs, and per-channel values loaded into a
kernel only when they change. Imports neither framework."""
from __future__ import annotations

import operator
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt

import mpsnorm

KernelSize = Union[int, Tuple[int, int]]
LCNKernels = Tuple[mpsnorm.LocalContrastNormalization, mpsnorm.LocalContrastNormalizationGradient]
InstanceNormKernels = Tuple[mpsnorm.InstanceNormalization, mpsnorm.InstanceNormalizationGradient]
InstanceNormKernel = Union[mpsnorm.InstanceNormalization, mpsnorm.InstanceNormalizationGradient]


def _size(value: object) -> Optional[int]:
    """value as an int if it is an integer (bool is not), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def kernel_sizes(kernel_size: object, where: str) -> Tuple[int, int]:
    """(height, width) from an int or a (height, width) pair, as torch.nn and mlx.nn
    layers take a window size."""
    pair = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,) * 2
    sizes = [_size(value) for value in pair]
    message = (f"{where}: kernel_size must be a positive int or a (height, width) pair of "
               f"positive ints, got {kernel_size!r}")
    if len(sizes) != 2 or sizes[0] is None or sizes[1] is None:
        raise TypeError(message)
    if sizes[0] < 1 or sizes[1] < 1:
        raise ValueError(message)
    return sizes[0], sizes[1]


def lcn_kernels(kernel_size: Tuple[int, int], settings: Dict[str, Any]) -> LCNKernels:
    """Forward and gradient kernels for a (height, width) window."""
    height, width = kernel_size
    return (mpsnorm.LocalContrastNormalization(width, height, **settings),
            mpsnorm.LocalContrastNormalizationGradient(width, height, **settings))


def instance_norm_kernels(num_channels: int, eps: float, layout: str, backend: str
                          ) -> InstanceNormKernels:
    """Forward and gradient kernels without gamma and beta (ones and zeros)."""
    return (mpsnorm.InstanceNormalization(num_channels, epsilon=eps, layout=layout,
                                          backend=backend),
            mpsnorm.InstanceNormalizationGradient(num_channels, epsilon=eps, layout=layout,
                                                  backend=backend))


def load_channels(kernel: InstanceNormKernel, name: str,
                  values: Optional[npt.NDArray[np.float32]]) -> None:
    """Sets kernel.gamma or kernel.beta (`name`) to float32 `values`, or resets it (None),
    unless it holds them already: the setter converts value by value (about half a
    microsecond a channel), reading the current values back is one copy. A non-finite
    value raises ValueError and leaves the kernel as it was."""
    if values is None:
        setattr(kernel, name, None)
    elif getattr(kernel, name).tobytes() != values.tobytes():
        setattr(kernel, name, values)


def load_affine(kernel: mpsnorm.InstanceNormalization,
                gamma: Optional[npt.NDArray[np.float32]],
                beta: Optional[npt.NDArray[np.float32]]) -> bool:
    """Loads float32 gamma and beta into an instance-norm forward kernel and returns True.
    Where they are None (float32 is not exact for the data) or hold a value float32
    parameters refuse (inf, nan), resets the kernel's (ones, zeros) and returns False: the
    caller applies weight and bias itself."""
    if gamma is not None and beta is not None:
        try:
            load_channels(kernel, "gamma", gamma)
            load_channels(kernel, "beta", beta)
            return True
        except ValueError:
            pass
    load_channels(kernel, "gamma", None)
    load_channels(kernel, "beta", None)
    return False
