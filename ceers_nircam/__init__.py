"""ceers-nircam: CEERS-style reduction of JWST NIRCam imaging.

The shared helpers (command-line plumbing, FITS I/O, survey facts), the MAST
downloader and the offline mode (synthetic references and simulator) live here.
"""

__version__ = "0.1.0"
