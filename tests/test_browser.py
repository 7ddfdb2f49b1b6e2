"""What the clinician sees: every vignette's cards rendered as a client renders them
(``salivary-cds cards --html``), opened in headless Chromium (Debian's, driven by Playwright).

The page is a local file: no network. Screenshots are written under build/screenshots/ (or
CDS_SCREENSHOT_DIR) for review. Where no browser can be installed the test says so and skips;
in CI (CI set) a missing browser fails it instead, since scripts/test.sh installs one there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cds_service.cards.page import CardPage, CardSet
from cds_service.cli.main import main
from tests.conftest import EXAMPLES

CHROMIUM = Path("/usr/bin/chromium")
#: An EHR's side pane, and a desktop window.
WIDTHS = (480, 1280)
#: Chromium as root in a sandboxed machine, with nothing reaching outside.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: Elements of a card that reach outside it, or whose content overflows their box.
OVERFLOW_JS = """
(card) => {
  const box = card.getBoundingClientRect();
  const found = [];
  for (const el of card.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    const outside = r.width > 0 && (r.right > box.right + 0.5 || r.left < box.left - 0.5);
    const spills = el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1;
    if (outside || spills) found.push(el.tagName + ': ' + el.textContent.slice(0, 60));
  }
  return found;
}
"""


def _golden_cards() -> dict[str, list[dict[str, Any]]]:
    cards = {}
    for path in sorted((EXAMPLES / "golden").glob("*.json")):
        response = json.loads(path.read_text(encoding="utf-8"))["response"]
        cards[path.stem] = response.get("cards", [])
    return cards


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("cards") / "cards.html"
    assert main(["cards", "--html", str(target)]) == 0
    return target


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "Playwright for Python is not installed (pip install playwright)"
    else:
        missing = (
            "" if CHROMIUM.exists() else f"no browser at {CHROMIUM} (apt-get install chromium)"
        )
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run in CI: {missing}")
        pytest.skip(f"browser test skipped: {missing}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        yield chromium
        chromium.close()


def _screenshot_dir() -> Path:
    default = Path(__file__).resolve().parent.parent / "build" / "screenshots"
    target = Path(os.environ.get("CDS_SCREENSHOT_DIR", default))
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.mark.parametrize("width", WIDTHS)
def test_every_card_is_readable_as_a_clinician_sees_it(
    browser: Any, page_file: Path, width: int
) -> None:
    expected = _golden_cards()
    page = browser.new_page(viewport={"width": width, "height": 1000})
    try:
        page.goto(page_file.as_uri())
        sections = page.locator("section.vignette")
        assert sections.count() == len(expected)
        for name, cards in expected.items():
            section = page.locator(f"section#{name}")
            rendered = section.locator("article.card")
            assert rendered.count() == len(cards), name
            if not cards:
                assert section.locator("p.silence").is_visible(), name
            summaries = {
                rendered.nth(i).locator(".summary").inner_text() for i in range(len(cards))
            }
            assert summaries == {c["summary"] for c in cards}, name
            for i in range(rendered.count()):
                card = rendered.nth(i)
                card.scroll_into_view_if_needed()
                assert card.locator(".summary").is_visible(), name
                # The markdown table of ACR ratings is rendered as a table, not as pipes.
                assert card.locator(".detail table").is_visible(), name
                assert "|---|" not in card.inner_text(), name
                summary = card.locator(".summary").inner_text()
                want = next(c for c in cards if c["summary"] == summary)
                buttons = card.locator("button.suggestion")
                assert buttons.count() == len(want.get("suggestions", [])), name
                for b in range(buttons.count()):
                    assert buttons.nth(b).is_visible(), name
                assert card.locator("a.link").count() == len(want.get("links", [])), name
                overflowing = card.evaluate(OVERFLOW_JS)
                assert overflowing == [], (name, width, overflowing)
        shot = _screenshot_dir() / f"cards-{width}px.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        print(f"screenshot for review: {shot}")
    finally:
        page.close()


def test_the_page_has_no_script_and_no_external_asset(page_file: Path) -> None:
    text = page_file.read_text(encoding="utf-8")
    assert "<script" not in text
    assert 'src="http' not in text and "<link " not in text


def test_the_overflow_check_sees_text_that_spills(browser: Any, tmp_path: Path) -> None:
    """The check above can fail: a preformatted line wider than the pane is reported."""
    card = {
        "summary": "A card with a line that cannot wrap",
        "indicator": "info",
        "detail": "```\n" + "x" * 300 + "\n```",
    }
    target = tmp_path / "spill.html"
    target.write_text(CardPage().render([CardSet("spill", "", [card])], "spill"), "utf-8")
    page = browser.new_page(viewport={"width": 480, "height": 600})
    try:
        page.goto(target.as_uri())
        assert page.locator("article.card").evaluate(OVERFLOW_JS) != []
    finally:
        page.close()
