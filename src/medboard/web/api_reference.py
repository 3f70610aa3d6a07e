"""The web API reference page, generated from the app's OpenAPI schema: every endpoint with its
parameters, request body and responses.

    python -m medboard.web.api_reference --write   # rewrite docs/reference/api.md
    python -m medboard.web.api_reference --check   # exit 1 when the page and the app differ

A running app serves the same schema at /openapi.json and browses it at /docs (offline: Swagger UI
is served from the app's own files).
"""

import argparse
import sys
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parents[3] / "docs" / "reference" / "api.md"

HEADER = """# Web API reference

Every endpoint of the web app, generated from its OpenAPI schema
(`python -m medboard.web.api_reference --write`; a test fails when this page and the app differ).
Every page has a JSON twin under `/api` (`/leaderboard/open_medical` →
`/api/leaderboard/open_medical`); `GET /api` lists them. A running app serves the schema at
`/openapi.json` and a browsable form of it at `/docs`, offline. Admin actions need the admin token
(`Authorization: Bearer <token>`; see [run a leaderboard](../tutorials/run-a-leaderboard.md)).
"""


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(schema: dict[str, Any]) -> str:
    """A schema in a few characters: `string`, `integer | null`, `array of string`, `SubmitBody`,
    `open_medical | flowertune_medical` for an enum."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "enum" in schema:
        return " \\| ".join(str(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " \\| ".join(_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_type(schema.get('items', {}))}"
    return str(schema.get("type", "any"))


def _operation(path: str, method: str, op: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", ""]
    text = op.get("description") or op.get("summary") or ""
    if text:
        lines += [" ".join(text.split()), ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | required | meaning |", "|---|---|---|---|---|"]
        for p in params:
            schema = p.get("schema", {})
            default = f" (default: {schema['default']})" if "default" in schema else ""
            lines.append(
                f"| `{p['name']}` | {p['in']} | {_type(schema)} | "
                f"{'yes' if p.get('required') else 'no'} | "
                f"{_cell(p.get('description', ''))}{_cell(default)} |"
            )
        lines.append("")
    body = op.get("requestBody")
    if body:
        kinds = ", ".join(
            f"`{kind}`: {_type(content.get('schema', {}))}"
            for kind, content in body.get("content", {}).items()
        )
        lines += [f"Request body: {kinds}.", ""]
    responses = op.get("responses", {}).items()
    if responses:
        said = "; ".join(f"{code}: {_cell(r.get('description', ''))}" for code, r in responses)
        lines += [f"Responses: {said}.", ""]
    return lines


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### `{name}`", ""]
    if schema.get("description"):
        lines += [" ".join(schema["description"].split()), ""]
    required = set(schema.get("required", []))
    props = schema.get("properties", {})
    if props:
        lines += ["| field | type | required | meaning |", "|---|---|---|---|"]
        for field, prop in props.items():
            lines.append(
                f"| `{field}` | {_type(prop)} | {'yes' if field in required else 'no'} | "
                f"{_cell(prop.get('description', ''))} |"
            )
        lines.append("")
    return lines


def render(schema: dict[str, Any]) -> str:
    """The page for one OpenAPI schema: an index of the endpoints, each endpoint, each schema."""
    lines = [HEADER, "## Endpoints", "", "| method | path | what it gives |", "|---|---|---|"]
    operations = [
        (path, method, op)
        for path, methods in schema["paths"].items()
        for method, op in methods.items()
    ]
    for path, method, op in operations:
        summary = _cell((op.get("description") or op.get("summary") or "").split(". ")[0])
        lines.append(f"| {method.upper()} | `{path}` | {summary} |")
    lines.append("")
    for path, method, op in operations:
        lines += _operation(path, method, op)
    components = schema.get("components", {}).get("schemas", {})
    if components:
        lines += ["## Schemas", ""]
        for name, body in components.items():
            lines += _schema(name, body)
    return "\n".join(lines).rstrip() + "\n"


def app_schema() -> dict[str, Any]:
    """The schema of the app as `medboard serve` builds it (on an in-memory database)."""
    from medboard.results.db import open_database
    from medboard.web.app import create_app

    return create_app(open_database("sqlite://")).openapi()


def main(argv: list[str] | None = None) -> int:
    page = PAGE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--write", action="store_true", help=f"rewrite {page}")
    what.add_argument("--check", action="store_true", help="exit 1 when the page differs")
    args = parser.parse_args(argv)
    text = render(app_schema())
    if args.write:
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(text, encoding="utf-8")
        print(f"wrote {page}")
    elif args.check:
        if not page.is_file() or page.read_text(encoding="utf-8") != text:
            print(f"{page} differs from the app: run python -m medboard.web.api_reference --write")
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
