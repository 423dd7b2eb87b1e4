"""Drives one of the admin console's bridges, transport providers and
configuration screens in Debian's headless Chromium (Selenium, no browser
download) for tests/tests/e2e/console_screens.rs.

usage: console_screens.py SCREEN ADMIN_BASE SCREENSHOT_DIR|- ALICE_PW BOB_PW [ARG]
  SCREEN bridges:    waits for the failing mailbox, the open SFTP session and
                     the SMTP session the test made
  SCREEN sftp-users: ARG is a public key line; adds user acme with it
  SCREEN transports: ARG is the recipient of the test message
  SCREEN config:     ARG is the config file (pasted as a valid candidate)

Prints, one line each:
  VIEWER <cookie> <csrf>  bob's (viewer) session, left signed in
  ADMIN <cookie> <csrf>   alice's session
  RESULT <json>           what the browser saw
Every wait is explicit (WebDriverWait on a condition), never a sleep.
"""

import json
import os
import re
import sys

import pyotp

import browser_report
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

screen, base, shots, alice_pw, bob_pw = sys.argv[1:6]
arg = sys.argv[6] if len(sys.argv) > 6 else ""
result = {}

options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("MFT_TEST_CHROMIUM", "/usr/bin/chromium")
for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
          "--window-size=1280,900", "--lang=en-US", "--no-first-run"):
    options.add_argument(a)
driver = webdriver.Chrome(
    service=Service(os.environ.get("MFT_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")),
    options=options,
)
wait = WebDriverWait(driver, 60)


def say(line):
    print(line, flush=True)


def shot(name):
    if shots != "-":
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, max(900, min(int(height) + 140, 4000)))
        driver.save_screenshot(os.path.join(shots, name + ".png"))
        driver.set_window_size(1280, 900)


def visible(element_id):
    return wait.until(EC.visibility_of_element_located((By.ID, element_id)))


def fill(element_id, value):
    el = visible(element_id)
    el.clear()
    el.send_keys(value)


def me():
    return driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch('/console/api/me').then(r => r.json()).then(done).catch(e => done(null));"""
    )


def enrol(name, password):
    """First sign-in: the TOTP secret from the page, a code from pyotp."""
    driver.get(base + "/console/")
    visible("view-sign-in")
    fill("si-name", name)
    fill("si-password", password)
    driver.find_element(By.ID, "si-submit").click()
    visible("view-enrol")
    wait.until(lambda d: d.find_element(By.ID, "totp-secret").text.strip() != "")
    totp = pyotp.TOTP(driver.find_element(By.ID, "totp-secret").text.strip())
    fill("en-code", totp.now())
    driver.find_element(By.ID, "en-submit").click()
    visible("view-recovery")
    driver.find_element(By.ID, "recovery-done").click()
    visible("view-keys")
    session = me()
    return driver.get_cookie("mft_console")["value"], session["csrf"]


def open_screen(view):
    """Through the keyboard: focus the nav button, press Enter."""
    button = visible("nav-" + view)
    button.send_keys(Keys.ENTER)
    visible("view-" + view)
    wait.until(lambda d: d.switch_to.active_element.get_attribute("id") == "h-" + view)


def nav_rows():
    """Distinct tops of the navigation's entries: 1 when it does not wrap."""
    return driver.execute_script(
        "return new Set([...document.querySelectorAll('#nav > *')]"
        ".map(e => Math.round(e.getBoundingClientRect().top))).size;")


def cell_text(table, row_attr, value, cls):
    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr[data-{row_attr}='{value}']")
    if not rows:
        return None
    found = rows[0].find_elements(By.CSS_SELECTOR, "." + cls) if cls else rows[0].find_elements(By.TAG_NAME, "td")
    return found[0].text if found else None


def reopen_until(view, condition):
    """The screen shows the state when it is opened: open it again until
    `condition` holds (the gateway's state changes on its own)."""
    def check(_):
        open_screen(view)
        return condition()
    return wait.until(check)


try:
    bob_cookie, bob_csrf = enrol("bob", bob_pw)
    say(f"VIEWER {bob_cookie} {bob_csrf}")
    # Leave bob's session alive for the test's server-side checks.
    driver.delete_all_cookies()
    alice_cookie, alice_csrf = enrol("alice", alice_pw)
    say(f"ADMIN {alice_cookie} {alice_csrf}")
    result["nav_rows_1280"] = nav_rows()

    if screen == "bridges":
        reopen_until("bridges", lambda: (
            driver.find_elements(By.CSS_SELECTOR, "#mailboxes-table tr[data-state='failing']")
            and cell_text("sftp-users-table", "name", "alice", "open-sessions") == "1"
            and driver.find_elements(By.CSS_SELECTOR, "#smtp-table tr[data-kind='session'][data-outcome='accepted']")))
        result["mailbox_state"] = cell_text("mailboxes-table", "name", "ops", "state")
        result["mailbox_error"] = cell_text("mailboxes-table", "name", "ops", "last-error")
        result["sftp_open"] = cell_text("sftp-users-table", "name", "alice", "open-sessions")
        result["sftp_users"] = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#sftp-users-table tbody tr")]
        result["sftp_summary"] = driver.find_element(By.ID, "sftp-summary").text
        result["smtp_summary"] = driver.find_element(By.ID, "smtp-summary").text
        accepted = driver.find_element(
            By.CSS_SELECTOR, "#smtp-table tr[data-kind='session'][data-outcome='accepted']")
        result["smtp_accepted"] = accepted.find_elements(By.TAG_NAME, "td")[2].text
        result["page"] = driver.find_element(By.ID, "view-bridges").text
        shot("bridges")
        # German labels.
        driver.find_element(By.ID, "lang").send_keys("Deutsch")
        wait.until(lambda d: d.find_element(By.ID, "h-bridges").text == "Brücken")
        result["german_heading"] = driver.find_element(By.ID, "h-bridges").text
        shot("bridges-de")

    elif screen == "sftp-users":
        open_screen("bridges")
        visible("sftp-user-form")
        # Keyboard only: Tab from field to field, Enter on the button.
        fill("su-name", "acme")
        driver.switch_to.active_element.send_keys(Keys.TAB)
        driver.switch_to.active_element.send_keys("partners/acme")
        driver.switch_to.active_element.send_keys(Keys.TAB)  # password: empty
        driver.switch_to.active_element.send_keys(Keys.TAB)
        driver.switch_to.active_element.send_keys(arg)
        keys_box = driver.find_element(By.ID, "su-keys")
        result["keys_filled"] = keys_box.get_attribute("value") == arg
        shot("sftp-user-form")
        visible("su-add").send_keys(Keys.ENTER)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sftp-users-table tr[data-name='acme']"))
        wait.until(lambda d: d.find_element(By.ID, "message").text.strip() != "")
        result["message"] = driver.find_element(By.ID, "message").text
        row = driver.find_element(By.CSS_SELECTOR, "#sftp-users-table tr[data-name='acme']")
        result["row"] = row.text
        result["removable"] = bool(row.find_elements(By.CSS_SELECTOR, ".su-remove"))
        result["page"] = driver.find_element(By.ID, "view-bridges").text
        shot("sftp-users")
        driver.find_element(By.ID, "lang").send_keys("Deutsch")
        wait.until(lambda d: d.find_element(By.ID, "h-bridges").text == "Brücken")
        result["german_legend"] = driver.find_element(By.CSS_SELECTOR, "#sftp-user-form legend").text

    elif screen == "transports":
        open_screen("transports")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#transports-table tr[data-name='mail']"))
        row = driver.find_element(By.CSS_SELECTOR, "#transports-table tr[data-name='mail']")
        result["row"] = row.text
        result["state"] = row.find_element(By.CSS_SELECTOR, ".state").text
        to = row.find_element(By.CSS_SELECTOR, ".tp-to")
        to.send_keys(arg)
        row.find_element(By.CSS_SELECTOR, ".tp-send").click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "tr[data-name='mail'] .tp-result").text
                   not in ("", "testing…"))
        result["test_result"] = row.find_element(By.CSS_SELECTOR, ".tp-result").text
        shot("transports")

    elif screen == "config":
        open_screen("config")
        wait.until(lambda d: d.find_element(By.ID, "cfg-text").text.strip() != "")
        result["shown"] = driver.find_element(By.ID, "cfg-text").text
        result["source"] = driver.find_element(By.ID, "cfg-source").text
        result["drift_hidden"] = driver.find_element(By.ID, "cfg-drift").get_attribute("hidden") is not None
        # A broken candidate: check's lines.
        fill("cfg-candidate", '[server]\nhttps_listen = "not an address"\n')
        driver.find_element(By.ID, "cfg-check").click()
        wait.until(lambda d: d.find_element(By.ID, "cfg-result").text.strip() != "")
        result["invalid"] = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#cfg-result li")]
        result["invalid_head"] = driver.find_element(By.CSS_SELECTOR, "#cfg-result p").text
        shot("config")
        # The running file itself is valid.
        with open(arg) as f:
            text = f.read()
        area = visible("cfg-candidate")
        area.clear()
        driver.execute_script("arguments[0].value = arguments[1];", area, text)
        driver.find_element(By.ID, "cfg-check").click()
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#cfg-result p").text.startswith("Valid"))
        result["valid_head"] = driver.find_element(By.CSS_SELECTOR, "#cfg-result p").text
        # Reload, from the keyboard.
        visible("cfg-reload").send_keys(Keys.ENTER)
        wait.until(lambda d: d.find_element(By.ID, "reload-result").text.strip() != "")
        result["reload"] = driver.find_element(By.ID, "reload-result").text
        shot("config-reloaded")
    # 200 % zoom: the page stays usable (no horizontal scrolling of the nav).
    driver.execute_script("document.body.style.zoom = '200%'")
    result["nav_fits_at_200"] = driver.execute_script(
        "const n = document.getElementById('nav'); return n.scrollWidth <= n.clientWidth + 1;")
except Exception as e:  # the test prints it
    result["error"] = f"{type(e).__name__}: {e}"
    # Which wait gave up, and on what: a timeout's own message is empty.
    result.update(browser_report.where(e, __file__))
    result["seen"] = browser_report.seen(driver)
    try:
        result["message"] = driver.find_element(By.ID, "message").text
    except Exception:
        pass
finally:
    say("RESULT " + json.dumps(result))
    driver.quit()
