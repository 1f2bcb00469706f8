# Stub of the extension module mpsnorm/_backend.pyx.

def backends() -> tuple[str, ...]:
    """The backends usable on this machine, preferred first: ("metal", "cpu") or ("cpu",)."""

def library_version() -> str:
    """The version of the C library this module runs."""
