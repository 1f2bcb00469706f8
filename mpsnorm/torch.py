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
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch.autograd.function import FunctionCtx

import mpsnorm

__all__ = [
    "InstanceNormalization",
    "InstanceNormalizationFunction",
    "LocalContrastNormalization",
    "LocalContrastNormalizationFunction",
    "instance_normalization",
    "local_contrast_normalization",
]

LCNKernels = Tuple[mpsnorm.LocalContrastNormalization, mpsnorm.LocalContrastNormalizationGradient]
InstanceNormKernels = Tuple[mpsnorm.InstanceNormalization, mpsnorm.InstanceNormalizationGradient]


def _detached(tensor: torch.Tensor, name: str, where: str) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.device.type != "cpu":
        raise ValueError(f"{where}: {name} is on device {tensor.device}; mpsnorm's kernels take "
                         f"CPU tensors: pass {name}.cpu()")
    # DLPack exports neither tensors that require grad nor lazily negated views.
    return tensor.detach().resolve_neg()


def _new_like(x: torch.Tensor) -> torch.Tensor:
    """An empty tensor of x's shape and dtype, in x's memory format where x is dense."""
    return torch.empty_like(x, memory_format=torch.preserve_format)


def _second_derivative(layer: str) -> RuntimeError:
    return RuntimeError(f"mpsnorm.torch: {layer} is differentiable once; a second derivative "
                        f"(double backward, create_graph=True) is not implemented")


class LocalContrastNormalizationFunction(torch.autograd.Function):
    """y = LCN(x) with mpsnorm's kernels: ``apply(x, kernels)`` where kernels is
    ``(mpsnorm.LocalContrastNormalization, mpsnorm.LocalContrastNormalizationGradient)``
    with the same parameters and layout."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor,
                kernels: LCNKernels) -> torch.Tensor:
        forward_kernel, _ = kernels
        source = _detached(x, "x", type(forward_kernel).__name__)
        y = _new_like(source)
        forward_kernel(source, out=y)
        ctx.save_for_backward(x)
        ctx.kernels = kernels  # type: ignore[attr-defined]
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> Tuple[Optional[torch.Tensor], None]:
        if not ctx.needs_input_grad[0]:
            return None, None
        (x,) = ctx.saved_tensors
        dx: torch.Tensor = _LocalContrastNormalizationGradient.apply(  # type: ignore[no-untyped-call]
            dy, x, ctx.kernels)
        return dx, None


class _LocalContrastNormalizationGradient(torch.autograd.Function):
    """dx from mpsnorm's gradient kernel, as a node that refuses to be differentiated."""

    @staticmethod
    def forward(ctx: FunctionCtx, dy: torch.Tensor, x: torch.Tensor,
                kernels: LCNKernels) -> torch.Tensor:
        gradient_kernel = kernels[1]
        where = type(gradient_kernel).__name__
        source = _detached(x, "x", where)
        dx = _new_like(source)
        gradient_kernel(_detached(dy, "dy", where), source, out=dx)
        return dx

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> None:
        raise _second_derivative("LocalContrastNormalization")


def _channel_shape(layout: str) -> Tuple[int, ...]:
    """How a per-channel vector broadcasts against a tensor in `layout`."""
    return (-1, 1, 1) if layout == "NCHW" else (-1,)


class InstanceNormalizationFunction(torch.autograd.Function):
    """y = weight[c] * xhat + bias[c], xhat = (x - mean) / sqrt(var + eps) per image
    and channel, with mpsnorm's kernels: ``apply(x, weight, bias, kernels)`` where
    kernels is ``(mpsnorm.InstanceNormalization, mpsnorm.InstanceNormalizationGradient)``
    built without gamma and beta (weight and bias, or both None, are applied here,
    so that they keep their own dtype: float64 parameters stay exact)."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor,
                weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                kernels: InstanceNormKernels) -> torch.Tensor:
        forward_kernel, _ = kernels
        where = type(forward_kernel).__name__
        if (weight is None) != (bias is None):
            raise ValueError(f"{where}: weight and bias must both be tensors or both be None")
        source = _detached(x, "x", where)
        y = _new_like(source)
        forward_kernel(source, out=y)
        if weight is not None and bias is not None:
            shape = _channel_shape(forward_kernel.layout)
            y = torch.addcmul(bias.detach().reshape(shape), y,
                              weight.detach().reshape(shape)).to(source.dtype)
        if weight is not None and bias is not None:
            ctx.save_for_backward(x, weight, bias)
        else:
            ctx.save_for_backward(x)
        ctx.kernels = kernels  # type: ignore[attr-defined]
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> Tuple[Optional[torch.Tensor],
                                                      Optional[torch.Tensor],
                                                      Optional[torch.Tensor], None]:
        if not any(ctx.needs_input_grad[:3]):
            return None, None, None, None
        x, *affine = ctx.saved_tensors
        weight, bias = affine if affine else (None, None)
        dx, dgamma, dbeta = _InstanceNormalizationGradient.apply(  # type: ignore[no-untyped-call]
            dy, x, weight, ctx.kernels)
        if weight is None or bias is None:
            return (dx if ctx.needs_input_grad[0] else None), None, None, None
        return ((dx if ctx.needs_input_grad[0] else None),
                (dgamma.to(weight.dtype) if ctx.needs_input_grad[1] else None),
                (dbeta.to(bias.dtype) if ctx.needs_input_grad[2] else None), None)


class _InstanceNormalizationGradient(torch.autograd.Function):
    """dx, dgamma, dbeta from mpsnorm's gradient kernel, as a node that refuses to be
    differentiated."""

    @staticmethod
    def forward(ctx: FunctionCtx, dy: torch.Tensor, x: torch.Tensor,
                weight: Optional[torch.Tensor], kernels: InstanceNormKernels
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gradient_kernel = kernels[1]
        where = type(gradient_kernel).__name__
        source = _detached(x, "x", where)
        dx = _new_like(source)
        # The kernel's dgamma, dbeta are float64 for float64 data, float32 otherwise.
        vector_dtype = torch.float64 if source.dtype == torch.float64 else torch.float32
        dgamma = torch.empty(gradient_kernel.num_channels, dtype=vector_dtype)
        dbeta = torch.empty(gradient_kernel.num_channels, dtype=vector_dtype)
        gradient_kernel(_detached(dy, "dy", where), source, out=dx, out_gamma=dgamma,
                        out_beta=dbeta)
        if weight is not None:
            # dx is linear in gamma: the kernel's dx for gamma = 1, scaled by weight.
            shape = _channel_shape(gradient_kernel.layout)
            dx = (dx * weight.detach().reshape(shape)).to(source.dtype)
        return dx, dgamma, dbeta

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> None:
        raise _second_derivative("InstanceNormalization")


def _kernel_sizes(kernel_size: Union[int, Tuple[int, int]]) -> Tuple[int, int]:
    """(height, width) from an int or a (height, width) pair, as torch.nn layers take it."""
    if isinstance(kernel_size, int):
        return kernel_size, kernel_size
    height, width = kernel_size
    return height, width


def _lcn_kernels(kernel_size: Union[int, Tuple[int, int]], parameters: Dict[str, Any]
                 ) -> LCNKernels:
    height, width = _kernel_sizes(kernel_size)
    return (mpsnorm.LocalContrastNormalization(width, height, **parameters),
            mpsnorm.LocalContrastNormalizationGradient(width, height, **parameters))


def local_contrast_normalization(x: torch.Tensor, kernel_size: Union[int, Tuple[int, int]], *,
                                 alpha: float = 0.0, beta: float = 0.5,
                                 delta: float = 1.0 / 1024.0, p0: float = 1.0, pm: float = 0.0,
                                 ps: float = 1.0, layout: str = "NCHW",
                                 backend: str = "auto") -> torch.Tensor:
    """Local contrast normalization of x over a kernel_size window (an int, or
    (height, width) as torch.nn layers take it), differentiable; the defaults
    are MPS's (alpha = 0 is a local mean subtraction)."""
    kernels = _lcn_kernels(kernel_size, dict(alpha=alpha, beta=beta, delta=delta, p0=p0, pm=pm,
                                             ps=ps, layout=layout, backend=backend))
    y: torch.Tensor = LocalContrastNormalizationFunction.apply(  # type: ignore[no-untyped-call]
        x, kernels)
    return y


def _instance_norm_kernels(num_channels: int, eps: float, layout: str, backend: str
                           ) -> InstanceNormKernels:
    return (mpsnorm.InstanceNormalization(num_channels, epsilon=eps, layout=layout,
                                          backend=backend),
            mpsnorm.InstanceNormalizationGradient(num_channels, epsilon=eps, layout=layout,
                                                  backend=backend))


def instance_normalization(x: torch.Tensor, weight: Optional[torch.Tensor] = None,
                           bias: Optional[torch.Tensor] = None, eps: float = 1e-5, *,
                           layout: str = "NCHW", backend: str = "auto") -> torch.Tensor:
    """Instance normalization of x (per image and channel), then weight[c] * . + bias[c]
    when both are given; differentiable in x, weight and bias. eps is rounded to
    float32, as MPS's epsilon is."""
    channels = x.shape[1 if x.dim() == 4 else 0] if layout == "NCHW" else x.shape[-1]
    kernels = _instance_norm_kernels(channels, eps, layout, backend)
    y: torch.Tensor = InstanceNormalizationFunction.apply(  # type: ignore[no-untyped-call]
        x, weight, bias, kernels)
    return y


class LocalContrastNormalization(torch.nn.Module):
    """Local contrast normalization as a layer (no learnable parameters):
    y = pm + ps * (x - p0 * mean) * (delta + alpha * variance) ** -beta over a
    kernel_size window (an int, or (height, width)), zero outside the image.
    The defaults are MPS's: alpha = 0 is a local mean subtraction; alpha = 1
    divides by the local standard deviation."""

    def __init__(self, kernel_size: Union[int, Tuple[int, int]], *, alpha: float = 0.0,
                 beta: float = 0.5, delta: float = 1.0 / 1024.0, p0: float = 1.0,
                 pm: float = 0.0, ps: float = 1.0, layout: str = "NCHW",
                 backend: str = "auto") -> None:
        super().__init__()
        self.kernel_size = _kernel_sizes(kernel_size)
        self._settings = dict(alpha=alpha, beta=beta, delta=delta, p0=p0, pm=pm, ps=ps,
                              layout=layout, backend=backend)
        self._kernels: Optional[LCNKernels] = _lcn_kernels(self.kernel_size, self._settings)

    @property
    def kernels(self) -> LCNKernels:
        """The mpsnorm kernel objects this layer runs (forward, gradient)."""
        if self._kernels is None:  # after unpickling or copy.deepcopy
            self._kernels = _lcn_kernels(self.kernel_size, self._settings)
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
        self._kernels: Optional[InstanceNormKernels] = _instance_norm_kernels(
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
        """The mpsnorm kernel objects this layer runs (forward, gradient)."""
        if self._kernels is None:  # after unpickling or copy.deepcopy
            self._kernels = _instance_norm_kernels(self.num_channels, self.eps, self.layout,
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
