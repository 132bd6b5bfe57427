#!/usr/bin/env python3
"""Drives headless Chromium (through chromedriver and Python's selenium) for the web console's end-to-end
tests. One browser per process; commands arrive one per line on stdin as JSON arrays, each answered by one
JSON line on stdout: {"ok": true, "value": ...} or {"ok": false, "error": "..."}.

  ["open", URL]                 load a page
  ["wait", TEXT, SECONDS]       until the terminal's text (its accessibility tree) contains TEXT
  ["status"]                    the status line's text
  ["text"]                      the terminal's visible text
  ["body"]                      the page's whole visible text
  ["type", TEXT]                keys into the terminal ("\\n" is Enter)
  ["screenshot", PATH]          a PNG of the window
  ["socket", SECONDS]           until the page's WebSocket is open (the status line says connected)
  ["quit"]
"""
import json
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

TERMINAL_TEXT = (
    "var t = document.querySelector('.xterm-accessibility-tree');"
    "return t ? t.innerText : '';"
)


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1000,760", "--no-first-run", "--disable-extensions"]:
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def until(condition, seconds):
    deadline = time.time() + float(seconds)
    while True:
        value = condition()
        if value:
            return value
        if time.time() > deadline:
            return None
        time.sleep(0.05)


def main():
    driver = browser()
    try:
        for line in sys.stdin:
            command = json.loads(line)
            name, arguments = command[0], command[1:]
            try:
                if name == "open":
                    driver.get(arguments[0])
                    value = driver.title
                elif name == "wait":
                    text, seconds = arguments
                    if until(lambda: text in driver.execute_script(TERMINAL_TEXT), seconds) is None:
                        raise RuntimeError("no %r in the terminal after %s s; it shows %r; status %r" % (
                            text, seconds, driver.execute_script(TERMINAL_TEXT), status(driver)))
                    value = driver.execute_script(TERMINAL_TEXT)
                elif name == "status":
                    value = status(driver)
                elif name == "text":
                    value = driver.execute_script(TERMINAL_TEXT)
                elif name == "body":
                    value = driver.find_element(By.TAG_NAME, "body").text
                elif name == "type":
                    driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea").send_keys(arguments[0])
                    value = None
                elif name == "screenshot":
                    value = driver.save_screenshot(arguments[0])
                elif name == "socket":
                    if until(lambda: status(driver).startswith("connected"), arguments[0]) is None:
                        raise RuntimeError("the WebSocket did not open; status %r" % status(driver))
                    value = status(driver)
                elif name == "quit":
                    answer({"ok": True, "value": None})
                    return
                else:
                    raise RuntimeError("unknown command %r" % name)
                answer({"ok": True, "value": value})
            except Exception as error:  # the test reads the reason
                answer({"ok": False, "error": "%s: %s" % (type(error).__name__, error)})
    finally:
        driver.quit()


def status(driver):
    found = driver.find_elements(By.ID, "status")
    return found[0].text if found else ""


def answer(value):
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
