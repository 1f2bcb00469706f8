# Stub of the extension module mpsnorm/_mpsnorm.pyx.
import array
from typing import (Any, Dict, Iterable, Literal, Optional, Protocol, SupportsFloat, SupportsIndex,
                    TypeVar, Union, overload)

import numpy as np
import numpy.typing as npt
from typing_extensions import Buffer

class _DLPackTensor(Protocol):
    """A tensor exported through DLPack (torch.Tensor, jax.Array, ...)."""

    def __dlpack__(self) -> object: ...
    def __dlpack_device__(self) -> object: ...

# What a kernel takes: the buffer protocol (NumPy arrays, memoryview) or DLPack.
# (NumPy declares ndarray.__buffer__ for Python >= 3.12 only: it is named too.)
_Tensor = Union[Buffer, _DLPackTensor, npt.NDArray[Any]]
_Out = TypeVar("_Out", bound=_Tensor)
_OutGamma = TypeVar("_OutGamma", bound=_Tensor)
_OutBeta = TypeVar("_OutBeta", bound=_Tensor)
_Array = npt.NDArray[np.floating[Any]]
_Values = Optional[Iterable[SupportsFloat]]

class MPSNormError(RuntimeError):
    """A backend failed while running a kernel. Bad arguments raise ValueError or TypeError."""

class MPSNormWarning(UserWarning):
    """The Metal self-check of a class of call failed: that class runs on the CPU."""

def metal_report(check_all: bool = False) -> list[dict[str, Any]]:
    """The Metal self-check's verdicts so far, one dict per class of call."""

def backends() -> tuple[str, ...]:
    """The backends usable on this machine, preferred first: ("metal", "cpu") or ("cpu",)."""

def library_version() -> str:
    """The version of the C library this module runs."""

def get_num_threads() -> int:
    """Threads a CPU kernel call splits its work over."""

def set_num_threads(n: SupportsIndex) -> None:
    """Sets the CPU backend's thread count for later calls (1 .. 1024)."""

class _Kernel:
    @property
    def layout(self) -> Literal["NCHW", "NHWC"]: ...
    @property
    def backend(self) -> Literal["cpu", "metal"]: ...
    @property
    def last_backend(self) -> Optional[Literal["cpu", "metal"]]: ...
    @property
    def last_metal_seconds(self) -> Optional[Dict[str, float]]: ...

class _LocalContrastKernel(_Kernel):
    def __init__(self, kernel_width: SupportsIndex, kernel_height: Optional[SupportsIndex] = None,
                 *, alpha: SupportsFloat = 0.0, beta: SupportsFloat = 0.5,
                 delta: SupportsFloat = ..., p0: SupportsFloat = 1.0, pm: SupportsFloat = 0.0,
                 ps: SupportsFloat = 1.0, layout: str = "NCHW", backend: str = "auto") -> None: ...
    @property
    def kernel_width(self) -> int: ...
    @property
    def kernel_height(self) -> int: ...
    @property
    def alpha(self) -> float: ...
    @alpha.setter
    def alpha(self, value: SupportsFloat) -> None: ...
    @property
    def beta(self) -> float: ...
    @beta.setter
    def beta(self, value: SupportsFloat) -> None: ...
    @property
    def delta(self) -> float: ...
    @delta.setter
    def delta(self, value: SupportsFloat) -> None: ...
    @property
    def p0(self) -> float: ...
    @p0.setter
    def p0(self, value: SupportsFloat) -> None: ...
    @property
    def pm(self) -> float: ...
    @pm.setter
    def pm(self, value: SupportsFloat) -> None: ...
    @property
    def ps(self) -> float: ...
    @ps.setter
    def ps(self, value: SupportsFloat) -> None: ...

class LocalContrastNormalization(_LocalContrastKernel):
    """y = pm + ps * (x - p0 * mean) * (delta + alpha * variance) ** -beta."""

    @overload
    def __call__(self, x: _Tensor, *, out: None = None) -> _Array: ...
    @overload
    def __call__(self, x: _Tensor, *, out: _Out) -> _Out: ...

class LocalContrastNormalizationGradient(_LocalContrastKernel):
    """dx, the exact gradient of LocalContrastNormalization at x applied to dy."""

    @overload
    def __call__(self, dy: _Tensor, x: _Tensor, *, out: None = None) -> _Array: ...
    @overload
    def __call__(self, dy: _Tensor, x: _Tensor, *, out: _Out) -> _Out: ...

class _InstanceNormKernel(_Kernel):
    @property
    def num_channels(self) -> int: ...
    @property
    def epsilon(self) -> float: ...
    @epsilon.setter
    def epsilon(self, value: SupportsFloat) -> None: ...
    @property
    def gamma(self) -> array.array[float]:
        """Per-channel scale, float32 (a copy: assign to change it; None resets to ones)."""
    @gamma.setter
    def gamma(self, values: _Values) -> None: ...

class InstanceNormalization(_InstanceNormKernel):
    """y = gamma[c] * (x - mean) / sqrt(var + epsilon) + beta[c] per image and channel."""

    def __init__(self, num_channels: SupportsIndex, *, gamma: _Values = None,
                 beta: _Values = None, epsilon: SupportsFloat = 1e-5, layout: str = "NCHW",
                 backend: str = "auto") -> None: ...
    @property
    def beta(self) -> array.array[float]:
        """Per-channel shift, float32 (a copy: assign to change it; None resets to zeros)."""
    @beta.setter
    def beta(self, values: _Values) -> None: ...
    @overload
    def __call__(self, x: _Tensor, *, out: None = None) -> _Array: ...
    @overload
    def __call__(self, x: _Tensor, *, out: _Out) -> _Out: ...

class InstanceNormalizationGradient(_InstanceNormKernel):
    """dx, dgamma, dbeta: the gradient of InstanceNormalization at x applied to dy."""

    def __init__(self, num_channels: SupportsIndex, *, gamma: _Values = None,
                 epsilon: SupportsFloat = 1e-5, layout: str = "NCHW",
                 backend: str = "auto") -> None: ...
    @overload
    def __call__(self, dy: _Tensor, x: _Tensor, *, out: None = None, out_gamma: None = None,
                 out_beta: None = None) -> tuple[_Array, _Array, _Array]: ...
    @overload
    def __call__(self, dy: _Tensor, x: _Tensor, *, out: _Out, out_gamma: _OutGamma,
                 out_beta: _OutBeta) -> tuple[_Out, _OutGamma, _OutBeta]: ...
    @overload
    def __call__(self, dy: _Tensor, x: _Tensor, *, out: Optional[_Out] = None,
                 out_gamma: Optional[_OutGamma] = None, out_beta: Optional[_OutBeta] = None
                 ) -> tuple[Union[_Out, _Array], Union[_OutGamma, _Array],
                            Union[_OutBeta, _Array]]: ...
