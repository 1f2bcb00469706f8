"""python -m mpsnorm: what this installation has, then a self-check of both
gradient kernels against finite differences (exit status 1 on any failure), and
where Metal exists the Metal self-check of every class of call (Metal vs CPU).

python -m mpsnorm bench [--full]: speed against NumPy (and PyTorch where installed).

python -m mpsnorm demo [--out lcn.png] [--kernel-size 15]: a PNG of a synthetic
image before and after local contrast normalization.

python -m mpsnorm config [--cflags] [--libs] [--includedir] [--libdir] [--pkgconfigdir]:
compiler flags and paths for C programs that use libmpsnorm."""
import sys

import mpsnorm


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv and argv[0] == "bench":
        from mpsnorm import bench

        return bench.main(argv[1:])
    if argv and argv[0] == "demo":
        from mpsnorm import demo

        return demo.main(argv[1:])
    if argv and argv[0] == "config":
        from mpsnorm import config

        return config.main(argv[1:])
    if argv:
        print(f"python -m mpsnorm: unknown arguments {' '.join(argv)!r}", file=sys.stderr)
        return 2
    from mpsnorm import selfcheck

    print(f"mpsnorm {mpsnorm.__version__}")
    print(f"backends: {', '.join(mpsnorm.backends())}")
    print(f"threads: {mpsnorm.get_num_threads()}")
    print()
    passed = selfcheck.run()
    if "metal" in mpsnorm.backends():
        print()
        selfcheck.run_metal()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
