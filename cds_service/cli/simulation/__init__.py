"""What the service would have said over a site's bulk FHIR export (``salivary-cds simulate``).

``export`` reads the NDJSON files through DuckDB (memory bounded however large the export),
``snapshot`` rebuilds a patient's record as it stood when an order was placed, ``run`` sends
each imaging order through the same CdsEngine as order-select, ``tally`` counts the outcome
without patient data and ``page`` draws it (HTML with inline SVG, and CSV).

Part of the command line (``cli``), so it may import what ``cli`` may; it uses the engine,
``fhir.build`` (the request builder the vignettes share) and ``store.charts``.
"""
