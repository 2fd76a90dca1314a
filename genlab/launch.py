"""The `genlab` console script (and `python -m genlab`): `genlab report` and `genlab sweep` start without importing
Lightning or torch (a sweep's trials are child processes); `genlab doctor` and LightningCLI's subcommands import
`genlab.cli`.

Importing `genlab.cli` imports torch, Lightning, jsonargparse and torchvision (seconds on a busy 2-core CPU),
which a report does not use. `genlab.cli.main` runs LightningCLI's subcommands only.
"""

from __future__ import annotations

import sys


def main(args: list[str] | None = None) -> None:
    """The one dispatch: genlab's own subcommands here, LightningCLI's (fit, validate, test, predict) in
    `genlab.cli`. `args` lets tests drive the real command in-process."""
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["report"]:
        from genlab.report.command import run

        raise SystemExit(run(argv[1:]))
    if argv[:1] == ["sweep"]:
        from genlab.sweep.command import run as sweep

        raise SystemExit(sweep(argv[1:]))
    if argv[:1] == ["doctor"]:
        from genlab.doctor import run as doctor

        raise SystemExit(doctor(argv[1:]))
    from genlab.cli import main as cli_main

    cli_main(args)


if __name__ == "__main__":  # pragma: no cover
    main()
