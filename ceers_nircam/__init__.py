"""ceers-nircam: CEERS-style reduction of JWST NIRCam imaging.

The shared helpers used by every step script live in this package; the step
scripts themselves (``stage1/``, ``stage2/``, ``stage3/``) stay thin wrappers.
"""

__version__ = "0.1.0"
