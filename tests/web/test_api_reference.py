"""docs/reference/api.md is generated from the OpenAPI schema: it says what the app says."""

from fastapi.testclient import TestClient

from medboard.web import api_reference


def test_the_page_is_what_the_app_serves(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    page = api_reference.PAGE.read_text(encoding="utf-8")
    for path, methods in schema["paths"].items():
        for method in methods:
            assert f"### `{method.upper()} {path}`" in page, (
                f"{method.upper()} {path} is not in {api_reference.PAGE.name}: "
                "run python -m medboard.web.api_reference --write"
            )
    assert page == api_reference.render(api_reference.app_schema()), (
        f"{api_reference.PAGE} differs from the app: "
        "run python -m medboard.web.api_reference --write"
    )


def test_a_new_parameter_changes_the_page(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    before = api_reference.render(schema)
    schema["paths"]["/api/queue"]["get"].setdefault("parameters", []).append(
        {"name": "colour", "in": "query", "required": False, "schema": {"type": "string"}}
    )
    assert "`colour`" in api_reference.render(schema) and "`colour`" not in before
