"""FHIR data in: the one reader of raw FHIR JSON, and gathering a call's data (prefetch, or the
EHR's FHIR server behind the allow-list, the breaker and the limits).

Owns: ``records`` (raw JSON -> small frozen facts; ``compiled_validation``, the fast proof that
fhir.resources would accept a resource), ``gather`` (prefetch or fetch, per key;
``provenance``: whether a prefetched Bundle answers its template),
``client`` (the HTTP client), ``allowlist``, ``circuit``, ``json_limits``, ``fact_cache`` and
``build`` (the one FHIR builder of vignettes, replay, benchmarks and tests).
May import: ``knowledge``, ``contract``.
"""
