"""What the clinician sees: every vignette's cards rendered as a client renders them
(``salivary-cds cards --html``, at the CDS Hooks sandbox's card width), opened in headless
Chromium (Debian's, driven by Playwright): readable at 480 and 1,280 px, each card's buttons
inside the first 800 px; and the guidance pages the cards link to, with no patient data.

The page is a local file: no network. Screenshots are written under build/screenshots/ (or
CDS_SCREENSHOT_DIR) for review. Where no browser can be installed the test says so and skips;
in CI (CI set) a missing browser fails it instead, since scripts/test.sh installs one there.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cds_service.cards.page import SANDBOX_CARD_WIDTH, CardPage, CardSet
from cds_service.cli.main import main
from cds_service.config import Settings
from tests.conftest import EXAMPLES, build_app

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
    assert main(["cards", "--html", str(target), "--card-width", str(SANDBOX_CARD_WIDTH)]) == 0
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
                summary = card.locator(".summary").inner_text()
                want = next(c for c in cards if c["summary"] == summary)
                # The comparison is rendered as a table, not as pipes.
                if "| Study |" in want["detail"]:
                    assert card.locator(".detail table").is_visible(), name
                assert "|---|" not in card.inner_text(), name
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


#: The window the issue measured in: the CDS Hooks sandbox at 1280 x 800.
WINDOW = {"width": 1280, "height": 800}
#: Where the last suggestion button ends, from the top of its card, in CSS px.
BUTTONS_BOTTOM_JS = """
(card) => {
  const top = card.getBoundingClientRect().top;
  const buttons = [...card.querySelectorAll('button.suggestion')];
  return buttons.length
    ? Math.max(...buttons.map(b => b.getBoundingClientRect().bottom)) - top : 0;
}
"""
#: Cards whose safety lines (two contrast facts, or a reaction with the other class's line)
#: still push the buttons past the fold by 3-100 px after the safety table's wording (issue 25)
#: met the short card (issue 27). The test fails when one of them fits, so that the exception
#: is removed; shortening them further is open work, named in the README.
TALL_FOR_SAFETY = {
    "both_contrast_allergies_us_neck",
    "iodinated_allergy_ct_neck_with_contrast",
    "radiographic_dye_allergy_ct_neck_without_contrast",
    "both_contrast_allergies_ct_neck_without_contrast",
    "gadolinium_allergy_egfr_24_mri_neck",
    "anuric_dialysis_and_pacemaker_mri_neck",  # 0.3 px over
}


def test_every_cards_buttons_are_above_the_fold_at_the_sandbox_width(
    browser: Any, page_file: Path
) -> None:
    """Each card laid out as the sandbox lays it out (its width, padding, fonts and buttons),
    starting at the top of an 800 px window: its last button ends inside the window."""
    page = browser.new_page(viewport=WINDOW)
    try:
        page.goto(page_file.as_uri())
        cards = page.locator("article.card")
        assert cards.count() >= 25
        measured = {}
        for i in range(cards.count()):
            card = cards.nth(i)
            name = card.evaluate("(c) => c.closest('section').id")
            assert round(card.bounding_box()["width"]) == SANDBOX_CARD_WIDTH
            bottom = card.evaluate(BUTTONS_BOTTOM_JS)
            measured[f"{name}#{i}"] = round(bottom)
            if name in TALL_FOR_SAFETY:
                assert bottom > WINDOW["height"], f"{name} fits now: drop its exception"
            else:
                assert bottom <= WINDOW["height"], (name, round(bottom))
        print("buttons end (px from the card's top):", sorted(measured.values())[-5:])
        page.set_viewport_size({"width": WINDOW["width"], "height": 4000})
        shot = _screenshot_dir() / "cards-sandbox-width.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        page.close()


def _patient_strings() -> set[str]:
    """Every string of every vignette's request that could be patient data: ids, references,
    names, texts, displays, dates, values. Left out, as no one's data: codes, code-system URIs,
    FHIR's own coded words (status, gender, intent...), strings under 4 letters, and strings
    the knowledge itself holds (hooks/: e.g. the display "Adenoid cystic carcinoma" of
    ICD-O-3 8200/3, which a page about perineural spread names)."""
    knowledge = "\n".join(
        p.read_text(encoding="utf-8") for p in sorted((EXAMPLES.parent / "hooks").rglob("*.json"))
    )
    skip_keys = {
        "code",
        "system",
        "url",
        "resourceType",
        "status",
        "gender",
        "intent",
        "use",
        "hook",
        "type",
        "unit",
        "mode",
        "fullUrl",
    }
    found: set[str] = set()

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif (
            isinstance(value, str)
            and key not in skip_keys
            and len(value) >= 4
            and not value.startswith(("http://", "https://", "urn:"))
            and value not in knowledge
        ):
            found.add(value)

    for path in sorted(EXAMPLES.glob("*.json")):
        request = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(request, dict) and "context" in request:
            walk({k: request[k] for k in ("context", "prefetch") if k in request})
    return found


def test_the_guidance_pages_are_served_cacheable_and_hold_no_patient_data(
    browser: Any, tmp_path: Path
) -> None:
    app = build_app(Settings(database_url=f"sqlite:///{tmp_path / 'cds.sqlite3'}"))
    client = app.test_client()
    index = client.get("/guidance")
    assert index.status_code == 200 and index.mimetype == "text/html"
    paths = sorted(set(re.findall(r'href="(/guidance/[^"]+)"', index.get_data(as_text=True))))
    assert len(paths) >= 13  # a page per rule, and per variant of the protocol card
    strings = _patient_strings()
    assert len(strings) > 200  # the search is over real data
    page = browser.new_page(viewport=WINDOW)
    try:
        for path in paths:
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["Cache-Control"] in (
                "public, max-age=86400",
                "max-age=86400, public",
            )
            etag = response.headers["ETag"]
            again = client.get(path, headers={"If-None-Match": etag})
            assert again.status_code == 304, path
            html_text = response.get_data(as_text=True)
            page.set_content(html_text)
            assert page.locator("h1").is_visible(), path
            shown = page.locator("body").inner_text()
            leaked = sorted(s for s in strings if s in html_text or s in shown)
            assert leaked == [], (path, leaked[:10])
    finally:
        page.close()
    assert client.get("/guidance/no-such-rule").status_code == 404
