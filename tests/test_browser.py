"""The Dagster UI as a user meets it, in a real browser: Playwright driving Debian's Chromium against a
webserver on a copy of the session's materialization (the whole graph on the test slice, then a daily
run refused for a broken feed day), started from ``workspace.yaml`` on 127.0.0.1.

Needs the ``playwright`` package (a dev dependency in pyproject.toml) and a Chromium executable:
``chromium`` on the PATH (Debian: ``apt-get install chromium``, what ``make browser`` runs) or
``STOCKML_CHROMIUM``. Without either the module is skipped, saying which is missing. Playwright's own
browser download is not used. Screenshots of the key pages are written to
``.test-output/screenshots/`` (git-ignored) and their paths printed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import DESIGN_GROUPS, make_instance, run_daily_job, slice_config, write_slice_folder
from tests.test_ui import serving

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHOTS = PROJECT_ROOT / ".test-output" / "screenshots"
CHROMIUM = os.environ.get("STOCKML_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
_missing = [
    what
    for what, ok in [
        ("the playwright package (pip install -e '.[dev]')", importlib.util.find_spec("playwright")),
        ("a Chromium executable (make browser, or STOCKML_CHROMIUM)", CHROMIUM),
    ]
    if not ok
]
# Where the browser must run (CI, after ``make browser`` succeeded: STOCKML_REQUIRE_BROWSER=1) a missing piece
# fails every test here instead of skipping it, so the UI's tests can never silently not run.
REQUIRED = os.environ.get("STOCKML_REQUIRE_BROWSER") == "1"
MISSING = "browser tests need " + " and ".join(_missing)
pytestmark = pytest.mark.skipif(bool(_missing) and not REQUIRED, reason=MISSING)
# As the machine's notes advise for a closed network: no background connections, no first-run work.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module", autouse=True)
def _browser_present():
    if _missing:
        pytest.fail(f"STOCKML_REQUIRE_BROWSER=1 but {MISSING}", pytrace=False)


ALL_ASSETS = sorted(a for assets in DESIGN_GROUPS.values() for a in assets)
PAGE_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def served(materialized, tmp_path_factory):
    """A webserver on a private copy of the materialized instance and warehouse, after one more daily run
    for the last day whose feed is broken (3 of the 6 tickers with high < low): ``raw_prices`` fails."""
    from stockml_assets.cli import dagster_yaml
    from stockml_assets.freshness import record_freshness

    root = tmp_path_factory.mktemp("browser")
    dagster_home, home = root / "dagster_home", root / "home"
    shutil.copytree(materialized.instance.root_directory, dagster_home)
    shutil.copytree(materialized.home, home)
    (dagster_home / "dagster.yaml").write_text(dagster_yaml(dagster_home))
    prices = write_slice_folder(root / "broken").reset_index(drop=True)
    last = prices.date.max()
    for ticker in ("XOM", "KO", "IBM"):
        i = prices.index[(prices.ticker == ticker) & (prices.date == last)][0]
        prices.loc[i, "high"] = prices.loc[i, "low"] * 0.9
    prices.to_csv(root / "broken" / "prices.csv", index=False)
    instance = make_instance(dagster_home)
    refused = run_daily_job(instance, last, **slice_config(home, data_dir=root / "broken"))
    fresh = record_freshness(instance, root / "broken", 6.0)  # as the CLI and the freshness sensor record it
    instance.dispose()
    assert not refused.success and not fresh.passed

    with serving(dagster_home, home, root / "webserver.log", STOCKML_AUTOMATION="off") as server:
        yield server, materialized.result.run_id, refused.run_id


@pytest.fixture(scope="module")
def page(served):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1920, "height": 1600})
        tab.set_default_timeout(PAGE_TIMEOUT_MS)
        yield tab
        browser.close()
    print(f"\nbrowser suite: {time.perf_counter() - started:.1f} s; screenshots in {SHOTS}")


def _open(page, served, path: str):
    """Open a page, dismiss Dagster's first-visit newsletter dialog, wait for the data to arrive."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    server, _, _ = served
    page.goto(server.url + path, wait_until="networkidle")
    skip = page.get_by_role("button", name="Skip")
    try:  # shown once per browser profile, a moment after the first page loads
        skip.first.wait_for(state="visible", timeout=3000)
        skip.first.click()
    except PlaywrightTimeout:
        pass
    page.wait_for_timeout(1000)
    return page


def _shot(page, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def _inline_svgs(page) -> list[dict]:
    """The inline SVG charts on the page, drawn (natural width > 0) and laid out (a box on the page)."""
    return page.eval_on_selector_all(
        "img[src^='data:image/svg+xml']",
        "els => els.map(e => ({alt: e.alt, width: e.naturalWidth, top: e.getBoundingClientRect().top, text: decodeURIComponent(e.src)}))",
    )


def test_the_lineage_shows_every_asset(page, served):
    _open(page, served, "/asset-groups")
    for group in DESIGN_GROUPS:  # each group is a box in the graph, and a branch of the asset tree beside it
        assert page.get_by_text(group, exact=True).count() >= 1, group
    _shot(page, "lineage-groups")
    for group in DESIGN_GROUPS:  # open each branch of the tree beside the graph (select it, then arrow right)
        page.get_by_text(group, exact=True).first.click()
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(200)
    body = page.inner_text("body")
    assert [a for a in ALL_ASSETS if a not in body] == []
    page.locator("body").click(position={"x": 1200, "y": 1200})
    page.keyboard.press("Alt+KeyE")  # the graph's own "Expand all groups"
    page.wait_for_timeout(1500)
    assert page.locator("[class*=AssetNode_assetName]").count() >= len(ALL_ASSETS) // 2
    _shot(page, "lineage-expanded")


def test_the_promotion_decision_shows_criteria_and_equity_curve_without_a_click(page, served):
    _open(page, served, "/assets/promotion_decision")
    page.get_by_text("decision", exact=True).first.scroll_into_view_if_needed()
    body = page.inner_text("body")
    assert "PROMOTE v0001" in body and "criterion" in body and "outcome" in body
    for name in ("rank_ic_vs_best_baseline", "rank_ic_t", "net_sharpe_vs_best_baseline", "rank_ic_vs_champion"):
        assert name in body, name
    charts = _inline_svgs(page)
    assert any("v0001 decile book, net of costs" in c["text"] for c in charts), [c["text"][:120] for c in charts]
    assert all(c["width"] > 0 for c in charts)
    _shot(page, "promotion-decision")


def test_the_backtest_and_drift_pages_show_their_plots(page, served):
    _open(page, served, "/assets/backtest_report")
    charts = _inline_svgs(page)
    assert any("long/short top-5" in c["text"] and "buy-and-hold" in c["text"] for c in charts), charts
    _shot(page, "backtest")
    _open(page, served, "/assets/drift_report")
    charts = _inline_svgs(page)
    assert any("drift score to" in c["text"] and "threshold 0.46" in c["text"] for c in charts), charts
    _shot(page, "drift")


def test_a_broken_feed_day_turns_raw_prices_red_with_its_failure_cases(page, served):
    _open(page, served, "/assets/raw_prices")
    _shot(page, "raw-prices-failed")
    failed = page.get_by_text("Failed in", exact=False).first
    assert failed.is_visible()  # the red status of the latest materialization, naming the run
    _open(page, served, "/assets/raw_prices?view=checks")  # the partitioned asset's gate, as a check
    assert "raw_prices_schema" in page.inner_text("body")
    _shot(page, "raw-prices-checks")
    _open(page, served, "/assets/raw_prices")
    failed = page.get_by_text("Failed in", exact=False).first
    run = failed.evaluate("e => (e.closest('a') || e.querySelector('a') || e.parentElement.querySelector('a')).getAttribute('href')")
    assert run and "/runs/" in run, run
    _open(page, served, run)
    body = page.inner_text("body")
    assert "price feed looks broken" in body and "high_below_low" in body and "bad rows by rule and ticker" in body
    _shot(page, "failed-run")


def test_freshness_on_the_data_calendar_fails_after_the_refused_daily_run(page, served):
    _, _, refused = served
    _open(page, served, "/assets/drift_report?view=checks")
    body = page.inner_text("body")
    assert "caught_up_with_the_feed" in body and "Failed" in body, body[:2000]
    _shot(page, "drift-report-freshness")
    page.get_by_text("caught_up_with_the_feed", exact=True).first.click()
    page.wait_for_timeout(1500)
    assert refused in page.inner_text("body")  # the verdict names the refused run
    _shot(page, "freshness-check-failed")


def test_a_job_page_lists_the_run(page, served):
    _, history, _ = served
    _open(page, served, "/locations/stockml/jobs/stockml_full_job/runs")
    assert history[:8] in page.inner_text("body")
    _shot(page, "job-runs")
