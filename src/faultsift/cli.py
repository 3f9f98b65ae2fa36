"""The ``faultsift`` command line: parses, builds config objects, calls the library.

Example::

    faultsift study --faults 500 --out runs/quick
    faultsift profile zoo:digits-vit zoo:digits-hard --out profile.parquet
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from faultsift.beam.cli import beam_app
from faultsift.errors import ConfigError, FaultsiftError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Input-aware reliability evaluation of DNNs under transient hardware faults.")
zoo_app = typer.Typer(no_args_is_help=True, help="Built-in models: train them, list them.")
app.add_typer(zoo_app, name="zoo")
from faultsift.campaign.cli import campaign_app, replay  # noqa: E402

app.add_typer(campaign_app, name="campaign")
app.command("replay")(replay)
app.add_typer(beam_app, name="beam")
console = Console()
TABLE_WIDTH = 150
err_console = Console(stderr=True)


class RichProgress:
    """Study progress as rich bars (one per campaign), with trials/s."""

    def __init__(self, progress: Progress):
        self.progress = progress

    def task(self, description: str, total: int) -> Callable[[int], None]:
        task_id = self.progress.add_task(description, total=total)
        return lambda n: self.progress.advance(task_id, n)


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("trials"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, disable=quiet, transient=False)


WEIGHTS_HELP = "State-dict file (.safetensors, .pth) for timm:/torchvision:/py: models; random init without one."
NUM_CLASSES_HELP = "Classes of a timm:/torchvision: model's head (to match the weights or the data)."
DTYPE_HELP = "Precision of model and inputs: fp32, fp16 or bf16 (bit flips follow it)."
LABELS_HELP = "Labels file of an imagenet-val:DIR pool."
LIMIT_HELP = "Keep the first N inputs of the pool."
SUBSET_HELP = "Keep a seeded random N inputs of the pool (seed: --selection-seed in study, 0 elsewhere)."
PRESET_OPTIONS = {  # StudyConfig field -> study option name, for presets: options given explicitly win
    "models": "models", "data": "data", "fault_models": "fault_models", "sites": "sites", "k": "k",
    "n_faults": "faults", "n_screen_faults": "screen_faults", "selection_seed": "selection_seed",
    "bit_low": "bit_low", "bit_high": "bit_high", "dtype": "dtype",
}
PREPROCESS_HELP = ("Image preprocessing overrides (default: the timm model's data config), e.g. "
                   "size=224,crop_pct=0.9,interpolation=bicubic,mean=0.5/0.5/0.5,std=0.5/0.5/0.5.")

# options shared by study, profile and inject
WeightsOption = Annotated[Optional[Path], typer.Option(help=WEIGHTS_HELP)]
NumClassesOption = Annotated[Optional[int], typer.Option(help=NUM_CLASSES_HELP)]
DtypeOption = Annotated[str, typer.Option(help=DTYPE_HELP)]
LabelsOption = Annotated[Optional[str], typer.Option(help=LABELS_HELP)]
LimitOption = Annotated[Optional[int], typer.Option(help=LIMIT_HELP)]
SubsetOption = Annotated[Optional[int], typer.Option(help=SUBSET_HELP)]
PreprocessOption = Annotated[Optional[str], typer.Option(help=PREPROCESS_HELP)]
EngineOption = Annotated[str, typer.Option(help="Trial engine: fast (batched, golden prefix cached) or reference (one fault per forward); same outcomes.")]


def _load(model: str, data: str, weights, num_classes, dtype, labels, limit, subset, preprocess):
    """Model and pool for the stage commands; images are preprocessed as the model expects."""
    from faultsift.data import image_preprocess, load_data
    from faultsift.models import init_note, load_model

    net = load_model(model, weights, dtype=dtype, num_classes=num_classes)
    pool = load_data(data, preprocess=image_preprocess(data, net, preprocess), labels=labels, limit=limit, subset=subset)
    err_console.print(f"{model}: {init_note(model, weights)}, {dtype}; {data}: {len(pool)} inputs"
                      + (f", {len(pool.skipped)} unreadable skipped" if pool.skipped else ""), markup=False, soft_wrap=True)
    return net, pool


def _split(values: Optional[str]) -> tuple[str, ...]:
    return tuple(v.strip() for v in values.split(",") if v.strip()) if values else ()


def _print_campaign(model: str, result: dict) -> None:
    from faultsift.report.tables import HEADER, campaign_title, set_row

    table = Table(title=campaign_title(model, result), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  padding=(0, 1))
    for column in HEADER:
        table.add_column(column, no_wrap=column != "x random [95%]", min_width=18 if column == "x random [95%]" else None)
    for row in result["sets"]:
        table.add_row(*set_row(row))
    # a terminal gets its own width; logs and pipes get one wide enough for a row per set
    (console if console.is_terminal else Console(width=TABLE_WIDTH)).print(table)


@app.command()
def study(
    ctx: typer.Context,
    out: Optional[Path] = typer.Option(None, help="Results folder (default: a new folder under runs/)."),
    models: Optional[str] = typer.Option(None, help="Comma-separated model specs (default: the built-in ViT, Swin, CNN)."),
    data: str = typer.Option("zoo:digits-hard", help="Data spec of the pool to select from."),
    fault_models: Optional[str] = typer.Option(None, "--fault-models", help="Comma-separated: bitflip, beam-body, beam-full."),
    sites: Optional[str] = typer.Option(None, help="Comma-separated module classes/names/globs (default: the zoo micro-ops)."),
    k: int = typer.Option(32, "-k", help="Inputs per set."),
    faults: int = typer.Option(2000, help="Faults per campaign (each applied to every input of every set)."),
    screen_faults: int = typer.Option(200, help="Faults of the fi-ranked screening campaign."),
    fault_seed: int = typer.Option(1, help="Seed of the evaluation fault list."),
    screen_seed: int = typer.Option(2, help="Seed of the screening fault list (must differ from --fault-seed)."),
    selection_seed: int = typer.Option(0, help="Seed of the random set."),
    bit_low: int = typer.Option(0, help="Lowest bit a bitflip may hit."),
    bit_high: Optional[int] = typer.Option(None, help="Highest bit a bitflip may hit (default: the top bit)."),
    n_boot: int = typer.Option(2000, help="Bootstrap replicates."),
    strategies: Optional[str] = typer.Option(None, help="Comma-separated strategies (default: random, low-confidence, high-confidence, fi-ranked)."),
    report: bool = typer.Option(True, help="Write report.html, report.md and report/*.csv."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    weights: Optional[str] = typer.Option(None, help=WEIGHTS_HELP + " Comma-separated, one per model."),
    num_classes: NumClassesOption = None,
    dtype: DtypeOption = "fp32",
    labels: LabelsOption = None,
    limit: LimitOption = None,
    subset: SubsetOption = None,
    preprocess: PreprocessOption = None,
    preset: Optional[str] = typer.Option(None, help="study-vit or study-swin: the study's configuration; explicit options override it."),
    device: str = typer.Option("cpu", help="Torch device, e.g. cuda."),
    engine: EngineOption = "fast",
) -> None:
    """Run the main job: profile, select four input sets, inject, compare; print the tables."""
    from datetime import datetime

    from faultsift.config import DEFAULT_FAULT_MODELS, DEFAULT_MODELS, StudyConfig, validated
    from faultsift.presets import preset_values
    from faultsift.study import run_study

    if screen_seed == fault_seed:
        raise ConfigError(f"Expected `--screen-seed` different from `--fault-seed` ({fault_seed}), so the screening does not bias the evaluation.")
    values = dict(
        models=_split(models) or DEFAULT_MODELS, data=data,
        fault_models=_split(fault_models) or DEFAULT_FAULT_MODELS, sites=_split(sites), k=k, n_faults=faults,
        n_screen_faults=screen_faults, fault_seed=fault_seed, screen_seed=screen_seed, selection_seed=selection_seed,
        bit_low=bit_low, bit_high=bit_high, n_boot=n_boot, report=report,
        **({"strategies": _split(strategies)} if strategies else {}),
        weights=tuple(w.strip() for w in weights.split(",")) if weights else (), num_classes=num_classes, dtype=dtype,
        labels=labels, limit=limit, subset=subset, preprocess=preprocess, device=device, engine=engine,
    )
    if preset:
        given = {field for field, option in PRESET_OPTIONS.items() if ctx.get_parameter_source(option).name != "DEFAULT"}
        if "data" not in given:
            raise ConfigError(f"Expected `--data imagenet-val:DIR --labels FILE` or `--data imagefolder:DIR` with `--preset {preset}`.")
        values = {**values, **{f: v for f, v in preset_values(preset).items() if f not in given}}
    config = validated(StudyConfig, **values)
    out = out or Path("runs") / f"study-{datetime.now():%Y%m%d-%H%M%S}"
    with _progress(quiet) as progress:
        summary = run_study(config, out, RichProgress(progress))
    for model, info in summary["models"].items():
        for result in info["fault_models"].values():
            _print_campaign(model, result)
    console.print(f"Results: {out}/results.md, {out}/summary.json, {out}/margins.png")
    if config.report:
        console.print(f"Report: {out}/report.html (tables also in {out}/report.md and {out}/report/*.csv)")


@app.command("profile")
def profile_cmd(
    model: str = typer.Argument(..., help="Model spec, e.g. zoo:digits-vit."),
    data: str = typer.Argument(..., help="Data spec, e.g. zoo:digits-hard."),
    out: Path = typer.Option(Path("profile.parquet"), help="Parquet file to write."),
    weights: WeightsOption = None,
    num_classes: NumClassesOption = None,
    dtype: DtypeOption = "fp32",
    labels: LabelsOption = None,
    limit: LimitOption = None,
    subset: SubsetOption = None,
    preprocess: PreprocessOption = None,
) -> None:
    """One golden pass: per input label, prediction, probabilities, margin, entropy, correct."""
    from faultsift.profile import profile, write_profile

    prof = profile(*_load(model, data, weights, num_classes, dtype, labels, limit, subset, preprocess))
    write_profile(prof, out)
    console.print(f"{len(prof)} inputs, accuracy {prof['correct'].mean():.3f}, "
                  f"{int((prof['margin'] < 0.01).sum())} with margin < 0.01 -> {out}")


@app.command("select")
def select_cmd(
    profile_path: Path = typer.Argument(..., metavar="PROFILE", help="Profile Parquet from `faultsift profile`."),
    strategy: str = typer.Option(..., help="A strategy of `faultsift list strategies`."),
    k: int = typer.Option(32, "-k", help="Set size."),
    seed: int = typer.Option(0, help="Seed (random strategy)."),
    screening: Optional[Path] = typer.Option(None, help="Screening trials Parquet (fi-ranked)."),
    name: Optional[str] = typer.Option(None, help="Set name (default: the strategy name)."),
    out: Path = typer.Option(Path("sets.json"), help="JSON file of input sets; a set of the same name is replaced."),
    score: Optional[str] = typer.Option(None, help="Score of lowest, highest, class-balanced, stratified (default: margin)."),
    bins: Optional[int] = typer.Option(None, help="Quantile bins of the stratified strategy (default: 4)."),
    only_correct: Optional[bool] = typer.Option(None, "--only-correct/--all-inputs",
                                                help="Choose among correctly classified inputs only (default: on; random: off)."),
) -> None:
    """Choose an input set from a profile and add it to a sets file."""
    from faultsift.campaign.store import read_parquet, write_json_atomic
    from faultsift.profile import read_profile
    from faultsift.selection.strategies import get_strategy
    from faultsift.study import screening_rates

    kwargs = {k: v for k, v in {"score": score, "bins": bins, "only_correct": only_correct}.items() if v is not None}
    if strategy in ("fi-ranked", "learned"):
        if screening is None:
            raise ConfigError(f"Strategy `{strategy}` needs `--screening TRIALS.parquet` from an earlier campaign.")
        kwargs["screening"] = screening_rates(read_parquet(screening))
    chosen = get_strategy(strategy, **kwargs).select(read_profile(profile_path), k, seed=seed)
    if name:
        chosen = type(chosen)(name, chosen.strategy, chosen.input_ids, chosen.params)
    sets = [s for s in _read_sets(out) if s["name"] != chosen.name] if out.exists() else []
    write_json_atomic(sets + [chosen.to_dict()], out)
    console.print(f"{chosen.name}: {len(chosen.input_ids)} inputs -> {out}")


def _read_sets(path: Path) -> list[dict]:
    from faultsift.selection.strategies import read_sets_file

    return read_sets_file(path)


@app.command()
def inject(
    model: str = typer.Argument(..., help="Model spec."),
    data: str = typer.Argument(..., help="Data spec (the pool the sets index)."),
    sets: Path = typer.Option(..., help="Sets file from `faultsift select`."),
    fault_model: str = typer.Option("bitflip", help="A fault model of `faultsift list faults`."),
    sites: Optional[str] = typer.Option(None, help="Comma-separated module classes/names/globs (default: zoo micro-ops)."),
    faults: int = typer.Option(1000, help="Faults (each applied to every input of every set)."),
    seed: int = typer.Option(1, help="Fault-list seed."),
    bit_low: int = typer.Option(0, help="Lowest bit a bitflip may hit."),
    bit_high: Optional[int] = typer.Option(None, help="Highest bit a bitflip may hit."),
    threshold: float = typer.Option(1e-5, help="Absolute output difference that counts as an SDC."),
    fault_params: Optional[str] = typer.Option(None, help='Fault-model parameters as a JSON object, e.g. \'{"k": 3, "pattern": "row"}\' (see `faultsift list faults`).'),
    out: Path = typer.Option(..., help="Folder for faults.parquet, trials.parquet and summary.json."),
    weights: WeightsOption = None,
    num_classes: NumClassesOption = None,
    dtype: DtypeOption = "fp32",
    labels: LabelsOption = None,
    limit: LimitOption = None,
    subset: SubsetOption = None,
    preprocess: PreprocessOption = None,
    engine: EngineOption = "fast",
) -> None:
    """Run one campaign: the same fault list on every input set; print the comparison."""
    import numpy as np

    from faultsift.analysis import analyse_sets
    from faultsift.campaign.plan import faults_frame, plan_faults
    from faultsift.campaign.store import write_json_atomic, write_parquet_atomic
    from faultsift.config import StudyConfig, validated
    from faultsift.engine import make_engine
    from faultsift.selection.strategies import InputSet
    from faultsift.study import _json_safe, _sites, build_fault_model, run_trials, SilentProgress, check_out_dir

    check_out_dir(out)
    config = validated(StudyConfig, models=(model,), data=data, fault_models=(fault_model,), sites=_split(sites),
                       n_faults=faults, fault_seed=seed, bit_low=bit_low, bit_high=bit_high, threshold=threshold,
                       weights=(str(weights or ""),), num_classes=num_classes, dtype=dtype, labels=labels,
                       limit=limit, subset=subset, preprocess=preprocess, engine=engine)
    input_sets = [InputSet.from_dict(s) for s in _read_sets(sets)]
    net, pool = _load(model, data, weights, num_classes, dtype, labels, limit, subset, preprocess)
    for s in input_sets:
        if s.input_ids and max(s.input_ids) >= len(pool):
            raise ConfigError(f"Set `{s.name}` indexes input {max(s.input_ids)}, but `{data}` has {len(pool)} inputs.")
    fm = _fault_model_from_json(fault_model, fault_params) if fault_params else build_fault_model(fault_model, config, model)
    fault_list = plan_faults(_sites(net, model, pool, config), fm, faults, seed)
    union = np.unique(np.concatenate([np.asarray(s.input_ids) for s in input_sets]))
    with _progress(False) as progress:
        trials = run_trials(make_engine(engine, net, fm, threshold), pool, union, fault_list, 512,
                            RichProgress(progress).task(f"{fault_model} campaign", len(union) * faults))
    write_parquet_atomic(faults_frame(fault_list), out / "faults.parquet")
    write_parquet_atomic(trials, out / "trials.parquet")
    reference = "random" if any(s.name == "random" for s in input_sets) else input_sets[0].name
    rows = analyse_sets(trials, input_sets, reference=reference, seed=seed)
    result = {"fault_model": fault_model, "params": fm.params(), "n_faults": faults, "seed": seed,
              "screening": None, "sets": rows}
    write_json_atomic(_json_safe({"config": config.model_dump(mode="json"), "campaign": result}), out / "summary.json")
    _print_campaign(model, result)


def _fault_model_from_json(name: str, params: str):
    from faultsift.faults.models import make_fault_model

    try:
        parsed = json.loads(params)
    except ValueError as exc:
        raise ConfigError(f"Expected `--fault-params` as a JSON object, got {params!r} ({exc}).") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"Expected `--fault-params` as a JSON object, got {params!r}.")
    return make_fault_model(name, **parsed)


def _num(x: float) -> str:
    return "n/a" if x != x else f"{x:.3f}"


@app.command()
def report(
    results: Path = typer.Argument(..., metavar="RESULTS", help="A study folder (holds summary.json)."),
    n_boot: int = typer.Option(400, help="Bootstrap replicates of the score-quality and dataset-level intervals."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Write report.html (figures embedded), report.md and report/*.csv into a study folder."""
    from faultsift.report.html import write_report

    paths = write_report(results, n_boot=n_boot, seed=seed)
    console.print(f"Report: {paths['html']}, {paths['markdown']}, {results / 'report'}/*.csv")


@app.command("compare-metrics")
def compare_metrics(
    results: Path = typer.Argument(..., metavar="RESULTS", help="A study folder (holds summary.json)."),
    scores: Optional[str] = typer.Option(None, help="Comma-separated scores (default: every logit score)."),
    k: Optional[int] = typer.Option(None, "-k", help="Set size for precision@k and lift (default: the study's k)."),
    n_boot: int = typer.Option(1000, help="Bootstrap replicates (inputs x faults)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap and of the learned strategy's split."),
    learned: bool = typer.Option(True, help="Also fit the learned strategy and test it on held-out inputs and faults."),
    out: Optional[Path] = typer.Option(None, help="CSV file for every campaign's table."),
) -> None:
    """Rank every score by how well it finds the inputs that fail under faults (screening campaigns)."""
    import pandas as pd

    from faultsift.analysis import learned_vs_scores, metric_quality, read_summary
    from faultsift.campaign.store import read_parquet, write_text_atomic
    from faultsift.selection.scores import SCORES, add_model_scores, logit_score_names

    summary = read_summary(results)
    names = list(_split(scores)) or logit_score_names()
    model_scores = [n for n in names if SCORES.get(n).needs == "model"]
    k = k or int(summary.get("config", {}).get("k") or 32)
    frames = []
    for model, info in summary["models"].items():
        prof = read_parquet(results / model / "profile.parquet")
        if model_scores:
            from faultsift.data import load_data
            from faultsift.models import load_model

            prof = add_model_scores(prof, model_scores, load_model(info["spec"]),
                                    load_data(summary["config"]["data"]).inputs, seed=seed)
        for fm in info["fault_models"]:
            path = results / model / fm / "screening_trials.parquet"
            trials = read_parquet(path if path.is_file() else results / model / fm / "trials.parquet")
            quality = metric_quality(trials, prof, names, k, n_boot, seed)
            table = Table(title=f"{model} / {fm}: scores ranked by Spearman ({'screening' if path.is_file() else 'evaluation'} "
                                f"campaign, {trials['input_id'].nunique():,} inputs x {trials['fault_id'].nunique():,} faults)",
                          title_justify="left", box=box.SIMPLE_HEAD)
            columns = ("spearman", "kendall_tau_b", "precision_at_k", "lift_at_k", "auroc", "apfd")
            for column in ("score",) + columns:
                table.add_column(column.replace("_at_k", f"@{k}"))
            for row in quality.itertuples(index=False):
                cells = [f"{_num(getattr(row, c))} [{_num(getattr(row, c + '_low'))}, {_num(getattr(row, c + '_high'))}]"
                         for c in columns]
                table.add_row(row.score, *cells)
            (console if console.is_terminal else Console(width=TABLE_WIDTH + 40)).print(table)
            frames.append(quality.assign(model=model, fault_model=fm))
            if learned and len(names) > 1:
                verdict = learned_vs_scores(trials, prof, names, k, n_boot, seed)
                console.print(f"learned ({verdict['train_inputs']} inputs x {verdict['train_faults']} faults to fit, "
                              f"{verdict['test_inputs']} x {verdict['test_faults']} held out): Spearman minus best "
                              f"single score `{verdict['best_single']}`: {_num(verdict['spearman_difference'])} "
                              f"[{_num(verdict['difference_low'])}, {_num(verdict['difference_high'])}] -> "
                              f"{'beats it' if verdict['beats_best'] else 'does not beat it'}")
    if out:
        write_text_atomic(pd.concat(frames, ignore_index=True).to_csv(index=False), out)
        console.print(f"Table: {out}")


@app.command("list")
def list_cmd(what: str = typer.Argument(..., help="models, data, strategies, faults, scores or presets.")) -> None:
    """List registered names."""
    from faultsift.data import ZOO_DATA
    from faultsift.faults.models import FAULT_MODELS
    from faultsift.presets import PRESETS
    from faultsift.registry import unknown_name_message
    from faultsift.selection.scores import SCORES
    from faultsift.selection.strategies import STRATEGIES
    from faultsift.zoo.models import ZOO_MODELS

    listings = {
        "models": [f"zoo:{n}" for n in ZOO_MODELS.names()] + ["timm:NAME[:WEIGHTS]", "torchvision:NAME", "torchscript:FILE",
                                                             "exported:FILE", "py:package.module:factory"],
        "data": [f"zoo:{n}" for n in sorted(ZOO_DATA)] + ["imagefolder:DIR", "imagenet-val:DIR", "tensors:FILE"],
        "strategies": STRATEGIES.names(),
        "faults": FAULT_MODELS.names(),
        "scores": SCORES.names(),
        "presets": PRESETS.names(),
    }
    if what not in listings:
        raise ConfigError(unknown_name_message("listing", what, sorted(listings)))
    if what == "faults":
        from rich.markup import escape

        from faultsift.faults.models import describe, summary

        table = Table("fault model", "what it does", "parameters", show_lines=True)
        for name in listings[what]:
            table.add_row(name, escape(summary(name)), escape("\n".join(describe(name))))
        (console if console.is_terminal else Console(width=TABLE_WIDTH)).print(table)
        return
    for name in listings[what]:
        console.print(name)


@app.command("sites")
def sites_cmd(
    model: str = typer.Argument(..., help="Model spec."),
    data: str = typer.Option("zoo:digits-hard", help="Data spec for an example batch."),
    select: Optional[str] = typer.Option(None, help="Comma-separated classes/names/globs, `Class[k]`, `Class[largest]` (default: every module)."),
    kinds: str = typer.Option("output", help="Comma-separated: output, input, weight, bias, params, buffers or parameter names."),
) -> None:
    """List fault sites with per-input shapes (activations) or shapes (parameters), element counts and dtypes."""
    from faultsift.data import load_data
    from faultsift.faults.sites import discover_sites
    from faultsift.models import load_model

    table = Table("site", "class", "shape", "elements", "dtype", "batch")
    for site in discover_sites(load_model(model), load_data(data).inputs[:2], list(_split(select)) or ["*"],
                               _split(kinds)):
        batch = (f"dim {site.batch_dim}" + (f", x{site.fold} {site.fold_order}" if site.fold > 1 else "")
                 if site.is_activation else "shared")
        table.add_row(site.name, site.module_class, str(site.shape), str(site.numel), site.dtype, batch)
    (console if console.is_terminal else Console(width=TABLE_WIDTH)).print(table)


@zoo_app.command("train")
def zoo_train(
    model: Optional[str] = typer.Option(None, help="One built-in model (default: all)."),
    out_dir: Optional[Path] = typer.Option(None, help="Where to write weights (default: inside the package)."),
) -> None:
    """Retrain built-in models deterministically and write their safetensors weights and cards."""
    from faultsift.zoo.models import ZOO_MODELS
    from faultsift.zoo.train import train_zoo_model

    for name in [model] if model else ZOO_MODELS.names():
        ZOO_MODELS.get(name)
        card = train_zoo_model(name, out_dir)
        console.print(f"{name}: test accuracy {card['test_accuracy']:.4f}, hard pool {card['hard_pool_accuracy']:.4f}")


@zoo_app.command("text-data")
def zoo_text_data(
    out: Path = typer.Option(Path("tokens.pt"), help="Tensors file to write (inputs: token ids, labels)."),
    n: int = typer.Option(512, "-n", help="Sequences."),
    seed: int = typer.Option(1, help="Seed of the synthetic task."),
) -> None:
    """Write a pool of the built-in text task for `py:faultsift.zoo.text:text_classifier`."""
    from faultsift.zoo.text import write_keyword_pool

    console.print(f"{n} sequences -> {write_keyword_pool(out, n, seed)}")


@zoo_app.command("list")
def zoo_list() -> None:
    """Built-in models with their recorded accuracy."""
    from faultsift.zoo.models import ZOO_MODELS, model_card

    table = Table("model", "site classes", "parameters", "test accuracy", "hard-pool accuracy")
    for name in ZOO_MODELS.names():
        card = model_card(name)
        table.add_row(name, ", ".join(ZOO_MODELS.get(name).site_classes), str(card.get("parameters", "?")),
                      str(card.get("test_accuracy", "?")), str(card.get("hard_pool_accuracy", "?")))
    console.print(table)


def main() -> None:
    """Console entry point: library errors become one line on stderr and exit code 2."""
    try:
        app()
    except FaultsiftError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)
