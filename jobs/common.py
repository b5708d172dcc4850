"""What every job entry point shares: common options, configuration layering, logging, the
final JSON line and exit codes.

Exit codes: 0 success, 1 the stage failed (one line says why), 2 a wrong option or
configuration value (one line names it and what is expected), 130 interrupted (Ctrl-C), 143
terminated (SIGTERM, as YARN and Oozie stop a job).
"""

import argparse
import contextlib
import difflib
import json
import logging
import os
import re
import signal
import sys

from gan_lib import config, runs, storage
from gan_lib.config import JAVA_INT_MAX, ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 128 + signal.SIGTERM
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # as a command killed by SIGPIPE ends

logger = logging.getLogger("hdp_gan")
NEGATIVE_NUMBER = r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with errors on one line and exit code 2, without a usage block; a mistyped
    option is named with the option it is closest to. Options are not taken abbreviated: a
    shortened option in a script or a workflow would change meaning when an option is
    added."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        # argparse takes -3 and -0.5 for values, but -1e-3 for an option
        self._negative_number_matcher = re.compile(f"^{NEGATIVE_NUMBER}$")

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")

    def parse_args(self, args=None, namespace=None):
        tokens = sys.argv[1:] if args is None else [str(token) for token in args]
        unknown = self._unknown_option(tokens)  # before argparse asks for required ones
        if unknown:
            self.error(f"unknown option {unknown}{self._unknown_option_hint(tokens, unknown)}")
        parsed, extras = self.parse_known_args(tokens, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _unknown_option(self, tokens: list[str]) -> str | None:
        """The first token that looks like an option and is none of this parser's, nor an
        abbreviation argparse would take."""
        options = [option for action in self._actions for option in action.option_strings]
        shown = self._shown_options()
        for token in tokens:
            if token == "--":  # the rest are values
                return None
            name = token.split("=", 1)[0]
            if (not name.startswith("-") or name == "-" or name in options
                    or re.fullmatch(NEGATIVE_NUMBER, name)):
                continue
            if name.startswith("--") and self.allow_abbrev and any(
                    option.startswith(name) for option in shown):  # not of hidden ones
                continue
            if not name.startswith("--") and name[:2] in options:  # -n5: a short one's value
                continue
            return name
        return None

    def _unknown_option_hint(self, tokens: list[str], unknown: str) -> str:
        """A value that starts with '-' right after an option that takes one is most
        likely that option's value; else the option the typed one is closest to."""
        position = [token.split("=", 1)[0] for token in tokens].index(unknown)
        before = tokens[position - 1] if position else ""
        takes_value = [option for action in self._actions if action.nargs != 0
                       and action.help != argparse.SUPPRESS
                       for option in action.option_strings]
        named = [option for option in takes_value if option == before] or [
            option for option in takes_value if before.startswith("--")
            and option.startswith(before)]
        if len(named) == 1:
            return f"; if it is the value of {named[0]}, write {named[0]}={tokens[position]}"
        close = _closest_option(unknown, self._shown_options())
        return f"; did you mean {close}?" if close else ""

    def _shown_options(self) -> list[str]:
        """The option strings --help lists (not the hidden ones for fault-injection tests)."""
        return [option for action in self._actions if action.help != argparse.SUPPRESS
                for option in action.option_strings]


def _closest_option(typed: str, options: list[str]) -> str | None:
    """The option ``typed`` most likely meant: one with the same letters in another order
    (--prot: --port), else among those whose first word is close to its first word
    (--epoch-count: --epochs), else among all of them."""
    swapped = [option for option in options if sorted(option) == sorted(typed)]
    if swapped:
        return swapped[0]

    def first_word(option):
        return option.lstrip("-").split("-")[0]
    words = set(difflib.get_close_matches(first_word(typed), map(first_word, options)))
    near = [option for option in options if first_word(option) in words]
    close = difflib.get_close_matches(typed, near or options, n=1, cutoff=0.5 if near else 0.7)
    return close[0] if close else None


JAVA_LONG_MAX = 2**63 - 1  # seeds are stored as BIGINT


def _whole_number(text: str, minimum: int, maximum: int = JAVA_INT_MAX) -> int:
    if not re.fullmatch(r"-?[0-9]+", text):  # int() would also take "1_000", " 7", "٣"
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    value = int(text)
    if value < minimum:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be greater than 0" if minimum == 1
            else f"{text!r} must not be negative")
    if value > maximum:
        raise argparse.ArgumentTypeError(f"{text!r} must be at most {maximum:,}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def seed_int(text: str) -> int:
    return _whole_number(text, 0, JAVA_LONG_MAX)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number greater than 0")
    return value


def fraction(text: str) -> float:
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help already says it or there is none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default in (None, False):
            return text
        return super()._get_help_string(action)


# Commands that read tables (a report adds only its own row): Spark runs inside the driver
# unless --master is given.
TABLE_READERS = ("sql", "sql-server", "runs", "report")


def new_parser(subcommand: str, description: str,
               run_id_help: str | None = None) -> ArgumentParser:
    """The parser of one ``hdp-gan`` subcommand; its usage and error lines name the command
    as a user types it, whether it runs as ``hdp-gan SUBCOMMAND`` or under spark-submit."""
    parser = ArgumentParser(prog=f"hdp-gan {subcommand}", description=description,
                            formatter_class=HelpFormatter)
    shared = parser.add_argument_group("shared options")
    shared.add_argument("--root", default=None,
                        help="storage root: a folder, file:///..., hdfs://nn:8020/... or "
                             "webhdfs://host:port/... (default: runs/default)")
    shared.add_argument("--master", default=None,
                        help="Spark master, e.g. yarn (default: "
                             + ("local[2], Spark inside the driver)" if subcommand in TABLE_READERS
                                else "local-cluster on this machine)"))
    shared.add_argument("--database", default=None, help="Hive database (default: hdp_gan)")
    shared.add_argument("--config", default=None,
                        help="TOML configuration file (default: HDP_GAN_CONFIG when set, else "
                             "none)")
    shared.add_argument("--run-id", default=None,
                        help=run_id_help or "id of this run (default: generated from the stage "
                                            "and the time)")
    shared.add_argument("--metastore-uri", default=None,
                        help="thrift:// URI of an existing Hive metastore (default: an embedded "
                             "metastore under --state-dir)")
    shared.add_argument("--metastore-jdbc-url", default=None,
                        help="JDBC URL of a shared metastore database, e.g. a Derby network "
                             "server (default: an embedded Derby database under --state-dir)")
    shared.add_argument("--state-dir", default=None,
                        help="local folder for the embedded metastore and Spark's work files "
                             "(default: <root>/_local for a local root, ~/.hdp-gan otherwise)")
    shared.add_argument("--executors", type=positive_int, default=None,
                        help="executors on this machine, and TensorFlow workers (default: 2)")
    shared.add_argument("--executor-memory-mb", type=positive_int, default=None,
                        help="memory per executor on this machine in MB (default: 2048)")
    shared.add_argument("--log-level", default=None,
                        help="DEBUG, INFO, WARNING or ERROR (default: INFO)")
    return parser


def file_value(section: str, action: argparse.Action, value):
    """A configuration file's value for an option, checked and converted as the command line
    would check it (argparse checks neither the type nor the choices of a default)."""
    where = f"[{section}] {action.dest.replace('_', '-')} = {value!r} in the configuration file"
    if action.nargs == 0:  # a flag: --json, --xla/--no-xla
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false")
        return value
    if isinstance(value, (bool, list, dict)):
        raise ConfigError(f"{where} must be a single value, as on the command line")
    try:
        value = (action.type or str)(str(value))
    except (argparse.ArgumentTypeError, TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{where} is not one of {', '.join(map(str, action.choices))}")
    return value


SHARED_KEYS = ("root", "master", "database", "metastore_uri", "metastore_jdbc_url",
               "state_dir", "executors", "executor_memory_mb", "log_level")


def parse(parser: ArgumentParser, argv, section: str):
    """Parse ``argv`` with configuration-file values as defaults.

    Returns ``(args, settings)``. Values from the ``[section]`` table of the file become the
    defaults of this job's options; top-level values feed the shared settings.
    """
    args = parser.parse_args(argv)
    try:
        file_values = config.load_file(args.config)
        job_defaults = {key.split(".", 1)[1].replace("-", "_"): value
                        for key, value in file_values.items() if key.startswith(section + ".")}
        actions = {action.dest: action for action in parser._actions}
        unknown = sorted(set(job_defaults) - set(actions))
        if unknown:
            raise ConfigError(f"[{section}] in {args.config} has unknown keys: {unknown}")
        job_defaults = {key: file_value(section, actions[key], value)
                        for key, value in job_defaults.items()}
        if job_defaults:
            parser.set_defaults(**job_defaults)
            args = parser.parse_args(argv)
        shared = {key: value for key, value in file_values.items() if "." not in key}
        shared.update({key: getattr(args, key) for key in SHARED_KEYS
                       if getattr(args, key, None) is not None})
        settings = config.settings_from(shared)
    except ConfigError as error:
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {error}\n")
    setup_logging(settings.log_level)
    return args, settings


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietInterruptedCalls())
    # tensorflowonspark logs each node's manager authentication key at INFO: keep it quiet
    for noisy in ("py4j", "tensorflow", "absl", "urllib3", "PIL", "tensorflowonspark"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # HdfsCLI logs each failed upload with its traceback; the storage layer reports every
    # failure and retry in one line (--log-level DEBUG shows HdfsCLI's own)
    logging.getLogger("hdfs").setLevel(logging.DEBUG if level.upper() == "DEBUG"
                                       else logging.CRITICAL)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def emit(summary: dict) -> None:
    """Print the stage's one JSON line on standard output."""
    print(json.dumps(summary, sort_keys=True, default=str), flush=True)


def run_main(parser: ArgumentParser, section: str, body, argv=None, root: str = "existing",
             check_first=None):
    """Parse, run ``body(args, settings) -> summary dict``, print the JSON line, return a code.

    ``root`` says what the stage needs of the storage root: ``"existing"`` (it reads what
    earlier stages wrote) or ``"create"`` (it may start a project in a new folder).
    ``check_first(args, settings)``, when given, runs before the root is looked at or made.
    """
    args, settings = parse(parser, argv, section)

    def stage():
        if check_first:
            check_first(args, settings)
        check_before_work(args, settings, root)
        summary = body(args, settings)
        emit(summary)
        return EXIT_OK if summary.get("status", "succeeded") == "succeeded" else EXIT_FAILED
    return run_body(parser, stage)


def check_before_work(args, settings, root: str) -> None:
    """What every stage checks before starting Spark: the run id, the root, and the local
    folder for Spark's work directories and the embedded metastore."""
    from gan_lib import session

    if getattr(args, "run_id", None):
        config.validate_name(args.run_id, "--run-id")
    storage.check_root(settings, create=root == "create")
    if settings.state_dir and session.is_local(session.effective_master(settings)):
        _check_creatable(settings.local_state_dir)


def _check_creatable(folder) -> None:
    """Make the state folder the user named, or fail in one line saying why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"the local state folder {folder} (--state-dir) cannot be created: "
                          f"{error.strerror}; give a writable folder") from None


def run_printing(parser: ArgumentParser, section: str, body, argv=None,
                 root: str | None = "existing") -> int:
    """For commands that print their own output instead of a stage's JSON line: parse, run
    ``body(args, settings) -> exit code``, and turn errors into one line. ``root`` is as for
    ``run_main``, or None for commands that do not touch the root."""
    args, settings = parse(parser, argv, section)

    def command():
        if root:
            check_before_work(args, settings, root)
        return body(args, settings)
    return run_body(parser, command)


def run_body(parser: ArgumentParser, body) -> int:
    """Run ``body() -> exit code``, turning errors into one line and an exit code.

    Errors a user can act on (ConfigError, StageError, StorageError) are printed as one line;
    anything else is logged with its traceback and also ends with one line.
    """
    from gan_lib.runs import StageError
    from gan_lib.storage import StorageError

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        code = body()
    except ConfigError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (StageError, StorageError) as error:
        print(f"{parser.prog}: failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    except Terminated:
        print(f"{parser.prog}: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except BrokenPipeError:  # `hdp-gan sql ... | head`: the reader has what it wanted
        return reader_gone()
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # the last line of defence: still one clear line at the end
        if _TERMINATED:  # the JVM got the signal too (the whole process group was signalled)
            print(f"{parser.prog}: terminated (SIGTERM)", file=sys.stderr)
            return EXIT_TERMINATED
        if METASTORE_LOST in str(error):  # the metastore's database went away mid-run
            print(f"{parser.prog}: failed: the Hive metastore stopped answering during the "
                  "run (Hive could not open a metastore client); check that the metastore or "
                  "its database runs, then run the stage again", file=sys.stderr)
            return EXIT_FAILED
        logger.exception("unexpected error")
        # a JVM error's line names its own class (py4j's Py4JJavaError says nothing more)
        kind = "" if hasattr(error, "java_exception") else f"{type(error).__name__}: "
        print(f"{parser.prog}: failed: {kind}{first_line(error)}",
              file=sys.stderr)
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK if code is None else code


METASTORE_LOST = ("Unable to instantiate "
                  "org.apache.hadoop.hive.ql.metadata.SessionHiveMetaStoreClient")


def terminate_with_parent() -> None:
    """In a child process, before it starts its program: SIGTERM when this process dies,
    even by SIGKILL, which leaves no chance to stop the child."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def reader_gone() -> int:
    """The exit code once standard output's reader has stopped reading; what is still
    buffered goes to /dev/null, so Python's flush at exit raises nothing more."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_BROKEN_PIPE


def _failure_note(error: BaseException) -> str:
    """What a failed run's row says: the error's line, or how the run was stopped."""
    if isinstance(error, Terminated):
        return "terminated (SIGTERM)"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    return first_line(error)


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived. A KeyboardInterrupt, so that py4j, stopped in the middle of a call to
    the JVM, closes that call's connection rather than leaving it half read, and so that no
    handler for errors takes it for one; the stage cancels Spark's jobs and records its run
    as failed on the way out."""


_TERMINATED = []  # set once SIGTERM arrived


def _terminate(_signum, _frame):
    """Unwind the stage, without calling the JVM from inside the handler: that would break the
    py4j call the signal stopped (``spark_stage`` cancels the jobs once it has unwound)."""
    if _TERMINATED:  # sent again (to the process and to its group): the stage is stopping
        return
    _TERMINATED.append(True)
    raise Terminated()


class _QuietInterruptedCalls(logging.Filter):
    """py4j logs the traceback of a call that Ctrl-C or SIGTERM stopped; the stage says so in
    one line."""

    def filter(self, record):
        return record.getMessage() != "KeyboardInterrupt while sending command."


def first_line(error: BaseException) -> str:
    """``config.error_line`` (Spark's SQL errors start with a blank line, Java messages can
    carry a JDBC URL), with a hint for an executor that ran out of memory."""
    line = config.error_line(error)
    if "exited with code 52" in line:  # Spark's exit code for an executor out of memory
        line += " (52: the executor ran out of memory; give it more with --executor-memory-mb)"
    return line


@contextlib.contextmanager
def spark_stage(settings, run, app_name: str, training: bool = False, streaming: bool = False,
                lease: bool = True):
    """A Spark session for one stage run; a failure is recorded in the runs table (when the
    metastore is reachable) before it propagates, and the session always stops. Unless
    ``lease`` is False, the run id is held for this process first (runs.run_lease): a
    second process given the same run id is refused before Spark starts."""
    from gan_lib import session

    with contextlib.ExitStack() as held:
        if lease:
            held.enter_context(runs.run_lease(settings, run.run_id, run.stage))
        spark = session.build_session(settings, app_name, training=training,
                                      streaming=streaming)
        try:
            yield spark
        except BaseException as error:
            if isinstance(error, KeyboardInterrupt):  # Ctrl-C or SIGTERM: the call unwound
                with contextlib.suppress(Exception):
                    # a stop asked for: not Spark's stack of the aborted write and its
                    # warnings of each task killed, only the stage's own last line
                    spark.sparkContext.setLogLevel("FATAL")
                    spark.sparkContext.cancelAllJobs()
            try:
                if run.record_failure:
                    run.record(spark, settings, status="failed", message=_failure_note(error))
            except Exception as record_error:  # the original error matters more
                logger.warning("could not record the failed run: %s",
                               config.error_line(record_error, innermost=True))
            try:
                spark.stop()
            except Exception as stop_error:  # a JVM stopped with us (SIGTERM to the group)
                logger.warning("could not stop Spark cleanly: %s", first_line(stop_error))
            raise
        else:
            spark.stop()
