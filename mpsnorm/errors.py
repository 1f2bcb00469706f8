"""Exceptions raised by mpsnorm."""


class MPSNormError(RuntimeError):
    """A backend failed while running a kernel (for example a Metal command
    buffer that did not complete). Bad arguments raise ValueError or
    TypeError instead."""
