"""`l2v-search query`: one search printed for people or programs, or an interactive search loop."""

from pathlib import Path

import typer

from ..errors import L2VError
from ..indexing.options import DEFAULT_MODE, SearchOptions, check_text
from .app import DenseWeightOption, DeviceOption, DtypeOption, app, err_console
from .index_cmd import IndexDirOption, NameOption

EXIT_NO_HITS = 1


@app.command("query")
def query_command(
    text: str | None = typer.Argument(None, help="What to search for; leave out for an interactive loop."),
    name: str = NameOption,
    index_dir: Path | None = IndexDirOption,
    k: int = typer.Option(10, "-k", "--top-k", help="How many hits to show."),
    mode: str = typer.Option(DEFAULT_MODE, "--mode", help="bm25, hybrid or dense."),
    path: str | None = typer.Option(
        None, "--path", help="Only chunks whose file path matches this glob (e.g. '*.md', 'docs/*')."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with every hit's fields."),
    as_jsonl: bool = typer.Option(False, "--jsonl", help="Print one JSON object per hit, one per line."),
    interactive: bool = typer.Option(
        False, "--interactive", "-i", help="Open the search loop (after searching TEXT, if given)."
    ),
    dense_weight: float = DenseWeightOption,
    no_server: bool = typer.Option(
        False, "--no-server", help="Search here even when a running `l2v-search serve` has this index."
    ),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
) -> None:
    """Search an index. Exit code 0 when something was found, 1 when nothing was, 2 on an error."""
    options = SearchOptions(k=k, mode=mode, path_glob=path, dense_weight=dense_weight)
    if text is not None:
        check_text(text)
    if as_json and as_jsonl:
        raise L2VError("choose one of --json and --jsonl")
    if (as_json or as_jsonl) and (interactive or text is None):
        raise L2VError("--json and --jsonl need a query TEXT (they are for one-shot searches)")
    one_shot = text is not None and not interactive
    hits = None
    if one_shot and not no_server and device == dtype == "auto":
        hits = _ask_running_server(name, index_dir, text, options)
    if hits is None:
        from ..indexing import Index

        with Index.open(name, root=index_dir, device=device, dtype=dtype) as index:
            if not one_shot:
                from .interactive import SearchSession

                SearchSession(index, options).run(first_query=text)
                return
            hits = index.search(text, options)
    if as_json or as_jsonl:
        from .render import hits_json, hits_jsonl

        output = hits_json(text, options, hits) if as_json else hits_jsonl(hits)
        if output:
            print(output)
    else:
        from .render import print_hits

        print_hits(hits, text)
        if not hits:
            err_console.print("no hits")
    if not hits:
        raise typer.Exit(EXIT_NO_HITS)


def _ask_running_server(name: str, index_dir: Path | None, text: str, options: SearchOptions) -> list | None:
    """The hits from a running `serve` that has this index and its model loaded, or None to search here."""
    from dataclasses import asdict

    from ..indexing.location import resolve_index
    from ..serving import ask, server_for

    _, folder = resolve_index(name, index_dir)
    server = server_for(folder)
    found = ask(server, folder, {"query": text, **asdict(options)}) if server else None
    if found is None:
        return None
    from ..indexing.search import Hit

    return [Hit.from_dict(fields) for fields in found]
