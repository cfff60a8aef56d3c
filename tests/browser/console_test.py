#!/usr/bin/python3
"""console_test.py CASE — one case of the agent console in a real browser.

Run by test_console_browser (C), which started the world (cardline with
the Agent API, redis-server, the registry simulator) and plays the
citizens: this script drives headless Chromium through Selenium as the
agent and, when a case needs a citizen or a look into Redis, asks the C
side on stdout with one line `@REQUEST ARGS` and reads `ok` or
`fail WHY` on stdin. Anything else it prints is the case's log.

Environment: CONSOLE_URL (the Agent API listener), TOKEN_AGENT,
TOKEN_SUPERVISOR, TOKEN_OBSERVER, SHOTS (directory for screenshots).
Exit status 0 = the case passed. Every wait is bounded (WAIT_S).
"""
import json
import os
import re
import sys

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

WAIT_S = 30
URL = os.environ["CONSOLE_URL"]
AGENT = os.environ["TOKEN_AGENT"]
SUPERVISOR = os.environ["TOKEN_SUPERVISOR"]
OBSERVER = os.environ["TOKEN_OBSERVER"]
SHOTS = os.environ["SHOTS"]

PIN = "246810"                      # 王伟's PIN, typed by the citizen before the context is read
SMS_SESSION = "sms:+8613800000001"
HELD = "我的新卡还没到"               # part of the citizen's held SMS (see the C side)
REPLY = "您好，您的新卡已寄出，请留意短信。Your new card is on its way."
FORGED = "forged by an observer"
TOO_LONG = "您好" * 100                # 200 characters, 600 bytes of UTF-8


class CaseFailed(Exception):
    pass


def log(*words):
    print(*words, file=sys.stderr, flush=True)


def citizen(request):
    """Asks the C side to act (`@request`) and fails unless it says ok."""
    sys.stdout.write("@" + request + "\n")
    sys.stdout.flush()
    answer = sys.stdin.readline().strip()
    if answer != "ok":
        raise CaseFailed(f"{request}: {answer or 'no answer'}")


def browser():
    opts = webdriver.ChromeOptions()
    opts.add_argument("--headless=new")
    opts.add_argument("--no-sandbox")
    opts.add_argument("--disable-dev-shm-usage")
    opts.add_argument("--window-size=1280,1000")
    opts.add_argument("--lang=en-US")
    opts.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    return driver


def wait(driver, condition, what):
    try:
        # The page redraws its lists on every notification: an element found
        # a moment ago may be gone; look again.
        return WebDriverWait(driver, WAIT_S, ignored_exceptions=[StaleElementReferenceException]).until(condition)
    except TimeoutException:
        shot(driver, "failed")
        raise CaseFailed(f"waited {WAIT_S} s for {what}") from None


def shot(driver, name):
    path = os.path.join(SHOTS, f"{CASE}-{name}.png")
    driver.save_screenshot(path)
    log("screenshot", path)


def text_of(driver, element_id):
    return driver.find_element(By.ID, element_id).text


def sign_in(driver, token):
    driver.get(URL + "/")
    field = wait(driver, EC.element_to_be_clickable((By.ID, "token")), "the sign-in form")
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()


def sign_in_ok(driver, token, role):
    sign_in(driver, token)
    wait(driver, EC.visibility_of_element_located((By.ID, "desk")), f"the desk of a {role}")
    wait(driver, lambda d: f"({role})" in text_of(d, "who"), f"'{role}' in the header")
    wait(driver, lambda d: text_of(d, "live") == "Updates: live", "the live stream")


def row(driver, table, key, value):
    """The row of `table` whose data-KEY is `value`, or None."""
    rows = driver.find_elements(By.CSS_SELECTOR, f'#{table} tr[data-{key}="{value}"]')
    return rows[0] if rows else None


def click_in_row(driver, table, key, value, what):
    """Clicks the button of the row, once it is there (the list may be redrawn meanwhile)."""
    def click(d):
        r = row(d, table, key, value)
        if r is None:
            return False
        r.find_element(By.TAG_NAME, "button").click()
        return True
    wait(driver, click, what)


def open_session(driver, session):
    click_in_row(driver, "queue-rows", "id", session, f"{session} in the queue")
    wait(driver, lambda d: text_of(d, "session-title") == "Session " + session, f"the context of {session}")


def api_from_page(driver, token, method, path, body):
    """fetch() from inside the page, as a script in it could: [status, body]."""
    return driver.execute_async_script(
        """const [token, method, path, body, done] = arguments;
        fetch(path, {method, headers: {Authorization: 'Bearer ' + token, 'Content-Type': 'application/json'},
                     body: body === null ? undefined : JSON.stringify(body)})
          .then(async (r) => done([r.status, await r.text()]), (e) => done([0, String(e)]));""",
        token, method, path, body)


# The cases ---------------------------------------------------------------------

def case_wrong_token(driver):
    sign_in(driver, "not-a-token-of-anyone")
    wait(driver, lambda d: "refused" in text_of(d, "signin-msg"), "the refusal")
    message = text_of(driver, "signin-msg")
    if any(code in message for code in ("401", "403")):
        raise CaseFailed(f"the refusal shows a status code: {message}")
    if driver.find_element(By.ID, "desk").is_displayed():
        raise CaseFailed("the desk shows after a refused token")
    if driver.execute_script("return sessionStorage.length") != 0:
        raise CaseFailed("a refused token was kept in sessionStorage")
    shot(driver, "refused")
    # A good token works, survives a reload (sessionStorage), and signing out forgets it.
    sign_in_ok(driver, AGENT, "agent")
    driver.refresh()
    wait(driver, lambda d: "(agent)" in text_of(d, "who"), "the desk after a reload")
    driver.find_element(By.ID, "signout").click()
    wait(driver, EC.visibility_of_element_located((By.ID, "signin")), "the sign-in form after signing out")
    if driver.execute_script("return sessionStorage.getItem('cardline.token')") is not None:
        raise CaseFailed("signing out left the token in sessionStorage")


FUNNEL = [  # (node of flow main, what the batch adds: entered, left next, left invalid)
    ("welcome", 4, 4, 0),
    ("choose_lang", 4, 2, 1),
    ("main_menu", 3, 1, 1),
    ("goodbye", 1, 0, 0),
]


def funnel_counts(driver):
    """{node: (entered, next, invalid)} of flow main as the page draws it."""
    return driver.execute_script(
        """const out = {};
        for (const li of document.querySelectorAll('#funnel-body section[data-flow=main] li.step'))
          out[li.dataset.node] = [+li.dataset.entered, +(li.dataset.leftNext || 0), +(li.dataset.leftInvalid || 0)];
        return out;""")


def case_funnel(driver):
    sign_in_ok(driver, SUPERVISOR, "supervisor")
    wait(driver, EC.visibility_of_element_located((By.ID, "funnel")), "the funnel")
    wait(driver, EC.visibility_of_element_located((By.ID, "overview")), "the overview")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#overview-body .card"), "the overview's figures")
    before = funnel_counts(driver)
    log("funnel before", json.dumps(before))
    citizen("ussd_batch")

    def grown(d):
        now = funnel_counts(d)
        for node, entered, went_on, invalid in FUNNEL:
            b = before.get(node, [0, 0, 0])
            if now.get(node) != [b[0] + entered, b[1] + went_on, b[2] + invalid]:
                return False
        return True
    try:
        WebDriverWait(driver, WAIT_S).until(grown)
    except TimeoutException:
        shot(driver, "failed")
        raise CaseFailed(f"funnel of main {json.dumps(funnel_counts(driver))}, "
                         f"wanted {FUNNEL} more than {json.dumps(before)}") from None
    if not before:  # a fresh world: the words say the shares too
        words = driver.find_element(By.CSS_SELECTOR, "li.step[data-node=choose_lang] .step-words").text
        if "4 reached" not in words or "25% invalid input" not in words:
            raise CaseFailed(f"choose_lang says {words!r}")
    if not driver.find_elements(By.CSS_SELECTOR, "li.step[data-node=choose_lang] .seg.out-invalid"):
        raise CaseFailed("no invalid-input segment drawn at choose_lang")
    driver.set_window_size(1280, 1500)  # the figures and the whole funnel of main in one picture
    driver.execute_script("document.getElementById('overview').scrollIntoView()")
    shot(driver, "supervisor")


def case_sms(driver):
    sign_in_ok(driver, AGENT, "agent")
    if row(driver, "queue-rows", "id", SMS_SESSION):
        raise CaseFailed(f"{SMS_SESSION} waits before the citizen asked")
    citizen("sms_agent")  # AGENT, then a question held for the agent
    open_session(driver, SMS_SESSION)  # arrives by the stream: the page is not reloaded
    wait(driver, lambda d: HELD in text_of(d, "held"), "the held message")
    # Refused by the API (480 bytes at most; the box counts characters):
    # the page says what the API said, in its words.
    box = driver.find_element(By.ID, "reply-text")
    driver.execute_script("arguments[0].value = arguments[1]", box, TOO_LONG)
    driver.find_element(By.ID, "reply-send").click()
    status, body = api_from_page(driver, AGENT, "POST", f"/v1/sessions/{SMS_SESSION}/reply", {"text": TOO_LONG})
    words = json.loads(body)["error"]["message"]
    if status != 400 or not words:
        raise CaseFailed(f"a reply of {len(TOO_LONG.encode())} bytes answered {status} {body}")
    wait(driver, lambda d: text_of(d, "session-msg") == words, f"the API's words {words!r}")
    box.clear()
    box.send_keys(REPLY)
    shot(driver, "conversation")
    driver.find_element(By.ID, "reply-send").click()
    wait(driver, lambda d: "Reply queued" in text_of(d, "session-msg"), "the reply's confirmation")
    citizen("outbox " + REPLY)
    # An action the API refuses is told in the API's words: an empty reply
    # is stopped by the form, a reply to a released session by the API.
    driver.find_element(By.ID, "release").click()
    wait(driver, lambda d: "Released" in text_of(d, "session-msg"), "the release")
    status, body = api_from_page(driver, AGENT, "POST", f"/v1/sessions/{SMS_SESSION}/reply", {"text": "late"})
    if status not in (404, 409):
        raise CaseFailed(f"a reply after release answered {status} {body}")


def case_observer(driver):
    citizen("sms_agent")
    sign_in_ok(driver, OBSERVER, "observer")
    open_session(driver, SMS_SESSION)
    wait(driver, lambda d: HELD in text_of(d, "held"), "the held message")
    visible = [b.text for b in driver.find_elements(By.CSS_SELECTOR, "#desk button") if b.is_displayed()]
    for action in ("Send reply", "Release to self-service", "Claim", "Done", "Get transfer address"):
        if action in visible:
            raise CaseFailed(f"an observer sees the button {action!r}")
    if driver.find_element(By.ID, "reply-text").is_displayed():
        raise CaseFailed("an observer sees the reply box")
    shot(driver, "readonly")
    status, body = api_from_page(driver, OBSERVER, "POST", f"/v1/sessions/{SMS_SESSION}/reply", {"text": FORGED})
    if status != 403:
        raise CaseFailed(f"a forged reply answered {status} {body}")
    citizen("no_outbox " + FORGED)


def case_no_pin(driver):
    citizen("ussd_pin")  # identified with ID and PIN at the status check
    sign_in_ok(driver, AGENT, "agent")
    Select(driver.find_element(By.ID, "queue-state")).select_by_value("")
    Select(driver.find_element(By.ID, "queue-channel")).select_by_value("ussd")
    open_session(driver, "ussd:console-pin")
    wait(driver, lambda d: "yes, with PIN" in text_of(d, "session-facts"), "the verification")
    wait(driver, lambda d: "<secret>" in text_of(d, "events"), "the secret input's event")
    shot(driver, "context")
    seen = driver.execute_script(
        """return [document.documentElement.outerHTML, document.body.innerText,
                   ...[...document.querySelectorAll('input, textarea, select')].map((e) => e.value),
                   JSON.stringify(sessionStorage), JSON.stringify(localStorage)].join('\\n');""")
    if PIN in seen:
        raise CaseFailed("the page holds the PIN")


def case_callback(driver):
    sign_in_ok(driver, AGENT, "agent")
    citizen("ussd_callback")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#cb-rows tr button"), "the callback, live")
    ref = wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#cb-rows tr").get_attribute("data-ref"), "its ref")
    click_in_row(driver, "cb-rows", "ref", ref, f"{ref} to claim")
    wait(driver, lambda d: f"{ref} is yours" in text_of(d, "cb-msg"), "the claim's answer")
    Select(driver.find_element(By.ID, "cb-state")).select_by_value("claimed")
    wait(driver, lambda d: row(d, "cb-rows", "ref", ref) and "li" in row(d, "cb-rows", "ref", ref).text,
         f"{ref} among the claimed, as li's")
    shot(driver, "claimed")
    click_in_row(driver, "cb-rows", "ref", ref, f"{ref} to finish")
    wait(driver, lambda d: f"{ref} is done" in text_of(d, "cb-msg"), "the done's answer")
    status, body = api_from_page(driver, AGENT, "POST", f"/v1/callbacks/{ref}/done", None)
    if status != 409:
        raise CaseFailed(f"done twice answered {status} {body}")


def case_voice(driver):
    sign_in_ok(driver, AGENT, "agent")
    citizen("voice_transfer")
    session = "voice:console-call-1"
    open_session(driver, session)
    wait(driver, lambda d: "not been sent" in text_of(d, "assist"), "the caller not sent anywhere yet")
    driver.find_element(By.CSS_SELECTOR, "#resume-form button[type=submit]").click()
    wait(driver, lambda d: re.search(r"sip:resume-[0-9a-f]{32}@\S+ within \d+ s", text_of(d, "resume-uri")),
         "the resume URI")
    citizen("voice_back")  # verified, and back on Li's phone
    wait(driver, lambda d: text_of(d, "assist") == "Back from verify_pin: verified", "the outcome, live")
    wait(driver, lambda d: "yes, with PIN (ID 110101********4514)" in text_of(d, "session-facts"), "the masked ID")
    shot(driver, "back")


QUEUE_BIG = 1000


def range_is(text):
    return lambda d: text_of(d, "queue-range") == text


def case_queue_1000(driver):
    sign_in_ok(driver, AGENT, "agent")
    wait(driver, lambda d: " of " in text_of(d, "queue-range"), "the queue")
    total = int(text_of(driver, "queue-range").split(" of ")[1]) + QUEUE_BIG  # earlier cases left some
    citizen(f"sms_many {QUEUE_BIG}")
    wait(driver, range_is(f"1–50 of {total}"), f"the queue to count {total}")
    pages = 1
    while driver.find_element(By.ID, "queue-next").is_enabled():
        driver.find_element(By.ID, "queue-next").click()
        pages += 1
        first = (pages - 1) * 50 + 1
        last = min(first + 49, total)
        wait(driver, range_is(f"{first}–{last} of {total}"), f"page {pages}")
        rows = len(driver.find_elements(By.CSS_SELECTOR, "#queue-rows tr"))
        if rows != last - first + 1:
            raise CaseFailed(f"page {pages} shows {rows} rows")
    if pages != (total + 49) // 50:
        raise CaseFailed(f"{pages} pages for {total} sessions")
    newest = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#queue-rows tr")[-1].get_attribute("data-id"),
                  "the newest session")
    open_session(driver, newest)
    wait(driver, lambda d: "agent.to_agent" in text_of(d, "session-facts"), "the context of the newest")
    driver.find_element(By.ID, "queue-prev").click()
    first = (pages - 2) * 50 + 1
    wait(driver, range_is(f"{first}–{first + 49} of {total}"), "the page before")
    shot(driver, "page")


CASES = {
    "wrong_token": case_wrong_token,
    "funnel": case_funnel,
    "sms": case_sms,
    "observer": case_observer,
    "no_pin": case_no_pin,
    "callback": case_callback,
    "voice": case_voice,
    "queue_1000": case_queue_1000,
}

if __name__ == "__main__":
    CASE = sys.argv[1]
    os.makedirs(SHOTS, exist_ok=True)
    driver = browser()
    try:
        CASES[CASE](driver)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and e["source"] != "network"]
        if errors:
            raise CaseFailed(f"the page logged errors: {errors}")
        log(CASE, "passed")
    except CaseFailed as e:
        log(CASE, "FAILED:", e)
        sys.exit(1)
    finally:
        driver.quit()
