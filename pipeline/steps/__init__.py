"""One module per workflow rule, named like the rule and its ``photoz`` verb: a pure function plus ``main(argv)``.

No step imports another step: what two steps share lives in :mod:`pipeline.core` or :mod:`pipeline.store`.
"""
