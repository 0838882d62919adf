"""`l2v-search embed`: vectors for a few texts, or their cosine similarities."""

import json

import typer
from rich.table import Table

from .app import DeviceOption, DtypeOption, ModelOption, app, console, err_console


@app.command()
def embed(
    texts: list[str] = typer.Argument(..., help="Texts to embed."),
    model: str = ModelOption,
    instruction: str | None = typer.Option(
        None, help="Instruction the model sees but does not pool (queries)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the vectors as JSON instead of a similarity table."
    ),
    pooling: str | None = typer.Option(
        None, help="mean, weighted_mean, last_token or bos (default: the model's)."
    ),
    causal: bool = typer.Option(False, "--causal", help="Keep causal attention (for comparison)."),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
) -> None:
    """Embed TEXTS; print cosine similarities between them (or the vectors with --json)."""
    from ..encoder import Encoder
    from ..encoder.tokens import validate_texts

    validate_texts(texts)
    encoder = Encoder.from_pretrained(
        model, pooling=pooling, bidirectional=False if causal else None, device=device, dtype=dtype
    )
    vectors = encoder.encode(texts, instruction=instruction)
    if encoder.last_stats.truncated:
        err_console.print(
            f"note: {encoder.last_stats.truncated} text(s) truncated to {encoder.text_tokens} tokens"
        )
    if as_json:
        rows = [
            {"text": t, "embedding": [round(float(x), 6) for x in v]}
            for t, v in zip(texts, vectors, strict=True)
        ]
        print(json.dumps({"model": encoder.name, "dim": encoder.dim, "data": rows}))
        return
    similarities = vectors @ vectors.T
    table = Table(title=f"cosine similarity ({encoder.name}, {encoder.dim} dims)")
    table.add_column("#", justify="right")
    table.add_column("text", max_width=50)
    for i in range(len(texts)):
        table.add_column(str(i + 1), justify="right")
    for i, text in enumerate(texts):
        table.add_row(str(i + 1), text, *(f"{similarities[i, j]:.3f}" for j in range(len(texts))))
    console.print(table)
