"""Uses the whole public API of mpsnorm, for `python -m mypy --strict` (tests/test_typing.py).

assert_type() pins what the stubs promise; the script also runs (each claim is
checked at run time too), so the stubs cannot drift from the extension modules.
The PyTorch adapter has its own sample, tests/typing_sample_torch.py.
"""
import array
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt
from typing_extensions import assert_type

import mpsnorm
from mpsnorm import (InstanceNormalization, InstanceNormalizationGradient,
                     LocalContrastNormalization, LocalContrastNormalizationGradient, MPSNormError)

Array = npt.NDArray[np.floating[Any]]


def lcn_sample(x: npt.NDArray[np.float32], dy: npt.NDArray[np.float32]) -> None:
    lcn = LocalContrastNormalization(5, alpha=1.0)
    lcn_wide = LocalContrastNormalization(5, 3, alpha=np.float32(1.0), beta=0.75, delta=0.01,
                                          p0=1, pm=0.0, ps=2.0, layout="NCHW", backend="cpu")
    y = lcn(x)
    assert_type(y, Array)
    assert isinstance(y, np.ndarray) and y.shape == x.shape
    out = np.empty_like(x)
    same = lcn_wide(x, out=out)
    assert_type(same, npt.NDArray[np.float32])
    assert same is out
    view = memoryview(bytearray(out.nbytes)).cast("f", out.shape)
    written = lcn(x, out=view)
    assert_type(written, "memoryview[float]")
    assert written is view and np.array_equal(np.asarray(view), y)
    grad = LocalContrastNormalizationGradient(3, alpha=1.0, layout="NHWC")
    dx = grad(dy.transpose(0, 2, 3, 1), x.transpose(0, 2, 3, 1))
    assert_type(dx, Array)
    width: int = lcn_wide.kernel_width
    height: int = lcn_wide.kernel_height
    assert (width, height) == (5, 3)
    lcn.alpha = 0.5
    lcn.beta = np.float64(0.25)
    lcn.delta = 1e-3
    lcn.p0 = 1
    lcn.pm = 0.0
    lcn.ps = 1.0
    values: Tuple[float, ...] = (lcn.alpha, lcn.beta, lcn.delta, lcn.p0, lcn.pm, lcn.ps)
    assert all(isinstance(v, float) for v in values)
    assert lcn.layout == "NCHW" and grad.layout == "NHWC"
    assert lcn.backend in ("cpu", "metal")
    last: Optional[str] = grad.last_backend
    assert last in ("cpu", "metal")
    assert LocalContrastNormalization(3).last_backend is None
    timing: Optional[Dict[str, float]] = grad.last_metal_seconds
    assert timing is None or set(timing) == {"staging", "gpu"}


def instance_norm_sample(x: npt.NDArray[np.float64], dy: npt.NDArray[np.float64]) -> None:
    channels = x.shape[1]
    inorm = InstanceNormalization(channels, gamma=np.linspace(0.5, 1.5, channels),
                                  beta=[0.0] * channels, epsilon=1e-5, layout="NCHW",
                                  backend="auto")
    y = inorm(x)
    assert_type(y, Array)
    out = np.empty_like(x)
    assert inorm(x, out=out) is out
    gamma: array.array[float] = inorm.gamma
    beta: array.array[float] = inorm.beta
    assert len(gamma) == len(beta) == inorm.num_channels == channels
    inorm.gamma = None
    inorm.beta = (0.1 for _ in range(channels))
    inorm.epsilon = 1e-3
    epsilon: float = inorm.epsilon
    assert epsilon > 0
    grad = InstanceNormalizationGradient(channels, gamma=[2.0] * channels, epsilon=1e-5)
    dx, dgamma, dbeta = grad(dy, x)
    assert_type(dx, Array)
    assert_type(dgamma, Array)
    assert dgamma.shape == dbeta.shape == (channels,)
    out_gamma: npt.NDArray[np.float64] = np.empty(channels)
    out_beta = array.array("d", [0.0] * channels)
    every = grad(dy, x, out=out, out_gamma=out_gamma, out_beta=out_beta)
    assert_type(every, Tuple[npt.NDArray[np.float64], npt.NDArray[np.float64],
                             "array.array[float]"])
    assert every[0] is out and every[1] is out_gamma and every[2] is out_beta
    some = grad(dy, x, out_gamma=out_gamma)
    assert_type(some[1], Union[npt.NDArray[np.float64], Array])
    assert some[1] is out_gamma and isinstance(some[0], np.ndarray)
    assert grad.layout == "NCHW" and grad.backend in mpsnorm.backends()
    assert grad.last_backend in ("cpu", "metal")


def module_sample() -> None:
    names: Tuple[str, ...] = mpsnorm.backends()
    assert "cpu" in names
    threads: int = mpsnorm.get_num_threads()
    mpsnorm.set_num_threads(threads)
    include: str = mpsnorm.get_include()
    library: str = mpsnorm.get_library_dir()
    version: str = mpsnorm.__version__
    assert include and library and version
    try:
        LocalContrastNormalization(0)
    except ValueError as error:
        assert "kernel_width" in str(error)
    assert issubclass(MPSNormError, RuntimeError)
    assert issubclass(mpsnorm.MPSNormWarning, UserWarning)
    for verdict in mpsnorm.metal_report():
        description: str = verdict["description"]
        assert description
    assert sorted(mpsnorm.__all__) == sorted([
        "InstanceNormalization", "InstanceNormalizationGradient", "LocalContrastNormalization",
        "LocalContrastNormalizationGradient", "MPSNormError", "MPSNormWarning", "backends",
        "get_include", "get_library_dir", "get_num_threads", "metal_report", "set_num_threads",
        "__version__"])


def main() -> None:
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    lcn_sample(x32, rng.standard_normal(x32.shape).astype(np.float32))
    x64 = rng.standard_normal((2, 3, 8, 8))
    instance_norm_sample(x64, rng.standard_normal(x64.shape))
    module_sample()
    print("typing sample ok")


if __name__ == "__main__":
    main()
