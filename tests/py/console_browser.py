"""Drives the admin console in Debian's headless Chromium (Selenium, no
browser download) for tests/tests/e2e/console.rs.

usage: console_browser.py ADMIN_BASE SCREENSHOT_DIR|- ALICE_PASSWORD BOB_PASSWORD WEBHOOK_URL

Talks to the test over stdout/stdin, one line each:
  ADMIN <cookie> <csrf>   alice's session (the test checks CSRF with it)
  KEY <id> <key>          the key created in the browser; then waits for a line
  REVOKED <id>            after revoking it in the browser
  WEBHOOK <secret>        a webhook added in the browser; waits for a line
                          (the test starts the receiver with the secret)
  VIEWER <cookie> <csrf>  bob's (viewer) session
  RESULT <json>           what the browser saw
Every wait is explicit (WebDriverWait on a condition), never a sleep.
"""

import json
import os
import sys
import time

import pyotp

import browser_report
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

base, shots, alice_pw, bob_pw, webhook_url = sys.argv[1:6]
result = {}


def say(line):
    print(line, flush=True)


def shot(name):
    """The whole page (the window grows to its height for the picture)."""
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
# The browser's console, to see Content-Security-Policy violations.
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(
    service=Service(os.environ.get("MFT_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")),
    options=options,
)
wait = WebDriverWait(driver, 30)


def visible(element_id):
    return wait.until(EC.visibility_of_element_located((By.ID, element_id)))


def text_in(element_id, text):
    wait.until(EC.text_to_be_present_in_element((By.ID, element_id), text))


def fill(element_id, value):
    el = visible(element_id)
    el.clear()
    el.send_keys(value)


def fetch(method, path, headers=None, body=None):
    """A request from the page itself (cookie included); returns the status."""
    return driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(arguments[0], {method: arguments[1], headers: arguments[2],
                             credentials: 'same-origin', body: arguments[3]})
          .then(r => done(r.status)).catch(e => done(String(e)));""",
        base + path, method, headers or {}, body,
    )


def me():
    return driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch('/console/api/me').then(r => r.json()).then(done).catch(e => done(null));"""
    )


def error_shown():
    """Waits for an error message (not the green notice) and returns it."""
    wait.until(lambda d: d.find_element(By.ID, "message").text.strip() != ""
               and "ok" not in d.find_element(By.ID, "message").get_attribute("class"))
    return driver.find_element(By.ID, "message").text


def sign_in(name, password, code=""):
    visible("view-sign-in")
    fill("si-name", name)
    fill("si-password", password)
    fill("si-code", code)
    driver.find_element(By.ID, "si-submit").click()


def enrol(name, password, prefix):
    """First sign-in: QR code, code from pyotp, recovery codes. Returns the TOTP."""
    sign_in(name, password)
    visible("view-enrol")
    wait.until(lambda d: d.find_element(By.ID, "totp-secret").text.strip() != "")
    wait.until(lambda d: d.execute_script(
        "const i = document.getElementById('qr'); return i.complete && i.naturalWidth > 0;"))
    secret = driver.find_element(By.ID, "totp-secret").text.strip()
    totp = pyotp.TOTP(secret)
    if prefix == "alice":
        shot("enrol")
    fill("en-code", totp.now())
    driver.find_element(By.ID, "en-submit").click()
    visible("view-recovery")
    codes = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#recovery-codes li")]
    if prefix == "alice":
        shot("recovery-codes")
    driver.find_element(By.ID, "recovery-done").click()
    visible("view-keys")
    return totp, codes


def session_cookie():
    cookie = driver.get_cookie("mft_console")
    return cookie


try:
    driver.get(base + "/console/")
    visible("view-sign-in")
    shot("sign-in")

    # A wrong password is refused with a message.
    sign_in("alice", "not the password")
    result["wrong_password_message"] = error_shown()

    totp, codes = enrol("alice", alice_pw, "alice")
    result["recovery_codes"] = len(codes)
    cookie = session_cookie()
    result["cookie_http_only"] = cookie["httpOnly"]
    result["cookie_same_site"] = cookie.get("sameSite")

    # Sign out; sign in again with password + TOTP code, then with a recovery code.
    driver.find_element(By.ID, "sign-out").click()
    visible("view-sign-in")
    sign_in("alice", alice_pw, "000000" if totp.now() != "000000" else "111111")
    result["wrong_code_message"] = error_shown()
    sign_in("alice", alice_pw, codes[0])
    visible("view-keys")
    driver.find_element(By.ID, "sign-out").click()
    sign_in("alice", alice_pw, codes[0])
    result["recovery_code_reused_message"] = error_shown()
    # The enrolment used the current step's code; the next step's is
    # accepted too (one step of skew), each only once.
    code = totp.at(time.time() + 30)
    sign_in("alice", alice_pw, code)
    visible("view-keys")
    driver.find_element(By.ID, "sign-out").click()
    sign_in("alice", alice_pw, code)
    result["code_replay_message"] = error_shown()
    # No later step is valid yet without waiting: the second recovery code.
    sign_in("alice", alice_pw, codes[1])
    visible("view-keys")
    text_in("who", "alice")

    # Create a key with one scope; it is shown once.
    fill("key-name", "console-bot")
    wait.until(EC.element_to_be_clickable((By.ID, "scope-files-read"))).click()
    driver.find_element(By.ID, "key-create").click()
    visible("new-key")
    wait.until(lambda d: d.find_element(By.ID, "new-key-value").text.startswith("mgw_"))
    key = driver.find_element(By.ID, "new-key-value").text
    key_id = driver.find_element(By.ID, "new-key-value").get_attribute("data-id")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-id="{key_id}"]')))
    shot("api-keys")
    info = me()
    say(f"ADMIN {session_cookie()['value']} {info['csrf']}")
    say(f"KEY {key_id} {key}")
    sys.stdin.readline()

    # A change without the CSRF token is refused, from the page itself.
    result["create_without_csrf"] = fetch(
        "POST", "/admin/v1/keys", {"Content-Type": "application/json"},
        json.dumps({"name": "x", "scopes": ["files:read"]}))
    result["sign_out_without_csrf"] = fetch(
        "POST", "/console/api/sign-out", {"Content-Type": "application/json"}, "{}")

    # Revoke in the browser.
    row = f'tr[data-id="{key_id}"]'
    driver.find_element(By.CSS_SELECTOR, row + " button.revoke").click()
    wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, row + " td.status"), "revoked"))
    say(f"REVOKED {key_id}")

    # German labels.
    Select(driver.find_element(By.ID, "lang")).select_by_value("de")
    text_in("h-keys", "API-Schlüssel")
    result["german_heading"] = driver.find_element(By.ID, "h-keys").text
    shot("api-keys-de")
    Select(driver.find_element(By.ID, "lang")).select_by_value("en")
    text_in("h-keys", "API keys")

    # Trust network.
    driver.find_element(By.ID, "nav-partners").click()
    visible("view-partners")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#partners-table tbody tr")))
    result["partners"] = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#partners-table tbody tr td:first-child")]
    driver.find_element(By.CSS_SELECTOR, "#partners-table tbody tr td.connection button").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#partners-table td.connection span.bad, #partners-table td.connection span.good")))
    result["partner_test"] = driver.find_element(By.CSS_SELECTOR, "#partners-table td.connection span").text
    shot("trust-network")

    # Swagger UI on the admin API, with alice's session: reads, and a
    # change (partner test, a POST) that needs the CSRF token.
    driver.find_element(By.ID, "nav-api").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    result["swagger_operations"] = len(driver.find_elements(By.CSS_SELECTOR, ".opblock"))
    result["swagger_title"] = driver.find_element(By.CSS_SELECTOR, ".info .title").text

    def try_it(op_id, params=None):
        block = f"#operations-{op_id}"
        driver.find_element(By.CSS_SELECTOR, block + " .opblock-summary").click()
        wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, block + " .try-out__btn"))).click()
        for name, value in (params or {}).items():
            field = driver.find_element(By.CSS_SELECTOR, f'{block} tr[data-param-name="{name}"] input')
            field.clear()
            field.send_keys(value)
        driver.find_element(By.CSS_SELECTOR, block + " .execute").click()
        cell = block + " .live-responses-table tr.response .response-col_status"
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, cell)))
        return driver.find_element(By.CSS_SELECTOR, cell).text.strip()

    result["swagger_list_keys"] = try_it("keys-list_keys")
    result["swagger_test_partner"] = try_it("partners-test_partner", {"name": "beta"})
    driver.execute_script("window.scrollTo(0, 0)")
    shot("api-docs")
    result["csp_violations"] = [e["message"] for e in driver.get_log("browser")
                                if "Content Security Policy" in e["message"]]
    driver.get(base + "/console/")
    visible("view-keys")

    # Overview: charts from the gateway's own metrics (the curl calls above
    # made traffic), health of the backend, the partner, the certificate.
    driver.find_element(By.ID, "nav-overview").click()
    visible("view-overview")
    long_wait = WebDriverWait(driver, 60)
    long_wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#chart-requests polyline")))
    long_wait.until(EC.text_to_be_present_in_element(
        (By.CSS_SELECTOR, '#health-table tr[data-part="backend"] td.state'), "up"))
    result["overview_charts"] = len(driver.find_elements(By.CSS_SELECTOR, "#charts figure svg"))
    # One read in the page: the table is redrawn every 10 s.
    result["overview_health"] = dict(driver.execute_script(
        """return [...document.querySelectorAll('#health-table tbody tr')].map(
             (tr) => [tr.dataset.part + ':' + tr.dataset.name, tr.querySelector('td.state').textContent]);"""))
    shot("overview")
    Select(driver.find_element(By.ID, "lang")).select_by_value("de")
    text_in("h-overview", "Übersicht")
    Select(driver.find_element(By.ID, "lang")).select_by_value("en")

    # Audit log: alice's failed sign-ins, filtered by event and decision.
    driver.find_element(By.ID, "nav-audit").click()
    visible("view-audit")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#audit-table tbody tr")))
    fill("au-event", "console")
    Select(driver.find_element(By.ID, "au-decision")).select_by_value("deny")
    driver.find_element(By.ID, "au-apply").click()
    wait.until(lambda d: "decision=deny" in d.find_element(By.ID, "au-export").get_attribute("href"))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#audit-table tbody tr")))
    rows = driver.find_elements(By.CSS_SELECTOR, "#audit-table tbody tr")
    result["audit_rows"] = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows]
    export = driver.find_element(By.ID, "au-export").get_attribute("href")
    result["audit_export"] = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(arguments[0]).then(r => r.text()).then(done).catch(e => done(String(e)));""", export)
    shot("audit")

    # Webhooks: add one (the secret shown once), then "send test event" to
    # the receiver the test starts with that secret.
    driver.find_element(By.ID, "nav-webhooks").click()
    visible("view-webhooks")
    fill("wh-url", webhook_url)
    driver.find_element(By.ID, "wh-private").click()
    driver.find_element(By.ID, "wh-add").click()
    visible("wh-secret")
    wait.until(lambda d: d.find_element(By.ID, "wh-secret-value").text.startswith("whsec_"))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#webhooks-table tbody tr")))
    say("WEBHOOK " + driver.find_element(By.ID, "wh-secret-value").text)
    sys.stdin.readline()
    driver.find_element(By.CSS_SELECTOR, "#webhooks-table tbody tr button.wh-test").click()
    wait.until(EC.presence_of_element_located(
        (By.CSS_SELECTOR, "#webhooks-table td.test-result span.good, #webhooks-table td.test-result span.bad")))
    result["webhook_test"] = driver.find_element(By.CSS_SELECTOR, "#webhooks-table td.test-result span").text.strip()
    shot("webhooks")

    # Keyboard only: Tab reaches the navigation and Enter opens the key list.
    driver.find_element(By.ID, "nav-keys").send_keys("\n")
    visible("view-keys")
    driver.find_element(By.ID, "sign-out").click()
    visible("view-sign-in")

    # The viewer: no change controls, and a revoke sent anyway is refused.
    enrol("bob", bob_pw, "bob")
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#keys-table tbody tr")))
    result["viewer_revoke_buttons"] = len(driver.find_elements(By.CSS_SELECTOR, "button.revoke"))
    result["viewer_key_form_hidden"] = not driver.find_element(By.ID, "key-form").is_displayed()
    info = me()
    result["viewer_role"] = info["role"]
    say(f"VIEWER {session_cookie()['value']} {info['csrf']}")
    shot("viewer")
except Exception as e:  # noqa: BLE001 - the test prints it with the page
    result["error"] = f"{type(e).__name__}: {e}"
    # Which wait gave up, and on what: a timeout's own message is empty.
    result.update(browser_report.where(e, __file__))
    result["seen"] = browser_report.seen(driver)
    try:
        result["page"] = driver.find_element(By.TAG_NAME, "main").text[:2000]
        shot("failure") if shots != "-" else None
    except Exception:  # noqa: BLE001
        pass
finally:
    say("RESULT " + json.dumps(result))
    driver.quit()
