"""/docs and /redoc work without internet access, in a real browser too."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from fastapi.testclient import TestClient

from postroom.api.app import create_app
from postroom.runtime import Runtime


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_pages_load_assets_from_postroom(runtime: Runtime, path: str) -> None:
    with TestClient(create_app(runtime)) as client:
        page = client.get(path)
        assets = [
            client.get("/docs-assets/swagger-ui-bundle.js"),
            client.get("/docs-assets/swagger-ui.css"),
            client.get("/docs-assets/redoc.standalone.js"),
        ]

    assert page.status_code == 200
    assert "cdn.jsdelivr.net" not in page.text
    assert "fonts.googleapis.com" not in page.text
    assert "/docs-assets/" in page.text
    for asset in assets:
        assert asset.status_code == 200
        assert len(asset.content) > 10_000


def test_swagger_ui_renders_offline_in_chromium(live_server: str) -> None:
    from playwright.sync_api import Route, expect, sync_playwright

    outside: list[str] = []

    def loopback_only(route: Route) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page()
            page.route("**/*", loopback_only)
            page.goto(f"{live_server}/docs")
            expect(page.locator(".info .title")).to_contain_text("Postroom")
            expect(page.get_by_text("/api/profiles/{name}/test").first).to_be_visible()
        finally:
            browser.close()

    assert outside == []
