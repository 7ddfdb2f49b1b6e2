"""The last report, read as a radiologist wrote it: NI-RADS categories in their many spellings,
and plain conclusions with their negations and hedges. Anything not unambiguous reads as None."""

from __future__ import annotations

import pytest

from cds_service.clinical.report_reading import ReportReader
from cds_service.knowledge.loader import default_hooks_dir, load_knowledge

READER = ReportReader(load_knowledge(default_hooks_dir()).pathway)

#: (impression, expected branch, expected NI-RADS category)
IMPRESSIONS: list[tuple[str, str | None, str | None]] = [
    # NI-RADS, as reports write it
    ("NI-RADS 2b.", "indeterminate", "2b"),
    ("NIRADS 3", "positive", "3"),
    ("NI-RADS: 2B", "indeterminate", "2b"),
    ("NI RADS category 1: expected post-treatment changes.", "negative", "1"),
    ("NI-RADS: Primary 2a, Neck 1", "low-suspicion-mucosal", "2a"),
    ("NI-RADS primary 1, neck 3.", "positive", "3"),
    ("Primary site: NI-RADS 2b. Neck: NI-RADS 1.", "indeterminate", "2b"),
    ("NI-RADS 4: biopsy-proven recurrence in the parotid bed.", "recurrence", "4"),
    ("NI-RADS 0 - prior imaging requested for comparison.", "incomplete", "0"),
    ("NI-RADS 2 (neck), low suspicion level IIA node.", "indeterminate", "2"),
    ("NI-RADS v2025 category 3, recommend biopsy.", "positive", "3"),
    ("NI-RADS 2b; short-interval follow-up in 3 months.", "indeterminate", "2b"),
    ("Neck NI-RADS 1. Primary NI-RADS 1.", "negative", "1"),
    ("NI-RADS: primary 3, neck 2", "positive", "3"),
    # plainly negative, with the negation before the finding
    ("No evidence of recurrence.", "negative", None),
    ("No evidence of local or regional recurrence.", "negative", None),
    ("No evidence of residual or recurrent disease.", "negative", None),
    ("Expected post-treatment changes in the left parotid bed.", "negative", None),
    ("Stable postoperative changes. No suspicious enhancement.", "negative", None),
    ("No findings consistent with recurrence.", "negative", None),
    ("Negative for recurrent tumor.", "negative", None),
    ("No perineural spread along CN VII or V3.", "negative", None),
    ("No nodal recurrence. No new suspicious lymph nodes.", "negative", None),
    ("Without evidence of disease in the surgical bed.", "negative", None),
    # plainly positive
    ("Enhancing mass in the parotid bed consistent with recurrence.", "positive", None),
    ("Biopsy-proven recurrence at the deep lobe margin.", "positive", None),
    ("Findings compatible with local recurrence.", "positive", None),
    ("Perineural spread along the facial nerve to the stylomastoid foramen.", "positive", None),
    ("Recurrent tumor along the resection margin.", "positive", None),
    ("Mass without necrosis, consistent with recurrence.", "positive", None),
    ("No nodal disease. Parotid bed mass consistent with recurrence.", "positive", None),
    ("Highly suspicious for recurrence; tissue sampling advised.", "positive", None),
    ("New pulmonary nodules, consistent with metastases.", "positive", None),
    # hedged: indeterminate
    ("Indeterminate enhancement in the surgical bed.", "indeterminate", None),
    ("Equivocal soft tissue along the resection margin.", "indeterminate", None),
    ("Recurrence cannot be excluded.", "indeterminate", None),
    (
        "Recurrent tumor cannot be excluded; short-interval follow-up suggested.",
        "indeterminate",
        None,
    ),
    ("Nonmasslike enhancement may represent scar or early recurrence.", "indeterminate", None),
    ("Suspicious for early recurrence versus post-radiation change.", "indeterminate", None),
    (
        "No evidence of nodal recurrence. Indeterminate enhancement in the parotid bed.",
        "indeterminate",
        None,
    ),
    ("Post-treatment changes; however, recurrence is not excluded.", "indeterminate", None),
    ("Findings difficult to distinguish from post-treatment change.", "indeterminate", None),
    # unknown: nothing unambiguous
    ("Postoperative changes of left parotidectomy.", None, None),
    ("Comparison with outside imaging is recommended.", None, None),
    ("Mild mucosal thickening of the maxillary sinuses.", None, None),
    ("See report body.", None, None),
    ("", None, None),
]


def test_the_table_holds_at_least_forty_impressions() -> None:
    assert len(IMPRESSIONS) >= 40


@pytest.mark.parametrize(("impression", "branch", "category"), IMPRESSIONS)
def test_a_report_reads_as_a_radiologist_meant_it(
    impression: str, branch: str | None, category: str | None
) -> None:
    reading = READER.read([impression])
    if branch is None:
        assert reading is None, impression
        return
    assert reading is not None, impression
    assert reading.branch == branch, impression
    assert reading.category == category, impression


def test_a_coded_conclusion_is_read_by_its_display_or_text() -> None:
    reading = READER.read(["Neck Imaging Reporting and Data System", "NI-RADS 2b"])
    assert reading is not None and reading.category == "2b"
