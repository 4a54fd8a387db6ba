"""The page at `/` in a real headless Chromium against a real server: a demo-like validation scene's labels equal
`/predict`'s answer for the same file, the threshold slider re-decides without a request, an attention overlay is
drawn on the canvas, a text file shows the API's 415 message, and the API key typed into the page is sent. The
test takes a screenshot into its own temporary folder; `LABELSERVE_UPDATE_SCREENSHOT=1` (`make screenshot`) makes it
replace the one the README shows (docs/page.png) instead, so a plain test run leaves the checkout as it was."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chromium_driver import chromium
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from labelserve.bundle import Bundle
from labelserve_tools.local_server import ServerProcess, start_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
README_SCREENSHOT = ROOT / "docs" / "page.png"
WAIT_S = 60


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


def _open(browser: webdriver.Chrome, url: str) -> None:
    browser.get(f"{url}/")
    WebDriverWait(browser, WAIT_S).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model option")
                                         or b.find_element(By.ID, "error").is_displayed())


def _upload(browser: webdriver.Chrome, *paths: Path) -> None:
    browser.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in paths))
    WebDriverWait(browser, WAIT_S).until(lambda b: b.execute_script("return document.body.dataset.busy") is None
                                         and (len(b.find_elements(By.CSS_SELECTOR, ".card")) == len(paths)
                                              or b.find_element(By.ID, "error").is_displayed()))


def _page_answer(browser: webdriver.Chrome) -> list[dict]:
    """What the page shows per card: filename, labels in order with probabilities, the predicted set."""
    return browser.execute_script("""
        return [...document.querySelectorAll('.card')].map((card) => ({
          filename: card.dataset.filename,
          labels: [...card.querySelectorAll('.bar-row')].map((row) => [row.dataset.label,
                                                                       Number(row.dataset.probability)]),
          predicted: [...card.querySelectorAll('.bar-row.is-predicted')].map((row) => row.dataset.label),
          chips: [...card.querySelectorAll('.chip')].map((chip) => chip.textContent),
        }));""")


def _predict_requests(browser: webdriver.Chrome) -> int:
    return browser.execute_script(
        "return performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/predict')).length")


def _canvas_pixels(browser: webdriver.Chrome, index: int = 0) -> str:
    return browser.execute_script(f"return document.querySelectorAll('.card canvas')[{index}].toDataURL()")


def test_labels_equal_predict_threshold_redecides_and_attention_is_drawn(
    browser: webdriver.Chrome, server: ServerProcess, tiny_dataset: Path, tmp_path: Path,
) -> None:
    scenes = sorted((tiny_dataset / "images" / "val").glob("*.jpg"))[:2]
    _open(browser, server.url)
    assert "tiny v1" in browser.find_element(By.ID, "model").text
    _upload(browser, *scenes)
    shown = _page_answer(browser)

    files = [("files", (scene.name, scene.read_bytes(), "image/jpeg")) for scene in scenes]
    expected = httpx.post(f"{server.url}/predict", files=files, timeout=60).json()["results"]
    assert [card["filename"] for card in shown] == [scene.name for scene in scenes]
    for card, result in zip(shown, expected, strict=True):
        assert [name for name, _ in card["labels"]] == [label["name"] for label in result["labels"]]
        worst = max(abs(p - label["probability"]) for (_, p), label in zip(card["labels"], result["labels"],
                                                                          strict=True))
        assert worst <= 1e-6, f"{card['filename']}: the page shows probabilities {worst:.1e} off /predict's"
        assert card["predicted"] == card["chips"] == result["predicted"]  # decided by the model's thresholds

    requests = _predict_requests(browser)
    browser.execute_script("const s = document.getElementById('threshold'); s.value = '0.55';"
                           "s.dispatchEvent(new Event('input'));")
    redecided = _page_answer(browser)[0]
    assert redecided["predicted"] == [name for name, p in redecided["labels"] if p >= 0.55]
    assert _predict_requests(browser) == requests, "moving the threshold must not send a request"
    browser.find_element(By.ID, "threshold-reset").click()
    assert _page_answer(browser)[0]["predicted"] == expected[0]["predicted"]

    before = _canvas_pixels(browser)
    top_label = shown[0]["labels"][0][0]
    browser.find_element(By.CSS_SELECTOR, f'.card .bar-row[data-label="{top_label}"] .eye').click()
    WebDriverWait(browser, WAIT_S).until(lambda b: b.execute_script(
        "return document.querySelector('.card canvas').dataset.overlays") == top_label)
    assert _canvas_pixels(browser) != before, "toggling the attention overlay did not change the canvas"
    browser.find_element(By.CSS_SELECTOR, f'.card:nth-of-type(2) .bar-row[data-label="{shown[1]["labels"][0][0]}"] '
                                          ".eye").click()
    browser.execute_script("window.scrollTo(0, 0)")
    screenshot = README_SCREENSHOT if os.environ.get("LABELSERVE_UPDATE_SCREENSHOT") == "1" else tmp_path / "page.png"
    screenshot.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(screenshot))
    assert not [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def test_a_text_file_shows_the_apis_415_message(browser: webdriver.Chrome, server: ServerProcess,
                                                tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image", encoding="utf-8")
    sent_as = ("notes.txt", notes.read_bytes(), "text/plain")  # as Chromium sends it
    expected = httpx.post(f"{server.url}/predict", files=[("files", sent_as)], timeout=30)
    assert expected.status_code == 415
    _open(browser, server.url)
    _upload(browser, notes)
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    body = expected.json()
    assert error.text == f"415 {body['code']} {body['error']}", error.text
    assert not browser.find_elements(By.CSS_SELECTOR, ".card")


def test_the_api_key_typed_into_the_page_is_sent(browser: webdriver.Chrome, model_repository: Path,
                                                 tmp_path: Path, tiny_dataset: Path, tiny_bundle: Bundle) -> None:
    with start_server(model_repository, tmp_path, api_key="page-key", repository_poll_s="0") as server:
        _open(browser, server.url)
        error = browser.find_element(By.ID, "error")
        assert error.is_displayed() and "401" in error.text and "API key" in error.text
        browser.find_element(By.ID, "api-key").send_keys("page-key", Keys.TAB)
        WebDriverWait(browser, WAIT_S).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model option"))
        assert not browser.find_element(By.ID, "error").is_displayed()
        _upload(browser, sorted((tiny_dataset / "images" / "val").glob("*.jpg"))[0])
        assert len(_page_answer(browser)[0]["labels"]) == len(tiny_bundle.manifest.labels)
        browser.execute_script("sessionStorage.clear()")
        server.stop()
