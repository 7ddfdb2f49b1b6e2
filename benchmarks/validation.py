"""What validating a resource costs, with the compiled validator and with fhir.resources alone
(issue 32), over the resources and drafts the service is tested with. Run on demand:

    .venv/bin/python -m benchmarks.validation

Prints the share of resources the compiled validator decides on its own and the time
``validated()`` takes a resource, both ways (in-process, median of 7 rounds). Figures go in the
README ("Speed"); no test asserts a time. tests/test_compiled_validation.py uses the same
resources (``example_resources``).
"""

from __future__ import annotations

import gzip
import json
import statistics
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

from benchmarks.workload import json_objects, make_request, non_imaging_calls, session_calls
from cds_service.fhir.records import (
    VALIDATED_TYPES,
    clean,
    compiled_validator,
    proven_valid,
    validated,
    validated_by_models,
)

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 7


def resources_in(node: Any) -> Iterator[dict[str, Any]]:
    """Every resource of a type the service validates, anywhere in a JSON document."""
    return (o for o in json_objects(node) if o.get("resourceType") in VALIDATED_TYPES)


@cache
def example_resources() -> dict[str, list[dict[str, Any]]]:
    """The resources and draft orders the service is tested with, by where they come from:
    every fhir_examples file (requests, goldens' suggested orders, vignettes.json, the record
    Bundle), the benchmark workloads' requests, the Synthea sample of tests/data."""
    examples = [
        resource
        for path in sorted((ROOT / "fhir_examples").rglob("*.json"))
        for resource in resources_in(json.loads(path.read_text(encoding="utf-8")))
    ]
    requests = [make_request(kind) for kind in ("typical", "large", "negative")]
    requests += [request for _, request in session_calls(5) + non_imaging_calls()]
    workload = [resource for request in requests for resource in resources_in(request)]
    synthea = [
        resource
        for path in sorted((ROOT / "tests" / "data").rglob("*.ndjson.gz"))
        for line in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
        for resource in resources_in(json.loads(line))
    ]
    return {"examples": examples, "workload": workload, "synthea": synthea}


def microseconds_each(validate: Callable[[dict[str, Any]], Any], resources: list[Any]) -> float:
    """The median over ``ROUNDS`` rounds of the time ``validate`` takes a resource, in µs."""
    rounds = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for resource in resources:
            validate(resource)
        rounds.append((time.perf_counter() - start) / len(resources) * 1e6)
    return statistics.median(rounds)


def main() -> None:
    compiled_validator()  # built once per process, as the service's first call does
    resources = [r for found in example_resources().values() for r in found]
    proven = sum(proven_valid(clean(resource)) for resource in resources)
    print(f"{len(resources)} resources and drafts, {proven} proven valid by the compiled")
    print(f"validator ({proven / len(resources):.1%}); the rest validated by fhir.resources")
    reference = microseconds_each(validated_by_models, resources)
    fast = microseconds_each(validated, resources)
    print(f"validated(): {reference:.0f} µs a resource with fhir.resources alone, {fast:.0f} µs")


if __name__ == "__main__":
    main()
