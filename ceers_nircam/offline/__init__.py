"""Offline mode: a synthetic NIRCam, its CRDS context, and a simulator with recorded truth.

``instrument`` holds the constants both sides share; ``references`` writes
the CRDS cache; ``scene``, ``artifacts`` and ``simulate`` make exposures;
``validate`` measures products against the truth; ``cli`` is ``ceers-offline``.
"""
