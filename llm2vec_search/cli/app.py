"""The Typer app and the Rich consoles every command module shares."""

import typer
from rich.console import Console
from rich.markup import escape

from ..indexing.options import DEFAULT_DENSE_WEIGHT, SearchOptions

app = typer.Typer(
    name="l2v-search",
    help="Local vector search with an LLM2Vec encoder: index folders, query them, serve them to RAG apps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def print_error(message: object, label: str = "error") -> None:
    """One red-labelled line on stderr. The message is escaped: paths and user text may hold brackets that
    Rich would read as markup (a name with `[/red]` in it raised MarkupError instead of the error)."""
    err_console.print(f"[red]{label}:[/red] {escape(str(message))}", highlight=False, soft_wrap=True)


DenseWeightOption = typer.Option(
    DEFAULT_DENSE_WEIGHT,
    "--dense-weight",
    help=SearchOptions.__dataclass_fields__["dense_weight"].metadata["description"],
)
DeviceOption = typer.Option("auto", "--device", help="Where the model runs: auto, cpu, cuda or cuda:N.")
DtypeOption = typer.Option(
    "auto",
    "--dtype",
    help="auto (GPU: bfloat16 where supported; CPU: float32), float32, bfloat16 or float16 "
    "(refused for Gemma, whose activations overflow it).",
)
ModelOption = typer.Option(
    "default",
    "--model",
    "-m",
    help="Model spec: a name from `l2v-search models`, a .gguf file, a model directory, or an LLM2Vec "
    "model's Hugging Face name (McGill-NLP/LLM2Vec-…, found in the local cache).",
)
