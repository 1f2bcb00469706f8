"""The switches and counters of the fake Metal/MPS (tests/objc/fake/fake_table.h), read and
set through ctypes on the libmpsnorm that the imported mpsnorm loaded. Only the fake-Metal
build (tests/objc/build.py) has them: loaded() is None anywhere else."""
import ctypes
import gc
import os


class FakeMetal:
    """Control of the fake frameworks linked into one libmpsnorm."""

    def __init__(self, library):
        self._lib = library
        library.mpsnorm_fake_metal_set.argtypes = [ctypes.c_char_p, ctypes.c_int64]
        library.mpsnorm_fake_metal_set.restype = ctypes.c_int
        library.mpsnorm_fake_metal_get.argtypes = [ctypes.c_char_p]
        library.mpsnorm_fake_metal_get.restype = ctypes.c_int64
        library.mpsnorm_fake_metal_name.argtypes = [
            ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_char_p)]
        library.mpsnorm_fake_metal_name.restype = ctypes.c_char_p
        library.mpsnorm_fake_metal_reset.restype = None
        library.mpsnorm_fake_metal_wait_idle.restype = None
        library.mpsnorm_fake_metal_selfcheck.argtypes = [ctypes.c_int]
        library.mpsnorm_fake_metal_selfcheck.restype = None
        library.mpsnorm_fake_metal_min_call_bytes.argtypes = [ctypes.c_int64]
        library.mpsnorm_fake_metal_min_call_bytes.restype = None
        self.settings, self.counters = {}, {}
        index = 0
        while True:
            is_setting, doc = ctypes.c_int(), ctypes.c_char_p()
            name = library.mpsnorm_fake_metal_name(index, ctypes.byref(is_setting),
                                                   ctypes.byref(doc))
            if name is None:
                break
            table = self.settings if is_setting.value else self.counters
            table[name.decode()] = doc.value.decode()
            index += 1
        # the fake ignores names it does not know in MPSNORM_FAKE_METAL; a typo fails here
        for entry in filter(None, os.environ.get("MPSNORM_FAKE_METAL", "").split(",")):
            if entry.split("=")[0] not in self.settings:
                raise KeyError("MPSNORM_FAKE_METAL names %r, which is no setting of the fake "
                               "(it has %s)" % (entry, sorted(self.settings)))

    def set(self, name, value=1):
        if self._lib.mpsnorm_fake_metal_set(name.encode(), int(value)) != 0:
            raise KeyError("the fake has no setting %r (it has %s)" % (name, sorted(self.settings)))

    def get(self, name):
        if name not in self.settings and name not in self.counters:
            raise KeyError("the fake has no setting or counter %r" % name)
        return self._lib.mpsnorm_fake_metal_get(name.encode())

    def reset(self):
        """Every setting to its default, the counters of totals to 0."""
        self._lib.mpsnorm_fake_metal_reset()

    def selfcheck(self, enabled):
        """Forgets the Metal self-check's verdicts; False trusts every class from now on
        (as MPSNORM_METAL_SELFCHECK=0 does), True checks each class at its first call."""
        self._lib.mpsnorm_fake_metal_selfcheck(1 if enabled else 0)

    def min_call_bytes(self, size):
        """backend="auto" keeps calls whose tensors are smaller than size bytes on the CPU;
        None restores the library's default (MPSNORM_METAL_MIN_CALL_BYTES)."""
        self._lib.mpsnorm_fake_metal_min_call_bytes(-1 if size is None else int(size))

    def wait_idle(self):
        """Returns once the fake GPU has run and released every committed buffer."""
        self._lib.mpsnorm_fake_metal_wait_idle()

    def counts(self):
        """Every counter, once the GPU is idle."""
        self.wait_idle()
        return {name: self.get(name) for name in self.counters}

    def live_objects(self):
        """Fake Objective-C objects alive once Python's garbage and the GPU are done."""
        gc.collect()
        self.wait_idle()
        return self.get("live_objects")


def loaded():
    """FakeMetal for the libmpsnorm the imported mpsnorm uses, or None if it has no fake."""
    import mpsnorm

    library = ctypes.CDLL(os.path.join(mpsnorm.get_library_dir(), "libmpsnorm.so"))
    if not hasattr(library, "mpsnorm_fake_metal_get"):
        return None
    return FakeMetal(library)
