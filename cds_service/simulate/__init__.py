"""What the service would have said over a site's bulk FHIR export (``salivary-cds simulate``).

``export`` reads the NDJSON files through DuckDB (memory bounded however large the export),
``snapshot`` rebuilds a patient's record as it stood when an order was placed, ``run`` sends
each imaging order through the same CdsEngine as order-select, ``tally`` counts the outcome
without patient data and ``page`` draws it (HTML with inline SVG, and CSV).

May import: the engine, ``cli.replay`` (the request builder it shares), ``store.charts``.
"""
