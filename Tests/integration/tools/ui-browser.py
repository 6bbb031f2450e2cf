#!/usr/bin/env python3
"""End-to-end test of the visor's web UI in headless Chromium (Debian's chromium,
chromium-driver and python3-selenium), run by t-ui.sh inside the client's namespace:
log in with the one-time link, see the transport list, connect the VPN to the test exit,
see "connected" and a moving throughput chart, disconnect. Screenshots of each page go to
--artifacts. Every wait is bounded; exits non-zero with the reason on the first failure.
With --chat-send PK (t-skychat.sh): log in, send --chat-text to PK from the chat page and see
it delivered; with --chat-read PK: log in and see --chat-text from PK appear on the chat page."""
import argparse
import os
import subprocess
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

WAIT_S = 60


def wait_for(what, predicate, timeout=WAIT_S):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # an element not there yet, a page being replaced
            last = e
        time.sleep(0.25)
    raise SystemExit(f"timed out after {timeout} s waiting for {what} (last: {last})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--link", required=True)
    ap.add_argument("--exit")
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--profile", required=True, help="a fresh Chromium profile directory")
    ap.add_argument("--traffic", help="URL fetched through the tunnel for the chart")
    ap.add_argument("--chat-send", help="skychat: the peer key to send --chat-text to")
    ap.add_argument("--chat-read", help="skychat: the peer key whose --chat-text must appear")
    ap.add_argument("--chat-text")
    a = ap.parse_args()
    if not (a.chat_send or a.chat_read) and not (a.exit and a.traffic):
        ap.error("--exit and --traffic, or --chat-send/--chat-read with --chat-text")

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1000,1000", "--no-first-run", "--disable-extensions",
                 "--user-data-dir=" + a.profile):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    shot = lambda name: driver.save_screenshot(os.path.join(a.artifacts, name))
    traffic = None
    try:
        driver.get(a.link)
        pk = wait_for("the overview after the token login", lambda: driver.find_element(By.ID, "pk").text)
        if "token=" in driver.current_url:
            raise SystemExit("the login token stayed in the address bar: " + driver.current_url)
        if a.chat_send or a.chat_read:
            return chat(driver, a, shot, pk)
        wait_for("the transport to the exit in the list",
                 lambda: a.exit[:16] in driver.find_element(By.ID, "transports").text)
        shot("overview.png")
        driver.set_window_size(390, 844)  # a phone
        time.sleep(0.5)
        shot("overview-phone.png")
        driver.set_window_size(1000, 1000)

        driver.get(driver.current_url.split("#")[0] + "#/vpn")
        field = wait_for("the exit key field", lambda: driver.find_element(By.ID, "exit-pk"))
        field.clear()
        field.send_keys(a.exit)
        driver.find_element(By.XPATH, "//button[text()='Connect']").click()
        wait_for("state connected", lambda: driver.find_elements(By.CSS_SELECTOR, "#vpn-state [data-state=connected]"), 90)

        # Traffic through the tunnel for the chart: bounded in count and time.
        traffic = subprocess.Popen(["sh", "-c", f"for i in $(seq 1 30); do curl -s --max-time 20 -o /dev/null {a.traffic}; sleep 0.2; done"])

        def chart():
            svg = driver.find_element(By.CSS_SELECTOR, "svg.chart")
            return int(svg.get_attribute("data-points")), driver.find_element(By.CSS_SELECTOR, "svg.chart polyline.rx").get_attribute("points")
        wait_for("chart points", lambda: chart()[0] >= 4)
        first = chart()[1]
        wait_for("the chart to move", lambda: chart()[1] != first and any(
            float(p.split(",")[1]) < 149 for p in chart()[1].split()), 30)
        shot("vpn.png")

        driver.find_element(By.XPATH, "//button[text()='Disconnect']").click()
        wait_for("state stopped", lambda: driver.find_elements(By.CSS_SELECTOR, "#vpn-state [data-state=stopped]"), 60)
        shot("vpn-disconnected.png")
        for page in ("vpn-server", "socks"):
            driver.get(driver.current_url.split("#")[0] + "#/" + page)
            wait_for(page, lambda: "Status" in driver.find_element(By.ID, "main").text)
            shot(page + ".png")
        print(f"logged in as {pk[:16]}…, transport listed, VPN connected with a moving chart, disconnected; screenshots in {a.artifacts}")
    finally:
        if traffic:
            traffic.kill()
            traffic.wait()
        driver.quit()


def chat(driver, a, shot, pk):
    """The chat page: send a message and see it delivered, or see one arrive."""
    driver.get(driver.current_url.split("#")[0] + "#/chat")
    xpath_text = "//div[contains(@class,'msg')][contains(., %s)]" % repr(a.chat_text)
    if a.chat_send:
        wait_for("the chat page", lambda: driver.find_element(By.ID, "chat-form"))
        to = driver.find_element(By.ID, "chat-to")
        to.clear()
        to.send_keys(a.chat_send)
        driver.find_element(By.ID, "chat-text").send_keys(a.chat_text)
        driver.find_element(By.ID, "chat-send").click()
        wait_for("the message shown as delivered", lambda: any(
            e.get_attribute("data-state") == "delivered" for e in driver.find_elements(By.XPATH, xpath_text)))
        shot("chat-sent.png")
        print(f"{pk[:16]}… sent {a.chat_text!r} to {a.chat_send[:16]}… from the chat page: delivered")
    else:
        link = wait_for("the conversation with the sender in the list",
                        lambda: driver.find_element(By.CSS_SELECTOR, f"#chat-list a[data-id='{a.chat_read}']"))
        link.click()
        wait_for("the message on the page", lambda: any(
            e.get_attribute("data-state") == "received" for e in driver.find_elements(By.XPATH, xpath_text)))
        shot("chat-received.png")
        print(f"{pk[:16]}… sees {a.chat_text!r} from {a.chat_read[:16]}… on its chat page")


if __name__ == "__main__":
    sys.exit(main())
