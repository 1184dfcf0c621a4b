"""The web panel in headless Chromium (Debian's `chromium`, driven by Playwright for Python; no
browser is downloaded) against the real `octollm-server`: sign in, the Overview's charts showing
what the OpenAI SDK just sent, the log filtered and a record opened, the backends' health, a key
created (revealed once, copied) and used by the OpenAI SDK then revoked, a backend and a model
added and a request sent through them, the effective config and the audit trail, every page in
dark and light with a screenshot under target/panel-screenshots/, keyboard navigation, signing
out, and `--demo`'s one-time link.

Chromium is found as $OCTOLLM_CHROMIUM or `chromium` on PATH; scripts/test.sh installs it and sets
OCTOLLM_REQUIRE_BROWSER=1, so there a missing browser fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import support
from support import REPO, Proc, bin_path

SHOTS = REPO / "target" / "panel-screenshots"
USER = "ada"
PASSWORD = "correct horse battery staple"
ADMIN_TOKEN = "panel-test-admin-token-0123456789"
#: The gateway key of org `acme`, key `alice` (from the config file) that the SDK traffic uses.
ALICE_KEY = "sk-acme-alice-0123456789"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
#: How long a page may take to show what the test waits for (ms).
WAIT_MS = 15000


def chromium_path() -> str | None:
    return os.environ.get("OCTOLLM_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if not path:
        if os.environ.get("OCTOLLM_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed (scripts/test.sh installs Debian's `chromium`)")
        pytest.skip("chromium is not installed: `apt-get install chromium` (scripts/test.sh does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the `playwright` package is missing from the venv (tests/sdk/requirements.txt)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


def hash_password(password: str) -> str:
    out = subprocess.run(
        [str(bin_path("octollm-server")), "hash-password"],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def admin_url_of(proc: Proc) -> str:
    printed = "\n".join(proc._stdout_lines)
    return re.search(r"admin on (http://\S+) ", printed).group(1)


@pytest.fixture(scope="module")
def panel_gw(mock, tmp_path_factory):
    """A gateway with a panel user, its own SQLite log, and two models on the mock."""
    d = tmp_path_factory.mktemp("panel")
    cfg = d / "octollm.yaml"
    cfg.write_text(
        f"""\
listen: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
  tokens: ["{ADMIN_TOKEN}"]
  users: [{{name: {USER}, password: "{hash_password(PASSWORD)}"}}]
storage: {{url: "sqlite://{d / 'log.db'}"}}
backends:
  mock-chat: {{base_url: "{mock.url}", protocol: openai_chat, api_key: "sk-up"}}
  mock-anth: {{base_url: "{mock.url}", protocol: anthropic, api_key: "sk-up"}}
models:
  panel-chat: {{targets: [{{backend: mock-chat, model: mock-gpt}}], retry: {{max_attempts: 1}}}}
  panel-claude: {{targets: [{{backend: mock-anth, model: mock-claude}}], retry: {{max_attempts: 1}}}}
  panel-secure: {{access: internal, targets: [{{backend: mock-chat, model: mock-secure}}], retry: {{max_attempts: 1}}}}
orgs:
  acme: {{api_keys: {{alice: "{ALICE_KEY}"}}}}
prices:
  panel-chat: {{input: 1.0, output: 2.0}}
""",
        encoding="utf-8",
    )
    proc = Proc("octollm-server", [str(bin_path("octollm-server")), "--config", str(cfg)])
    support.RUNNING.append(proc)
    try:
        proc.admin_url = admin_url_of(proc)
        yield proc
    finally:
        proc.stop()


def admin_get(gw: Proc, path: str):
    req = urllib.request.Request(f"{gw.admin_url}{path}", headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wait_for_requests(gw: Proc, n: int) -> dict:
    """Polls the statistics (the log writer batches every 100 ms) until `n` requests are in."""
    deadline = time.monotonic() + 15
    while True:
        stats = admin_get(gw, "/api/v1/stats?bucket=minute")
        if stats["totals"]["requests"] >= n or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


@pytest.fixture(scope="module")
def sdk_traffic(panel_gw):
    """What the OpenAI SDK sent: 3 answers and a stream on panel-chat, one 500 on panel-claude.
    Returns the request ids by kind."""
    import anthropic
    import openai

    client = openai.OpenAI(api_key=ALICE_KEY, base_url=f"{panel_gw.url}/v1", max_retries=0)
    ids = {"ok": []}
    for i in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="panel-chat", messages=[{"role": "user", "content": f"panel {i}"}]
        )
        ids["ok"].append(raw.headers["x-octollm-request-id"])
    with client.chat.completions.stream(model="panel-chat", messages=[{"role": "user", "content": "stream"}]) as s:
        s.get_final_completion()
    client.close()
    anth = anthropic.Anthropic(api_key=ALICE_KEY, base_url=panel_gw.url, max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as failed:
        anth.messages.create(
            model="panel-claude", max_tokens=16, messages=[{"role": "user", "content": "[mock:status=500]"}]
        )
    ids["failed"] = failed.value.response.headers["x-octollm-request-id"]
    anth.close()
    stats = wait_for_requests(panel_gw, 5)
    assert stats["totals"]["requests"] == 5, stats["totals"]
    return ids


@pytest.fixture
def page(browser, panel_gw, sdk_traffic):
    """A fresh browser context signed in through the panel's form."""
    ctx = browser.new_context(viewport={"width": 1360, "height": 900}, color_scheme="dark")
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # Failed fetches (401 after signing out, 404 for API routes this build lacks) are answered in
    # the page; script errors are not.
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" and "Failed to load resource" not in m.text else None)
    outside: list[str] = []
    pg.on("request", lambda r: outside.append(r.url) if not r.url.startswith(panel_gw.admin_url) and not r.url.startswith("data:") else None)
    pg.goto(panel_gw.admin_url + "/")
    pg.get_by_label("User name").fill(USER)
    pg.get_by_label("Password").fill(PASSWORD)
    pg.get_by_role("button", name="Sign in").click()
    pg.get_by_role("navigation", name="Pages").wait_for(timeout=WAIT_MS)
    yield pg
    ctx.close()
    assert not outside, f"the panel made requests off the machine: {outside}"
    assert not errors, f"errors in the page: {errors}"


def shot(pg, name: str) -> None:
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_sign_in_rejects_a_wrong_password_then_overview_charts_show_the_sdk_traffic(browser, panel_gw, sdk_traffic):
    from playwright.sync_api import expect

    ctx = browser.new_context(viewport={"width": 1360, "height": 900}, color_scheme="dark")
    pg = ctx.new_page()
    pg.goto(panel_gw.admin_url + "/")
    shot(pg, "00-sign-in")
    pg.get_by_label("User name").fill(USER)
    pg.get_by_label("Password").fill("not the password")
    pg.get_by_role("button", name="Sign in").click()
    expect(pg.get_by_role("alert")).to_have_text("wrong user name or password", timeout=WAIT_MS)
    pg.get_by_label("Password").fill(PASSWORD)
    pg.get_by_role("button", name="Sign in").click()
    expect(pg.get_by_role("heading", name="Overview")).to_be_visible(timeout=WAIT_MS)
    # The session cookie is HttpOnly: the page's script cannot read it.
    assert pg.evaluate("document.cookie") == ""
    cookie = next(c for c in ctx.cookies() if c["name"] == "octollm_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    tiles = pg.locator(".tile")
    expect(tiles.filter(has_text="Requests").locator(".big")).to_have_text("5", timeout=WAIT_MS)
    expect(tiles.filter(has_text="Errors").locator(".big")).to_have_text("1 (20.0%)")
    assert tiles.filter(has_text="Cost").locator(".big").inner_text().startswith("$")
    # The requests chart has a point above its baseline.
    line = pg.locator("figure.chart", has_text="Requests").locator("polyline").first
    ys = [float(p.split(",")[1]) for p in line.get_attribute("points").split()]
    assert min(ys) < max(ys), ys
    load_ms = pg.locator("section[data-load-ms]").get_attribute("data-load-ms")
    print(f"overview loaded in {load_ms} ms")
    shot(pg, "01-overview")

    # Split by model: one line per model, and the table below.
    pg.get_by_label("Split by").select_option("model")
    expect(pg.locator("table caption", has_text="By model")).to_be_visible(timeout=WAIT_MS)
    rows = pg.locator("table tbody tr")
    expect(rows).to_have_count(2)
    chat = rows.filter(has_text="panel-chat")
    expect(chat.locator("td").nth(1)).to_have_text("4")
    expect(pg.locator("figure.chart", has_text="Requests").locator("polyline")).to_have_count(2)
    shot(pg, "02-overview-by-model")
    ctx.close()


def test_logs_filter_and_a_record_s_detail(page, sdk_traffic):
    from playwright.sync_api import expect

    page.get_by_role("link", name="Logs").click()
    rows = page.locator("table.log tbody tr[data-id]")
    expect(rows).to_have_count(5, timeout=WAIT_MS)
    page.get_by_label("Model").fill("panel-claude")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    failed = rows.first
    assert failed.get_attribute("data-id") == sdk_traffic["failed"]
    expect(failed.locator("td").nth(4)).to_have_text("500")
    page.get_by_role("button", name="Clear").click()
    expect(rows).to_have_count(5, timeout=WAIT_MS)
    page.get_by_label("Status").fill("200")
    page.get_by_label("Model").fill("panel-chat")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(4, timeout=WAIT_MS)
    # The URL keeps the filter (a link to this view can be shared).
    assert "model=panel-chat" in page.url and "status=200" in page.url
    target = sdk_traffic["ok"][0]
    row = page.locator(f'tr[data-id="{target}"]')
    row.focus()
    page.keyboard.press("Enter")
    detail = page.get_by_role("complementary", name="Request detail")
    expect(detail.locator("dd.mono")).to_have_text(target, timeout=WAIT_MS)
    expect(detail).to_contain_text("panel-chat → mock-gpt")
    expect(detail).to_contain_text("openai_chat → openai_chat")
    expect(detail).to_contain_text("acme / alice")
    expect(detail.locator("table").last).to_contain_text("mock-chat")
    expect(detail).to_contain_text("output tokens")
    shot(page, "03-logs-detail")
    page.keyboard.press("Escape")
    expect(detail).to_have_count(0)


def test_backends_show_health_at_a_glance(page):
    from playwright.sync_api import expect

    page.get_by_role("link", name="Backends").click()
    chat = page.locator('tr[data-backend="mock-chat"]')
    expect(chat).to_contain_text("1 / 0", timeout=WAIT_MS)  # keys usable / resting
    expect(chat.locator("td.n").first).to_have_text("4", timeout=WAIT_MS)  # requests in the last hour
    anth = page.locator('tr[data-backend="mock-anth"]')
    expect(anth.locator("td.n").nth(1)).to_have_text("1")  # its error
    shot(page, "04-backends")


@pytest.mark.parametrize(
    "link,name",
    [("Models", "05-models"), ("Keys and orgs", "06-keys"), ("Prices", "07-prices"), ("Settings", "08-settings")],
)
def test_every_page_renders(page, link, name):
    from playwright.sync_api import expect

    page.get_by_role("link", name=link).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(link)
    main = page.locator("main")
    # A page shows its table, or says honestly that this build's API lacks the route.
    expect(main.locator("table, .notice").first).to_be_visible(timeout=WAIT_MS)
    if link == "Settings":
        expect(main.locator("tr", has_text=USER)).to_contain_text("file")
    shot(page, name)


def test_settings_add_a_user_who_can_sign_in(page, browser, panel_gw):
    from playwright.sync_api import expect

    page.get_by_role("link", name="Settings").click()
    form = page.get_by_role("form", name="Add a user")
    form.get_by_label("User name").fill("bo")
    form.get_by_label("Password").fill("bo's password, long")
    form.get_by_role("button", name="Add user").click()
    row = page.locator("tr", has_text="bo")
    expect(row).to_contain_text("user:ada", timeout=WAIT_MS)
    ctx = browser.new_context()
    other = ctx.new_page()
    other.goto(panel_gw.admin_url + "/")
    other.get_by_label("User name").fill("bo")
    other.get_by_label("Password").fill("bo's password, long")
    other.get_by_role("button", name="Sign in").click()
    expect(other.locator(".who")).to_contain_text("bo", timeout=WAIT_MS)
    ctx.close()
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Delete").click()
    expect(page.locator("tr", has_text="bo")).to_have_count(0, timeout=WAIT_MS)


def test_keyboard_navigation_light_theme_and_sign_out(page):
    from playwright.sync_api import expect

    # Tab from the top reaches the skip link, then the page links.
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Logs")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Logs")
    # The theme switch cycles auto → dark → light.
    theme = page.get_by_role("button", name=re.compile("^Theme"))
    theme.click()
    expect(theme).to_have_text("Theme: dark")
    theme.click()
    expect(theme).to_have_text("Theme: light")
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    page.get_by_role("link", name="Overview").click()
    expect(page.locator(".tile").first).to_be_visible()
    shot(page, "09-overview-light")
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg == "rgb(246, 247, 249)", bg
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=WAIT_MS)
    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=WAIT_MS)


def test_demo_opens_the_panel_from_its_one_time_link(browser):
    from playwright.sync_api import expect

    env = dict(os.environ)
    env["OCTOLLM_LISTEN"] = "127.0.0.1:0"
    env["OCTOLLM_ADMIN_LISTEN"] = "127.0.0.1:0"
    proc = Proc("octollm-server", [str(bin_path("octollm-server")), "--demo"], env=env)
    support.RUNNING.append(proc)
    try:
        printed = "\n".join(proc._stdout_lines)
        link = re.search(r"web panel: open (http://\S+/api/v1/login/once/[0-9a-f]{64})", printed).group(1)
        ctx = browser.new_context(viewport={"width": 1360, "height": 900}, color_scheme="dark")
        pg = ctx.new_page()
        pg.goto(link)
        assert pg.url.endswith("/#/overview?range=1h&group=") or pg.url.rstrip("/").endswith(link.split("/api/")[0]), pg.url
        expect(pg.locator(".who")).to_contain_text("demo", timeout=WAIT_MS)
        # The demo's own traffic fills the charts.
        pg.get_by_label("Split by").select_option("model")
        expect(pg.locator("table caption", has_text="By model")).to_be_visible(timeout=WAIT_MS)
        expect(pg.locator("table tbody tr")).to_have_count(3, timeout=WAIT_MS)
        shot(pg, "10-demo-overview")
        pg.get_by_role("link", name="Logs").click()
        expect(pg.locator("table.log tbody tr[data-id]").first).to_be_visible(timeout=WAIT_MS)
        shot(pg, "11-demo-logs")
        ctx.close()
        # The link works once.
        again = browser.new_context()
        p2 = again.new_page()
        resp = p2.goto(link)
        assert resp.status == 410
        expect(p2.locator("body")).to_contain_text("already used")
        again.close()
    finally:
        proc.stop()


def test_a_degraded_instance_says_so_on_the_overview(browser, page, mock, tmp_path):
    """A gateway whose database does not answer at startup serves the config file's objects only
    (`GET /api/v1/health`: `degraded`); its overview says so in a banner. The healthy gateway's
    overview has none. Costs the gateway's 5 s wait for the database at startup."""
    from playwright.sync_api import expect

    # The healthy gateway: its overview has asked for the health and shows no banner.
    with page.expect_response(lambda r: r.url.endswith("/api/v1/health")):
        page.reload()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_role("status", name="Degraded")).to_have_count(0)

    # A port nothing listens on: PostgreSQL there never answers.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    cfg = tmp_path / "degraded.yaml"
    cfg.write_text(
        f"""\
listen: "127.0.0.1:0"
admin: {{listen: "127.0.0.1:0", tokens: ["{ADMIN_TOKEN}"]}}
storage: {{url: "postgres://octollm:unused@127.0.0.1:{closed}/octollm"}}
backends:
  mock-chat: {{base_url: "{mock.url}", protocol: openai_chat, api_key: "sk-up"}}
models:
  panel-chat: {{targets: [{{backend: mock-chat, model: mock-gpt}}]}}
""",
        encoding="utf-8",
    )
    proc = Proc("octollm-server", [str(bin_path("octollm-server")), "--config", str(cfg)])
    support.RUNNING.append(proc)
    try:
        admin = admin_url_of(proc)
        ctx = browser.new_context(viewport={"width": 1360, "height": 900}, color_scheme="dark")
        pg = ctx.new_page()
        pg.goto(admin + "/")
        pg.get_by_role("tab", name="Admin token").click()
        pg.get_by_label("Admin token").fill(ADMIN_TOKEN)
        pg.get_by_role("button", name="Sign in").click()
        banner = pg.get_by_role("status", name="Degraded")
        expect(banner).to_be_visible(timeout=WAIT_MS)
        expect(banner).to_contain_text("storage.url")
        expect(banner).to_contain_text("only the config file's backends, models, orgs, prices and keys are in force")
        expect(banner).to_contain_text("Request log records wait in memory")
        shot(pg, "17-overview-degraded")
        ctx.close()
    finally:
        proc.stop()


def test_create_a_key_use_it_with_the_openai_sdk_then_revoke_it(page, panel_gw):
    import openai
    from playwright.sync_api import expect

    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("link", name="Keys and orgs").click()
    form = page.get_by_role("form", name="Create a key")
    expect(page.locator('tr[data-key="acme/alice"]')).to_contain_text("file", timeout=WAIT_MS)
    form.get_by_label("Org").fill("acme")
    form.get_by_label("Key name").fill("ci")
    form.get_by_label("Models").fill("panel-secure")
    form.get_by_role("button", name="Create key").click()
    reveal = page.get_by_label("The new key")
    expect(reveal).to_have_value(re.compile(r"^sk-octo-"), timeout=WAIT_MS)
    key = reveal.input_value()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key
    shot(page, "12-key-created")
    page.get_by_role("button", name="Done").click()
    expect(reveal).to_have_count(0)
    row = page.locator('tr[data-key="acme/ci"]')
    expect(row).to_contain_text("panel-secure")
    assert key not in page.content(), "the key is shown once, never listed"

    client = openai.OpenAI(api_key=key, base_url=f"{panel_gw.url}/v1", max_retries=0)
    done = client.chat.completions.create(model="panel-secure", messages=[{"role": "user", "content": "with the new key"}])
    assert done.choices[0].message.content.endswith("with the new key")
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="panel-chat", messages=[{"role": "user", "content": "not allowed"}])

    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(row).to_have_count(0, timeout=WAIT_MS)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="panel-secure", messages=[{"role": "user", "content": "revoked"}])
    client.close()


def test_add_a_backend_and_a_model_then_send_a_request_through_them(page, panel_gw, mock):
    import openai
    from playwright.sync_api import expect

    page.get_by_role("link", name="Backends").click()
    page.get_by_role("button", name="Add backend").click()
    dialog = page.get_by_role("dialog", name="Add a backend")
    dialog.get_by_label("JSON").fill(
        json.dumps({"name": "added", "base_url": mock.url, "protocol": "openai_chat", "api_key": "sk-added-upstream-key"})
    )
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0, timeout=WAIT_MS)
    added = page.locator('tr[data-backend="added"]')
    expect(added).to_contain_text("api", timeout=WAIT_MS)
    # No model routes to it yet: the panel asks which upstream model to test with.
    page.once("dialog", lambda d: d.accept("mock-added"))
    added.get_by_role("button", name="Test").click()
    result = page.get_by_role("status").filter(has_text="Test added")
    expect(result).to_contain_text('"ok": true', timeout=WAIT_MS)
    assert "sk-added-upstream-key" not in page.content(), "upstream keys are write-only"
    shot(page, "13-backend-added")

    page.get_by_role("link", name="Models").click()
    page.get_by_role("button", name="Add model").click()
    dialog = page.get_by_role("dialog", name="Add a model")
    dialog.get_by_label("JSON").fill(json.dumps({"name": "via-added", "targets": [{"backend": "added", "model": "mock-added"}]}))
    dialog.get_by_role("button", name="Save").click()
    expect(page.locator("tr", has_text="via-added")).to_contain_text("added → mock-added", timeout=WAIT_MS)
    shot(page, "14-models")

    client = openai.OpenAI(api_key=ALICE_KEY, base_url=f"{panel_gw.url}/v1", max_retries=0)
    done = client.chat.completions.create(model="via-added", messages=[{"role": "user", "content": "through the new backend"}])
    client.close()
    assert done.choices[0].message.content.endswith("through the new backend")
    upstream = [r for r in mock.requests(body=True) if "through the new backend" in json.dumps(r.get("body"))]
    assert upstream, mock.requests()
    headers = {k.lower(): v for k, v in upstream[-1]["headers"].items()}
    assert headers.get("authorization") == "Bearer sk-added-upstream-key"

    # The audit trail and the effective config show the change, secrets masked.
    page.get_by_role("link", name="Settings").click()
    audit = page.locator("table", has=page.locator("th", has_text="Detail"))
    expect(audit.locator("tr", has_text="added").first).to_contain_text("user:ada", timeout=WAIT_MS)
    config = page.get_by_label("Effective configuration")
    expect(config).to_contain_text('"via-added"', timeout=WAIT_MS)
    assert "sk-added-upstream-key" not in config.inner_text()
    assert ALICE_KEY not in config.inner_text()
    assert ADMIN_TOKEN not in config.inner_text()
    shot(page, "15-settings-audit")


def test_get_started_adds_a_first_backend_and_its_models(page, panel_gw, mock):
    """The onboarding page (the desktop app opens it on first run): one form, a backend and its
    models through the admin API, usable at once from an SDK."""
    import openai
    from playwright.sync_api import expect

    page.get_by_role("link", name="Get started").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Get started")
    form = page.get_by_role("form", name="Add a backend")
    form.get_by_label("Provider").select_option("other")
    form.get_by_label("Backend name").fill("onboarded")
    form.get_by_label("Base URL").fill(mock.url)
    form.get_by_label("API key").fill("sk-onboarding-upstream-key")
    form.get_by_label("Models to expose").fill("onboarded-a, onboarded-b")
    form.get_by_role("button", name="Add backend").click()
    expect(page.get_by_role("status")).to_contain_text("Backend onboarded added with onboarded-a, onboarded-b", timeout=WAIT_MS)
    assert "sk-onboarding-upstream-key" not in page.content()
    shot(page, "16-get-started")

    client = openai.OpenAI(api_key=ALICE_KEY, base_url=f"{panel_gw.url}/v1", max_retries=0)
    done = client.chat.completions.create(model="onboarded-b", messages=[{"role": "user", "content": "after onboarding"}])
    client.close()
    assert done.choices[0].message.content.endswith("after onboarding")
