"""The Metal rows of ``python -m mpsnorm bench``: the whole-call time of the two gradients on
the Metal backend beside the CPU backend and PyTorch's ``mps`` device (when installed), at
(8, 16, 64, 64) and (32, 32, 128, 128), float32 and float16, each Metal figure split into the
CPU's staging and the GPU's time (medians of ``last_metal_seconds``; the whole is the best
call). Where there is no Metal
backend the rows are skipped, with the reason, in one row.

Metal and the CPU backend are timed alternately in one run (``time_pair``); PyTorch's time
includes ``torch.mps.synchronize()``, as a caller waiting for the result pays it.
"""
import statistics

import mpsnorm

from mpsnorm.bench import (DEFAULT_LCN, Row, _fmt_ms, _torch_lcn, make_inputs, time_call,
                           time_pair, torch_module)

SHAPES = ((8, 16, 64, 64), (32, 32, 128, 128))
DTYPES = ("float32", "float16")
KERNELS = ("lcn_gradient", "inorm_gradient")
LCN_WINDOW = 5


def _kernel(name, shape, backend):
    if name == "lcn_gradient":
        return mpsnorm.LocalContrastNormalizationGradient(LCN_WINDOW, backend=backend,
                                                          **DEFAULT_LCN)
    return mpsnorm.InstanceNormalizationGradient(shape[1], backend=backend)


def _torch_mps(name, x, dy):
    """PyTorch's backward of the same function on the mps device, synchronized; None where
    PyTorch or its mps device is absent."""
    torch = torch_module()
    if torch is None or not torch.backends.mps.is_available():
        return None
    xt = torch.from_numpy(x).to("mps").requires_grad_(True)
    dyt = torch.from_numpy(dy).to("mps")
    if name == "lcn_gradient":
        yt = _torch_lcn(torch, xt, LCN_WINDOW, **DEFAULT_LCN)
    else:
        yt = torch.nn.functional.instance_norm(xt, eps=1e-5)

    def backward():
        torch.autograd.grad(yt, xt, dyt, retain_graph=True)
        torch.mps.synchronize()
    return backward


def case_calls(name, shape, dtype):
    """(metal kernel object, {"metal": fn, "cpu": fn, "torch_mps": fn or None})."""
    x, dy, out = make_inputs(shape, dtype)
    metal, cpu = _kernel(name, shape, "metal"), _kernel(name, shape, "cpu")
    cpu_out = out.copy()
    return metal, {"metal": lambda: metal(dy, x, out=out),
                   "cpu": lambda: cpu(dy, x, out=cpu_out),
                   "torch_mps": _torch_mps(name, x, dy)}


def shares(metal, call, repeat):
    """Median staging and GPU seconds of `repeat` calls of a Metal kernel object."""
    staging, gpu = [], []
    for _ in range(repeat):
        call()
        seconds = metal.last_metal_seconds
        if seconds is None:
            raise RuntimeError(f"bench: a backend='metal' call ran on {metal.last_backend}")
        staging.append(seconds["staging"])
        gpu.append(seconds["gpu"])
    return statistics.median(staging), statistics.median(gpu)


def measure(full=False, log=None):
    """The Metal rows (Row objects of mpsnorm.bench), or one row saying why there are none."""
    log = log or (lambda line: None)
    here = mpsnorm.backends()
    if "metal" not in here:
        return [Row("metal", "Metal rows", None,
                    f"skipped: no Metal backend here (mpsnorm.backends() == {here!r})")]
    repeat = 15 if full else 5
    torch = torch_module()
    has_mps = torch is not None and torch.backends.mps.is_available()
    log("Metal rows: whole calls with their staging and GPU time, the CPU backend and "
        + ("PyTorch's mps device" if has_mps else "no PyTorch mps device") + " beside them")
    rows = []
    for name in KERNELS:
        for shape in SHAPES:
            for dtype in DTYPES:
                metal, calls = case_calls(name, shape, dtype)
                t_metal, t_cpu = time_pair(calls["metal"], calls["cpu"], repeat=repeat)
                staging, gpu = shares(metal, calls["metal"], repeat)
                text = (f"{_fmt_ms(t_metal)} (of a call: staging {_fmt_ms(staging)}, GPU "
                        f"{_fmt_ms(gpu)}); CPU {_fmt_ms(t_cpu)} ({t_cpu / t_metal:.2f}x Metal)")
                if calls["torch_mps"] is not None:
                    t_torch = time_call(calls["torch_mps"], repeat=repeat)["best"]
                    text += f"; PyTorch mps {_fmt_ms(t_torch)} ({t_torch / t_metal:.2f}x Metal)"
                label = "LCN grad 5x5" if name == "lcn_gradient" else "inorm grad"
                rows.append(Row(f"metal_{name}_{'x'.join(map(str, shape))}_{dtype}",
                                f"Metal: {label} {shape} {dtype}", t_cpu / t_metal, text))
    return rows
