"""The chat page at ``/`` in a real browser: Debian's chromium, headless, driven by playwright."""

from __future__ import annotations

import shutil

import pytest

from muai_core import ModelManager
from tests.serve.conftest import MODEL

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


@pytest.fixture
def page():
    if CHROMIUM is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the page test drives chromium with playwright")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_the_page_streams_an_answer_with_its_figures(serve, write_config, page):
    manager = ModelManager(config_path=write_config())
    base = serve(manager, api_key="page-key")
    expected = manager.generate(MODEL, messages=[{"role": "user", "content": "Hello there"}], max_new_tokens=16)
    page.goto(base + "/")
    page.fill("#api-key", "page-key")
    page.dispatch_event("#api-key", "change")  # the models list loads with the key
    page.wait_for_selector(f"#model option[value='{MODEL}']", state="attached")
    page.fill("#max-tokens", "16")
    page.fill("#question", "Hello there")
    page.click("#send")
    row = page.wait_for_selector("tr.answer-figures", timeout=30_000)
    cells = [cell.inner_text() for cell in row.query_selector_all("td")]
    assert cells[1] == "pytorch" and cells[3].endswith(" ms") and float(cells[4]) > 0
    assert page.inner_text("#log .assistant") == expected
    assert page.inner_text("#log .user") == "Hello there"
