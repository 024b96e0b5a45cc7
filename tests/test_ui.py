"""The page at `/`: served in-process, and tried in a real browser against a real server.

The browser is Debian's Chromium (`make browser` installs it), driven by Playwright's Python
API; nothing here downloads a browser. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from service.api.ui import ASSETS, UI_DIR
from service.app import create_app
from service.settings import Settings
from tests.conftest import DEFAULT_MODELS, ROOT
from tests.live_server import live_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
TEXT = "a gripping, beautifully acted film"


# ------------------------------------------------------------------------ in-process


@pytest.fixture(scope="module")
def app_client():
    # No lifespan: the page does not need the models loaded.
    app = create_app(Settings(model_repository=DEFAULT_MODELS, providers="cpu"))
    return TestClient(app)


@pytest.mark.parametrize("path", ["/", "/ui"])
def test_the_page_is_served(app_client, path):
    response = app_client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="ui/app.js">' in response.text
    assert '<link rel="stylesheet" href="ui/style.css">' in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy


def test_the_page_files_are_served_and_nothing_else(app_client):
    for name, content_type in ASSETS.items():
        response = app_client.get(f"/ui/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == content_type
        assert response.content == (UI_DIR / name).read_bytes()
    for path in ("/ui/index.html.bak", "/ui/..%2Fapp.py", "/ui/%2E%2E%2Fapi%2Fui.py"):
        response = app_client.get(path)
        assert response.status_code == 404, path
        assert "error" in response.json()
    assert "/" not in app_client.get("/openapi.json").json()["paths"]


def test_each_task_presentation_is_served_where_the_registry_says(app_client):
    for task in ("classify", "seq2seq", "forecast"):
        response = app_client.get(f"/ui/tasks/{task}.js")
        assert response.status_code == 200, task
        assert response.headers["content-type"] == ASSETS["app.js"]
        assert response.content == (UI_DIR / "tasks" / f"{task}.js").read_bytes()
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
    response = app_client.get("/ui/tasks/juggling.js")
    assert response.status_code == 404
    assert response.json() == {"error": "task 'juggling' has no presentation on this page"}


def test_the_page_fetches_nothing_from_outside():
    files = sorted(p for p in UI_DIR.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {"index.html", *ASSETS}
    outside = re.compile(r"https?://|(?:src|href)\s*=\s*[\"']?//|url\(\s*[\"']?//|@import", re.I)
    for path in files:
        text = path.read_text()
        found = outside.search(text)
        assert not found, f"{path.name} refers outside the server: {found.group(0)!r}"
    html = (UI_DIR / "index.html").read_text()
    for reference in re.findall(r"(?:src|href)=\"([^\"]+)\"", html):
        assert not reference.startswith("/"), f"{reference}: relative, so a path prefix works"
        if reference.startswith("ui/"):
            assert reference.removeprefix("ui/") in ASSETS


def test_the_page_files_are_packaged():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["service"]
    for path in UI_DIR.rglob("*"):
        if path.is_file():
            name = f"ui/{path.relative_to(UI_DIR)}"
            assert any(fnmatch.fnmatch(name, g) for g in globs), f"{name} is not packaged"


def test_what_the_page_says_about_a_model_comes_from_its_manifest(client):
    """The page's words for a model are its manifest's (title, description, examples, served
    by GET /v1/models/{name}); each task's presentation holds only plain wording of its own."""
    for name in ("tiny-lstm", "tiny-gru"):
        manifest = client.get(f"/v1/models/{name}").json()["manifest"]
        assert (manifest["title"], manifest["examples"]) == ("", [])
    for task, generic in (("classify", "a text classifier"), ("seq2seq", "a sequence-to-sequence")):
        script = (UI_DIR / "tasks" / f"{task}.js").read_text()
        assert "examples: []," in script
        assert f'name: "{generic.removeprefix("a ")}' in script
        assert not re.search(r"date|novemb|film|review", script, re.I), task
    app = (UI_DIR / "app.js").read_text()
    assert "manifest.title ||" in app and "manifest.examples" in app


# ------------------------------------------------------------------------ in a browser


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(
            f"Debian's Chromium is not installed at {CHROMIUM}; `make browser` installs it "
            "(apt-get install chromium, which needs root or sudo)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def server():
    with live_server(DEFAULT_MODELS) as url:
        yield url


class Watched:
    """A page whose requests and errors are recorded."""

    def __init__(self, browser, width: int, height: int):
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console",
            lambda message: message.type == "error" and self.errors.append(message.text),
        )

    def check_clean(self, server: str, expected_status: int | None = None) -> None:
        """Every request went to this server on 127.0.0.1, and the page logged no error (but
        the browser's own note of an answer with the status the test asked for)."""
        assert self.requests, "the page made no request"
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme == "data":
                continue
            assert parts.hostname == "127.0.0.1", f"a request left the server: {url}"
            assert url.startswith(server + "/"), url
        expected = f"the server responded with a status of {expected_status} "
        assert not [e for e in self.errors if expected not in e], self.errors

    def close(self) -> None:
        self.context.close()


def _shown(probability: float) -> str:
    """A probability as the page writes it: near-certainties are not rounded to 100 % or 0 %."""
    if 0.999 < probability < 1:
        return ">99.9 %"
    if 0 < probability < 0.001:
        return "<0.1 %"
    return f"{probability * 100:.1f} %"


def _expected(server: str, name: str, text: str) -> dict:
    response = httpx.post(
        f"{server}/v1/models/{name}:predict",
        json={"instances": [text], "parameters": {"attention": True}},
        timeout=30,
    )
    return response.json()


@pytest.mark.slow
def test_a_classifier_in_the_browser(browser, server):
    from playwright.sync_api import expect

    models = httpx.get(f"{server}/v1/models").json()["models"]
    classifiers = [m["name"] for m in models if m["task"] == "classify"]
    assert classifiers, "the default models include a classifier"
    name = "sst2-gru" if "sst2-gru" in classifiers else classifiers[0]
    detail = httpx.get(f"{server}/v1/models/{name}").json()
    expected = _expected(server, name, TEXT)["predictions"][0]

    watched = Watched(browser, 1280, 900)
    page = watched.page
    try:
        page.goto(f"{server}/")
        cards = page.locator(".model-card")
        expect(cards).to_have_count(len(models))

        # The card says version, task, provider and the held-out accuracy of the manifest.
        card = page.locator(f'.model-card[data-model="{name}"]')
        facts = card.evaluate(
            "c => Object.fromEntries([...c.querySelectorAll('dl.facts > div')]"
            ".map(d => [d.querySelector('dt').textContent, d.querySelector('dd').textContent]))"
        )
        accuracy = detail["manifest"]["training"]["metrics"]["dev_accuracy"]
        assert facts["Version"] == str(detail["default_version"])
        assert facts["Task"] == "classify"
        assert facts["Provider"] == "CPU"
        assert facts["dev accuracy"] == f"{accuracy * 100:.1f} %"

        # Keyboard: the card's button selects the model and moves focus to the text box.
        page.get_by_role("button", name=f"Try {name}").focus()
        page.keyboard.press("Enter")
        expect(card).to_have_attribute("aria-current", "true")
        expect(page.get_by_label("Model", exact=True)).to_have_value(name)
        textbox = page.get_by_label("Text to classify")
        expect(textbox).to_be_focused()
        page.keyboard.type(TEXT)
        page.keyboard.press("Enter")  # Enter submits

        result = page.locator("#result")
        assert result.get_attribute("aria-live") == "polite"
        expect(result.locator(".label")).to_have_text(expected["label"], timeout=15_000)

        # One bar per label, as long as its probability, with the percentage as text.
        bars = result.locator(".bar")
        expect(bars).to_have_count(len(expected["probabilities"]))
        for label, probability in expected["probabilities"].items():
            bar = result.locator(f'.bar[data-label="{label}"]')
            expect(bar.locator(".bar-value")).to_have_text(_shown(probability))
            share = bar.evaluate(
                "b => b.querySelector('.bar-fill').getBoundingClientRect().width"
                " / b.querySelector('.bar-track').clientWidth"
            )
            assert share == pytest.approx(probability, abs=0.02), label

        # Every token, in order, shaded by its weight: the most attended is the darkest.
        tokens = result.locator(".token")
        expect(tokens).to_have_text([token for token, _ in expected["attention"]])
        alphas = tokens.evaluate_all(
            "ts => ts.map(t => { const c = getComputedStyle(t).backgroundColor;"
            " const m = c.match(/rgba?\\(([^)]+)\\)/)[1].split(/[ ,/]+/).filter(Boolean);"
            " return m.length > 3 ? Number(m[3]) : 1; })"
        )
        weights = [weight for _, weight in expected["attention"]]
        darkest = max(range(len(weights)), key=weights.__getitem__)
        assert max(range(len(alphas)), key=alphas.__getitem__) == darkest
        assert alphas[darkest] > 0.8
        assert min(alphas) < alphas[darkest] / 2
        ranked = sorted(range(len(weights)), key=weights.__getitem__)
        assert [alphas[i] for i in ranked] == sorted(alphas), "shading follows the weights"

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "ui-classify.png", full_page=True)

        # An error from the API is shown as it came.
        too_long = " ".join(["good"] * (detail["manifest"]["preprocessing"]["max_tokens"] + 5))
        error = _expected(server, name, too_long)["error"]
        textbox.fill(too_long)
        textbox.press("Enter")
        expect(result.get_by_role("alert")).to_contain_text(error)
        expect(result.locator(".label")).to_have_count(0)

        watched.check_clean(server, expected_status=422)
    finally:
        watched.close()


@pytest.mark.slow
def test_the_page_at_phone_width(browser, server):
    from playwright.sync_api import expect

    models = httpx.get(f"{server}/v1/models").json()["models"]
    name = next(m["name"] for m in models if m["task"] == "classify")
    text = "dull, clumsy and far too long"
    expected = _expected(server, name, text)["predictions"][0]

    watched = Watched(browser, 375, 740)
    page = watched.page
    try:
        page.goto(f"{server}/ui")
        expect(page.locator(".model-card")).to_have_count(len(models))
        page.get_by_label("Model", exact=True).select_option(name)
        page.get_by_label("Text to classify").fill(text)
        page.get_by_role("button", name="Predict").click()
        expect(page.locator("#result .label")).to_have_text(expected["label"], timeout=15_000)
        expect(page.locator("#result .token")).to_have_count(len(expected["attention"]))
        ARTIFACTS.mkdir(exist_ok=True)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page is {width}px wide at a 375px viewport"
        page.locator("#try").screenshot(path=ARTIFACTS / "ui-classify-phone.png")
        page.screenshot(path=ARTIFACTS / "ui-phone-full.png", full_page=True)
        watched.check_clean(server)
    finally:
        watched.close()


def test_the_date_model_and_the_forecaster_in_the_browser(browser, server):
    """The other two tasks render from the real API: an output with its alignment heatmap,
    and a forecast drawn after its history. The date model is named, and offers the examples,
    its manifest records."""
    from playwright.sync_api import expect

    date = "22 November 2026"
    manifest = httpx.get(f"{server}/v1/models/dates").json()["manifest"]
    expected = httpx.post(
        f"{server}/v1/models/dates:predict",
        json={"instances": [date], "parameters": {"attention": True}},
    ).json()["predictions"][0]
    watched = Watched(browser, 1100, 900)
    page = watched.page
    try:
        page.goto(f"{server}/")
        page.get_by_label("Model", exact=True).select_option("dates")
        expect(page.locator("#model-summary")).to_have_text(
            f"dates, version 1: {manifest['title']} ({manifest['description']})."
        )
        expect(page.locator("button.example")).to_have_text(manifest["examples"])
        page.get_by_role("button", name=date).click()  # an example runs at once
        expect(page.get_by_label("Text in")).to_have_value(date)
        expect(page.locator("#result .output")).to_have_text(expected["output"], timeout=15_000)
        heatmap = page.locator("#result table.heatmap")
        expect(heatmap.locator("tbody tr")).to_have_count(len(expected["output_chars"]))
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#result").screenshot(path=ARTIFACTS / "ui-dates.png")

        series = [315.4, 316.1, 316.9, 317.5, 317.9, 317.2, 315.9, 314.2, 313.5, 314.1]
        page.get_by_label("Model", exact=True).select_option("co2-gru")
        page.locator("#instance").fill(", ".join(map(str, series)))
        page.get_by_role("button", name="Predict").click()
        expect(page.locator("#result svg.chart")).to_be_visible(timeout=15_000)
        page.locator("#result").screenshot(path=ARTIFACTS / "ui-forecast.png")
        watched.check_clean(server)
    finally:
        watched.close()


# ------------------------------------------------------------------------ the API docs


def test_the_docs_refer_to_nothing_outside_the_server(app_client):
    html = app_client.get("/docs").text
    references = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
    assert references, html
    assert not [r for r in references if not r.startswith("/")], references
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/docs/{name}" in references
        response = app_client.get(f"/docs/{name}")
        assert response.status_code == 200 and len(response.content) > 100_000
    assert app_client.get("/docs/..%2F..%2Fapp.py").status_code == 404


def test_the_docs_need_no_api_key(tiny_repository):
    """They describe the API (and take the key through "Authorize" for "Try it out")."""
    app = create_app(Settings(model_repository=tiny_repository, providers="cpu", api_key="k"))
    client = TestClient(app)  # no lifespan: the docs need no model
    assert client.get("/v1/models").status_code == 401
    for path in ("/docs", "/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer"}


@pytest.mark.slow
def test_the_docs_render_without_internet(browser, server):
    """Every request that would leave 127.0.0.1 is aborted."""
    from playwright.sync_api import expect

    watched = Watched(browser, 1280, 900)
    page = watched.page
    outside: list[str] = []

    def only_this_server(route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    watched.context.route("**/*", only_this_server)
    try:
        page.goto(f"{server}/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("rnnserve")
        expect(page.get_by_text("/v1/models/{name}:predict", exact=True)).to_be_visible()
        assert outside == []
        watched.check_clean(server)
    finally:
        watched.close()
