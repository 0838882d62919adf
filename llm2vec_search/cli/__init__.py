"""Command-line interface: a thin layer over the library. Each command group lives in its own module."""

import logging
import os
import sys

from ..errors import L2VError, one_line
from . import (  # noqa: F401  (modules register their commands on `app`)
    doctor_cmd,
    embed_cmd,
    eval_cmd,
    index_cmd,
    mcp_cmd,
    models_cmd,
    query_cmd,
    serve_cmd,
    train_cmd,
)
from .app import app, err_console, print_error

EXIT_ERROR = 2


def _quiet_libraries() -> None:
    """Our own notes go to stderr; the libraries' loading chatter and progress bars do not."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours = logging.getLogger("llm2vec_search")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    for noisy in ("transformers", "peft", "huggingface_hub", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def main() -> None:
    """Entry point: user errors become one red line on stderr and exit code 2, never a traceback."""
    _quiet_libraries()
    try:
        app()
    except L2VError as exc:
        print_error(exc)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        sys.exit(130)
    except Exception as exc:  # a bug, not bad input: still one line unless asked for the traceback
        if os.environ.get("L2V_DEBUG"):
            raise
        print_error(
            f"{type(exc).__name__}: {one_line(exc)} (rerun with L2V_DEBUG=1 for details)", "internal error"
        )
        sys.exit(EXIT_ERROR)
