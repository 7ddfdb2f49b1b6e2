"""A FHIR Bulk Data export read through DuckDB, one patient at a time, memory bounded.

The export is a folder of NDJSON files, one resource per line, gzip or not, any number of files
per resource type (``Condition.000.ndjson``, ``Condition.001.ndjson.gz``, ``1.Condition.ndjson``).
DuckDB reads them natively (``read_ndjson_objects``) into a database file in a private temporary
folder, keeping each resource's JSON text with three columns it extracts on the way in: the
patient it belongs to, the instant it entered the record and, for a ServiceRequest, when it was
authored. DuckDB spills to disk beyond ``memory_limit``, so the export's size bounds the disk it
needs, not the memory; Python then holds one patient's resources at a time.

Which instant counts as "entered the record" is the first of these that the resource has (FHIR
dates with only a year or a month are read as its first day; times without an offset as UTC):

- Condition: ``recordedDate``, ``onsetDateTime``, ``onsetPeriod.start``;
- Procedure: ``performedDateTime``, ``performedPeriod.end``, ``performedPeriod.start``;
- ServiceRequest: ``occurrenceDateTime``, ``occurrencePeriod.end``, ``authoredOn`` (a past order is
  read as the study it led to, as the record reader reads it);
- ImagingStudy: ``started``; DiagnosticReport and Observation: ``issued``, ``effectiveDateTime``,
  ``effectivePeriod.end`` (a report counts from when it was issued, not from the scan);
- AllergyIntolerance: ``recordedDate``, ``onsetDateTime``; Device and Patient: none.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from cds_service.contract.errors import InputFileError

#: The resource types the simulation reads (those the order-select prefetch asks for).
RESOURCE_TYPES = (
    "Patient",
    "Condition",
    "Procedure",
    "ServiceRequest",
    "Device",
    "ImagingStudy",
    "DiagnosticReport",
    "AllergyIntolerance",
    "Observation",
)
#: JSON paths of the patient reference, by type (Patient: its own id).
_PATIENT_PATH = {"Device": "$.patient.reference", "AllergyIntolerance": "$.patient.reference"}
#: JSON paths of the instant a resource entered the record, first found wins (see above).
_DATE_PATHS: dict[str, tuple[str, ...]] = {
    "Patient": (),
    "Condition": ("$.recordedDate", "$.onsetDateTime", "$.onsetPeriod.start"),
    "Procedure": ("$.performedDateTime", "$.performedPeriod.end", "$.performedPeriod.start"),
    "ServiceRequest": ("$.occurrenceDateTime", "$.occurrencePeriod.end", "$.authoredOn"),
    "Device": (),
    "ImagingStudy": ("$.started",),
    "DiagnosticReport": ("$.issued", "$.effectiveDateTime", "$.effectivePeriod.end"),
    "AllergyIntolerance": ("$.recordedDate", "$.onsetDateTime"),
    "Observation": ("$.issued", "$.effectiveDateTime", "$.effectivePeriod.end"),
}
_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
DEFAULT_MEMORY_LIMIT = "1GB"
#: Rows fetched from DuckDB per round trip while streaming patients.
_BATCH = 2048

INSTALL_HINT = "pip install 'salivary-imaging-cds[simulate]' (or: pip install duckdb)"


def _import_duckdb() -> Any:
    """DuckDB is an optional dependency: only the simulation needs it."""
    try:
        import duckdb  # optional dependency: imported where it is needed
    except ImportError:  # pragma: no cover - the dev install has it
        raise InputFileError(f"simulate needs DuckDB: {INSTALL_HINT}") from None
    return duckdb


def export_files(root: Path) -> dict[str, list[Path]]:
    """The NDJSON files of each wanted resource type: a file belongs to a type whose name is one
    of the dot-, dash- or underscore-separated parts of its file name."""
    if not root.is_dir():
        raise InputFileError(f"{root}: not a folder")
    found: dict[str, list[Path]] = {t: [] for t in RESOURCE_TYPES}
    for path in sorted(root.rglob("*")):
        name = path.name
        if not path.is_file() or not name.endswith(_SUFFIXES):
            continue
        parts = set(re.split(r"[._-]", name))
        for kind in RESOURCE_TYPES:
            if kind in parts:
                found[kind].append(path)
    return found


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _instant(expression: str) -> str:
    """SQL for epoch microseconds of a FHIR date/dateTime text (NULL when unreadable)."""
    padded = (
        f"CASE length({expression}) WHEN 4 THEN {expression} || '-01-01' "
        f"WHEN 7 THEN {expression} || '-01' ELSE {expression} END"
    )
    return f"epoch_us(TRY_CAST({padded} AS TIMESTAMPTZ))"


def _first(paths: Sequence[str]) -> str:
    if not paths:
        return "NULL"
    return "coalesce(" + ", ".join(f"json ->> {_sql_string(p)}" for p in paths) + ")"


def partition_sql(column: str, part: int, of: int) -> str:
    """Patients of partition ``part`` (1-based) of ``of``: the first 32 bits of the MD5 of the
    patient id, modulo ``of`` (``partition_of`` is the same in Python)."""
    return f"(('0x' || substr(md5({column}), 1, 8))::UBIGINT % {of}) = {part - 1}"


def partition_of(patient_id: str, of: int) -> int:
    """The 1-based partition of a patient id (the same arithmetic as ``partition_sql``)."""
    digest = hashlib.md5(patient_id.encode()).hexdigest()  # noqa: S324 - a key, not security
    return int(digest[:8], 16) % of + 1


@dataclass(frozen=True)
class Row:
    """One resource: its type, when it entered the record (epoch µs, None: undated), its JSON."""

    kind: str
    at: int | None
    authored: int | None
    body: str


@dataclass(frozen=True)
class Window:
    """Orders authored in [since, until), of one partition of the patients."""

    since: datetime | None = None
    until: datetime | None = None
    part: int = 1
    of: int = 1

    def where(self) -> str:
        clauses = ["kind = 'ServiceRequest'", "authored IS NOT NULL"]
        if self.since is not None:
            clauses.append(f"authored >= {int(self.since.timestamp() * 1_000_000)}")
        if self.until is not None:
            clauses.append(f"authored < {int(self.until.timestamp() * 1_000_000)}")
        if self.of > 1:
            clauses.append(partition_sql("pid", self.part, self.of))
        return " AND ".join(clauses)


class BulkExport:
    """An export loaded into a private DuckDB file; ``close()`` (or ``with``) deletes it."""

    def __init__(
        self,
        root: Path,
        memory_limit: str = DEFAULT_MEMORY_LIMIT,
        threads: int | None = None,
        work_dir: Path | None = None,
    ) -> None:
        duckdb = _import_duckdb()
        self.files = export_files(root)
        if not any(self.files.values()):
            raise InputFileError(f"{root}: no NDJSON file of {', '.join(RESOURCE_TYPES)}")
        # The database holds patient data: a private folder, removed by close().
        self._dir = Path(tempfile.mkdtemp(prefix="salivary-simulate-", dir=work_dir))
        try:
            self._db = duckdb.connect(str(self._dir / "export.duckdb"))
            settings = {
                # Never reach for the network: the JSON reader is linked into DuckDB's wheel, and a
                # hospital's batch host is usually offline.
                "autoinstall_known_extensions": "false",
                "autoload_known_extensions": "false",
                "enable_progress_bar": "false",  # ours is on stderr; DuckDB's would garble it
                "memory_limit": memory_limit,
                "temp_directory": str(self._dir / "spill"),
                "preserve_insertion_order": "false",
                "TimeZone": "UTC",
            }
            for name, value in settings.items():
                self._db.execute(f"SET {name} = {_sql_string(value)}")
            if threads:
                self._db.execute(f"SET threads = {int(threads)}")
            self._db.execute(
                "CREATE TABLE res (pid VARCHAR, kind VARCHAR, at_us BIGINT, authored BIGINT, "
                "body VARCHAR)"
            )
            #: Resources read per type (lines of the right resourceType with a patient).
            self.counts: dict[str, int] = {}
            for kind, paths in self.files.items():
                if paths:
                    self._load(kind, paths)
        except BaseException:  # an unreadable export, or SIGTERM while loading: leave nothing
            self.close()
            raise

    def _load(self, kind: str, paths: list[Path]) -> None:
        patient = (
            "json ->> '$.id'"
            if kind == "Patient"
            else f"json ->> {_sql_string(_PATIENT_PATH.get(kind, '$.subject.reference'))}"
        )
        # 'Patient/123', '.../fhir/Patient/123/_history/2' -> '123', as the record reader ties
        # a resource to its patient; 'urn:uuid:...' names a Bundle entry, no patient: left out.
        pid = (
            patient
            if kind == "Patient"
            else f"regexp_extract({patient}, '(^|/)Patient/([^/]+)(/_history/[^/]+)?$', 2)"
        )
        authored = _instant("json ->> '$.authoredOn'") if kind == "ServiceRequest" else "NULL"
        # The prefetch asks for laboratory Observations only; this is a cheap superset.
        extra = " AND contains(body, '\"laboratory\"')" if kind == "Observation" else ""
        files = "[" + ", ".join(_sql_string(str(p)) for p in paths) + "]"
        try:
            self._db.execute(
                f"""
                INSERT INTO res
                SELECT pid, kind, at_us, authored, body FROM (
                    SELECT {pid} AS pid, {_sql_string(kind)} AS kind,
                           {_instant(_first(_DATE_PATHS[kind]))} AS at_us,
                           {authored} AS authored, json::VARCHAR AS body,
                           json ->> '$.resourceType' AS rtype
                    FROM read_ndjson_objects({files}, compression = 'auto', ignore_errors = true)
                ) WHERE rtype = {_sql_string(kind)} AND pid IS NOT NULL AND pid <> ''{extra}
                """  # noqa: S608 - every value above is quoted by _sql_string or a fixed path
            )
        except Exception as exc:  # duckdb.Error: the export is unreadable, say which type
            raise InputFileError(f"cannot read the {kind} files: {exc}") from exc
        (count,) = self._db.execute(
            f"SELECT count(*) FROM res WHERE kind = {_sql_string(kind)}"  # noqa: S608 - fixed
        ).fetchone()
        self.counts[kind] = int(count)

    def order_count(self, window: Window) -> tuple[int, int]:
        """(ServiceRequests authored in the window, their patients)."""
        (orders, patients) = self._db.execute(
            f"SELECT count(*), count(DISTINCT pid) FROM res WHERE {window.where()}"  # noqa: S608
        ).fetchone()
        return int(orders), int(patients)

    def undated_orders(self, window: Window) -> int:
        """ServiceRequests of the partition without a readable ``authoredOn`` (whatever the
        window: when they were placed cannot be told)."""
        part = f" AND {partition_sql('pid', window.part, window.of)}" if window.of > 1 else ""
        (count,) = self._db.execute(
            f"SELECT count(*) FROM res WHERE kind = 'ServiceRequest' AND authored IS NULL{part}"  # noqa: S608
        ).fetchone()
        return int(count)

    def patients(self, window: Window) -> Iterator[tuple[str, list[Row]]]:
        """(patient id, every resource of that patient) for each patient with an order in the
        window, in patient id order; only one patient's rows are held at a time."""
        cursor = self._db.execute(
            f"""
            SELECT pid, kind, at_us, authored, body FROM res
            WHERE pid IN (SELECT DISTINCT pid FROM res WHERE {window.where()})
            ORDER BY pid
            """  # noqa: S608 - the window's SQL holds numbers only
        )
        current: str | None = None
        rows: list[Row] = []
        while batch := cursor.fetchmany(_BATCH):
            for pid, kind, at, authored, body in batch:
                if pid != current:
                    if current is not None:
                        yield current, rows
                    current, rows = pid, []
                rows.append(Row(kind, at, authored, body))
        if current is not None:
            yield current, rows

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> BulkExport:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
