"""/docs works offline: Swagger UI comes from the app's own static files, not a CDN."""

import re

from fastapi.testclient import TestClient


def _references(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)


def test_docs_reference_only_local_assets_and_they_are_served(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    html = response.text
    references = _references(html)
    assert references, html
    assert all(r.startswith("/") and not r.startswith("//") for r in references), references
    assert not re.search(r"https?://", html), "an absolute URL in /docs"
    assert "validatorUrl" in html and '"validatorUrl": null' in html
    assert re.search(r"url:\s*'/openapi.json'", html)
    for reference in references:
        asset = client.get(reference)
        assert asset.status_code == 200, reference
        assert len(asset.content) > 500, reference
    types = {r.rsplit(".", 1)[-1]: client.get(r).headers["content-type"] for r in references}
    assert types["js"].startswith(("text/javascript", "application/javascript"))
    assert types["css"].startswith("text/css")
    assert client.get("/openapi.json").status_code == 200


def test_the_vendored_bundle_is_swagger_ui(client: TestClient) -> None:
    bundle = client.get("/static/swagger-ui/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle
    assert client.get("/static/swagger-ui/LICENSE").status_code == 200


def test_redoc_is_off_rather_than_blank(client: TestClient) -> None:
    assert client.get("/redoc").status_code == 404
