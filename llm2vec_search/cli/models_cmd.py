"""`l2v-search models`: what can be used, and whether it is installed and converted."""

from dataclasses import replace

import typer
from rich.markdown import Markdown
from rich.table import Table

from .app import app, console

MODEL_CARD = "MODEL_CARD.md"


@app.command()
def models(
    card: bool = typer.Option(
        False, "--card", help="Print the shipped default's model card: data, steps, hardware, scores."
    ),
) -> None:
    """List the models l2v-search can use and whether each is installed and converted."""
    from ..encoder.adapters import ModelDirConfig, is_model_dir
    from ..encoder.encoder import SHIPPED_DEFAULT
    from ..encoder.models import CONVERSION_TIME, cache_dir, model_status
    from ..errors import L2VError

    if card:
        path = SHIPPED_DEFAULT / MODEL_CARD
        if not path.is_file():
            raise L2VError(f"no model card at {path}; the package is incomplete, reinstall it")
        console.print(Markdown(path.read_text(encoding="utf-8")))
        return

    rows = model_status()
    base = next(row for row in rows if row.name == "gemma3-270m")
    if is_model_dir(SHIPPED_DEFAULT):
        stages = " + ".join(ModelDirConfig.load(SHIPPED_DEFAULT).adapters)
        rows.insert(
            0,
            replace(
                base,
                name="default",
                description=f"gemma3-270m trained the LLM2Vec way ({stages} adapters in the package)",
            ),
        )
    table = Table(title=f"models (cache: {cache_dir()})")
    for column in ("name", "description", "installed", "converted", "how to get it"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.name,
            row.description,
            "yes" if row.installed else "no",
            "yes"
            if row.converted
            else ("—" if not row.installed else f"no (converts on first use, {CONVERSION_TIME})"),
            row.hint,
        )
    console.print(table)
    _print_cached_llm2vec_models()
    console.print(
        "Also accepted: a path to a .gguf file, a Hugging Face model directory, a trained model directory, "
        "an llm2vec model's folder or Hugging Face name (McGill-NLP/LLM2Vec-…)."
    )
    console.print("`l2v-search models --card`: how the default was trained and how it scores.")


def _print_cached_llm2vec_models() -> None:
    """The llm2vec models (adapter chains) the local Hugging Face cache holds, usable as `--model NAME`."""
    from ..encoder.published import cached_models, hub_cache

    rows = cached_models()
    if not rows:
        console.print(f"No LLM2Vec models in the Hugging Face cache {hub_cache()}.")
        return
    # Plain lines, not a table: a name is copied into --model whole, never cut to the terminal's width.
    console.print(f"LLM2Vec models in the Hugging Face cache {hub_cache()} (use the name as --model):")
    for row in rows:
        state = row.detail if row.complete else f"incomplete: {row.detail}"
        console.print(f"  {row.name}  ({state})", markup=False, highlight=False, soft_wrap=True)
