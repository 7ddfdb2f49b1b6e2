"""The static card page: markdown as HTML, and nothing in a card becomes markup."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.cards.page import CardPage, CardSet
from cds_service.cli.main import main

HOSTILE = '<img src=x onerror="alert(1)">'


def test_markdown_tables_and_emphasis_become_html() -> None:
    card = {
        "summary": "Summary",
        "indicator": "warning",
        "detail": "**Bold** lead.\n\n| A | B |\n|---|---|\n| 1 | 2 |",
        "suggestions": [{"label": "Do it", "isRecommended": True}],
        "links": [{"label": "Read", "url": "https://doi.org/10.1016/j.jacr.2023.08.008"}],
        "overrideReasons": [{"display": "Not now"}],
    }
    page = CardPage().render([CardSet("one", "a vignette", [card])], "T")
    assert "<strong>Bold</strong>" in page
    assert "<table>" in page and "<td>2</td>" in page
    assert '<article class="card warning">' in page
    assert '<button type="button" class="suggestion recommended">Do it</button>' in page
    assert 'href="https://doi.org/10.1016/j.jacr.2023.08.008"' in page
    assert "<li>Not now</li>" in page


def test_nothing_in_a_card_becomes_markup() -> None:
    card = {
        "summary": HOSTILE,
        "indicator": "info",
        "detail": f"Order {HOSTILE} now",
        "suggestions": [{"label": HOSTILE}],
        "overrideReasons": [{"display": HOSTILE}],
        "source": {"label": HOSTILE, "url": 'https://x.example/"><script>'},
    }
    page = CardPage().render([CardSet(HOSTILE, HOSTILE, [card])], HOSTILE)
    assert "<img" not in page and "<script" not in page


def test_a_silent_vignette_says_so() -> None:
    page = CardPage().render([CardSet("quiet", "benign", [])], "T")
    assert "No card: the service stays silent." in page


def test_cards_command_refuses_an_unwritable_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing-folder" / "cards.html"
    assert main(["cards", "--html", str(target)]) != 0
    assert "cannot write" in capsys.readouterr().err
