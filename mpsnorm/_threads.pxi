# The CPU backend's thread count, process-wide (included by _mpsnorm.pyx).

def get_num_threads():
    """Threads a CPU kernel call splits its work over."""
    return mpsnorm_get_num_threads()


def set_num_threads(n):
    """Sets the CPU backend's thread count for later calls (1 .. 1024).
    Results are bitwise identical for every count."""
    count = to_int64(n, "n", "set_num_threads")
    if not 1 <= count <= 1024:
        raise ValueError(f"set_num_threads: n must be in 1..1024, got {n!r}")
    check_status(mpsnorm_set_num_threads(<int>count), NULL, "set_num_threads")
