"""The Typer app and the Rich consoles every command module shares."""

import typer
from rich.console import Console

app = typer.Typer(
    name="l2v-search",
    help="Local vector search with an LLM2Vec encoder: index folders, query them, serve them to RAG apps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

ModelOption = typer.Option(
    "default",
    "--model",
    "-m",
    help="Model spec: a name from `l2v-search models`, a .gguf file, or a model directory.",
)
