"""`l2v-search train`: turn a decoder into an encoder the LLM2Vec way (MNTP → SimCSE, or supervised)."""

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .app import ModelOption, app, console
from .progress import ProgressBars

if TYPE_CHECKING:
    from ..training.loop import TrainStep

train_app = typer.Typer(
    help="Train an encoder: MNTP, then SimCSE (`all` runs both), or supervised on (query, positive) pairs.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

RETRIEVAL_INSTRUCTION = "Given a query, retrieve relevant passages"  # as training.DEFAULT_QUERY_INSTRUCTION
# Options every stage takes: name -> (type, help). Left out, each stage uses its recipe's default.
SHARED_OPTIONS: dict[str, tuple[type, str]] = {
    "steps": (int, "Optimizer steps (default: 1000)."),
    "batch_size": (int, "Texts (or pairs) per step (default: MNTP 32, SimCSE 128, supervised 64)."),
    "grad_accum": (int, "Batches accumulated per optimizer step (default: 1)."),
    "lr": (float, "Peak learning rate (default: MNTP 5e-5, SimCSE 3e-5, supervised 2e-4)."),
    "warmup_steps": (int, "Linear warm-up steps before linear decay (default: 0)."),
    "max_length": (int, "Tokens per training text or block (default: MNTP 512, SimCSE 128, supervised 512)."),
    "lora_r": (int, "LoRA rank (default: 16)."),
    "lora_alpha": (int, "LoRA alpha (default: 32)."),
    "lora_dropout": (float, "Dropout inside the LoRA layers (default: 0.05)."),
    "lora_layers": (int, "Train only the top N transformer layers: a cheaper step (default: all)."),
    "seed": (int, "Seed for LoRA init, data order, masking and dropout (default: 42)."),
    "save_every": (int, "Checkpoint every N steps (default: 100)."),
    "device": (str, "auto, cpu, cuda or cuda:N (default: auto)."),
    "dtype": (
        str,
        "auto (GPU: bf16/fp16 autocast; CPU: fp32), float32, bfloat16 or float16 (default: auto).",
    ),
}
OutOption = typer.Option(..., "--out", "-o", help="Model directory to write: adapters, l2v-model.json, logs.")
ResumeOption = typer.Option(False, "--resume", help="Continue from the last checkpoint in --out.")
TextFieldOption = typer.Option("text", help="Field holding the text in .jsonl files.")
MiniBatchOption = typer.Option(
    None, help="GradCache: texts per forward pass, so large batches fit in memory (default: whole batch)."
)
TemperatureOption = typer.Option(None, help="InfoNCE temperature (default: 0.05).")
InstructionOption = typer.Option(
    None, help='Query instruction recorded in the model ("" for none) (default: the starting model\'s).'
)


def with_shared_options(command):
    """Give `command` the shared options as flags; it receives the ones given as one `shared` dict."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "shared"]
    added = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, f"--{name.replace('_', '-')}", help=text),
            annotation=kind | None,
        )
        for name, (kind, text) in SHARED_OPTIONS.items()
    ]

    @functools.wraps(command)
    def wrapper(**kwargs):
        shared = {name: kwargs.pop(name) for name in SHARED_OPTIONS}
        return command(**kwargs, shared={k: v for k, v in shared.items() if v is not None})

    wrapper.__signature__ = signature.replace(parameters=own + added)
    wrapper.__annotations__ = {
        **{k: v for k, v in command.__annotations__.items() if k != "shared"},
        **{p.name: p.annotation for p in added},
    }
    return wrapper


def _record(context: typer.Context) -> dict:
    """Every option of the command as given or defaulted, for train-config.json (next to the command line)."""
    return {"cli": dict(context.params)}


def _train(
    train: "Callable[..., list[float] | None]", stage: str, *args, out: Path, phases: bool = False, **options
) -> None:
    """Run a training function (`train_mntp`, ...) with a bar per stage on stderr (steps done, loss, steps/s,
    time left), then say what it did; `args` and `options` are the function's. `phases`: the function also
    reports the work before its steps (`on_phase(name, done, total)`), each with a bar of its own."""
    detail = "{task.completed}/{task.total} loss {task.fields[loss]} {task.fields[rate]} steps/s"
    with ProgressBars(detail=detail, transient=False) as bars:

        def show(step: "TrainStep") -> None:
            loss, rate = f"{step.loss:.4f}", f"{step.steps_per_second:.2f}"
            bars.update(step.stage, step.step, step.steps, loss=loss, rate=rate)

        if phases:
            options["on_phase"] = lambda name, done, total: bars.update(name, done, total, loss="-", rate="-")
        losses = train(*args, out, on_step=show, **options)
    if losses is None:
        console.print(f"{stage}: already trained in {out}", markup=False)
    else:
        last = f", last loss {losses[-1]:.4f}" if losses else ""
        console.print(f"{stage}: {len(losses)} steps{last} → {out / stage}", markup=False)


def _train_on_texts(
    context: typer.Context,
    train: "Callable[..., list[float] | None]",
    stage: str,
    settings,
    model: str,
    data: list[Path],
    text_field: str,
    out: Path,
    resume: bool,
    query_instruction: str | None,
) -> None:
    """An unsupervised stage (`train_mntp`, `train_simcse`) on the texts of `data`, started from `model`."""
    from ..training import StartingPoint, read_texts

    texts = read_texts(data, text_field)
    start = StartingPoint.from_spec(model)
    options = {"resume": resume, "record": _record(context), "query_instruction": query_instruction}
    _train(train, stage, start, texts, settings, out=out, **options)


@train_app.command()
@with_shared_options
def mntp(
    context: typer.Context,
    data: list[Path] = typer.Argument(..., help="Text files: .txt (a text per line) or .jsonl."),
    model: str = ModelOption,
    out: Path = OutOption,
    mask_prob: float | None = typer.Option(None, help="Share of tokens masked (default: 0.2)."),
    text_field: str = TextFieldOption,
    query_instruction: str | None = InstructionOption,
    resume: bool = ResumeOption,
    shared: dict | None = None,
) -> None:
    """Masked next-token prediction: adapt the bidirectional model to see right-hand context."""
    from ..training import MNTPSettings, train_mntp

    settings = MNTPSettings(**shared, **({"mask_prob": mask_prob} if mask_prob is not None else {}))
    _train_on_texts(
        context, train_mntp, "mntp", settings, model, data, text_field, out, resume, query_instruction
    )


def _contrastive_options(shared: dict, **options) -> dict:
    return {**shared, **{k: v for k, v in options.items() if v is not None}}


@train_app.command()
@with_shared_options
def simcse(
    context: typer.Context,
    data: list[Path] = typer.Argument(..., help="Sentence files: .txt (a sentence per line) or .jsonl."),
    model: str = ModelOption,
    out: Path = OutOption,
    dropout: float | None = typer.Option(
        None, help="Attention dropout that makes the two views (default: 0.3)."
    ),
    temperature: float | None = TemperatureOption,
    mini_batch: int | None = MiniBatchOption,
    text_field: str = TextFieldOption,
    query_instruction: str | None = InstructionOption,
    resume: bool = ResumeOption,
    shared: dict | None = None,
) -> None:
    """Unsupervised SimCSE: two dropout views of each sentence are positives, the batch negatives.

    Start from an MNTP-trained directory (`--model DIR`); with `--out` the same directory, the adapter is
    added to it.
    """
    from ..training import SimCSESettings, train_simcse

    settings = SimCSESettings(
        **_contrastive_options(shared, dropout=dropout, temperature=temperature, mini_batch=mini_batch)
    )
    _train_on_texts(
        context, train_simcse, "simcse", settings, model, data, text_field, out, resume, query_instruction
    )


@train_app.command()
@with_shared_options
def supervised(
    context: typer.Context,
    data: list[str] = typer.Argument(
        ...,
        help='JSONL files (.jsonl or .jsonl.gz) of {"query": ..., "positive": ..., "negative": ...} '
        "(negative optional), each as FILE or FILE:WEIGHT: a batch comes whole from one file, picked in "
        "proportion to its weight (default 1).",
    ),
    model: str = ModelOption,
    out: Path = OutOption,
    query_instruction: str | None = typer.Option(
        None,
        help=f"Instruction for queries, recorded in the model (default: {RETRIEVAL_INSTRUCTION}).",
    ),
    source_instruction: list[str] = typer.Option(
        [],
        help="FILE=INSTRUCTION: the query instruction for one data file's pairs during training "
        "(by file name or path as given; repeatable). Others use --query-instruction.",
    ),
    adapter_name: str | None = typer.Option(
        None,
        help="Name of the new adapter (default: supervised, or supervised-2, ... when the model has one).",
    ),
    dropout: float | None = typer.Option(None, help="Attention dropout during training (default: 0)."),
    temperature: float | None = TemperatureOption,
    mini_batch: int | None = MiniBatchOption,
    resume: bool = ResumeOption,
    shared: dict | None = None,
) -> None:
    """Supervised contrastive training with in-batch and hard negatives, on one file or a weighted mixture.

    On a model that already has a supervised adapter (the shipped default) the new one is added on top.
    """
    from ..errors import L2VError
    from ..training import StartingPoint, SupervisedSettings, read_sources, train_supervised
    from ..training.setup import free_adapter_name

    settings = SupervisedSettings(
        **_contrastive_options(
            shared,
            dropout=dropout,
            temperature=temperature,
            mini_batch=mini_batch,
            query_instruction=query_instruction,
        )
    )
    instructions = {}
    for item in source_instruction:
        file, equals, text = item.partition("=")
        if not equals or not file:
            raise L2VError(f"--source-instruction takes FILE=INSTRUCTION, got {item!r}")
        instructions[file] = text
    sources = read_sources(data, instructions)
    start = StartingPoint.from_spec(model)
    name = adapter_name or free_adapter_name(start, "supervised")
    _train(
        train_supervised,
        name,
        start,
        sources,
        settings,
        out=out,
        resume=resume,
        record=_record(context),
        name=name,
    )


@train_app.command()
@with_shared_options
def distill(
    context: typer.Context,
    model: str = ModelOption,
    out: Path = OutOption,
    queries: list[str] = typer.Option(
        [], help="FILE[:FIELD][:COUNT] of queries (they get the query instruction); .txt or .jsonl(.gz)."
    ),
    passages: list[str] = typer.Option(
        [], help="FILE[:FIELD][:COUNT] of passages and sentences, repeatable."
    ),
    per_file: int | None = typer.Option(
        None, help="Distinct texts taken from each file, seeded (default: all)."
    ),
    epochs: float = typer.Option(2.0, help="Passes over the texts, when --steps is not given."),
    teacher: Path | None = typer.Option(
        None, help="A sentence-transformers folder (default: all-MiniLM-L6-v2 from the distill extra)."
    ),
    relational_weight: float | None = typer.Option(
        None, help="Weight of the in-batch similarity-matrix term (default: 1)."
    ),
    max_words: int | None = typer.Option(None, help="Words kept of each text (default: 100)."),
    keep_layers: int | None = typer.Option(
        None, help="Prune the student to its first N layers before distilling (default: keep all)."
    ),
    dev_data: Path | None = typer.Option(
        None, help="Folder with squad_dev/ and stsbenchmark/: score a dev sample at every checkpoint."
    ),
    query_instruction: str | None = InstructionOption,
    resume: bool = ResumeOption,
    shared: dict | None = None,
) -> None:
    """Distil a trained embedder into the model: top layers (LoRA) + a linear head to the teacher's space.

    The teacher's vectors and the frozen layers' output are computed once and cached, so each step trains
    only the top --lora-layers (default 4) layers. On a model distilled already, the new distillation (new
    texts, a fresh schedule) goes on top as `distill-2`, with its own head. --steps 0 fits the head alone
    (least squares on the frozen model's output) and trains nothing else.
    """
    import math

    from ..training.distill import DistillSettings, read_distill_texts, train_distill
    from ..training.setup import StartingPoint, free_adapter_name
    from ..training.teacher import Teacher, default_teacher_dir

    options = {"relational_weight": relational_weight, "max_words": max_words}
    if query_instruction:
        options["query_instruction"] = query_instruction
    settings = DistillSettings(**_contrastive_options(shared, **options))
    texts = read_distill_texts(queries, passages, per_file, settings.max_words, settings.seed)
    if "steps" not in shared:
        settings.steps = max(1, math.ceil(epochs * len(texts) / settings.batch_size))
    settings.validate()
    start = StartingPoint.from_spec(model)
    if keep_layers is not None:
        start = start.pruned(keep_layers)
    name = free_adapter_name(start, "distill")
    _train(
        train_distill,
        name,
        start,
        texts,
        Teacher(teacher or default_teacher_dir()),
        settings,
        out=out,
        phases=True,
        resume=resume,
        record=_record(context),
        dev_data=dev_data,
        name=name,
    )


@train_app.command(name="all")
@with_shared_options
def train_all(
    context: typer.Context,
    model: str = ModelOption,
    out: Path = OutOption,
    mntp_data: list[Path] = typer.Option(..., help="MNTP text file (repeat for more)."),
    simcse_data: list[Path] = typer.Option(..., help="SimCSE sentence file (repeat for more)."),
    text_field: str = TextFieldOption,
    mask_prob: float | None = typer.Option(None, help="MNTP: share of tokens masked (default: 0.2)."),
    dropout: float | None = typer.Option(None, help="SimCSE: attention dropout (default: 0.3)."),
    temperature: float | None = TemperatureOption,
    mini_batch: int | None = MiniBatchOption,
    query_instruction: str | None = typer.Option(
        RETRIEVAL_INSTRUCTION, help='Query instruction recorded in the model ("" for none).'
    ),
    resume: bool = ResumeOption,
    shared: dict | None = None,
) -> None:
    """MNTP then SimCSE into one model directory (LLM2Vec's unsupervised recipe).

    Options given apply to both stages; options left out take each stage's recipe default.
    """
    from ..training import MNTPSettings, SimCSESettings, StartingPoint, read_texts, train_mntp, train_simcse

    mntp_settings = MNTPSettings(**shared, **({"mask_prob": mask_prob} if mask_prob is not None else {}))
    simcse_settings = SimCSESettings(
        **_contrastive_options(shared, dropout=dropout, temperature=temperature, mini_batch=mini_batch)
    )
    mntp_settings.validate()
    simcse_settings.validate()
    mntp_texts = read_texts(mntp_data, text_field)
    sentences = read_texts(simcse_data, text_field)
    record = _record(context)
    _train(
        train_mntp,
        "mntp",
        StartingPoint.from_spec(model),
        mntp_texts,
        mntp_settings,
        out=out,
        resume=resume,
        record=record,
    )
    _train(
        train_simcse,
        "simcse",
        StartingPoint.from_spec(str(out)),
        sentences,
        simcse_settings,
        out=out,
        resume=resume,
        record=record,
        query_instruction=query_instruction,
    )
