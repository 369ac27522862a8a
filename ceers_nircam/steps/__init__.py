"""The CEERS corrections, one module per step.

Each module holds the algorithm as functions of arrays (so it can be tested
on small arrays) and an ``apply(model, params)`` that runs it on a datamodel
and returns ``(model, status)``. The scripts in ``stage1/`` ... ``stage3/``
are thin commands over these.
"""

import dataclasses


@dataclasses.dataclass
class Status:
    """What ``apply`` did: whether pixels changed, why (not), and what it produced.

    ``products`` holds arrays a script may save beside its output (a source
    mask, patterns); ``values`` holds numbers worth recording (a fitted scale).
    """

    applied: bool
    message: str
    values: dict = dataclasses.field(default_factory=dict)
    products: dict = dataclasses.field(default_factory=dict)
