"""mpsnorm._output_cache: the memory of the adapters' large outputs is reused once nothing
refers to them, never while anything does (tensors, views, NumPy arrays), up to the idle
limit, from any thread; and the PyTorch layers' results stay intact across steps that
reuse memory."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from mpsnorm import _output_cache as oc

ELEMENTS = oc.LARGE // 4  # float32 elements of the smallest cached output


def address(array):
    return array.__array_interface__["data"][0]


def span(array):
    start = address(array)
    return start, start + array.nbytes


@pytest.fixture(autouse=True)
def empty_cache():
    oc.clear()
    yield
    oc.clear()


def test_released_memory_is_handed_out_again():
    first = oc.new_output((ELEMENTS,), np.float32)
    where = address(first)
    del first
    again = oc.new_output((2, ELEMENTS // 2), np.float32)  # the same bytes, another shape
    assert address(again) == where and again.shape == (2, ELEMENTS // 2)
    other_size = oc.new_output((ELEMENTS + 16,), np.float32)
    assert address(other_size) != where


def test_small_outputs_are_not_cached():
    small = oc.new_output((16, 16), np.float16)
    assert small.dtype == np.float16 and small.flags.c_contiguous
    del small
    assert oc.statistics()["idle_buffers"] == 0


def test_memory_is_not_reused_while_anything_refers_to_it():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    first = oc.new_output((ELEMENTS,), np.float32)
    first[:] = 1.0
    tensor_view = torch.from_numpy(first)[10:]
    numpy_of_tensor = tensor_view.numpy()
    del first, tensor_view
    second = oc.new_output((ELEMENTS,), np.float32)
    second[:] = 2.0
    assert (numpy_of_tensor == 1.0).all()
    del second
    plain = oc.new_output((ELEMENTS,), np.float32)
    plain[:] = 3.0
    numpy_view = plain[::2]
    del plain
    third = oc.new_output((ELEMENTS,), np.float32)
    third[:] = 4.0
    assert (numpy_view == 3.0).all() and (numpy_of_tensor == 1.0).all()


def test_transposed_outputs_are_handed_out_as_views():
    nhwc = oc.new_output((2, 8, 256, 256), np.float32, (0, 3, 1, 2))
    assert nhwc.shape == (2, 256, 8, 256) and not nhwc.flags.c_contiguous
    where = address(nhwc)
    del nhwc
    assert address(oc.new_output((2, 8, 256, 256), np.float32)) == where


def test_idle_memory_is_held_to_the_limit_least_recently_released_first():
    cache = oc._Cache(idle_limit=3 * oc.LARGE)
    buffers = [np.empty(oc.LARGE + k, np.uint8) for k in range(4)]
    for buffer in buffers:
        cache.give_back(buffer)
    stats = cache.statistics()
    assert stats["idle_bytes"] <= 3 * oc.LARGE + 6 and stats["idle_buffers"] == 2
    assert cache.take(oc.LARGE) is None and cache.take(oc.LARGE + 1) is None  # the oldest
    assert cache.take(oc.LARGE + 3) is buffers[3]
    assert oc._Cache(idle_limit=0).take(oc.LARGE) is None


def test_a_release_while_the_cache_is_busy_is_filed_later():
    """A finalizer that runs while the cache's lock is held (another thread, or the
    cyclic collector inside the cache on this thread) must not wait for it."""
    first = oc.new_output((ELEMENTS,), np.float32)
    where = address(first)
    with oc._cache.lock:
        del first  # the finalizer runs now, with the lock held
    assert address(oc.new_output((ELEMENTS,), np.float32)) == where


def test_threads_never_share_live_outputs():
    live, failures = [], []
    lock = threading.Lock()

    def worker(seed):
        rng = np.random.default_rng(seed)
        held = []
        for _ in range(200):
            if held and rng.random() < 0.5:
                held.pop(int(rng.integers(len(held))))
            else:
                array = oc.new_output((ELEMENTS + 1024 * int(rng.integers(3)),), np.float32)
                array[0] = array[-1] = seed
                held.append(array)
            for array in held:
                if array[0] != seed or array[-1] != seed:
                    failures.append(seed)
        with lock:
            live.extend(held)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    spans = sorted(span(array) for array in live)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))


def run_python(code, **environment):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, **environment), timeout=120)


def test_the_idle_limit_comes_from_the_environment():
    code = ("from mpsnorm import _output_cache as oc\n"
            "a = oc.new_output((oc.LARGE,), 'uint8'); del a\n"
            "print(oc.statistics()['idle_limit'], oc.statistics()['idle_buffers'])")
    result = run_python(code, MPSNORM_OUTPUT_CACHE_MB="0")
    assert result.returncode == 0 and result.stdout.split() == ["0", "0"], result.stderr
    result = run_python(code, MPSNORM_OUTPUT_CACHE_MB="lots")
    assert result.returncode != 0
    assert ("MPSNORM_OUTPUT_CACHE_MB must be a number of megabytes, got 'lots'"
            in result.stderr)


def test_torch_results_survive_later_steps_that_reuse_memory():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    import mpsnorm.torch as mt

    shape = (2, 4, 256, 512)  # 4 MiB float32 tensors: cached
    layer = mt.InstanceNormalization(4)
    lcn = mt.LocalContrastNormalization(3, alpha=1.0)
    kept = []
    for step in range(3):
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(step),
                        requires_grad=True)
        y = lcn(layer(x))
        y.square().sum().backward()
        kept.append((y.detach(), x.grad, y.detach().clone(), x.grad.clone()))
    for y, grad, y_copy, grad_copy in kept:
        assert torch.equal(y, y_copy) and torch.equal(grad, grad_copy)
    assert len({y.data_ptr() for y, *_ in kept}) == 3
