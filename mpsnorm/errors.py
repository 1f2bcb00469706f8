"""Exceptions raised, and warnings issued, by mpsnorm."""
from mpsnorm._mpsnorm import MPSNormError, MPSNormWarning

__all__ = ["MPSNormError", "MPSNormWarning"]
