"""Copy a trained model directory into the package as the shipped default, adapter weights stored in fp16.

    python scripts/ship_default.py RUN_DIR                            # the adapters as training saved them
    python scripts/ship_default.py RUN_DIR --checkpoint simcse:50     # that stage's adapter at step 50
    python scripts/ship_default.py RUN_DIR --checkpoint supervised-2:60 --start default --to DIR
    python scripts/ship_default.py RUN_DIR --scale supervised-2:0.5 --to DIR   # halfway back to the start
    python scripts/ship_default.py RUN_DIR --layers 14 --to DIR      # pruned: only the first 14 layers run

Copies `l2v-model.json` and each listed adapter (config + weights, halved to fp16: half the size; the vectors
agree with fp32 adapters to a cosine above 0.9999; the head in use stays fp32, one a later distillation
replaced is left behind) and keeps the target's MODEL_CARD.md; checkpoints, logs and PEFT's generated model
cards stay behind. `--checkpoint STAGE:STEP` takes a stage's adapter from a checkpoint of its run (any step it
saved one at: the one a dev set chose, or the last of a run stopped early) and lists the stage in
`l2v-model.json`.
Replaces `llm2vec_search/models/default/`, or writes DIR with `--to` (to evaluate a checkpoint before shipping
it). A run stopped before its end has no `l2v-model.json` yet: `--start` names the model it trained on top of,
whose adapters come first, and the stage's recorded settings give the query instruction it was trained with.
`--scale STAGE:FACTOR` multiplies that stage's weight update by FACTOR (its LoRA B matrices; B·A scales
linearly): a linear merge of the stage with the model it started from, 0 being the start and 1 the stage.
`--layers N` keeps only the first N transformer layers of the model (pruned, untrained further).
"""

import argparse
import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from llm2vec_search.encoder.adapters import MODEL_FORMAT
from llm2vec_search.training.features import HEAD_FILE
from llm2vec_search.training.loop import TRAIN_CONFIG, checkpoint_adapter

TARGET = Path(__file__).resolve().parents[1] / "llm2vec_search" / "models" / "default"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a model directory written by `l2v-search train`")
    parser.add_argument("--checkpoint", help="STAGE:STEP, e.g. simcse:50")
    parser.add_argument("--start", help="the model the run started from (a run stopped early), e.g. default")
    parser.add_argument("--scale", help="STAGE:FACTOR, e.g. supervised-2:0.5 (a linear merge with the start)")
    parser.add_argument("--layers", type=int, help="keep only the model's first N layers (a pruned model)")
    parser.add_argument("--to", type=Path, default=TARGET, help="where to write (default: the package)")
    args = parser.parse_args()
    start_dir = (TARGET if args.start == "default" else Path(args.start)) if args.start else None
    config = json.loads(((start_dir or args.run) / "l2v-model.json").read_text())
    from_checkpoint: dict[str, int] = {}
    if args.checkpoint:
        stage, step = args.checkpoint.split(":")
        from_checkpoint[stage] = int(step)
        if stage not in config["adapters"]:
            config["adapters"].append(stage)
        # A run stopped early has not recorded the instruction its queries were trained with (supervised).
        stage_settings = json.loads((args.run / TRAIN_CONFIG).read_text())["stages"][stage]["settings"]
        if "query_instruction" in stage_settings:
            config["query_instruction"] = stage_settings["query_instruction"] or None
    scaled_stage, factor = None, 1.0
    if args.scale:
        scaled_stage, factor_text = args.scale.split(":")
        factor = float(factor_text)
    if args.layers:
        config["layers"], config["format"] = args.layers, MODEL_FORMAT
    target = args.to.resolve()
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for adapter in config["adapters"]:
        if adapter in from_checkpoint:
            source = checkpoint_adapter(args.run, adapter, from_checkpoint[adapter])
        else:
            roots = [root for root in (args.run, start_dir) if root]
            source = next(root / adapter for root in roots if (root / adapter).is_dir())
        (staging / adapter).mkdir()
        adapter_config = json.loads((source / "adapter_config.json").read_text())
        adapter_config["base_model_name_or_path"] = config["base_model"]  # a model spec, not a local path
        (staging / adapter / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
        weights = load_file(source / "adapter_model.safetensors")
        if adapter == scaled_stage:
            weights = {k: v * factor if "lora_B" in k else v for k, v in weights.items()}
        save_file(
            {k: v.half().contiguous() for k, v in weights.items()},
            staging / adapter / "adapter_model.safetensors",
        )
        if adapter in from_checkpoint and (source / HEAD_FILE).is_file():
            config["head"] = f"{adapter}/{HEAD_FILE}"  # a distillation stopped early: its head applies
        if config.get("head") == f"{adapter}/{HEAD_FILE}":  # the head in use, kept in fp32 (it is small)
            shutil.copy2(source / HEAD_FILE, staging / adapter / HEAD_FILE)
    if (target / "MODEL_CARD.md").is_file():
        shutil.copy2(target / "MODEL_CARD.md", staging / "MODEL_CARD.md")
    (staging / "l2v-model.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    print(f"shipped {', '.join(config['adapters'])} from {args.run} → {target}")


if __name__ == "__main__":
    main()
