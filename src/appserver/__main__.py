"""The entry point of ``appserver`` (the console script) and ``python -m appserver``.

A process that ``appserver serve`` handed a validated configuration to (``appserver.serving``)
comes back here with ``_APPSERVER_HANDOFF_FD`` set and serves it, before the CLI, typer and
pydantic are imported; any other start runs the CLI.
"""

from __future__ import annotations

import os


def main() -> None:
    """Run the CLI, or serve a handoff."""
    from appserver import serving

    if serving.HANDOFF_VARIABLE in os.environ:
        serving.main()
        return
    serving.replaceable = True  # started as itself: `appserver serve` may run itself again
    from appserver.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
