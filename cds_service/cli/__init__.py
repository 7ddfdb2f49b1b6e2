"""The command line (``salivary-cds``): serve, replay, vignettes, cards, orderables, report,
simulate (its reading of a bulk export, snapshots and report in ``simulation/``).

May import: anything (it is the top layer, beside ``web``).
"""
