"""Print the effective configuration, with where each value comes from and secrets masked.

    hdp-gan config [--config FILE] [shared options] [--stage train] [--json]

Values are layered as every stage layers them: the defaults, then the TOML file (--config or
HDP_GAN_CONFIG), then the command line (the shared options given here). The output is TOML
with the source of each value as a comment, so it can start a configuration file of your own
(secrets are printed as ***, put them back by hand). Each stage's table ([train], [generate],
...) shows its options' defaults and the file's values for them. No Spark is started.

A key in a stage's table that the stage does not have is an error (exit code 2), as it is
for the stage itself; a top-level key or a table that no stage reads is reported as a
warning on standard error.
"""

import argparse
import dataclasses
import functools
import importlib
import json
import os
import re
import sys

from gan_lib import config
from gan_lib.config import ConfigError
from jobs import cli, common

SOURCES = ("default", "file", "command line")
# The commands that only read tables run Spark inside the driver unless --master is given
# (report.table_reader_settings).
TABLE_READERS = common.TABLE_READERS
NOT_STAGE_OPTIONS = {"help", "config", "run_id"} | set(common.SHARED_KEYS)
# user:password@ after any "//", also inside URLs with two schemes (jdbc:postgresql://...)
_EMBEDDED_CREDENTIALS = re.compile(r"(?<=//)[^/@\s;?#]+@")


def build_parser():
    parser = common.new_parser("config", __doc__.splitlines()[0])
    parser.add_argument("--stage", default=None, choices=_stage_names(),
                        help="show only this stage's table (default: every stage)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: every value with its source")
    return parser


def _stage_names() -> list[str]:
    return [name for name in cli.SUBCOMMANDS if name != "config"]


def effective(args, file_values: dict, settings: config.Settings) -> dict:
    """Every value with its source: {"settings": {key: (value, source)}, "spark": {...},
    "stages": {stage: {key: (value, source)}}}, secrets masked."""
    masked = settings.masked()
    shared = {}
    for field in dataclasses.fields(config.Settings):
        if field.name == "extra_spark_conf":
            continue
        if field.name in common.SHARED_KEYS and getattr(args, field.name, None) is not None:
            source = "command line"
        elif field.name in file_values:
            source = "file"
        else:
            source = "default"
        shared[field.name] = (_mask(masked[field.name]), source)
    spark = {key: (_mask(value), "file") for key, value in masked["extra_spark_conf"].items()}

    stages = {}
    for name in [args.stage] if args.stage else _stage_names():
        stages[name] = _stage_values(name, file_values)
    return {"settings": shared, "spark": spark, "stages": stages,
            "means": _meanings(shared, stages, settings)}


_HELP_DEFAULT = re.compile(r"\(default: ([^)]*)\)")


def _meanings(shared: dict, stages: dict, settings: config.Settings) -> dict:
    """What an unset or empty value stands for, as {table: {key: text}} with table None for
    the shared settings: the value a stage derives where it can be worked out here (the state
    folder, the master, the recipe's batch size and learning rate), else the "(default:
    ...)" of the option's help."""
    from gan_lib import models, report, session

    derived = {(None, "state_dir"): str(settings.local_state_dir),
               (None, "master"): f"{session.default_master(settings)} on this machine "
                                 f"({report.TABLE_READER_MASTER} inside the driver for "
                                 f"{', '.join(TABLE_READERS)})"}
    if "train" in stages:
        recipe = models.RECIPES[stages["train"]["recipe"][0]]
        derived[("train", "batch_size")] = f"the {recipe.name} recipe's {recipe.batch_size}"
        derived[("train", "learning_rate")] = (f"the {recipe.name} recipe's "
                                               f"{recipe.learning_rate:g}")
    helps = {(None, action.dest): action.help for action in build_parser()._actions}
    for stage in stages:
        helps.update({(stage, action.dest): action.help
                      for action in _stage_parser(stage)._actions})
    unset = [((None, key), value) for key, (value, _) in shared.items()]
    unset += [((stage, key), value) for stage, options in stages.items()
              for key, (value, _) in options.items()]
    means = {}
    for (table, key), value in unset:
        if value not in (None, ""):
            continue
        found = _HELP_DEFAULT.search(helps.get((table, key)) or "")
        if (table, key) in derived or found:
            means.setdefault(table, {})[key] = derived.get((table, key)) or found.group(1)
    return means


@functools.lru_cache(maxsize=None)
def _stage_parser(stage: str) -> argparse.ArgumentParser:
    return importlib.import_module(f"jobs.{cli.SUBCOMMANDS[stage][0]}").build_parser()


def _stage_values(stage: str, file_values: dict) -> dict:
    """A stage's options: the file's value where it sets one, else the stage's default."""
    actions = [action for action in _stage_parser(stage)._actions if action.option_strings
               and action.dest not in NOT_STAGE_OPTIONS]
    options = {action.dest: action for action in actions if action.help != argparse.SUPPRESS}
    hidden = {action.dest: action for action in actions if action.help == argparse.SUPPRESS}
    from_file = {key.split(".", 1)[1].replace("-", "_"): value
                 for key, value in file_values.items() if key.startswith(stage + ".")}
    unknown = sorted(set(from_file) - set(options) - set(hidden))
    if unknown:
        raise ConfigError(f"[{stage}] in the configuration file has unknown keys: {unknown}; "
                          f"`hdp-gan {stage} --help` lists its options")
    from_file = {dest: common.file_value(stage, options.get(dest) or hidden[dest], value)
                 for dest, value in from_file.items()}
    chosen = {dest: from_file.get(dest, action.default) for dest, action in options.items()}
    masked = _mask(config.mask_secrets(chosen))
    return {dest: (masked[dest], "file" if dest in from_file else "default")
            for dest in options}


def _mask(value):
    """``config.mask_secrets`` already ran; also hide ``user:password@`` inside URLs whose
    scheme has two parts (``jdbc:postgresql://user:password@host/db``)."""
    if isinstance(value, str):
        return _EMBEDDED_CREDENTIALS.sub("***@", value)
    if isinstance(value, dict):
        return {key: _mask(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask(item) for item in value]
    return value


def warnings_for(file_values: dict) -> list[str]:
    """Keys of the file that no stage reads (the stages ignore them silently)."""
    settings_keys = {field.name for field in dataclasses.fields(config.Settings)} | {"spark"}
    stages = set(_stage_names()) | {"config"}
    found = []
    for key in sorted(file_values):
        section = key.split(".", 1)[0] if "." in key else None
        if section is None and key not in settings_keys:
            found.append(f"top-level key {key!r} is not a setting; no stage reads it")
        elif section is not None and section not in stages:
            found.append(f"table [{section}] is not a stage; no stage reads it")
    return sorted(set(found))


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}"
                                for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return _toml_string(str(value))


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes, but characters beyond the Basic Multilingual Plane
    as they are (JSON's surrogate pairs are not TOML) and DEL escaped (TOML refuses it raw)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007F")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def _toml_lines(values: dict, means: dict) -> list[str]:
    lines = []
    for key, (value, source) in values.items():
        meaning = f": {means[key]}" if key in means else ""
        if value is None:
            lines.append((f"# {_toml_key(key)} =", f"not set ({source}){meaning}"))
        else:
            lines.append((f"{_toml_key(key)} = {_toml_value(value)}", source + meaning))
    width = min(max((len(text) for text, _ in lines), default=0), 60)
    return [f"{text.ljust(width)}  # {source}" for text, source in lines]


def as_toml(values: dict, file_path: str | None) -> str:
    means = values["means"]
    shown_path = _toml_string(file_path) if file_path else "(no file)"
    lines = [f"# hdp-gan effective configuration: defaults < {shown_path} < command line",
             "# secrets are shown as ***; the comment after each value says where it comes "
             "from and, for an unset one, what it stands for"]
    lines += [""] + _toml_lines(values["settings"], means.get(None, {}))
    if values["spark"]:
        lines += ["", "[spark]"] + _toml_lines(values["spark"], {})
    for stage, options in values["stages"].items():
        lines += ["", f"[{_toml_key(stage)}]"] + _toml_lines(options, means.get(stage, {}))
    return "\n".join(lines)


def as_json(values: dict, file_path: str | None) -> str:
    def pairs(table, means):
        shown = {key: {"value": value, "source": source} for key, (value, source) in
                 table.items()}
        for key, text in means.items():
            shown[key]["means"] = text
        return shown
    means = values["means"]
    return json.dumps({"file": file_path, "settings": pairs(values["settings"],
                                                              means.get(None, {})),
                       "spark": pairs(values["spark"], {}),
                       "stages": {stage: pairs(options, means.get(stage, {}))
                                  for stage, options in values["stages"].items()}},
                      sort_keys=True, default=str)


def run(args, settings) -> int:
    file_path = args.config or os.environ.get("HDP_GAN_CONFIG") or None
    file_values = config.load_file(args.config)
    values = effective(args, file_values, settings)
    for warning in warnings_for(file_values):
        print(f"hdp-gan config: warning: {warning}", file=sys.stderr)
    print(as_json(values, file_path) if args.json else as_toml(values, file_path))
    sys.stdout.flush()
    return common.EXIT_OK


def main(argv=None):
    return common.run_printing(build_parser(), "config", run, argv, root=None)


if __name__ == "__main__":
    sys.exit(main())
