"""Minga: the platform of a network of national CSIRTs."""

__version__ = "0.1.0"
