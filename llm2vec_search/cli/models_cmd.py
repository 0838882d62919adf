"""`l2v-search models`: what can be used, and whether it is installed and converted."""

from rich.table import Table

from .app import app, console


@app.command()
def models() -> None:
    """List the models l2v-search can use and whether each is installed and converted."""
    from ..encoder.models import cache_dir, model_status

    table = Table(title=f"models (cache: {cache_dir()})")
    for column in ("name", "description", "installed", "converted", "how to get it"):
        table.add_column(column)
    for row in model_status():
        table.add_row(
            row.name,
            row.description,
            "yes" if row.installed else "no",
            "yes" if row.converted else ("—" if not row.installed else "no (converts on first use, ~1 min)"),
            row.hint,
        )
    console.print(table)
    console.print(
        "Also accepted: a path to a .gguf file, a Hugging Face model directory, a trained model directory."
    )
