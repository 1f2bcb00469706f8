"""Memory for the framework adapters' outputs, kept for reuse once the framework releases it.

A fresh large output is slow before the kernel writes a byte of it: the operating system
hands out zeroed pages on first touch. Even in the transparent huge pages that NumPy asks
Linux for (madvise), a 64 MiB output cost about 5 ms of zeroing on a 2-core x86-64
virtual machine, and a training step allocates two (y, then dx): as much as the two
kernels themselves. So the memory of an output of LARGE bytes or more is kept when the
framework releases the output and handed out again for the next output of the same size: in a training loop, a step's outputs reuse the
previous step's. Memory is only reused once nothing refers to it: not the array handed
out, nor any NumPy view of it, nor a tensor sharing it (torch.from_numpy). At most the
idle limit is kept (MPSNORM_OUTPUT_CACHE_MB, default 256; 0 keeps nothing), the least
recently released going first.
"""
from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict, deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt

# Smaller outputs come from malloc's heap, which reuses its pages without faults.
LARGE = 4 << 20

Buffer = npt.NDArray[np.uint8]


def _idle_limit_from_environment() -> int:
    text = os.environ.get("MPSNORM_OUTPUT_CACHE_MB", "256")
    try:
        megabytes = float(text)
    except ValueError:
        raise ValueError(f"mpsnorm: MPSNORM_OUTPUT_CACHE_MB must be a number of megabytes, "
                         f"got {text!r}") from None
    return max(0, int(megabytes * (1 << 20)))


class _Cache:
    """Idle buffers (uint8 NumPy arrays) by size, least recently released first.

    A finalizer runs on whichever thread releases an output, possibly on a thread that is
    inside this object already (the cyclic collector runs when container objects are
    created). So a finalizer only appends its buffer to `returned` (atomic) and files it
    when it can take the lock without waiting; whoever holds the lock files every
    returned buffer before letting it go."""

    def __init__(self, idle_limit: int) -> None:
        self.idle_limit = idle_limit
        self.lock = threading.Lock()
        self.returned: Deque[Buffer] = deque()
        self.idle: "OrderedDict[int, List[Buffer]]" = OrderedDict()
        self.idle_bytes = 0

    def _file_returned(self, dropped: List[Buffer]) -> None:
        """With the lock held: moves returned buffers to `idle`, then drops the least
        recently released ones (into `dropped`) down to the idle limit."""
        while self.returned:
            buffer = self.returned.popleft()
            size = buffer.nbytes
            self.idle.setdefault(size, []).append(buffer)
            self.idle.move_to_end(size)
            self.idle_bytes += size
        while self.idle_bytes > self.idle_limit and self.idle:
            size = next(iter(self.idle))
            buffers = self.idle[size]
            dropped.append(buffers.pop(0))
            self.idle_bytes -= size
            if not buffers:
                del self.idle[size]

    def give_back(self, buffer: Buffer) -> None:
        self.returned.append(buffer)
        dropped: List[Buffer] = []  # freed after the lock is released
        if self.lock.acquire(blocking=False):
            try:
                self._file_returned(dropped)
            finally:
                self.lock.release()

    def take(self, nbytes: int) -> Optional[Buffer]:
        dropped: List[Buffer] = []
        with self.lock:
            self._file_returned(dropped)
            buffers = self.idle.get(nbytes)
            if not buffers:
                return None
            self.idle_bytes -= nbytes
            buffer = buffers.pop()
            if not buffers:
                del self.idle[nbytes]
            return buffer

    def clear(self) -> None:
        held: List[Buffer] = []
        with self.lock:
            self._file_returned(held)
            for buffers in self.idle.values():
                held.extend(buffers)
            self.idle.clear()
            self.idle_bytes = 0

    def statistics(self) -> Dict[str, int]:
        with self.lock:
            self._file_returned([])
            return {"idle_bytes": self.idle_bytes,
                    "idle_buffers": sum(len(buffers) for buffers in self.idle.values()),
                    "idle_limit": self.idle_limit}


_cache = _Cache(_idle_limit_from_environment())


def _give_back(buffer: Buffer) -> None:
    _cache.give_back(buffer)


def _fresh_cache_in_child() -> None:
    # A forked child starts with an empty cache and a free lock, whatever thread held it.
    global _cache
    _cache = _Cache(_cache.idle_limit)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_cache_in_child)


class _Lease:
    """Shows a cached buffer's bytes to NumPy (np.asarray): an array made from it, and every
    view of that array, refers to this object (NumPy's views refer to the array that does
    not own its memory, not further), so once it is collected no array uses the memory."""

    __slots__ = ("__array_interface__", "__weakref__")

    def __init__(self, buffer: Buffer, shape: Sequence[int], dtype: Any) -> None:
        self.__array_interface__ = {"data": (buffer.ctypes.data, False), "version": 3,
                                    "shape": tuple(int(extent) for extent in shape),
                                    "typestr": np.dtype(dtype).str}


def new_output(shape: Sequence[int], dtype: Any,
               axes: Optional[Tuple[int, ...]] = None) -> npt.NDArray[Any]:
    """An uninitialized array of `dtype` with `shape`, C-contiguous, or, with `axes`, that
    array transposed by `axes` (a channels-last view, say). Large ones take memory an
    earlier output released, where there is one of the size."""
    nbytes = np.dtype(dtype).itemsize
    for extent in shape:
        nbytes *= int(extent)
    array: npt.NDArray[Any]
    if nbytes < LARGE or _cache.idle_limit == 0:
        array = np.empty(shape, dtype)
    else:
        buffer = _cache.take(nbytes)
        if buffer is None:
            buffer = np.empty(nbytes, np.uint8)
        lease = _Lease(buffer, shape, dtype)
        finalizer = weakref.finalize(lease, _give_back, buffer)
        finalizer.atexit = False
        array = np.asarray(lease)
    return array if axes is None else array.transpose(axes)


def statistics() -> Dict[str, int]:
    """The idle bytes and buffers held now, and the limit."""
    return _cache.statistics()


def clear() -> None:
    """Lets go of every idle buffer."""
    _cache.clear()
