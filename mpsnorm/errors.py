"""Exceptions raised by mpsnorm."""
from mpsnorm._mpsnorm import MPSNormError

__all__ = ["MPSNormError"]
