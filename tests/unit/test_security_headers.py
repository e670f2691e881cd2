"""The security headers on the origin's answers, and the web client's own policy."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from starlette.testclient import TestClient

from origin.app import create_app
from runtime.settings import Settings


def _client(tmp_path: Path) -> TestClient:
    # No lifespan: the pages and the refusals need no Kafka.
    return TestClient(create_app(Settings(home=tmp_path, ticket_secret="test:" + "k" * 32,
                                          edges=("eu=8101", "us=8102"))))


def test_the_origin_answers_with_the_headers_a_review_checks(tmp_path: Path) -> None:
    client = _client(tmp_path)
    for response in (client.get("/healthz"), client.post("/login", content=b"not json",
                                                         headers={"content-type": "text/plain"}),
                     client.get("/openapi.json")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_the_web_client_runs_no_inline_script_or_style(tmp_path: Path) -> None:
    client = _client(tmp_path)
    page = client.get("/")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert "connect-src 'self' http://127.0.0.1:8101 http://127.0.0.1:8102" in policy
    html = page.text
    assert "<script>" not in html and "<style>" not in html and "style=" not in html
    assert '<script src="/app.js"' in html
    script = client.get("/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.content == resources.files("origin").joinpath("static", "app.js").read_bytes()
    assert "style=" not in script.text  # inline style attributes would be blocked
    assert client.get("/app.css").headers["content-type"].startswith("text/css")
