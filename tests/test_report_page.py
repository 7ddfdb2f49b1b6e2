"""``salivary-cds report --html``: the outcome report's plots, and the plots' escaping."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from flask import Flask

from cds_service.cli.main import main
from cds_service.store import charts
from cds_service.store.report import ReportRow
from cds_service.store.report_page import bucket_of, rates_over_time, render
from cds_service.web.runtime import runtime
from tests.test_report import accept, app, at, dismiss, send, show

__all__ = ["app"]  # the fixture, shared with test_report


def test_the_page_plots_rates_and_reasons(
    app: Flask, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cards = [show(app, order_id=f"o-{n}") for n in range(4)]
    send(app, accept(cards[0], at(1)), dismiss(cards[1], at(1), code="patient-declined-mri"))
    runtime(app).card_log.flush()
    page = tmp_path / "report.html"
    assert main(["report", "--database-url", database_url, "--html", str(page)]) == 0
    assert f"report page written to {page}" in capsys.readouterr().out
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert html.count("<svg") == 3  # acceptance, override, the rule's reasons
    assert "Override reasons: incomplete-mri-protocol" in html
    assert "patient-declined-mri" in html
    # one day of data: the points are that day's 25% accepted and 25% overridden
    assert "incomplete-mri-protocol" in html and ": 25%</title>" in html


def _row(day: date, rule: str, shown: int, accepted: int, overridden: int) -> ReportRow:
    return ReportRow(day.isoformat(), rule, shown=shown, accepted=accepted, overridden=overridden)


def test_buckets_follow_the_span_of_the_data() -> None:
    start = date(2026, 1, 5)  # a Monday
    assert bucket_of([start, start + timedelta(days=20)]) == "day"
    assert bucket_of([start, start + timedelta(days=90)]) == "week"
    assert bucket_of([start, start + timedelta(days=400)]) == "month"
    rows = [
        _row(start, "us-limited", 4, 1, 2),
        _row(start + timedelta(days=2), "us-limited", 6, 3, 1),  # same week
        _row(start + timedelta(days=60), "us-limited", 2, 2, 0),
    ]
    size, buckets, counts = rates_over_time(rows)
    assert size == "week"
    assert buckets == ["2026-01-05", "2026-03-02"]
    assert counts["us-limited"]["2026-01-05"] == (10, 4, 3)


def test_every_text_is_escaped() -> None:
    row = ReportRow("<b>rule</b>", "<b>rule</b>", shown=1, overridden=1)
    row.top_override_reasons = [("<script>alert(1)</script>", 1)]
    html = render([row], [_row(date(2026, 1, 5), "<b>rule</b>", 1, 0, 1)], "always")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<b>" not in html
    assert charts.bar_chart([], "Nothing").startswith('<p class="note">')
