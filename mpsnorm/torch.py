"""PyTorch layers whose forward and backward run mpsnorm's kernels.

Imported only on request (``import mpsnorm.torch``); ``import mpsnorm`` never
imports PyTorch, and mpsnorm does not depend on it.

* ``LocalContrastNormalization(kernel_size, ...)`` and
  ``InstanceNormalization(num_channels, affine=True, eps=1e-5)``: ``nn.Module``s.
* ``local_contrast_normalization(x, ...)`` and ``instance_normalization(x, ...)``:
  the same as functions.
* ``LocalContrastNormalizationFunction`` and ``InstanceNormalizationFunction``:
  the ``torch.autograd.Function``s underneath.

Tensors are CPU tensors of float32, float16 or float64, (N, C, H, W) or a single
(C, H, W) image ("NHWC" layout: (N, H, W, C)); they reach the kernels without a
copy (DLPack), whatever their strides. Forward runs mpsnorm's forward kernel,
backward its gradient kernel (for instance normalization, dgamma and dbeta too).
The layers are differentiable once: asking for a second derivative
(create_graph=True, then backward through the gradient) raises RuntimeError.

Instance normalization's weight and bias are applied by the kernels themselves, as
their float32 gamma and beta (MPS's are float32 too), in the same pass over the
tensor: exact for float32 and float16 tensors, and for float64 tensors with float32
or float16 parameters. float64 parameters on a float64 tensor, and non-finite
parameters (which the kernels refuse), are applied by PyTorch in their own dtype, in
one more pass each way.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import numpy.typing as npt
import torch
from torch.autograd.function import FunctionCtx

import mpsnorm
from mpsnorm._adapters import (InstanceNormKernels, KernelSize, LCNKernels,
                               instance_norm_kernels, kernel_sizes, lcn_kernels, load_affine,
                               load_channels)
from mpsnorm._output_cache import new_output

__all__ = [
    "InstanceNormalization",
    "InstanceNormalizationFunction",
    "LocalContrastNormalization",
    "LocalContrastNormalizationFunction",
    "instance_normalization",
    "local_contrast_normalization",
]

_NUMPY_DTYPES: Dict[torch.dtype, Any] = {torch.float32: np.float32, torch.float16: np.float16,
                                          torch.float64: np.float64}


def _checked(tensor: torch.Tensor, name: str, where: str) -> torch.Tensor:
    """tensor, detached, after checking that it is a CPU tensor."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_cpu:
        raise ValueError(f"{where}: {name} is on device {tensor.device}; mpsnorm's kernels take "
                         f"CPU tensors: pass {name}.cpu()")
    return tensor.detach()


def _memory(tensor: torch.Tensor, name: str, where: str) -> Any:
    """What a kernel is given for a CPU tensor: a NumPy array on its memory (no copy; the
    buffer protocol costs a call about 6 us less per tensor than DLPack's export), or the
    tensor itself for dtypes NumPy lacks, which the kernel refuses, naming them."""
    detached = _checked(tensor, name, where).resolve_neg()
    if detached.dtype in _NUMPY_DTYPES:
        return detached.numpy()
    return detached


def _new_like(x: torch.Tensor) -> Tuple[Any, torch.Tensor]:
    """An uninitialized tensor of x's shape and dtype, in x's memory format where x is
    contiguous or channels-last (else contiguous), and the NumPy array on its memory.
    NumPy allocates it (mpsnorm._output_cache: large outputs reuse the memory of released
    ones), not torch.empty: fresh memory costs page faults that cost more than the kernel
    filling it (a 64 MiB torch.empty takes 16385 4 KiB pages; NumPy asks for huge pages)."""
    dtype = _NUMPY_DTYPES.get(x.dtype)
    if dtype is None:
        tensor = torch.empty_like(x)
        return tensor, tensor  # the kernel refuses x's dtype
    if x.is_contiguous():
        array = new_output(x.shape, dtype)
        return array, torch.from_numpy(array)
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        n, c, h, w = x.shape
        array = new_output((n, h, w, c), dtype, (0, 3, 1, 2))
        return array, torch.from_numpy(array)
    tensor = torch.empty_like(x, memory_format=torch.preserve_format)
    return tensor.numpy(), tensor


def _second_derivative(layer: str) -> RuntimeError:
    return RuntimeError(f"mpsnorm.torch: {layer} is differentiable once; a second derivative "
                        f"(double backward, create_graph=True) is not implemented")


# -- local contrast normalization --------------------------------------------------------

def _lcn_gradient(dy: torch.Tensor, x: torch.Tensor, kernels: LCNKernels) -> torch.Tensor:
    gradient_kernel = kernels[1]
    where = type(gradient_kernel).__name__
    source = _memory(x, "x", where)
    out, dx = _new_like(x)
    gradient_kernel(_memory(dy, "dy", where), source, out=out)
    return dx


class LocalContrastNormalizationFunction(torch.autograd.Function):
    """y = LCN(x) with mpsnorm's kernels: ``apply(x, kernels)`` where kernels is
    ``(mpsnorm.LocalContrastNormalization, mpsnorm.LocalContrastNormalizationGradient)``
    with the same parameters and layout."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor,
                kernels: LCNKernels) -> torch.Tensor:
        forward_kernel = kernels[0]
        source = _memory(x, "x", type(forward_kernel).__name__)
        out, y = _new_like(x)
        forward_kernel(source, out=out)
        ctx.save_for_backward(x)
        ctx.kernels = kernels  # type: ignore[attr-defined]
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> Tuple[Optional[torch.Tensor], None]:
        if not ctx.needs_input_grad[0]:
            return None, None
        (x,) = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a node that refuses to be differentiated
            dx: torch.Tensor = _LocalContrastNormalizationGradient.apply(  # type: ignore[no-untyped-call]
                dy, x, ctx.kernels)
            return dx, None
        return _lcn_gradient(dy, x, ctx.kernels), None


class _LocalContrastNormalizationGradient(torch.autograd.Function):
    """dx from mpsnorm's gradient kernel, as a node that refuses to be differentiated."""

    @staticmethod
    def forward(ctx: FunctionCtx, dy: torch.Tensor, x: torch.Tensor,
                kernels: LCNKernels) -> torch.Tensor:
        return _lcn_gradient(dy, x, kernels)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> None:
        raise _second_derivative("LocalContrastNormalization")


# -- instance normalization ----------------------------------------------------------------

def _channel_shape(layout: str) -> Tuple[int, ...]:
    """How a per-channel vector broadcasts against a tensor in `layout`."""
    return (-1, 1, 1) if layout == "NCHW" else (-1,)


def _float32_values(vector: torch.Tensor, name: str, where: str) -> npt.NDArray[np.float32]:
    detached = _checked(vector, name, where)
    if detached.dtype != torch.float32 or detached.is_neg():
        detached = detached.resolve_neg().to(torch.float32)
    values: npt.NDArray[np.float32] = detached.numpy()
    return values


def _as_dtype(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return tensor if tensor.dtype == dtype else tensor.to(dtype)


def _check_vector(vector: torch.Tensor, name: str, channels: int, where: str) -> None:
    if not isinstance(vector, torch.Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(vector).__name__}")
    if tuple(vector.shape) != (channels,):
        raise ValueError(f"{where}: {name} must have shape ({channels},), one value per "
                         f"channel, got {tuple(vector.shape)}")


def _load_affine(kernel: mpsnorm.InstanceNormalization, x: torch.Tensor,
                 weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                 where: str) -> bool:
    """Loads weight and bias into the forward kernel where float32 is exact for x's dtype
    (see load_affine); False: the caller applies them."""
    if (weight is None) != (bias is None):
        raise ValueError(f"{where}: weight and bias must both be tensors or both be None")
    if weight is None or bias is None:
        return load_affine(kernel, None, None)
    _check_vector(weight, "weight", kernel.num_channels, where)
    _check_vector(bias, "bias", kernel.num_channels, where)
    if x.dtype != torch.float64 or (weight.dtype != torch.float64
                                    and bias.dtype != torch.float64):
        return load_affine(kernel, _float32_values(weight, "weight", where),
                           _float32_values(bias, "bias", where))
    return load_affine(kernel, None, None)


def _instance_norm_gradient(dy: torch.Tensor, x: torch.Tensor, weight: Optional[torch.Tensor],
                            fused: bool, kernels: InstanceNormKernels
                            ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dx, dgamma, dbeta; with `fused`, the kernel scales dx by weight (its gamma)."""
    gradient_kernel = kernels[1]
    where = type(gradient_kernel).__name__
    source = _memory(x, "x", where)
    load_channels(gradient_kernel, "gamma",
                  _float32_values(weight, "weight", where) if fused and weight is not None
                  else None)
    out, dx = _new_like(x)
    # The kernel's dgamma, dbeta are float64 for float64 data, float32 otherwise.
    vector_dtype = np.float64 if x.dtype == torch.float64 else np.float32
    dgamma = np.empty(gradient_kernel.num_channels, vector_dtype)
    dbeta = np.empty(gradient_kernel.num_channels, vector_dtype)
    gradient_kernel(_memory(dy, "dy", where), source, out=out, out_gamma=dgamma,
                    out_beta=dbeta)
    if weight is not None and not fused:
        # dx is linear in gamma: the kernel's dx for gamma = 1, scaled in weight's dtype.
        dx.mul_(weight.detach().reshape(_channel_shape(gradient_kernel.layout)))
    return dx, torch.from_numpy(dgamma), torch.from_numpy(dbeta)


class InstanceNormalizationFunction(torch.autograd.Function):
    """y = weight[c] * xhat + bias[c], xhat = (x - mean) / sqrt(var + eps) per image
    and channel, with mpsnorm's kernels: ``apply(x, weight, bias, kernels)`` where
    kernels is ``(mpsnorm.InstanceNormalization, mpsnorm.InstanceNormalizationGradient)``
    with the same channel count, epsilon and layout. weight and bias are both tensors of
    shape (C,) or both None; each call sets the kernels' gamma and beta from them (ones
    and zeros for None), so kernels must not be shared by calls with other parameters
    running at the same time."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor,
                weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                kernels: InstanceNormKernels) -> torch.Tensor:
        forward_kernel = kernels[0]
        where = type(forward_kernel).__name__
        source = _memory(x, "x", where)
        fused = _load_affine(forward_kernel, x, weight, bias, where)
        out, y = _new_like(x)
        forward_kernel(source, out=out)
        if weight is not None and bias is not None:
            if not fused:  # in the parameters' dtype, written over y
                shape = _channel_shape(forward_kernel.layout)
                torch.addcmul(bias.detach().reshape(shape), y, weight.detach().reshape(shape),
                              out=y)
            ctx.save_for_backward(x, weight)
            ctx.bias_dtype = bias.dtype  # type: ignore[attr-defined]
        else:
            ctx.save_for_backward(x)
        ctx.fused = fused  # type: ignore[attr-defined]
        ctx.kernels = kernels  # type: ignore[attr-defined]
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> Tuple[Optional[torch.Tensor],
                                                      Optional[torch.Tensor],
                                                      Optional[torch.Tensor], None]:
        needs = ctx.needs_input_grad
        if not any(needs[:3]):
            return None, None, None, None
        x, *affine = ctx.saved_tensors
        weight = affine[0] if affine else None
        arguments = (dy, x, weight, ctx.fused, ctx.kernels)
        if torch.is_grad_enabled():  # create_graph=True: a node that refuses to be differentiated
            dx, dgamma, dbeta = _InstanceNormalizationGradient.apply(  # type: ignore[no-untyped-call]
                *arguments)
        else:
            dx, dgamma, dbeta = _instance_norm_gradient(*arguments)
        if weight is None:
            return (dx if needs[0] else None), None, None, None
        return ((dx if needs[0] else None),
                (_as_dtype(dgamma, weight.dtype) if needs[1] else None),
                (_as_dtype(dbeta, ctx.bias_dtype) if needs[2] else None), None)


class _InstanceNormalizationGradient(torch.autograd.Function):
    """dx, dgamma, dbeta from mpsnorm's gradient kernel, as a node that refuses to be
    differentiated."""

    @staticmethod
    def forward(ctx: FunctionCtx, dy: torch.Tensor, x: torch.Tensor,
                weight: Optional[torch.Tensor], fused: bool, kernels: InstanceNormKernels
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return _instance_norm_gradient(dy, x, weight, fused, kernels)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> None:
        raise _second_derivative("InstanceNormalization")


# -- functions and modules -------------------------------------------------------------------

def local_contrast_normalization(x: torch.Tensor, kernel_size: KernelSize, *,
                                 alpha: float = 0.0, beta: float = 0.5,
                                 delta: float = 1.0 / 1024.0, p0: float = 1.0, pm: float = 0.0,
                                 ps: float = 1.0, layout: str = "NCHW",
                                 backend: str = "auto") -> torch.Tensor:
    """Local contrast normalization of x over a kernel_size window (an int, or
    (height, width) as torch.nn layers take it), differentiable; the defaults
    are MPS's (alpha = 0 is a local mean subtraction)."""
    kernels = lcn_kernels(kernel_sizes(kernel_size, "mpsnorm.torch.local_contrast_normalization"),
                          dict(alpha=alpha, beta=beta, delta=delta, p0=p0, pm=pm, ps=ps,
                               layout=layout, backend=backend))
    y: torch.Tensor = LocalContrastNormalizationFunction.apply(  # type: ignore[no-untyped-call]
        x, kernels)
    return y


def instance_normalization(x: torch.Tensor, weight: Optional[torch.Tensor] = None,
                           bias: Optional[torch.Tensor] = None, eps: float = 1e-5, *,
                           layout: str = "NCHW", backend: str = "auto") -> torch.Tensor:
    """Instance normalization of x (per image and channel), then weight[c] * . + bias[c]
    when both are given; differentiable in x, weight and bias. eps is rounded to
    float32, as MPS's epsilon is."""
    channels = x.shape[1 if x.dim() == 4 else 0] if layout == "NCHW" else x.shape[-1]
    kernels = instance_norm_kernels(channels, eps, layout, backend)
    y: torch.Tensor = InstanceNormalizationFunction.apply(  # type: ignore[no-untyped-call]
        x, weight, bias, kernels)
    return y


class LocalContrastNormalization(torch.nn.Module):
    """Local contrast normalization as a layer (no learnable parameters):
    y = pm + ps * (x - p0 * mean) * (delta + alpha * variance) ** -beta over a
    kernel_size window (an int, or (height, width)), zero outside the image.
    The defaults are MPS's: alpha = 0 is a local mean subtraction; alpha = 1
    divides by the local standard deviation."""

    def __init__(self, kernel_size: KernelSize, *, alpha: float = 0.0,
                 beta: float = 0.5, delta: float = 1.0 / 1024.0, p0: float = 1.0,
                 pm: float = 0.0, ps: float = 1.0, layout: str = "NCHW",
                 backend: str = "auto") -> None:
        super().__init__()
        self.kernel_size = kernel_sizes(kernel_size, "LocalContrastNormalization")
        self._settings = dict(alpha=alpha, beta=beta, delta=delta, p0=p0, pm=pm, ps=ps,
                              layout=layout, backend=backend)
        self._kernels: Optional[LCNKernels] = lcn_kernels(self.kernel_size, self._settings)

    @property
    def kernels(self) -> LCNKernels:
        """The mpsnorm kernel objects this layer runs (forward, gradient)."""
        if self._kernels is None:  # after unpickling or copy.deepcopy
            self._kernels = lcn_kernels(self.kernel_size, self._settings)
        return self._kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = LocalContrastNormalizationFunction.apply(  # type: ignore[no-untyped-call]
            x, self.kernels)
        return y

    def extra_repr(self) -> str:
        kernel = self.kernels[0]
        return (f"kernel_size={self.kernel_size}, alpha={kernel.alpha}, beta={kernel.beta}, "
                f"delta={kernel.delta}, p0={kernel.p0}, pm={kernel.pm}, ps={kernel.ps}, "
                f"layout={kernel.layout!r}, backend={kernel.backend!r}")

    def __getstate__(self) -> Dict[str, Any]:
        # Kernel objects are not picklable; they are rebuilt on first use.
        return dict(self.__dict__, _kernels=None)


class InstanceNormalization(torch.nn.Module):
    """Instance normalization as a layer, like torch.nn.InstanceNorm2d without running
    statistics: per image and channel, (x - mean) / sqrt(var + eps), then
    weight[c] * . + bias[c] with learnable weight (ones) and bias (zeros) when
    affine. eps is rounded to float32, as MPS's epsilon is."""

    weight: Optional[torch.nn.Parameter]
    bias: Optional[torch.nn.Parameter]

    def __init__(self, num_channels: int, affine: bool = True, eps: float = 1e-5, *,
                 layout: str = "NCHW", backend: str = "auto") -> None:
        super().__init__()
        self.num_channels = num_channels
        self.affine = affine
        self.layout = layout
        self.backend = backend
        self._kernels: Optional[InstanceNormKernels] = instance_norm_kernels(
            num_channels, eps, layout, backend)
        self.eps = self._kernels[0].epsilon
        if affine:
            self.weight = torch.nn.Parameter(torch.ones(num_channels))
            self.bias = torch.nn.Parameter(torch.zeros(num_channels))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    @property
    def kernels(self) -> InstanceNormKernels:
        """The mpsnorm kernel objects this layer runs (forward, gradient); each call loads
        the layer's weight and bias into them (as gamma and beta) when they changed."""
        if self._kernels is None:  # after unpickling or copy.deepcopy
            self._kernels = instance_norm_kernels(self.num_channels, self.eps, self.layout,
                                                  self.backend)
        return self._kernels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = InstanceNormalizationFunction.apply(  # type: ignore[no-untyped-call]
            x, self.weight, self.bias, self.kernels)
        return y

    def extra_repr(self) -> str:
        return (f"{self.num_channels}, affine={self.affine}, eps={self.eps}, "
                f"layout={self.layout!r}, backend={self.kernels[0].backend!r}")

    def __getstate__(self) -> Dict[str, Any]:
        # Kernel objects are not picklable; they are rebuilt on first use.
        return dict(self.__dict__, _kernels=None)
