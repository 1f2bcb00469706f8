"""Uses the whole public API of mpsnorm.mlx, for `python -m mypy --strict`
(tests/test_typing.py, where MLX is installed); it also runs."""
from typing import Optional, Tuple

import mlx.core as mx
from typing_extensions import assert_type

import mpsnorm
import mpsnorm.mlx as mm


def main() -> None:
    x = mx.random.normal((2, 8, 8, 3))
    lcn = mm.LocalContrastNormalization(3, alpha=1.0, beta=0.5, delta=1e-3, p0=1.0, pm=0.0,
                                        ps=1.0, layout="NHWC", backend="auto")
    wide = mm.LocalContrastNormalization((3, 5), alpha=1.0)
    sizes: Tuple[int, int] = wide.kernel_size
    assert_type(lcn.kernels[0], mpsnorm.LocalContrastNormalization)
    assert_type(lcn.kernels[1], mpsnorm.LocalContrastNormalizationGradient)
    inorm = mm.InstanceNormalization(3, affine=True, eps=1e-5, layout="NHWC", backend="auto")
    assert_type(inorm.kernels[1], mpsnorm.InstanceNormalizationGradient)
    y = inorm(wide(lcn(x)))
    assert_type(y, mx.array)
    z = mm.local_contrast_normalization(x, (3, 3), alpha=1.0, beta=0.5, delta=1e-3, p0=1.0,
                                        pm=0.0, ps=1.0, layout="NHWC", backend="auto")
    weight: Optional[mx.array] = mx.ones((3,))
    w = mm.instance_normalization(z, weight, mx.zeros((3,)), 1e-5, layout="NHWC",
                                  backend="auto")
    assert_type(w, mx.array)
    plain = mm.instance_normalization(mx.transpose(x, (0, 3, 1, 2)), layout="NCHW")
    dx = mx.grad(lambda t: (inorm(lcn(t)) * y).sum())(x)
    assert dx.shape == x.shape == w.shape and plain.shape == (2, 3, 8, 8) and sizes == (3, 5)
    print("mlx typing sample ok")


if __name__ == "__main__":
    main()
