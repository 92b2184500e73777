"""The `tagshift` command. Each command group is a module that parses its options and calls
the library; errors the user can fix are printed as one line (`error: file:line: what, and
the fix`) with exit code 1."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from tagshift.cli import annotate, corpora, export, models, pretrain, raw, serve, training  # noqa: F401  (each registers its commands on the app)
from tagshift.cli.options import app
from tagshift.version import __version__


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tagshift {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: one per core). Use 1 per job when several jobs share the cores: oversubscribed, torch slows down many times over."),
) -> None:
    """Transfer learning for named entity recognition."""
    if threads is not None:
        if threads < 1:
            raise typer.BadParameter(f"--threads {threads}: give 1 or more")
        import torch

        torch.set_num_threads(threads)


# Options that take an optional value, written --option=VALUE; bare, they are flags.
OPTIONAL_VALUES = {"--pseudo-label": "--pseudo-threshold", "--distill": "--distill-weight", "--anchor": "--anchor-weight"}


def expand_optional_values(argv: list[str]) -> list[str]:
    """`--pseudo-label=0.8` -> `--pseudo-label --pseudo-threshold 0.8` (and so for --distill and --anchor).

    >>> expand_optional_values(["adapt", "m", "--pseudo-label=0.8", "--distill"])
    ['adapt', 'm', '--pseudo-label', '--pseudo-threshold', '0.8', '--distill']
    """
    expanded = []
    for arg in argv:
        name, equals, value = arg.partition("=")
        if equals and name in OPTIONAL_VALUES:
            expanded += [name, OPTIONAL_VALUES[name], value]
        else:
            expanded.append(arg)
    return expanded


def main() -> None:
    app(args=expand_optional_values(sys.argv[1:]))
