"""Two organisations connect through their consoles (Debian's headless
Chromium, Selenium) for tests/tests/e2e/console.rs.

usage: console_trust.py A_BASE B_BASE A_URL B_URL PASSWORD SCREENSHOT_DIR|-

A_BASE and B_BASE are the two admin listeners under different host names
(127.0.0.1 and localhost) so each keeps its own session cookie; A_URL and
B_URL the gateways' public https URLs. Admin `alice` (on A) and `bruno`
(on B) exist with PASSWORD and enrol here. One line each over stdout/stdin:
  HALF            A stored B's key, B not yet A's; the test makes a relay
                  from A fail, then answers with a line
  RESULT <json>   what the browser saw
Every wait is explicit (WebDriverWait on a condition), never a sleep.
"""

import json
import os
import sys

import pyotp

import browser_report
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

a_base, b_base, a_url, b_url, password, shots = sys.argv[1:7]
result = {}


def say(line):
    print(line, flush=True)


def shot(name):
    if shots != "-":
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, max(900, min(int(height) + 140, 4000)))
        driver.save_screenshot(os.path.join(shots, name + ".png"))
        driver.set_window_size(1280, 900)


options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("MFT_TEST_CHROMIUM", "/usr/bin/chromium")
for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            "--window-size=1280,900", "--lang=en-US", "--no-first-run"):
    options.add_argument(arg)
driver = webdriver.Chrome(
    service=Service(os.environ.get("MFT_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")),
    options=options,
)
wait = WebDriverWait(driver, 30)


def visible(element_id):
    return wait.until(EC.visibility_of_element_located((By.ID, element_id)))


def fill(element_id, value):
    el = visible(element_id)
    el.clear()
    el.send_keys(value)


def enrol(base, name):
    driver.get(base + "/console/")
    visible("view-sign-in")
    fill("si-name", name)
    fill("si-password", password)
    driver.find_element(By.ID, "si-submit").click()
    visible("view-enrol")
    wait.until(lambda d: d.find_element(By.ID, "totp-secret").text.strip() != "")
    fill("en-code", pyotp.TOTP(driver.find_element(By.ID, "totp-secret").text.strip()).now())
    driver.find_element(By.ID, "en-submit").click()
    visible("view-recovery")
    driver.find_element(By.ID, "recovery-done").click()
    visible("view-keys")


def partners(base):
    """The trust network screen of the console at `base` (signed in)."""
    driver.get(base + "/console/")
    visible("view-keys")
    driver.find_element(By.ID, "nav-partners").click()
    visible("view-partners")


def add_partner(name, url, domain):
    """Adds a partner in the form; returns our key for them, shown once."""
    fill("partner-name", name)
    fill("partner-url", url)
    fill("partner-domains", domain)
    driver.find_element(By.ID, "partner-add").click()
    visible("partner-key")
    wait.until(lambda d: d.find_element(By.ID, "partner-key-value").text.startswith("mgp_"))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f'#partners-table tr[data-name="{name}"]')))
    return driver.find_element(By.ID, "partner-key-value").text


def paste_key(name, key):
    row = f'#partners-table tr[data-name="{name}"]'
    # The partners table is redrawn when its data arrives: wait for the
    # field, and start over if the row was redrawn under us.
    for attempt in range(5):
        try:
            field = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, row + " input.their-key-input")))
            field.send_keys(key)
            driver.find_element(By.CSS_SELECTOR, row + " button.save-key").click()
            break
        except StaleElementReferenceException:
            if attempt == 4:
                raise
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, row + " td.status"), "configured"))


def test_connection(name):
    row = f'#partners-table tr[data-name="{name}"]'
    driver.find_element(By.CSS_SELECTOR, row + " td.connection button").click()
    wait.until(EC.presence_of_element_located(
        (By.CSS_SELECTOR, row + " td.connection span.good, " + row + " td.connection span.bad")))
    return driver.find_element(By.CSS_SELECTOR, row + " td.connection span").text.strip()


try:
    enrol(a_base, "alice")
    enrol(b_base, "bruno")

    # A adds B: our key for B, shown once.
    partners(a_base)
    key_for_b = add_partner("beta", b_url, "beta.example")
    shot("partner-added")
    # B adds A and pastes nothing yet.
    partners(b_base)
    key_for_a = add_partner("acme", a_url, "acme.example")
    # A pastes B's key for A: half connected.
    partners(a_base)
    paste_key("beta", key_for_a)
    result["half_test"] = test_connection("beta")
    say("HALF")
    sys.stdin.readline()

    # B pastes A's key for B: both sides say connected.
    partners(b_base)
    paste_key("acme", key_for_b)
    result["b_test"] = test_connection("acme")
    partners(a_base)
    result["a_test"] = test_connection("beta")

    # The relay that failed meanwhile: retry it and watch it delivered.
    failed = '#relays-table tr td.state.bad'
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, failed)))
    result["failed_relays"] = len(driver.find_elements(By.CSS_SELECTOR, "#relays-table button.retry"))
    shot("trust-connected")

    def click_retry(d):
        # The table may be redrawn under the pointer (it reloads after
        # each change): find the button afresh until the click lands.
        buttons = d.find_elements(By.CSS_SELECTOR, "#relays-table button.retry")
        if not buttons:
            return any(c.text in ("queued", "delivered")
                       for c in d.find_elements(By.CSS_SELECTOR, "#relays-table tbody td.state"))
        buttons[0].click()
        return True

    WebDriverWait(driver, 30, ignored_exceptions=[StaleElementReferenceException]).until(click_retry)

    def delivered(d):
        d.find_element(By.ID, "nav-partners").click()
        states = [c.text for c in d.find_elements(By.CSS_SELECTOR, "#relays-table tbody tr td.state")]
        # Kept here: the table is redrawn on every click above.
        result["relay_states"] = states
        return states and all(s == "delivered" for s in states)

    WebDriverWait(driver, 60, poll_frequency=1,
                  ignored_exceptions=[StaleElementReferenceException]).until(delivered)
    shot("relay-queue")
    # Read again if the table is redrawn between finding a cell and reading it.
    result["receipts_before"] = WebDriverWait(
        driver, 10, ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: [c.text for c in d.find_elements(By.CSS_SELECTOR, "#relays-table td.receipts")] or None)
    # The test downloads the file at B; B's gateway sends A the receipt.
    say("DELIVERED")
    sys.stdin.readline()

    def confirmed(d):
        d.find_element(By.ID, "nav-partners").click()
        cells = [c.text for c in d.find_elements(By.CSS_SELECTOR, "#relays-table td.receipts")]
        result["receipts_after"] = cells
        return cells and all("confirmed" in c for c in cells)

    WebDriverWait(driver, 60, poll_frequency=1,
                  ignored_exceptions=[StaleElementReferenceException]).until(confirmed)
    shot("relay-receipts")
except Exception as e:  # noqa: BLE001 - the test prints it with the page
    result["error"] = f"{type(e).__name__}: {e}"
    # Which wait gave up, and on what: a timeout's own message is empty.
    result.update(browser_report.where(e, __file__))
    result["seen"] = browser_report.seen(driver)
    try:
        result["page"] = driver.find_element(By.TAG_NAME, "main").text[:2000]
    except Exception:  # noqa: BLE001
        pass
finally:
    say("RESULT " + json.dumps(result))
    driver.quit()
