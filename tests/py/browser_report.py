"""What the console's browser scripts report when a step fails.

A Selenium timeout's own message is empty: the script's lines say which
wait gave up, the page says on what.
"""

import traceback


def where(error, script):
    """The lines of `script` the failure passed through, outermost first."""
    return {"at_line": [f.lineno for f in traceback.extract_tb(error.__traceback__)
                        if f.filename == script]}


def seen(driver):
    """The views shown, the focused element and the page's text (best effort)."""
    try:
        return driver.execute_script(
            "const v = [...document.querySelectorAll('[id^=view-]')].filter(e => !e.hidden)"
            ".map(e => e.id); const a = document.activeElement;"
            "return {views: v, active: a ? a.id || a.tagName : null,"
            " text: (document.querySelector('main') || document.body).innerText.slice(0, 2000)};")
    except Exception:  # noqa: BLE001 - the report is best effort
        return None
