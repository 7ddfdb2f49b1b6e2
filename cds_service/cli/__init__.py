"""The command line (``salivary-cds``): serve, replay, vignettes, cards, orderables, report.

May import: anything (it is the top layer, beside ``web``).
"""
