"""The two pages in a real browser (headless Chromium driven by Selenium): what a person does
with mouse and keys in `tagshift annotate` must end up, span for span, in the exported corpus,
across a server killed with SIGKILL and restarted; and the entity viewer must highlight exactly
the spans `POST /predict` returns, at the right characters even after an emoji (JavaScript
counts UTF-16 units, the API code points).

Skipped where Chromium, its driver or selenium is missing (.ci/run installs them on CI).
Every wait is on the pages' own signals (`body.dataset.state`/`busy`, `#status`), bounded.
With TAGSHIFT_SCREENSHOTS=1 the screenshots are written to docs/img/ (the docs show them)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
    pytest.skip(f"browser tests need Chromium and its driver ({CHROMIUM}, {CHROMEDRIVER}): "
                "apt-get install chromium chromium-driver", allow_module_level=True)
pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")
pytest.importorskip("fastapi", reason="the pages' servers need fastapi (pip install fastapi uvicorn)")
pytest.importorskip("uvicorn", reason="the pages' servers need uvicorn (pip install fastapi uvicorn)")
import httpx
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.live import CLI, free_port, server

REPO = Path(__file__).resolve().parents[1]
NEWS = REPO / "demo" / "news.txt"
MODEL = Path(__file__).parent / "fixtures" / "bilstm-0.1.0"  # types LOC MISC ORG PER
WAIT = 20  # seconds, for anything the page or a server does
# Without the background-networking flags Chromium dials out at start, and on a closed
# network its connections are refused; the user data directory is a fresh one per run.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
VIEWPORT = (1200, 800)  # what the screenshots show


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    # The driver's path given: Selenium Manager is skipped and never downloads anything.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(WAIT)
        # --window-size sizes the window, not the page inside it: size the page itself
        inner = driver.execute_script("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
        driver.set_window_size(VIEWPORT[0] + inner[0], VIEWPORT[1] + inner[1])
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshots(tmp_path) -> Path:
    """docs/img with TAGSHIFT_SCREENSHOTS=1 (to refresh the docs' pictures), else a tmp dir."""
    if os.environ.get("TAGSHIFT_SCREENSHOTS") == "1":
        (REPO / "docs" / "img").mkdir(exist_ok=True)
        return REPO / "docs" / "img"
    return tmp_path


def relative(path: Path) -> str:
    """`path` as the servers (run in the repo) are given it: the pages show it, relative reads better."""
    return str(path.relative_to(REPO))


def wait(browser: WebDriver, condition: Callable[[WebDriver], object], what: str) -> object:
    """`condition`'s first truthy value, polled for at most WAIT seconds; a timeout says what the page showed."""
    try:
        return WebDriverWait(browser, WAIT, poll_frequency=0.05).until(condition)
    except TimeoutException:
        shown = browser.execute_script(
            "const text = (id) => { const e = document.getElementById(id); return e ? e.textContent : null; };"
            "return {state: document.body.dataset.state, busy: document.body.dataset.busy,"
            " message: text('message'), error: text('error'), status: text('status')};")
        pytest.fail(f"waited {WAIT} s for {what}; the page shows {shown}")


# ---- the annotation page ----

def body(browser: WebDriver) -> tuple[str, str]:
    return tuple(browser.execute_script("return [document.body.dataset.state, document.body.dataset.busy]"))


def task_shown(browser: WebDriver) -> str:
    return browser.find_element(By.ID, "task").get_attribute("data-task-id")


def spans_shown(browser: WebDriver) -> list[tuple[int, int, str]]:
    return [(int(m.get_attribute("data-start")), int(m.get_attribute("data-end")), m.get_attribute("data-label"))
            for m in browser.find_elements(By.CSS_SELECTOR, "#tokens .span")]


def token(browser: WebDriver, i: int) -> WebElement:
    return browser.find_element(By.CSS_SELECTOR, f'#tokens .token[data-i="{i}"]')


def press(browser: WebDriver, key: str) -> None:
    ActionChains(browser).send_keys(key).perform()


def pick(browser: WebDriver, key: str, label: str) -> None:
    press(browser, key)
    active = browser.find_element(By.CSS_SELECTOR, ".label-button.active")
    assert (active.get_attribute("data-label"), active.get_attribute("data-key")) == (label, key)


def click(browser: WebDriver, i: int) -> None:
    token(browser, i).click()


def shift_click(browser: WebDriver, i: int) -> None:
    ActionChains(browser).key_down(Keys.SHIFT).click(token(browser, i)).key_up(Keys.SHIFT).perform()


def drag(browser: WebDriver, a: int, b: int) -> None:
    ActionChains(browser).click_and_hold(token(browser, a)).move_to_element(token(browser, b)).release().perform()


def answer_by_key(browser: WebDriver, key: str) -> None:
    """Answer the task shown with `key`, then wait until the page shows the next one (or is done)."""
    before = task_shown(browser)
    press(browser, key)
    wait(browser, lambda b: body(b) == ("done", "0") or (body(b) == ("ready", "0") and task_shown(b) != before),
         f"the answer ({key!r}) to task {before} to be saved and the next task shown")


def remove_suggestions(browser: WebDriver, url: str) -> int:
    """Check the page shows the task's suggested spans as the API gives them, then remove each
    by clicking its label; the number removed."""
    task = httpx.get(f"{url}/api/next", params={"annotator": "ana"}, timeout=WAIT).json()["task"]
    assert task["id"] == task_shown(browser)
    assert spans_shown(browser) == [(s["token_start"], s["token_end"], s["label"]) for s in task["spans"]]
    for left in range(len(task["spans"]), 0, -1):
        browser.find_element(By.CSS_SELECTOR, "#tokens .span .span-label").click()
        assert len(spans_shown(browser)) == left - 1
    return len(task["spans"])


def expected_spans(text: str, marked: list[tuple[str, str]]) -> list[tuple[int, int, str]]:
    """Character offsets of each (words, label) in `text`, found independently of the page."""
    return [(text.index(words), text.index(words) + len(words), label) for words, label in marked]


def test_annotating_by_mouse_and_keys_survives_a_killed_server_and_exports_exactly(browser, tmp_path, screenshots):
    db, log = tmp_path / "a.sqlite", tmp_path / "annotate.log"
    port = free_port()  # the same port after the restart: the page's origin, and its localStorage
    url = f"http://127.0.0.1:{port}"
    args = ["annotate", relative(NEWS), "--labels", "PER,ORG,LOC", "--db", str(db), "--model", relative(MODEL)]
    lines = NEWS.read_text().splitlines()
    removed = 0
    with server(args, port, "/api/config", log) as process:
        browser.get(url + "/")
        wait(browser, lambda b: body(b) == ("name", "0"), "the page to ask for a name")
        browser.find_element(By.ID, "annotator-input").send_keys("ana", Keys.ENTER)
        wait(browser, lambda b: body(b) == ("ready", "0"), "the first task")
        assert browser.find_element(By.ID, "progress").text == "0 / 3"
        assert browser.find_element(By.ID, "annotator-name").text == "ana"

        # 1: Angela0 Merkel1 met2 Emmanuel3 Macron4 in5 Paris6 on7 Monday8 ... European12 Union13 budget14 .15
        removed += remove_suggestions(browser, url)
        pick(browser, "1", "PER")
        drag(browser, 0, 1)
        click(browser, 3)
        assert spans_shown(browser) == [(0, 1, "PER"), (3, 3, "PER")]
        shift_click(browser, 4)  # from the last clicked token: replaces the one-token span it overlaps
        pick(browser, "3", "LOC")
        click(browser, 6)
        pick(browser, "2", "ORG")
        click(browser, 8)
        assert (8, 8, "ORG") in spans_shown(browser)
        click(browser, 8)  # a click inside a span removes it
        drag(browser, 13, 12)  # dragged right to left
        assert spans_shown(browser) == [(0, 1, "PER"), (3, 4, "PER"), (6, 6, "LOC"), (12, 13, "ORG")]
        ActionChains(browser).move_to_element(browser.find_element(By.ID, "source")).perform()  # no hover in the picture
        browser.save_screenshot(str(screenshots / "annotate.png"))
        answer_by_key(browser, Keys.ENTER)

        # 2: Shares0 of1 Siemens2 rose3 3 4 percent5 in6 Frankfurt7 ...; accepted, undone, accepted again
        second = task_shown(browser)
        removed += remove_suggestions(browser, url)
        pick(browser, "2", "ORG")
        click(browser, 2)
        pick(browser, "3", "LOC")
        click(browser, 7)
        answer_by_key(browser, "a")
        answer_by_key(browser, Keys.BACKSPACE)
        assert task_shown(browser) == second and spans_shown(browser) == [(2, 2, "ORG"), (7, 7, "LOC")]
        assert browser.find_element(By.ID, "progress").text == "1 / 3"
        answer_by_key(browser, Keys.ENTER)

        # 3: The0 United1 Nations2 sent3 observers4 to5 Kenya6 ...
        removed += remove_suggestions(browser, url)
        pick(browser, "2", "ORG")
        click(browser, 1)
        shift_click(browser, 2)
        pick(browser, "3", "LOC")
        click(browser, 6)
        answer_by_key(browser, Keys.ENTER)
        assert body(browser) == ("done", "0") and browser.find_element(By.ID, "done").is_displayed()
        assert browser.find_element(By.ID, "progress").text == "3 / 3"
        assert removed >= 1  # the fixture model suggests spans, so removal by their label was exercised

        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        press(browser, "u")  # the server is gone: one readable line, nothing lost
        wait(browser, lambda b: b.find_element(By.ID, "message").is_displayed(), "the page to say the server is gone")
        assert "cannot reach the annotation server" in browser.find_element(By.ID, "message").text

    with server(args, port, "/api/config", log):
        browser.refresh()
        wait(browser, lambda b: body(b) == ("done", "0"), "the reloaded page to find every task answered")
        assert browser.find_element(By.ID, "progress").text == "3 / 3"
        assert not browser.find_element(By.ID, "message").is_displayed()

    out = tmp_path / "data.jsonl"
    exported = subprocess.run([sys.executable, "-c", CLI, "annotate", "export", "--db", str(db), "--out", str(out)],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
    assert exported.returncode == 0, exported.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in records] == lines
    made = [[("Angela Merkel", "PER"), ("Emmanuel Macron", "PER"), ("Paris", "LOC"), ("European Union", "ORG")],
            [("Siemens", "ORG"), ("Frankfurt", "LOC")],
            [("United Nations", "ORG"), ("Kenya", "LOC")]]
    for record, marked in zip(records, made):
        assert [(s["start"], s["end"], s["label"]) for s in record["spans"]] == expected_spans(record["text"], marked)
        assert [record["text"][s["start"]:s["end"]] for s in record["spans"]] == [words for words, _ in marked]
        assert record["meta"]["annotator"] == "ana"


# ---- the entity viewer ----

def test_the_viewer_highlights_exactly_the_spans_predict_returns(browser, tmp_path, screenshots):
    """Several sentences of demo/news.txt, after a first line with an emoji and accented letters:
    every highlight after it is at the API's offsets only if the page converts code points to
    UTF-16 units."""
    text = "🙂 Zoë Müller met Angela Merkel in Paris.\n" + NEWS.read_text()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with server(["serve", relative(MODEL)], port, "/health", tmp_path / "serve.log"):
        browser.get(url + "/")
        wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#legend .legend-item"), "the model's types (GET /info)")
        area = browser.find_element(By.ID, "text")
        browser.execute_script("arguments[0].value = arguments[1]", area, text)  # pasted
        ActionChains(browser).key_down(Keys.CONTROL, area).send_keys(Keys.ENTER).key_up(Keys.CONTROL).perform()
        wait(browser, lambda b: b.find_element(By.ID, "error").text
             or re.fullmatch(r"\d+ entit(y|ies) in 1 text", b.find_element(By.ID, "status").text),
             "the text to be tagged")
        assert browser.find_element(By.ID, "error").text == ""
        marks = browser.execute_script(
            "return [...document.querySelectorAll('#results mark.entity')].map((m) => ({label: m.dataset.label,"
            " start: Number(m.dataset.start), end: Number(m.dataset.end), confidence: m.dataset.confidence,"
            " text: m.textContent}))")
        browser.execute_script("document.activeElement.blur()")  # no caret in the picture
        assert browser.execute_script("return [innerWidth, innerHeight]") == list(VIEWPORT)
        browser.save_screenshot(str(screenshots / "viewer.png"))
        sent = browser.execute_script("return document.getElementById('text').value")
        predicted = httpx.post(f"{url}/predict", json={"text": sent}, timeout=WAIT).json()["results"][0]["spans"]

    assert sent == text
    assert predicted and predicted[0]["start"] > 1  # all after the emoji
    assert [(m["label"], m["start"], m["end"]) for m in marks] == [(s["label"], s["start"], s["end"]) for s in predicted]
    assert [m["text"] for m in marks] == [text[s["start"]:s["end"]] for s in predicted]
    assert [float(m["confidence"]) for m in marks] == [s["confidence"] for s in predicted]
