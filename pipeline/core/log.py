"""Logging set-up and progress reporting shared by the steps."""

from __future__ import annotations

import logging
import sys
import time


def setup(verbose: bool = False) -> None:
    """Log to stderr with timestamps; Snakemake redirects stderr into ``logs/<rule>/<wildcards>.log``."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def progress(iterable, total=None, desc="", log=None, every_s=30.0):
    """Iterate with a tqdm bar on a terminal, and with a log line every ``every_s`` seconds in batch jobs."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(iterable, total=total, desc=desc)
        return
    log = log or logging.getLogger("pipeline")
    start = last = time.monotonic()
    n = 0
    for n, item in enumerate(iterable, 1):
        yield item
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            of = f"/{total}" if total else ""
            log.info("%s: %d%s done (%.0f s)", desc, n, of, now - start)
    log.info("%s: %d done in %.1f s", desc, n, time.monotonic() - start)
