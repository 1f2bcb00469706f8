"""Self-check: each gradient kernel against central finite differences of
its forward kernel, in float64, on the CPU backend and (where present) Metal.

Run with ``python -m mpsnorm``. Every case checks every element of dx (and of
dgamma / dbeta): element i of dx must equal d<dy, forward(x)>/dx_i, estimated
as (L(x + h e_i) - L(x - h e_i)) / 2h with h = STEP * max(1, |x_i|).
"""
import numpy as np

import mpsnorm

STEP = 1e-6
# Central differences in float64 with STEP = 1e-6 are good to about 1e-9
# relative; the bound leaves room for that and nothing more.
TOLERANCE = 1e-6

# (case name, shape NCHW, kernel width, kernel height, parameters)
LCN_CASES = [
    ("3x3 MPS defaults", (2, 3, 6, 7), 3, 3, {}),
    ("3x3 alpha=1", (2, 3, 6, 7), 3, 3, {"alpha": 1.0}),
    ("4x4 even window", (1, 2, 7, 6), 4, 4, {"alpha": 1.0, "beta": 0.75}),
    ("3x5 rectangular", (1, 2, 6, 8), 3, 5, {"alpha": 0.7, "delta": 0.05}),
    ("2x1 rectangular", (2, 1, 5, 5), 2, 1, {"alpha": 1.0, "beta": 1.0}),
    ("9x9 larger than image", (1, 2, 5, 6), 9, 9, {"alpha": 1.0}),
    ("5x5 all six non-default", (1, 3, 8, 8), 5, 5,
     {"alpha": 0.7, "beta": 0.75, "delta": 0.05, "p0": 0.8, "pm": 0.1, "ps": 1.3}),
]

# (case name, shape NCHW, parameters)
INSTANCE_NORM_CASES = [
    ("defaults", (2, 3, 5, 6), {}),
    ("gamma, epsilon=1e-3", (3, 2, 4, 7), {"epsilon": 1e-3, "with_gamma": True}),
    ("single pixel rows", (2, 4, 1, 9), {"with_gamma": True}),
    ("large mean", (1, 2, 6, 6), {"offset": 1e3, "with_gamma": True}),
]


def _relative_error(got, expected):
    scale = max(float(np.max(np.abs(expected))), 1e-300)
    return float(np.max(np.abs(got - expected))) / scale


def _finite_difference(loss, x):
    """d loss / d x_i for every element of x, by central differences."""
    gradient = np.empty_like(x)
    flat_x, flat_gradient = x.reshape(-1), gradient.reshape(-1)
    for i in range(flat_x.size):
        saved = flat_x[i]
        step = STEP * max(1.0, abs(saved))
        flat_x[i] = saved + step
        upper = loss()
        flat_x[i] = saved - step
        lower = loss()
        flat_x[i] = saved
        flat_gradient[i] = (upper - lower) / (2 * step)
    return gradient


def check_lcn(backend, name, shape, kernel_width, kernel_height, params, rng):
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    forward = mpsnorm.LocalContrastNormalization(kernel_width, kernel_height, backend=backend,
                                                 **params)
    gradient = mpsnorm.LocalContrastNormalizationGradient(kernel_width, kernel_height,
                                                          backend=backend, **params)
    expected = _finite_difference(lambda: float(np.sum(dy * forward(x))), x)
    return [("LCN gradient", name, "dx", _relative_error(gradient(dy, x), expected))]


def check_instance_norm(backend, name, shape, params, rng):
    params = dict(params)
    offset = params.pop("offset", 0.0)
    with_gamma = params.pop("with_gamma", False)
    channels = shape[1]
    x = rng.standard_normal(shape) + offset
    dy = rng.standard_normal(shape)
    gamma = rng.uniform(0.5, 1.5, channels).astype(np.float32) if with_gamma else None
    beta = rng.uniform(-0.5, 0.5, channels).astype(np.float32)
    forward = mpsnorm.InstanceNormalization(channels, gamma=gamma, beta=beta, backend=backend,
                                            **params)
    gradient = mpsnorm.InstanceNormalizationGradient(channels, gamma=gamma, backend=backend,
                                                     **params)

    def loss():
        return float(np.sum(dy * forward(x)))

    dx, dgamma, dbeta = gradient(dy, x)
    rows = [("instance-norm gradient", name, "dx",
             _relative_error(dx, _finite_difference(loss, x)))]
    # The forward is affine in gamma and beta, so a difference over any step
    # is exact; the steps are taken between float32 values, as stored.
    base = {"gamma": np.asarray(forward.gamma, dtype=np.float64),
            "beta": np.asarray(forward.beta, dtype=np.float64)}
    expected = {"gamma": np.empty(channels), "beta": np.empty(channels)}
    for attribute, values in base.items():
        for c in range(channels):
            shifted = values.copy()
            shifted[c] = np.float32(values[c] + 1.0)
            setattr(forward, attribute, shifted)
            upper, upper_value = loss(), shifted[c]
            shifted[c] = np.float32(values[c] - 1.0)
            setattr(forward, attribute, shifted)
            lower, lower_value = loss(), shifted[c]
            setattr(forward, attribute, values)
            expected[attribute][c] = (upper - lower) / (upper_value - lower_value)
    expected_dgamma, expected_dbeta = expected["gamma"], expected["beta"]
    rows.append(("instance-norm gradient", name, "dgamma", _relative_error(dgamma, expected_dgamma)))
    rows.append(("instance-norm gradient", name, "dbeta", _relative_error(dbeta, expected_dbeta)))
    return rows


def run(print_line=print):
    """Runs every case on every backend that can do float64 (the CPU); prints
    the table; returns True when all pass."""
    rng = np.random.default_rng(2024)
    rows = []
    for case in LCN_CASES:
        rows += check_lcn("cpu", *case, rng)
    for case in INSTANCE_NORM_CASES:
        rows += check_instance_norm("cpu", *case, rng)
    header = f"{'kernel':<24} {'case':<26} {'output':<7} {'max rel. error':>14}  result"
    print_line(header)
    print_line("-" * len(header))
    failures = 0
    for kernel, case, output, error in rows:
        passed = error <= TOLERANCE
        failures += not passed
        print_line(f"{kernel:<24} {case:<26} {output:<7} {error:>14.2e}  "
                   f"{'pass' if passed else 'FAIL'}")
    print_line(f"{len(rows) - failures} passed, {failures} failed "
               f"(finite differences, float64, step {STEP:g}, tolerance {TOLERANCE:g})")
    return failures == 0


def run_metal(print_line=print):
    """Where Metal exists: the Metal self-check of every class of call (Metal against the
    CPU backend in float64, mpsnorm.h "Metal self-check"), as a table to paste into a bug
    report. A failed or unsupported class runs on the CPU under backend="auto": the table
    says so, and the exit status stays 0 (mpsnorm still computes correctly). Returns the
    verdicts."""
    verdicts = mpsnorm.metal_report(check_all=True)
    header = f"{'class of call (Metal vs CPU)':<60} {'error':>9} {'allowed':>8}  verdict"
    print_line(header)
    print_line("-" * len(header))
    for verdict in verdicts:
        error = f"{verdict['error']:.2e}" if verdict["verdict"] in ("passed", "failed") else "-"
        print_line(f"{verdict['description']:<60} {error:>9} {verdict['tolerance']:>8.0e}  "
                   f"{verdict['verdict']}")
        if verdict["message"]:
            print_line(f"    {verdict['message']}")
    counts = {name: sum(v["verdict"] == name for v in verdicts)
              for name in ("passed", "failed", "unsupported", "trusted")}
    print_line(", ".join(f"{n} {name}" for name, n in counts.items()) +
               " (failed and unsupported classes run on the CPU under backend='auto')")
    return verdicts
