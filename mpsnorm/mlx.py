"""MLX operations and layers whose forward and gradient run mpsnorm's kernels.

Imported only on request (``import mpsnorm.mlx``); ``import mpsnorm`` never imports
MLX, and mpsnorm does not depend on it (``pip install "mpsnorm[mlx]"``; on Linux, MLX's
CPU build is ``pip install "mlx[cpu]"``).

* ``local_contrast_normalization(x, kernel_size, ...)`` and
  ``instance_normalization(x, weight=None, bias=None, eps=1e-5, ...)``:
  ``mx.custom_function``s whose vjp runs mpsnorm's gradient kernels (for instance
  normalization: dx, dweight and dbias), so ``mx.grad``, ``mx.value_and_grad`` and
  ``mx.vjp`` differentiate through them, once (a second derivative raises ValueError, as
  does forward mode, ``mx.jvp``).
* ``LocalContrastNormalization(kernel_size, ...)`` and
  ``InstanceNormalization(num_channels, affine=True, eps=1e-5)``: ``mlx.nn.Module``
  layers; InstanceNormalization's ``weight`` (ones) and ``bias`` (zeros) are trainable.

Layout: ``"NHWC"`` by default, MLX's own (``mlx.nn.Conv2d`` and ``mlx.nn.InstanceNorm``
take (N, H, W, C)): a 4-D batch (N, H, W, C) or a single (H, W, C) image;
``layout="NCHW"`` takes (N, C, H, W) or (C, H, W). dtypes: float32, float16 and float64
(which MLX runs on the CPU only).

Memory: the input is evaluated (``mx.eval``) and the kernel reads it in place through
the buffer protocol, whatever its strides, without a copy; nothing is ever written into
an MLX array's memory. The kernel writes its result into a NumPy array, which
``mx.array`` copies into memory MLX owns: one copy of each output (MLX adopts no CPU
memory it did not allocate: ``mx.from_dlpack(..., copy=False)`` refuses it).

Evaluation: a call computes at once rather than lazily, since the kernels need the
input's values; for the same reason the operations cannot run inside ``mx.compile`` or
``mx.vmap`` (ValueError).

Instance normalization's weight and bias are applied by the kernels, as their float32
gamma and beta, exactly for float32 and float16 data and for float64 data with float32
or float16 parameters; float64 parameters on float64 data are applied in float64 by
NumPy, in one more pass each way.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Tuple, cast

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import numpy.typing as npt

import mpsnorm
from mpsnorm._adapters import (InstanceNormKernels, KernelSize, LCNKernels,
                               instance_norm_kernels, kernel_sizes, lcn_kernels, load_affine,
                               load_channels)
from mpsnorm._output_cache import new_output

__all__ = [
    "InstanceNormalization",
    "LocalContrastNormalization",
    "instance_normalization",
    "local_contrast_normalization",
]

if TYPE_CHECKING:  # mypy does not see through mlx.nn's star imports
    from mlx.nn.layers.base import Module
else:
    Module = nn.Module

_DTYPES = {mx.float32: np.float32, mx.float16: np.float16, mx.float64: np.float64}
_LCN_FUNCTION = "mpsnorm.mlx.local_contrast_normalization"
_INORM_FUNCTION = "mpsnorm.mlx.instance_normalization"


# -- checks ----------------------------------------------------------------------------------

def _dtype_name(dtype: mx.Dtype) -> str:
    return str(dtype).rpartition(".")[2]


def _check_float(array: object, name: str, where: str) -> mx.array:
    if not isinstance(array, mx.array):
        raise TypeError(f"{where}: {name} must be an mlx.core.array, got "
                        f"{type(array).__name__}")
    if array.dtype not in _DTYPES:
        raise TypeError(f"{where}: {name} has unsupported dtype {_dtype_name(array.dtype)}; "
                        f"expected float32, float16 or float64")
    return array


def _check_input(x: object, layout: str, where: str) -> mx.array:
    array = _check_float(x, "x", where)
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"{where}: layout must be 'NCHW' or 'NHWC', got {layout!r}")
    if array.ndim not in (3, 4):
        axes = "(N, H, W, C) or (H, W, C)" if layout == "NHWC" else "(N, C, H, W) or (C, H, W)"
        raise ValueError(f"{where}: x must be a 4-D batch or a 3-D image, {axes} in layout "
                         f"{layout!r}, got shape {tuple(array.shape)}")
    return array


def _channels(x: mx.array, layout: str) -> int:
    return int(x.shape[-1] if layout == "NHWC" else x.shape[-3])


def _check_vector(vector: object, name: str, channels: int, where: str) -> mx.array:
    array = _check_float(vector, name, where)
    if tuple(array.shape) != (channels,):
        raise ValueError(f"{where}: {name} must have shape ({channels},), one value per "
                         f"channel, got {tuple(array.shape)}")
    return array


def _evaluated(where: str, *arrays: mx.array) -> None:
    """Evaluates arrays built lazily, before the kernels read their memory."""
    try:
        mx.eval(*arrays)
    except ValueError as error:
        raise ValueError(f"{where}: the input cannot be evaluated here ({error}); mpsnorm's "
                         f"kernels read evaluated memory, so they do not run inside mx.compile "
                         f"or mx.vmap") from error


def _output_for(x: mx.array) -> npt.NDArray[Any]:
    """A NumPy array the kernels write x's result into (mpsnorm._output_cache: large ones
    reuse the memory of released ones; the result is copied out of it at once)."""
    return new_output(x.shape, _DTYPES[x.dtype])


def _to_mlx(array: npt.NDArray[Any], dtype: mx.Dtype) -> mx.array:
    """A kernel's NumPy output as an MLX array of `dtype` (a copy)."""
    return mx.array(array, dtype=dtype)


def _channel_shape(layout: str) -> Tuple[int, ...]:
    """How a per-channel vector broadcasts against an array in `layout`."""
    return (-1, 1, 1) if layout == "NCHW" else (-1,)


# -- the custom functions --------------------------------------------------------------------

class _Call:
    """What one call's forward and vjp share: the kernels, the name errors give, and for
    instance normalization whether the kernels apply weight and bias (`fused`)."""

    __slots__ = ("kernels", "where", "fused")

    def __init__(self, kernels: Any, where: str) -> None:
        self.kernels = kernels
        self.where = where
        self.fused = False


@mx.custom_function
def _differentiable_once(gradients: Any, inputs: Any, where: str) -> Any:
    """The gradients themselves, tied to the inputs they were computed from, so that
    differentiating them (a second derivative) reaches the vjp below instead of silently
    giving zero: the kernels' outputs are constants to MLX."""
    return gradients


@_differentiable_once.vjp
def _second_derivative(primals: Any, cotangent: Any, output: Any) -> Any:
    raise ValueError(f"{primals[2]}: differentiable once; a second derivative (a gradient "
                     f"of a gradient) is not implemented")


def _no_forward_mode(primals: Any, tangents: Any) -> Any:
    raise ValueError(f"{primals[-1].where}: no forward-mode derivative (mx.jvp); use mx.vjp, "
                     f"mx.grad or mx.value_and_grad")


def _cotangent(cotangent: mx.array, x: mx.array) -> mx.array:
    return cotangent if cotangent.dtype == x.dtype else cotangent.astype(x.dtype)


@mx.custom_function
def _normalized(x: mx.array, call: _Call) -> mx.array:
    """LCN, or instance normalization without weight and bias."""
    _evaluated(call.where, x)
    return _to_mlx(call.kernels[0](x, out=_output_for(x)), x.dtype)


@_normalized.vjp
def _normalized_vjp(primals: Any, cotangent: mx.array, output: mx.array) -> Any:
    x, call = primals
    dy = _cotangent(cotangent, x)
    _evaluated(call.where, dy)
    dx = call.kernels[1](dy, x, out=_output_for(x))
    if isinstance(dx, tuple):  # instance normalization's (dx, dgamma, dbeta)
        dx = dx[0]
    return _differentiable_once(_to_mlx(dx, x.dtype), (x, dy), call.where), None


def _float32_values(vector: mx.array) -> npt.NDArray[np.float32]:
    return np.asarray(vector, dtype=np.float32)


def _load_affine(kernel: mpsnorm.InstanceNormalization, x: mx.array, weight: mx.array,
                 bias: mx.array) -> bool:
    """Loads evaluated weight and bias into the forward kernel where float32 is exact for
    x's dtype (see load_affine)."""
    if x.dtype != mx.float64 or (weight.dtype != mx.float64 and bias.dtype != mx.float64):
        return load_affine(kernel, _float32_values(weight), _float32_values(bias))
    return load_affine(kernel, None, None)


@mx.custom_function
def _inorm_affine(x: mx.array, weight: mx.array, bias: mx.array, call: _Call) -> mx.array:
    _evaluated(call.where, x, weight, bias)
    forward_kernel = call.kernels[0]
    call.fused = _load_affine(forward_kernel, x, weight, bias)
    y = forward_kernel(x, out=_output_for(x))
    if not call.fused:  # in the parameters' dtype, over the kernel's output
        shape = _channel_shape(forward_kernel.layout)
        y *= np.asarray(weight).reshape(shape)
        y += np.asarray(bias).reshape(shape)
    return _to_mlx(y, x.dtype)


@_inorm_affine.vjp
def _inorm_affine_vjp(primals: Any, cotangent: mx.array, output: mx.array) -> Any:
    x, weight, bias, call = primals
    dy = _cotangent(cotangent, x)
    _evaluated(call.where, dy)
    gradient_kernel = call.kernels[1]
    load_channels(gradient_kernel, "gamma", _float32_values(weight) if call.fused else None)
    dx, dgamma, dbeta = gradient_kernel(dy, x, out=_output_for(x))
    if not call.fused:  # dx is linear in gamma: the kernel's dx for gamma = 1, scaled
        dx *= np.asarray(weight).reshape(_channel_shape(gradient_kernel.layout))
    gradients = (_to_mlx(dx, x.dtype), _to_mlx(dgamma, weight.dtype),
                 _to_mlx(dbeta, bias.dtype))
    tied = cast(Tuple[mx.array, ...], _differentiable_once(gradients, (x, weight, bias, dy),
                                                           call.where))
    return tied + (None,)


for _function in (_normalized, _inorm_affine):
    _function.jvp(_no_forward_mode)


# -- functions -------------------------------------------------------------------------------

def _run_lcn(x: object, kernels: LCNKernels, where: str) -> mx.array:
    array = _check_input(x, kernels[0].layout, where)
    return cast(mx.array, _normalized(array, _Call(kernels, where)))


def local_contrast_normalization(x: mx.array, kernel_size: KernelSize, *, alpha: float = 0.0,
                                 beta: float = 0.5, delta: float = 1.0 / 1024.0,
                                 p0: float = 1.0, pm: float = 0.0, ps: float = 1.0,
                                 layout: str = "NHWC", backend: str = "auto") -> mx.array:
    """Local contrast normalization of x over a kernel_size window (an int, or
    (height, width)), differentiable; layout "NHWC" (MLX's) by default; the parameter
    defaults are MPS's (alpha = 0 is a local mean subtraction)."""
    sizes = kernel_sizes(kernel_size, _LCN_FUNCTION)
    _check_input(x, layout, _LCN_FUNCTION)
    kernels = lcn_kernels(sizes, dict(alpha=alpha, beta=beta, delta=delta, p0=p0, pm=pm, ps=ps,
                                      layout=layout, backend=backend))
    return _run_lcn(x, kernels, _LCN_FUNCTION)


def _run_instance_norm(x: object, weight: Optional[mx.array], bias: Optional[mx.array],
                       kernels: InstanceNormKernels, where: str) -> mx.array:
    layout = kernels[0].layout
    array = _check_input(x, layout, where)
    channels = kernels[0].num_channels
    if _channels(array, layout) != channels:
        raise ValueError(f"{where}: x has {_channels(array, layout)} channels in layout "
                         f"{layout!r} (shape {tuple(array.shape)}), expected {channels}")
    if (weight is None) != (bias is None):
        raise ValueError(f"{where}: weight and bias must both be arrays or both be None")
    call = _Call(kernels, where)
    if weight is None or bias is None:
        return cast(mx.array, _normalized(array, call))
    return cast(mx.array, _inorm_affine(array, _check_vector(weight, "weight", channels, where),
                                        _check_vector(bias, "bias", channels, where), call))


def instance_normalization(x: mx.array, weight: Optional[mx.array] = None,
                           bias: Optional[mx.array] = None, eps: float = 1e-5, *,
                           layout: str = "NHWC", backend: str = "auto") -> mx.array:
    """Instance normalization of x (per image and channel), then weight[c] * . + bias[c]
    when both are given; differentiable in x, weight and bias; layout "NHWC" (MLX's) by
    default. eps is rounded to float32, as MPS's epsilon is."""
    array = _check_input(x, layout, _INORM_FUNCTION)
    kernels = instance_norm_kernels(_channels(array, layout), eps, layout, backend)
    return _run_instance_norm(array, weight, bias, kernels, _INORM_FUNCTION)


# -- layers ----------------------------------------------------------------------------------

class LocalContrastNormalization(Module):
    """Local contrast normalization as a layer (no trainable parameters):
    y = pm + ps * (x - p0 * mean) * (delta + alpha * variance) ** -beta over a
    kernel_size window (an int, or (height, width)), zero outside the image; layout
    "NHWC" (MLX's) by default. The defaults are MPS's: alpha = 0 is a local mean
    subtraction; alpha = 1 divides by the local standard deviation."""

    kernel_size: Tuple[int, int]
    _kernels: LCNKernels

    def __init__(self, kernel_size: KernelSize, *, alpha: float = 0.0, beta: float = 0.5,
                 delta: float = 1.0 / 1024.0, p0: float = 1.0, pm: float = 0.0,
                 ps: float = 1.0, layout: str = "NHWC", backend: str = "auto") -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        sizes = kernel_sizes(kernel_size, "LocalContrastNormalization")
        # Plain attributes: mlx.nn.Module keeps tuples among its parameters' containers.
        object.__setattr__(self, "kernel_size", sizes)
        object.__setattr__(self, "_kernels", lcn_kernels(sizes, dict(
            alpha=alpha, beta=beta, delta=delta, p0=p0, pm=pm, ps=ps, layout=layout,
            backend=backend)))

    @property
    def kernels(self) -> LCNKernels:
        """The mpsnorm kernel objects this layer runs (forward, gradient)."""
        return self._kernels

    def __call__(self, x: mx.array) -> mx.array:
        return _run_lcn(x, self._kernels, "LocalContrastNormalization")

    def _extra_repr(self) -> str:
        kernel = self._kernels[0]
        return (f"kernel_size={self.kernel_size}, alpha={kernel.alpha}, beta={kernel.beta}, "
                f"delta={kernel.delta}, p0={kernel.p0}, pm={kernel.pm}, ps={kernel.ps}, "
                f"layout={kernel.layout!r}, backend={kernel.backend!r}")


class InstanceNormalization(Module):
    """Instance normalization as a layer, like mlx.nn.InstanceNorm on (N, H, W, C)
    batches: per image and channel, (x - mean) / sqrt(var + eps), then
    weight[c] * . + bias[c] with trainable weight (ones) and bias (zeros) when affine;
    layout "NHWC" (MLX's) by default. eps is rounded to float32, as MPS's epsilon is.
    The gradient's dx, dweight and dbias all come from mpsnorm's gradient kernel."""

    _kernels: InstanceNormKernels

    def __init__(self, num_channels: int, affine: bool = True, eps: float = 1e-5, *,
                 layout: str = "NHWC", backend: str = "auto") -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        # A plain attribute: mlx.nn.Module keeps tuples among its parameters' containers.
        object.__setattr__(self, "_kernels",
                           instance_norm_kernels(num_channels, eps, layout, backend))
        self.num_channels = self._kernels[0].num_channels
        self.eps = self._kernels[0].epsilon
        self.layout = self._kernels[0].layout
        if affine:
            self.weight = mx.ones((num_channels,))
            self.bias = mx.zeros((num_channels,))

    @property
    def kernels(self) -> InstanceNormKernels:
        """The mpsnorm kernel objects this layer runs (forward, gradient); each call loads
        the layer's weight and bias into them (as gamma and beta) when they changed."""
        return self._kernels

    def __call__(self, x: mx.array) -> mx.array:
        weight: Optional[mx.array] = self.get("weight")
        bias: Optional[mx.array] = self.get("bias")
        return _run_instance_norm(x, weight, bias, self._kernels, "InstanceNormalization")

    def _extra_repr(self) -> str:
        return (f"{self.num_channels}, affine={'weight' in self}, eps={self.eps}, "
                f"layout={self.layout!r}, backend={self._kernels[0].backend!r}")

