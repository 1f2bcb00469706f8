#!/usr/bin/env python3
"""The project's speed goals, each with its verdict on this machine.

    python bench/goals.py [--full] [--runs 3]

Takes mpsnorm.bench's measurements (every ratio from its two sides timed alternately in
one run) --runs times in a row and prints, per goal, the figure of the last run, the lowest
and highest over the runs, and whether the last run meets the goal. Measurements without a
goal are printed as information. The goals live here, with the repository, not in the
installed package: `python -m mpsnorm bench` prints the same measurements without them.
"""
import argparse
import os
import sys

# NumPy's BLAS held to one thread before NumPy loads (mpsnorm.bench.quiet_blas explains why).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from mpsnorm import bench  # noqa: E402

# key of a measurement -> (goal as text, test of the figure)
GOALS = {
    "inorm_grad_roofline": (">= 95%", lambda v: v >= 0.95),
    "lcn_grad_vs_scipy": (">= 40x", lambda v: v >= 40),
    "lcn_grad_roofline": (">= 33%", lambda v: v >= 0.33),
    "lcn_grad_31_over_3": ("<= 1.3", lambda v: v <= 1.3),
    "lcn_grad_large_plane": ("<= 1.3", lambda v: v <= 1.3),
    # import mpsnorm against import numpy, each in a fresh interpreter (NumPy not imported)
    "import_vs_numpy": (">= 50x", lambda v: v >= 50),
    "call_overhead_lcn": ("<= 2", lambda v: v <= 2),
    "call_overhead_inorm": ("<= 2", lambda v: v <= 2),
    "threads_lcn": (">= 1.7x", lambda v: v >= 1.7),
    "threads_inorm": (">= 1.7x", lambda v: v >= 1.7),
    "concurrent_lcn": ("<= 0.6", lambda v: v <= 0.6),
    "concurrent_inorm": ("<= 0.6", lambda v: v <= 0.6),
    "lcn_float16": ("<= 1.3", lambda v: v <= 1.3),
    "lcn_nhwc": ("<= 1.3", lambda v: v <= 1.3),
    "lcn_strided": ("<= 2", lambda v: v <= 2),
    "inorm_float16": ("<= 1.3", lambda v: v <= 1.3),
    "inorm_nhwc": ("<= 1.3", lambda v: v <= 1.3),
    "inorm_strided": ("<= 2", lambda v: v <= 2),
    # extra peak memory of one call, as a fraction of one tensor: O(threads x plane)
    "memory_lcn": ("< 25% of a tensor", lambda v: v < 0.25),
    "memory_lcn_nhwc": ("< 25% of a tensor", lambda v: v < 0.25),
    "memory_inorm": ("< 25% of a tensor", lambda v: v < 0.25),
    # a training step (forward + backward, float32, 2 threads) through mpsnorm.torch's layers
    "torch_inorm_32x32x128x128_vs_framework": (">= 2x", lambda v: v >= 2),
    "torch_inorm_32x32x128x128_over_kernels": ("<= 1.3", lambda v: v <= 1.3),
    "torch_inorm_8x64x64x64_vs_framework": (">= 2x", lambda v: v >= 2),
    "torch_inorm_8x64x64x64_over_kernels": ("<= 1.3", lambda v: v <= 1.3),
    "torch_inorm_1x16x16x16_vs_framework": (">= 1x", lambda v: v >= 1),
    "torch_lcn_vs_framework": (">= 10x", lambda v: v >= 10),
    "torch_lcn_over_kernels": ("<= 1.3", lambda v: v <= 1.3),
}


def spread(values):
    known = [v for v in values if v is not None]
    if len(known) < 2:
        return ""
    return f"{min(known):.3g} - {max(known):.3g}"


def verdict(key, value):
    if key not in GOALS:
        return ""
    if value is None:
        return "n/a"
    return "yes" if GOALS[key][1](value) else "NO"


def main(argv=None):
    parser = argparse.ArgumentParser(description="mpsnorm's speed goals and their verdicts")
    parser.add_argument("--full", action="store_true", help="more repetitions per figure")
    parser.add_argument("--runs", type=int, default=1, help="whole runs in a row (ranges)")
    args = parser.parse_args(argv)
    runs = []
    for run in range(args.runs):
        print(f"run {run + 1} of {args.runs}", file=sys.stderr)
        runs.append(bench.measure(full=args.full, log=print if run == 0 else None))
    last = runs[-1]
    lines = []
    for index, row in enumerate(last):
        values = [rows[index].value for rows in runs]
        goal = GOALS.get(row.key, ("",))[0]
        lines.append((row.what, row.text, spread(values), goal, verdict(row.key, row.value)))
    bench.print_table(("what", "measured (last run)", f"range of {args.runs}", "goal", "met"),
                      lines)
    missing = sorted(set(GOALS) - {row.key for row in last})
    if missing:
        print(f"goals without a measurement: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
