"""The HTML report of a run, and the listing of runs from the ``runs`` table.

A report is one static page, ``<root>/runs/<run_id>/report/index.html``, with every picture
it shows copied beside it and referred to by a relative name: the folder can be opened from
disk, copied or archived, and needs no server and no network. The page holds no script.

The report of a training run follows the run's lineage in the ``runs`` table:

* the dataset it was trained on (``images``), the preprocess runs that made it and the files
  they rejected (``rejects``, counted by reason);
* the training itself: loss curve, per-epoch figures (``training_metrics``), the sample grid
  of every epoch and the GIF;
* every generate run drawn from its generator, with the label run of each: the labelled
  contact sheet, the label distribution beside the real test split's, and the quality scores
  beside the real data's own (``labels``, ``quality``);
* the lineage: runs, parameters, code versions and the classifier handle.

The report of a generate (or label) run shows that run and the training run it came from;
the report of a preprocess run shows its dataset. Parts that do not exist yet (a run that
was never labelled, a training run that failed before its first epoch) are said to be
missing instead of being left out silently.

Building a report reads the tables with Spark (``gather_facts``) and files through the
storage layer; rendering (``render_page``) is plain Python, so it can be tested alone.
"""

import dataclasses
import datetime as dt
import html
import io
import json
import logging
import math
import re
from urllib.parse import quote

from gan_lib import storage, tables, visuals
from gan_lib.config import ConfigError, Settings, redact_url, validate_name, with_overrides
from gan_lib.runs import code_version, run_dir

logger = logging.getLogger(__name__)

REPORT_FOLDER = "report"
PAGE_NAME = "index.html"
TABLE_READER_MASTER = "local[2]"
MAX_SAMPLE_EPOCHS = 12
MAX_GENERATE_RUNS = 6
SAMPLE_FILE = re.compile(r"^epoch-(\d+)\.png$")
STAGE_ORDER = ("ingest", "preprocess", "train", "train-classifier", "generate", "label",
               "report")


def table_reader_settings(settings: Settings) -> Settings:
    """Settings for a job that only reads a few small tables.

    Without ``--master`` the stages start ``local-cluster`` (separate executor JVMs, as on
    YARN); reading the ``runs`` table or a report's aggregates does not need them, so such a
    job runs Spark inside the driver (``local[2]``) instead. A ``--master`` given by the user
    is kept as it is.
    """
    return settings if settings.master else with_overrides(settings,
                                                           master=TABLE_READER_MASTER)


# ---------------------------------------------------------------------------------------
# Run rows
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class RunRow:
    """One row of the ``runs`` table with its JSON columns decoded."""

    stage: str
    run_id: str
    status: str
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_s: float | None
    counts: dict
    parameters: dict
    outputs: dict
    lineage: dict
    code_version: str
    message: str

    @classmethod
    def from_table(cls, row: dict) -> "RunRow":
        return cls(stage=row.get("stage") or "", run_id=row.get("run_id") or "",
                   status=row.get("status") or "", started_at=row.get("started_at"),
                   finished_at=row.get("finished_at"), duration_s=row.get("duration_s"),
                   counts=_json_object(row.get("counts")),
                   parameters=_json_object(row.get("parameters")),
                   outputs=_json_object(row.get("outputs")),
                   lineage=_json_object(row.get("lineage")),
                   code_version=row.get("code_version") or "", message=row.get("message") or "")


def _json_object(text) -> dict:
    """A JSON column as a dict; empty, malformed or non-object values become {}."""
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _table_exists(spark, settings: Settings, table: str) -> bool:
    database = tables.qualified(settings, table).split(".", 1)[0]
    return (spark.catalog.databaseExists(database)
            and spark.catalog.tableExists(f"{database}.{table}"))


def read_runs(spark, settings: Settings, stage: str | None = None) -> list[RunRow]:
    """Every row of the ``runs`` table (of one stage when given), newest first.

    A root where no stage has recorded a run yet has no ``runs`` table: that is an empty list.
    """
    if not _table_exists(spark, settings, "runs"):
        return []
    frame = spark.table(tables.qualified(settings, "runs"))
    if stage:
        frame = frame.where(frame["stage"] == stage)
    rows = [RunRow.from_table(row.asDict()) for row in frame.collect()]
    return sorted(rows, key=_newest_first_key)


def _newest_first_key(row: RunRow):
    started = row.started_at or dt.datetime.min
    return (-started.timestamp() if row.started_at else math.inf, row.stage, row.run_id)


# ---------------------------------------------------------------------------------------
# The run listing (hdp-gan runs)
# ---------------------------------------------------------------------------------------

LISTING_COLUMNS = ("stage", "run id", "status", "started (UTC)", "duration", "key figures")


def format_duration(seconds) -> str:
    """``46.6s``, ``1m 05s`` or ``2h 03m``; an unknown duration is ``-``."""
    if seconds is None or not math.isfinite(float(seconds)):
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_time(moment: dt.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def key_figures(row: RunRow) -> str:
    """The run's counts on one line (``images 500, partitions 4``); nested counts such as
    ``per_split`` become ``per_split train 2000 test 200``. A run that did not succeed shows
    its message after the counts."""
    parts = []
    for name, value in row.counts.items():
        if isinstance(value, dict):
            inner = " ".join(f"{key} {_count_text(item)}" for key, item in value.items())
            parts.append(f"{name} {inner}".strip())
        else:
            parts.append(f"{name} {_count_text(value)}")
    text = ", ".join(parts)
    if row.status != "succeeded" and row.message:
        text = f"{text}; {row.message}" if text else row.message
    return text


def _count_text(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def listing_cells(row: RunRow) -> tuple[str, ...]:
    return (row.stage, row.run_id, row.status, format_time(row.started_at),
            format_duration(row.duration_s), key_figures(row))


def runs_table(rows: list[RunRow]) -> str:
    """The runs as an aligned text table with a header line; the last column is not padded."""
    lines = [LISTING_COLUMNS] + [listing_cells(row) for row in rows]
    widths = [max(len(line[index]) for line in lines) for index in range(len(LISTING_COLUMNS))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths))
                     + "  " + line[-1] for line in lines)


def run_json(row: RunRow) -> dict:
    """The facts of one run for ``hdp-gan runs --json``: one JSON object per line."""
    return {"stage": row.stage, "run_id": row.run_id, "status": row.status,
            "started_at": row.started_at.isoformat() if row.started_at else None,
            "finished_at": row.finished_at.isoformat() if row.finished_at else None,
            "duration_s": row.duration_s, "counts": row.counts, "lineage": row.lineage,
            "code_version": row.code_version, "message": row.message}


# ---------------------------------------------------------------------------------------
# Lineage: which runs a report covers
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class RelatedRuns:
    """The runs a report covers, found through the lineage recorded in the ``runs`` table."""

    run_id: str
    stage: str
    dataset: str | None = None
    train: RunRow | None = None
    preprocess: list = dataclasses.field(default_factory=list)
    generates: list = dataclasses.field(default_factory=list)
    older_generates: int = 0
    labels: dict = dataclasses.field(default_factory=dict)
    classifiers: list = dataclasses.field(default_factory=list)
    real_label: RunRow | None = None
    expects_training: bool = False

    def all_runs(self) -> list[RunRow]:
        """Every run involved, in pipeline order, each once."""
        runs = list(self.preprocess)
        runs += [self.train] if self.train else []
        runs += list(self.classifiers)
        for generate in self.generates:
            runs.append(generate)
            if generate.run_id in self.labels:
                runs.append(self.labels[generate.run_id])
        runs += [self.real_label] if self.real_label else []
        return runs


def related_runs(rows: list[RunRow], run_id: str) -> RelatedRuns:
    """Follow the lineage from ``run_id`` to the runs its report shows.

    A train run is the centre of a report: its generate runs are those whose lineage names it
    as ``generator_run``, and the label run of a generate run has the same run id (stage
    ``label``). A generate or label run leads to its train run and is the only generate run
    shown. A preprocess or train-classifier run shows its dataset. ``rows`` are newest first.
    """
    own = [row for row in rows if row.run_id == run_id and row.stage != "report"]
    if not own:
        raise ConfigError(f"run {run_id!r} is not in the runs table; `hdp-gan runs` lists the "
                          "runs of this root (check --root and --database)")
    by_stage = {row.stage: row for row in own}
    related = RelatedRuns(run_id=run_id, stage=_main_stage(by_stage),
                          expects_training="train" in by_stage or "generate" in by_stage)

    chosen_generates = None
    if "train" in by_stage:
        related.train = by_stage["train"]
    elif "generate" in by_stage or "label" in by_stage:
        generate = by_stage.get("generate")
        train_id = generate.lineage.get("generator_run") if generate else None
        related.train = _find(rows, "train", train_id)
        chosen_generates = [generate] if generate else []
        if not generate:
            related.labels[run_id] = by_stage["label"]
    if related.train:
        related.dataset = related.train.lineage.get("dataset") \
            or related.train.parameters.get("dataset")
    else:
        source = next((by_stage[stage] for stage in ("preprocess", "train-classifier", "label")
                       if stage in by_stage), None)
        related.dataset = source and _dataset_of(source)

    if chosen_generates is None and related.train:
        chosen_generates = [row for row in rows if row.stage == "generate"
                            and row.lineage.get("generator_run") == related.train.run_id]
    chosen_generates = chosen_generates or []
    related.generates = chosen_generates[:MAX_GENERATE_RUNS]
    related.older_generates = len(chosen_generates) - len(related.generates)
    for generate in related.generates:
        label = _find(rows, "label", generate.run_id)
        if label:
            related.labels[generate.run_id] = label

    related.preprocess = _preprocess_runs(rows, related, by_stage)
    related.classifiers = _classifier_runs(rows, related)
    if related.dataset:
        source = f"dataset {related.dataset} split test"
        related.real_label = next((row for row in rows if row.stage == "label"
                                   and row.status == "succeeded"
                                   and row.lineage.get("source") == source), None)
    return related


def _dataset_of(row: RunRow) -> str | None:
    """The dataset a run worked on. A label run names its source: a split of a dataset, a
    generate run or a folder; its --dataset option is a default that only the first uses."""
    if row.stage == "label":
        source = (row.lineage.get("source") or "").split()
        return source[1] if len(source) == 4 and source[0] == "dataset" else None
    return (row.parameters.get("dataset") or row.lineage.get("dataset")
            or row.outputs.get("dataset"))


def _main_stage(by_stage: dict) -> str:
    for stage in ("train", "generate", "label", "preprocess", "train-classifier"):
        if stage in by_stage:
            return stage
    return next(iter(by_stage))


def _find(rows: list[RunRow], stage: str, run_id: str | None) -> RunRow | None:
    return next((row for row in rows if row.stage == stage and row.run_id == run_id), None)


def _preprocess_runs(rows, related: RelatedRuns, by_stage: dict) -> list[RunRow]:
    """The preprocess runs named in the train run's lineage; without that lineage, the newest
    successful preprocess run of the dataset."""
    if "preprocess" in by_stage:
        return [by_stage["preprocess"]]
    named = related.train.lineage.get("preprocess_runs") if related.train else None
    if named:
        return [row for row in rows if row.stage == "preprocess" and row.run_id in named]
    latest = next((row for row in rows if row.stage == "preprocess"
                   and row.status == "succeeded"
                   and row.parameters.get("dataset") == related.dataset), None)
    return [latest] if latest else []


def _classifier_runs(rows, related: RelatedRuns) -> list[RunRow]:
    """The newest train-classifier run that exported each classifier handle the labels used."""
    handles = {label.lineage.get("classifier") for label in related.labels.values()}
    found = []
    for handle in sorted(h for h in handles if h):
        run = next((row for row in rows if row.stage == "train-classifier"
                    and row.outputs.get("handle") == handle), None)
        if run:
            found.append(run)
    return found


# ---------------------------------------------------------------------------------------
# Facts from the tables
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class Facts:
    """What the report shows from the tables (small aggregates, collected on the driver)."""

    splits: list = dataclasses.field(default_factory=list)
    rejects: list = dataclasses.field(default_factory=list)
    epochs: list = dataclasses.field(default_factory=list)
    quality: dict = dataclasses.field(default_factory=dict)
    label_counts: dict = dataclasses.field(default_factory=dict)
    unreadable: dict = dataclasses.field(default_factory=dict)
    classifier_versions: dict = dataclasses.field(default_factory=dict)
    real_label_counts: dict = dataclasses.field(default_factory=dict)
    real_mean_confidence: float | None = None


def gather_facts(spark, settings: Settings, related: RelatedRuns) -> Facts:
    """Read the aggregates the report needs from the project's tables."""
    facts = Facts()
    dataset = related.dataset

    def query(table: str, statement: str) -> list[dict]:
        if not _table_exists(spark, settings, table):
            return []
        sql = statement.format(table=tables.qualified(settings, table))
        return [row.asDict(recursive=True) for row in spark.sql(sql).collect()]

    if dataset:
        literal = tables.sql_string(dataset)
        facts.splits = query("images", (
            "SELECT split, count(*) AS images, count(DISTINCT label) AS labels, "
            "max(height) AS height, max(width) AS width, max(channels) AS channels "
            f"FROM {{table}} WHERE dataset = {literal} GROUP BY split ORDER BY split"))
        facts.rejects = query("rejects", (
            "SELECT reason, count(*) AS files, min(path) AS example FROM {table} "
            f"WHERE dataset = {literal} GROUP BY reason ORDER BY files DESC, reason"))
        facts.real_label_counts = {row["label"]: row["images"] for row in query("images", (
            "SELECT label, count(*) AS images FROM {table} "
            f"WHERE dataset = {literal} AND split = 'test' GROUP BY label"))}
    if related.train:
        facts.epochs = query("training_metrics", (
            "SELECT * FROM {table} "
            f"WHERE run_id = {tables.sql_string(related.train.run_id)} ORDER BY epoch"))

    generate_ids = [generate.run_id for generate in related.generates]
    if generate_ids or related.labels:
        label_ids = sorted(set(generate_ids) | set(related.labels))
        _gather_labels(facts, query, label_ids)
        facts.quality = {row["run_id"]: row for row in query("quality", (
            f"SELECT * FROM {{table}} WHERE run_id IN ({_sql_list(label_ids)})"))}
    if related.real_label:
        row = query("labels", (
            "SELECT avg(confidence) AS confidence FROM {table} "
            f"WHERE run_id = {tables.sql_string(related.real_label.run_id)} "
            "AND status = 'ok'"))
        facts.real_mean_confidence = row[0]["confidence"] if row else None
    return facts


def _gather_labels(facts: Facts, query, label_ids: list[str]) -> None:
    rows = query("labels", (
        "SELECT run_id, status, label, count(*) AS images, avg(confidence) AS confidence, "
        "min(classifier_handle) AS handle, min(classifier_version) AS version "
        f"FROM {{table}} WHERE run_id IN ({_sql_list(label_ids)}) "
        "GROUP BY run_id, status, label"))
    for row in sorted(rows, key=lambda row: (-row["images"], str(row["label"]))):
        run_id = row["run_id"]
        if row["status"] == "ok":
            facts.label_counts.setdefault(run_id, []).append(
                (row["label"], row["images"], row["confidence"]))
            facts.classifier_versions.setdefault(run_id, set()).add(
                (row["handle"], row["version"]))
        else:
            unreadable = facts.unreadable.setdefault(run_id, {})
            unreadable[row["status"]] = unreadable.get(row["status"], 0) + row["images"]


def _sql_list(values: list[str]) -> str:
    return ", ".join(tables.sql_string(validate_name(value, "run id")) for value in values)


# ---------------------------------------------------------------------------------------
# The report folder: copied files and drawn pictures
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class Picture:
    """A picture in the report folder: its file name there and its size in pixels."""

    name: str
    width: int
    height: int
    caption: str = ""


class ReportFolder:
    """Writes the report's files through the storage layer and remembers what it wrote, so
    that files left over from an earlier report can be removed afterwards."""

    def __init__(self, settings: Settings, uri: str):
        self.uri = uri
        self.store = storage.open_storage(uri, settings)
        self.settings = settings
        self.written: list[str] = []

    def copy(self, source_uri: str, name: str, caption: str = "") -> Picture | None:
        """Copy a picture into the folder; a missing source, or one that is no whole picture,
        gives None (and a log line): its section says so."""
        store = storage.open_storage(source_uri, self.settings)
        if not store.exists(source_uri):
            logger.info("report: %s is missing; its section says so", redact_url(source_uri))
            return None
        data = store.read_bytes(source_uri)
        try:
            width, height = _picture_size(data)
        except (OSError, SyntaxError, ValueError) as error:  # what Pillow raises on damage
            logger.warning("report: %s cannot be read as a picture (%s); its section says it "
                           "is missing", redact_url(source_uri), error)
            return None
        return self._put(Picture(name, width, height, caption), data)

    def draw(self, image, name: str, caption: str = "") -> Picture:
        return self.write(name, visuals.to_png_bytes(image), caption)

    def write(self, name: str, data: bytes, caption: str = "") -> Picture:
        return self._put(Picture(name, *_picture_size(data), caption), data)

    def _put(self, picture: Picture, data: bytes) -> Picture:
        validate_name(picture.name, "report file name")
        self.store.write_bytes(storage.join(self.uri, picture.name), data)
        self.written.append(picture.name)
        return picture

    def write_page(self, page: str) -> str:
        uri = storage.join(self.uri, PAGE_NAME)
        self.store.write_text(uri, page)
        self.written.append(PAGE_NAME)
        return uri

    def remove_leftovers(self) -> None:
        for name in self.store.list(self.uri):
            if name not in self.written and not name.startswith("."):
                self.store.delete(storage.join(self.uri, name))


def _picture_size(data: bytes) -> tuple[int, int]:
    """Width and height of a picture whose every frame decodes whole."""
    from PIL import Image, ImageSequence

    with Image.open(io.BytesIO(data)) as image:
        for frame in ImageSequence.Iterator(image):
            frame.load()  # a truncated file fails here, not at open
        return image.size


def report_uri(settings: Settings, run_id: str) -> str:
    return storage.join(run_dir(settings, run_id), REPORT_FOLDER)


def _sample_files(store, samples_uri: str) -> list[tuple[int, str]]:
    """(epoch, file name) of the sample grids in a training run, in epoch order."""
    if not store.exists(samples_uri):
        return []
    found = []
    for name in store.list(samples_uri):
        match = SAMPLE_FILE.match(name)
        if match:
            found.append((int(match.group(1)), name))
    return sorted(found)


def _spread(items: list, most: int) -> list:
    """At most ``most`` items, evenly spread, always keeping the first and the last."""
    if len(items) <= most:
        return list(items)
    last = len(items) - 1
    indices = sorted({round(index * last / (most - 1)) for index in range(most)})
    return [items[index] for index in indices]


@dataclasses.dataclass
class Pictures:
    """Every picture the page shows, by section."""

    loss_curve: Picture | None = None
    epoch_chart: Picture | None = None
    samples: list = dataclasses.field(default_factory=list)
    sample_epochs: int = 0
    gif: Picture | None = None
    contact_sheets: dict = dataclasses.field(default_factory=dict)
    label_charts: dict = dataclasses.field(default_factory=dict)
    real_label_chart: Picture | None = None


def make_pictures(folder: ReportFolder, settings: Settings, related: RelatedRuns,
                  facts: Facts) -> Pictures:
    """Copy the runs' own pictures into the report folder and draw the report's charts."""
    pictures = Pictures()
    if related.train:
        train_dir = run_dir(settings, related.train.run_id)
        pictures.loss_curve = folder.copy(storage.join(train_dir, "loss_curve.png"),
                                          "loss_curve.png", "Loss per logged training step")
        if facts.epochs:
            history = [{key: row.get(key) for key in ("step", "d_loss", "g_loss", "d_real",
                                                      "d_fake")} for row in facts.epochs]
            pictures.epoch_chart = folder.draw(
                visuals.loss_curve(history), "epoch_metrics.png",
                "Mean losses, D(x) and D(G(z)) of each epoch (training_metrics table)")
        samples_uri = storage.join(train_dir, "samples")
        samples_store = storage.open_storage(samples_uri, settings)
        sample_files = _sample_files(samples_store, samples_uri)
        pictures.sample_epochs = len(sample_files)
        for epoch, name in _spread(sample_files, MAX_SAMPLE_EPOCHS):
            picture = folder.copy(storage.join(samples_uri, name), f"samples-{name}",
                                  f"epoch {epoch}")
            if picture:
                pictures.samples.append(picture)
        pictures.gif = folder.copy(storage.join(samples_uri, "progress.gif"), "progress.gif",
                                   "The same noise through every epoch")

    shares_order = []
    for generate in related.generates:
        gen_id = generate.run_id
        pictures.contact_sheets[gen_id] = folder.copy(
            storage.join(run_dir(settings, gen_id), "contact_sheet.png"),
            f"{gen_id}-contact_sheet.png", "Generated images with their label and confidence")
        counts = facts.label_counts.get(gen_id)
        if counts:
            shares = _shares({label: images for label, images, _ in counts})
            shares_order = shares_order or list(shares)
            pictures.label_charts[gen_id] = folder.draw(
                visuals.bar_chart(shares, f"labels of {gen_id} (share of images)"),
                f"{gen_id}-labels.png", "Share of the generated images per label")
    if facts.real_label_counts:
        real = _shares(facts.real_label_counts)
        ordered = {label: real.get(label, 0.0) for label in shares_order}
        ordered.update({label: share for label, share in real.items() if label not in ordered})
        pictures.real_label_chart = folder.draw(
            visuals.bar_chart(ordered, f"labels of the real {related.dataset} test split"),
            "real-labels.png", "Share of the real test images per label")
    return pictures


def _shares(counts: dict) -> dict:
    """Counts as shares of their total, largest first."""
    total = sum(counts.values())
    ordered = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    return {str(label): (count / total if total else 0.0) for label, count in ordered}


# ---------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       background: #fafafa; margin: 0; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05em; margin: 22px 0 8px; }
.meta, .note, figcaption { color: #666; font-size: 0.9em; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; margin: 14px 0; }
.figure { border: 1px solid #e3e3e3; border-radius: 6px; padding: 10px 14px; min-width: 130px; }
.figure .value { font-size: 1.35em; font-weight: 600; }
.figure .name { color: #666; font-size: 0.85em; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 0.92em; }
th, td { text-align: left; padding: 4px 12px 4px 0; border-bottom: 1px solid #eee;
         vertical-align: top; }
th { color: #555; font-weight: 600; white-space: nowrap; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
td.number, td.whole { white-space: nowrap; }
.row { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
.row figure { margin-right: 0; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.9em;
       word-break: break-all; }
figure { margin: 10px 0; display: inline-block; vertical-align: top; margin-right: 16px; }
img { border: 1px solid #eee; max-width: 100%; height: auto; }
img.pixels { image-rendering: pixelated; }
.missing { color: #a33; }
"""


def _e(value) -> str:
    """A value as escaped HTML text; None is a dash."""
    return "&mdash;" if value is None else html.escape(str(value), quote=True)


def format_number(value, digits: int = 3) -> str:
    """How the report writes a measurement: ``0.044``, ``25.312``, ``0.000119``, ``1,234``.

    Whole numbers get thousands separators; other values get ``digits`` decimals, or
    ``digits`` significant figures when smaller than 0.01. None and NaN are a dash.
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    value = float(value)
    if not math.isfinite(value):
        return "-" if math.isnan(value) else str(value)
    if value != 0 and abs(value) < 0.01:
        return f"{value:.{digits}g}"
    return f"{value:,.{digits}f}"


def _img(picture: Picture, zoom: int = 1, pixels: bool = False, most: int = 1000) -> str:
    """An <img> element for a picture in the report folder, shown ``zoom`` times its size
    but at most ``most`` pixels wide."""
    width, height = picture.width * zoom, picture.height * zoom
    if width > most:
        width, height = most, round(height * most / width)
    css = ' class="pixels"' if pixels else ""
    return (f'<img src="{_e(quote(picture.name))}" alt="{_e(picture.caption or picture.name)}"'
            f' width="{width}" height="{height}"{css}>')


def _figure(picture: Picture | None, missing: str, zoom: int = 1, pixels: bool = False,
            most: int = 1000) -> str:
    if picture is None:
        return f'<p class="missing">{_e(missing)}</p>'
    return (f"<figure>{_img(picture, zoom, pixels, most)}"
            f"<figcaption>{_e(picture.caption)}</figcaption></figure>")


def _side_by_side(figures: list[str]) -> str:
    return '<div class="row">' + "".join(figures) + "</div>"


def _zoom_for(picture: Picture, target_width: int) -> int:
    """A whole zoom factor that brings a small picture near ``target_width`` pixels."""
    return max(1, min(6, target_width // max(picture.width, 1)))


def _table(headers: list[str], rows: list[list], numeric: set[int] = frozenset(),
           whole: set[int] = frozenset()) -> str:
    """An HTML table; every cell is escaped. Columns in ``numeric`` are right-aligned, and
    those in ``whole`` (run ids, times) are never broken across lines."""
    def cell(tag, index, value):
        names = (["number"] if index in numeric else []) + (["whole"] if index in whole else [])
        css = f' class="{" ".join(names)}"' if names else ""
        return f"<{tag}{css}>{_e(value)}</{tag}>"
    head = "".join(cell("th", index, name) for index, name in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", index, value) for index, value in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figures(items: list[tuple[str, str]]) -> str:
    """The key figures as a row of boxes: (name, value) pairs."""
    boxes = "".join(f'<div class="figure"><div class="value">{_e(value)}</div>'
                    f'<div class="name">{_e(name)}</div></div>' for name, value in items)
    return f'<div class="figures">{boxes}</div>'


def key_numbers(related: RelatedRuns, facts: Facts) -> list[tuple[str, str]]:
    """The figures at the top of the report, as (name, value) texts."""
    items = []
    if facts.splits:
        items.append(("images in the dataset",
                      format_number(sum(int(split["images"]) for split in facts.splits))))
    if related.dataset:
        items.append(("files rejected",
                      format_number(sum(int(row["files"]) for row in facts.rejects))))
    if related.train:
        items.append(("epochs trained", format_number(int(related.train.counts.get(
            "epochs", len(facts.epochs))))))
    if facts.epochs:
        last = facts.epochs[-1]
        items.append(("final D loss", format_number(last.get("d_loss"))))
        items.append(("final G loss", format_number(last.get("g_loss"))))
    latest = next((generate for generate in related.generates
                   if generate.run_id in facts.quality), None)
    if latest:
        quality = facts.quality[latest.run_id]
        items.append(("generated images scored", format_number(quality.get("fake_count"))))
        items.append(("Frechet distance", format_number(quality.get("frechet_distance"))))
        items.append(("classifier score (real)",
                      f"{format_number(quality.get('classifier_score'))} "
                      f"({format_number(quality.get('real_classifier_score'))})"))
    return items


def render_page(related: RelatedRuns, facts: Facts, pictures: Pictures,
                generated_at: dt.datetime, root: str, version: str) -> str:
    """The whole report page as HTML text (every value escaped, no script, local images)."""
    title = f"hdp-gan report: {related.run_id}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{_e(related.stage)} run, report written '
        f"{_e(generated_at.strftime('%Y-%m-%d %H:%M:%S'))} UTC by hdp-gan {_e(version)} "
        f"from root <code>{_e(redact_url(root))}</code></p>",
        _figures(key_numbers(related, facts)),
        _dataset_section(related, facts),
    ]
    if related.expects_training:
        parts.append(_training_section(related, facts, pictures))
    if related.train or related.generates:
        parts.append(_generated_section(related, facts, pictures))
    parts.append(_lineage_section(related, facts))
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _dataset_section(related: RelatedRuns, facts: Facts) -> str:
    parts = [f"<h2>Dataset {_e(related.dataset)}</h2>"]
    if not related.dataset:
        return parts[0] + '<p class="missing">No dataset is recorded for this run.</p>'
    if facts.splits:
        parts.append(_table(
            ["split", "images", "labels", "image size"],
            [[split["split"], format_number(int(split["images"])), split["labels"],
              f"{split['height']} x {split['width']} x {split['channels']}"]
             for split in facts.splits], numeric={1, 2}))
    else:
        parts.append('<p class="missing">The images table holds no rows for this dataset.</p>')
    for run in related.preprocess:
        counts = run.counts
        parts.append(
            f'<p class="note">Preprocess run <code>{_e(run.run_id)}</code> ({_e(run.status)}): '
            f"{_e(format_number(counts.get('files_seen')))} files seen, "
            f"{_e(format_number(counts.get('accepted')))} accepted, "
            f"{_e(format_number(counts.get('rejected')))} rejected, "
            f"{_e(format_number(counts.get('duplicates')))} duplicates.</p>")
    parts.append("<h3>Rejected files</h3>")
    if facts.rejects:
        parts.append(_table(["reason", "files", "example"],
                            [[row["reason"], format_number(int(row["files"])), row["example"]]
                             for row in facts.rejects], numeric={1}))
    else:
        parts.append('<p class="note">No file was rejected.</p>')
    return "\n".join(parts)


def _training_section(related: RelatedRuns, facts: Facts, pictures: Pictures) -> str:
    train = related.train
    if train is None:
        return ('<h2>Training</h2><p class="missing">The training run this run came from is '
                "not in the runs table.</p>")
    parts = [f"<h2>Training run <code>{_e(train.run_id)}</code></h2>",
             f'<p class="note">Status {_e(train.status)}, started '
             f"{_e(format_time(train.started_at))} UTC, took "
             f"{_e(format_duration(train.duration_s))}; "
             f"{_e(key_figures(train))}.</p>",
             _side_by_side([
                 _figure(pictures.loss_curve, "loss_curve.png is missing from the run folder.",
                         most=520),
                 _figure(pictures.epoch_chart, "The training_metrics table has no epochs for "
                                               "this run.", most=520)])]
    if facts.epochs:
        parts.append(_table(
            ["epoch", "step", "D loss", "G loss", "D(x)", "D(G(z))", "images/s",
             "learning rate", "duration"],
            [[row.get("epoch"), format_number(row.get("step")), format_number(row.get("d_loss")),
              format_number(row.get("g_loss")), format_number(row.get("d_real")),
              format_number(row.get("d_fake")), format_number(row.get("images_per_second"), 1),
              f"{row.get('learning_rate'):.3g}" if row.get("learning_rate") is not None
              else "-", format_duration(row.get("duration_s"))] for row in facts.epochs],
            numeric=set(range(8))))
    parts.append("<h3>Samples over the epochs</h3>")
    if pictures.samples:
        shown = len(pictures.samples)
        if shown < pictures.sample_epochs:
            parts.append(f'<p class="note">{shown} of {pictures.sample_epochs} epochs, '
                         "evenly spread.</p>")
        zoom = _zoom_for(pictures.samples[0], 320)
        parts.append(_side_by_side(
            [_figure(picture, "", zoom, pixels=True) for picture in pictures.samples]))
    else:
        parts.append('<p class="missing">No sample grid was written (samples/epoch-NNNN.png).'
                     "</p>")
    if pictures.gif:
        parts.append(_figure(pictures.gif, "", _zoom_for(pictures.gif, 320), pixels=True))
    else:
        parts.append('<p class="missing">samples/progress.gif is missing.</p>')
    return "\n".join(parts)


def _generated_section(related: RelatedRuns, facts: Facts, pictures: Pictures) -> str:
    parts = ["<h2>Generated images</h2>"]
    if not related.generates:
        parts.append('<p class="missing">No generate run has used this generator yet '
                     "(hdp-gan generate --generator-run RUN_ID).</p>")
        return "\n".join(parts)
    if related.older_generates:
        parts.append(f'<p class="note">The newest {len(related.generates)} generate runs; '
                     f"{related.older_generates} older ones are not shown.</p>")
    for generate in related.generates:
        parts.append(_generate_part(related, facts, pictures, generate))
    return "\n".join(parts)


def _generate_part(related: RelatedRuns, facts: Facts, pictures: Pictures, generate) -> str:
    gen_id = generate.run_id
    label = related.labels.get(gen_id)
    parts = [f"<h3>Generate run <code>{_e(gen_id)}</code></h3>",
             f'<p class="note">{_e(format_number(generate.counts.get("images")))} images, '
             f"seed {_e(generate.parameters.get('seed'))}, status {_e(generate.status)}, "
             f"{_e(format_time(generate.started_at))} UTC.</p>"]
    if label is None:
        parts.append('<p class="missing">Not labelled yet (hdp-gan label --generated '
                     f"{_e(gen_id)}).</p>")
        return "\n".join(parts)
    parts.append(_figure(pictures.contact_sheets.get(gen_id),
                         "contact_sheet.png is missing from the generate run's folder."))
    quality = facts.quality.get(gen_id)
    if quality:
        parts.append(_quality_table(quality, facts, related))
    else:
        parts.append('<p class="missing">No quality row for this run (the classifier had no '
                     "feature signature, or labelling failed).</p>")
    charts = [pictures.label_charts.get(gen_id), pictures.real_label_chart]
    parts.append(_side_by_side([_figure(chart, "", most=520) for chart in charts if chart]))
    counts = facts.label_counts.get(gen_id, [])
    total = sum(images for _, images, _ in counts)
    if counts:
        parts.append(_table(["label", "images", "share", "mean confidence"],
                            [[name, format_number(int(images)),
                              f"{images / total:.1%}", format_number(confidence)]
                             for name, images, confidence in counts], numeric={1, 2, 3}))
    unreadable = facts.unreadable.get(gen_id)
    if unreadable:
        parts.append('<p class="missing">Images that could not be labelled: ' + ", ".join(
            f"{_e(status)} {_e(count)}" for status, count in sorted(unreadable.items()))
            + "</p>")
    return "\n".join(parts)


def _quality_table(quality: dict, facts: Facts, related: RelatedRuns) -> str:
    """The generated images' scores beside the real test split's own."""
    real_shares = _shares(facts.real_label_counts) if facts.real_label_counts else {}
    stderr = quality.get("kernel_distance_stderr")
    kernel = format_number(quality.get("kernel_distance"))
    if stderr is not None:
        kernel += f" \u00b1 {format_number(stderr)}"
    rows = [
        ["Frechet distance", format_number(quality.get("frechet_distance")), "0 by definition",
         "lower is closer to the real images"],
        ["kernel distance", kernel, "0 by definition", "lower is closer to the real images"],
        ["classifier score", format_number(quality.get("classifier_score")),
         format_number(quality.get("real_classifier_score")),
         "higher is more varied and more clearly classified; samples can match or pass the "
         "real split's score"],
        ["mean confidence", format_number(quality.get("mean_confidence")),
         format_number(facts.real_mean_confidence) if facts.real_mean_confidence is not None
         else "not labelled", "the classifier's confidence in its label"],
        ["largest class share", format_number(quality.get("largest_class_share")),
         format_number(max(real_shares.values())) if real_shares else "-",
         "one class taking most images hints at mode collapse"],
        ["mode collapse", format_number(quality.get("mode_collapse")), "-", ""],
        ["images scored", format_number(quality.get("fake_count")),
         format_number(quality.get("real_count")), ""],
    ]
    return _table(["score", "generated", f"real {related.dataset or ''} test split".strip(),
                   "reading"], rows, numeric={1, 2})


def _lineage_section(related: RelatedRuns, facts: Facts) -> str:
    parts = ["<h2>Lineage</h2>",
             _table(["stage", "run id", "status", "started (UTC)", "duration", "code version",
                     "key figures"],
                    [[run.stage, run.run_id, run.status, format_time(run.started_at),
                      format_duration(run.duration_s), run.code_version, key_figures(run)]
                     for run in related.all_runs()], whole={0, 1, 3, 4, 5})]
    handles = sorted({pair for versions in facts.classifier_versions.values()
                      for pair in versions}, key=str)
    if handles:
        parts.append("<h3>Classifier</h3>")
        parts.append(_table(["handle", "version"],
                            [[redact_url(handle or ""), version] for handle, version in handles]))
        for run in related.classifiers:
            accuracy = run.counts.get("test_accuracy")
            parts.append(f'<p class="note">Trained by <code>{_e(run.run_id)}</code>, test '
                         f"accuracy {_e(format_number(accuracy))}.</p>")
    if related.train:
        parts.append("<h3>Training parameters</h3>")
        parts.append(_table(["parameter", "value"],
                            [[name, _parameter_text(value)] for name, value
                             in sorted(related.train.parameters.items())]))
    return "\n".join(parts)


def _parameter_text(value) -> str:
    if isinstance(value, str):
        return redact_url(value)
    return json.dumps(value, sort_keys=True, default=str)


# ---------------------------------------------------------------------------------------
# Building a report
# ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class ReportResult:
    uri: str
    related: RelatedRuns
    pictures: int


def write_report(spark, settings: Settings, related: RelatedRuns) -> ReportResult:
    """Write the report of ``related.run_id`` into its run folder and return where it is.

    ``related`` comes from ``related_runs(read_runs(spark, settings), run_id)``. The pictures
    are written first and the page last, each file atomically; files of an earlier report
    that this one no longer shows are removed at the end.
    """
    run_id = validate_name(related.run_id, "RUN_ID")
    logger.info("report %s: %d related runs, dataset %s, %d generate runs", run_id,
                len(related.all_runs()), related.dataset, len(related.generates))
    facts = gather_facts(spark, settings, related)

    folder = ReportFolder(settings, report_uri(settings, run_id))
    pictures = make_pictures(folder, settings, related, facts)
    page = render_page(related, facts, pictures,
                       dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), settings.root,
                       code_version())
    uri = folder.write_page(page)
    folder.remove_leftovers()
    logger.info("report %s: %d pictures, written to %s", run_id, len(folder.written) - 1,
                redact_url(uri))
    return ReportResult(uri=uri, related=related, pictures=len(folder.written) - 1)
