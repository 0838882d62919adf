"""The Typer app and the Rich consoles every command module shares."""

import typer
from rich.console import Console

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
    help="Model spec: a name from `l2v-search models`, a .gguf file, or a model directory.",
)
