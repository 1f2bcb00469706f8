"""Uses the whole public API of mpsnorm.torch, for `python -m mypy --strict`
(tests/test_typing.py, where PyTorch is installed); it also runs."""
import copy
from typing import Optional, Tuple

import torch
from typing_extensions import assert_type

import mpsnorm
import mpsnorm.torch as mt


def main() -> None:
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    lcn = mt.LocalContrastNormalization(3, alpha=1.0, beta=0.5, delta=1e-3, p0=1.0, pm=0.0,
                                        ps=1.0, layout="NCHW", backend="auto")
    wide = mt.LocalContrastNormalization((3, 5), alpha=1.0)
    sizes: Tuple[int, int] = wide.kernel_size
    kernels = lcn.kernels
    assert_type(kernels[0], mpsnorm.LocalContrastNormalization)
    assert_type(kernels[1], mpsnorm.LocalContrastNormalizationGradient)
    inorm = mt.InstanceNormalization(3, affine=True, eps=1e-5, layout="NCHW", backend="auto")
    weight: Optional[torch.nn.Parameter] = inorm.weight
    assert weight is not None and inorm.bias is not None and sizes == (3, 5)
    assert_type(inorm.kernels[1], mpsnorm.InstanceNormalizationGradient)
    y: torch.Tensor = inorm(wide(lcn(x)))  # nn.Module.__call__ is untyped
    assert_type(inorm.forward(x), torch.Tensor)
    assert_type(lcn.forward(x), torch.Tensor)
    z = mt.local_contrast_normalization(x, (3, 3), alpha=1.0, beta=0.5, delta=1e-3, p0=1.0,
                                        pm=0.0, ps=1.0, layout="NCHW", backend="auto")
    w = mt.instance_normalization(z, inorm.weight, inorm.bias, 1e-5, layout="NCHW",
                                  backend="auto")
    assert_type(w, torch.Tensor)
    torch.autograd.backward(y.sum() + w.sum())
    assert x.grad is not None and weight.grad is not None
    direct: torch.Tensor = mt.LocalContrastNormalizationFunction.apply(  # type: ignore[no-untyped-call]
        x, kernels)
    both: torch.Tensor = mt.InstanceNormalizationFunction.apply(  # type: ignore[no-untyped-call]
        x, None, None, inorm.kernels)
    assert direct.shape == both.shape == x.shape
    clone = copy.deepcopy(torch.nn.Sequential(lcn, inorm))
    assert clone(x).shape == x.shape
    print("torch typing sample ok")


if __name__ == "__main__":
    main()
