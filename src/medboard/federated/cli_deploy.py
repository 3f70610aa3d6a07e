"""`medboard fl partition` and `medboard fl deploy`: the deployment engine, one SuperNode per site.

Registered on `fl_app` in federated/cli.py.
"""

from pathlib import Path
from typing import Annotated

import typer

from medboard.errors import MedboardError
from medboard.federated.cli_common import Reference, console, out
from medboard.federated.cli_common import input_errors as _errors
from medboard.federated.cli_common import reference_app as _reference

RunConfig = Annotated[
    list[str] | None,
    typer.Option(
        "--run-config",
        "-c",
        help="key=value overrides of the tool.flwr.app.config table (never of its static section).",
    ),
]


def _site_certs(items: list[str]) -> dict[int, Path]:
    certs: dict[int, Path] = {}
    for item in items:
        site, _, path = item.partition("=")
        if not site.strip().isdigit() or not path:
            raise MedboardError(f"--site-root-cert: '{item}' is not SITE=PATH")
        certs[int(site)] = Path(path).expanduser()
    return certs


def partition_command(
    app_dir: Annotated[Path, typer.Argument(help="The Flower app folder.")] = Path("flower"),
    out_dir: Annotated[
        Path, typer.Option("--out", help="Where to write site-0.jsonl, site-1.jsonl, ...")
    ] = Path("sites"),
    run_config: RunConfig = None,
    reference: Reference = None,
) -> None:
    """Write each site's share of the training data as its own file, as simulation splits it."""
    from medboard.federated.config import parse_overrides
    from medboard.federated.data import partition_spec, write_site_files
    from medboard.federated.launch import prepare_run

    with _errors():
        overrides = parse_overrides(run_config or [])
        cfg, final, _ = prepare_run(app_dir.resolve(), overrides, _reference(reference), None)
        spec = partition_spec(cfg.static, str(final.get("data-path", "")))
        paths = write_site_files(spec, out_dir)
    for number, path in enumerate(paths):
        pairs = sum(1 for line in path.open(encoding="utf-8") if line.strip())
        out.print(f"site {number}: {pairs} pairs in {path}")


def deploy_command(
    app_dir: Annotated[Path, typer.Argument(help="The Flower app folder.")] = Path("flower"),
    run_config: RunConfig = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="The run folder (default: the app's out-dir).")
    ] = None,
    sites: Annotated[
        Path | None,
        typer.Option(
            "--sites",
            help="A folder of site-N.jsonl files, one per site (default: simulation's "
            "partitions, written to RUN/sites).",
        ),
    ] = None,
    site_root_cert: Annotated[
        list[str] | None,
        typer.Option(
            "--site-root-cert",
            help="SITE=PATH: the root certificate that site's SuperNode trusts (default: the "
            "CA made for the run); to rehearse a misconfigured site.",
        ),
    ] = None,
    unregistered_site: Annotated[
        list[int] | None,
        typer.Option(
            "--unregistered-site",
            help="SITE: leave that site's key unregistered with the SuperLink, which then "
            "refuses its SuperNode; to rehearse a site the federation does not know.",
        ),
    ] = None,
    reference: Reference = None,
    quiet: Annotated[bool, typer.Option(help="Do not stream Flower's log.")] = False,
) -> None:
    """Run the app on Flower's deployment engine: one SuperNode per site, TLS, node auth.

    A SuperLink and one SuperNode per site start as separate processes on 127.0.0.1, over TLS
    with a CA made for the run; each SuperNode is authenticated by its registered key and
    reads only its own data file. Writes the same run folder as fl run."""
    from medboard.federated.config import parse_overrides
    from medboard.federated.deploy import deploy_app

    def echo(line: str) -> None:
        if not quiet:
            console.out(line, highlight=False)

    with _errors():
        overrides = parse_overrides(run_config or [])
        outcome = deploy_app(
            app_dir,
            overrides,
            _reference(reference),
            out_dir,
            sites_dir=sites,
            site_root_certs=_site_certs(site_root_cert or []),
            unregistered=unregistered_site or (),
            echo=echo,
        )
    state = outcome.state
    for item in state.get("rounds", []):
        loss = item.get("train_loss", float("nan"))
        evaluated = f", eval_loss {item['eval_loss']:.4f}" if "eval_loss" in item else ""
        out.print(f"round {item['round']}: train_loss {loss:.4f}{evaluated}")
    comm = state["comm"]
    out.print(
        f"comm. cost {comm['bytes']} B ({comm['gb']:.6f} GB) in {comm['messages']} messages; "
        f"{len(state.get('sites', {}))} sites; wall {outcome.wall_seconds:.1f} s"
    )
    out.print(f"adapter {state['adapter']}")
    out.print(f"next: medboard fl submit {outcome.out} --team NAME --code-url URL")
