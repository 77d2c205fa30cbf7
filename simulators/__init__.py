"""Simulators of the Axis devices bodycam talks to (body cameras, fixed/PTZ cameras)."""

import logging
import sys


def configure_logging(level: str) -> None:
    """The simulators' command lines log to stderr, one line per record."""
    logging.basicConfig(
        stream=sys.stderr,
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
