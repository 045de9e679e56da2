"""Command line interface."""

import click


@click.group()
def main() -> None:
    """titus-flow."""
