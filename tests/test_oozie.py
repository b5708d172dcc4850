"""The Oozie application: the definitions match Oozie's schemas, and the workflow holds
together where schemas cannot see: transitions, cycles, variables, the jobs' files, their
Spark settings and their arguments.

Each checker returns a list of problems; every test also feeds its checker a deliberately
broken copy of the workflow, so that a checker that finds nothing cannot pass unnoticed.
"""

import contextlib
import datetime as dt
import importlib
import io
import re
import shlex
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from gan_lib import deploy
from gan_lib.config import ConfigError, Settings, validate_name

REPO = Path(__file__).resolve().parent.parent
OOZIE = REPO / "oozie"
WORKFLOW = OOZIE / "workflow.xml"
COORDINATOR = OOZIE / "coordinator.xml"
PROPERTIES = OOZIE / "job.properties"

SAMPLE_USER = "hdp"
SAMPLE_WORKFLOW_ID = "0000042-260101000000000-oozie-oozi-W"
SAMPLE_NOMINAL_TIME = dt.datetime(2026, 1, 2, 0, 0)

# What Oozie's expression language offers besides the job's properties.
EL_KEYWORDS = {"empty", "not", "and", "or", "eq", "ne", "lt", "gt", "le", "ge", "div", "mod",
               "true", "false", "null"}
EL_CONSTANTS = {"KB", "MB", "GB", "TB", "PB"}
DATASET_VARIABLES = {"YEAR", "MONTH", "DAY", "HOUR", "MINUTE"}
OOZIE_PROVIDED = {"user.name"}
EL_FUNCTIONS = {
    "concat", "firstNotNull", "replaceAll", "appendAll", "trim", "urlEncode", "timestamp",
    "toJsonStr", "toPropertiesStr", "toConfigurationStr",
    "wf:id", "wf:name", "wf:appPath", "wf:conf", "wf:user", "wf:group", "wf:callback",
    "wf:transition", "wf:lastErrorNode", "wf:errorCode", "wf:errorMessage", "wf:run",
    "wf:actionData", "wf:actionExternalId", "wf:actionTrackerUri", "wf:actionExternalStatus",
    "fs:exists", "fs:isDir", "fs:dirSize", "fs:fileSize", "fs:blockSize",
    "coord:minutes", "coord:hours", "coord:days", "coord:months", "coord:endOfDays",
    "coord:endOfMonths", "coord:endOfWeeks", "coord:current", "coord:latest", "coord:future",
    "coord:offset", "coord:absolute", "coord:hoursInDay", "coord:daysInMonth",
    "coord:tzOffset", "coord:dataIn", "coord:dataOut", "coord:nominalTime",
    "coord:actualTime", "coord:user", "coord:formatTime", "coord:dateOffset",
    "coord:dateTzOffset", "coord:epochTime", "coord:name", "coord:conf",
}
EL_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|([A-Za-z_][\w.]*(?::[A-Za-z_]\w*)?)(\s*\()?")


# --- locating the schemas ----------------------------------------------------------------

def schema_dir() -> Path:
    """Oozie's own schema files, kept with the tests (``tests/oozie-xsd``)."""
    folder = REPO / "tests" / "oozie-xsd"
    if not (folder / "oozie-workflow-1.0.xsd").is_file():
        pytest.fail(f"Oozie's XML schemas are missing from {folder}; restore them from git")
    return folder


def workflow_schema(version: str):
    import xmlschema

    names = {"1.0": ["oozie-workflow-1.0.xsd", "spark-action-1.0.xsd"],
             "0.5": ["oozie-workflow-0.5.xsd", "spark-action-0.2.xsd"]}[version]
    return xmlschema.XMLSchema([str(schema_dir() / name) for name in names])


# --- sample values for the variables ------------------------------------------------------

def properties() -> dict:
    return deploy.read_properties(PROPERTIES)


def sample_values(**overrides) -> dict:
    """job.properties with what Oozie fills in, and ``overrides`` on top."""
    values = {**properties(), "user.name": SAMPLE_USER, "wf:user()": SAMPLE_USER,
              "wf:id()": SAMPLE_WORKFLOW_ID, "wf:appPath()": "${appPath}"}
    values.update(overrides)
    return values


def java_time_format(moment: dt.datetime, pattern: str) -> str:
    """The few SimpleDateFormat letters the coordinator uses."""
    letters = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
    parts = re.findall(r"yyyy|MM|dd|HH|mm|ss|[A-Za-z]|[^A-Za-z]+", pattern)
    unknown = [part for part in parts if part.isalpha() and part not in letters]
    if unknown:
        raise ConfigError(f"time pattern {pattern!r} has letters this test does not know: "
                          f"{unknown}")
    return moment.strftime("".join(letters.get(part, part) for part in parts))


def coordinator_configuration(path=COORDINATOR, nominal=SAMPLE_NOMINAL_TIME) -> dict:
    """The properties the coordinator passes to the workflow, evaluated for one nominal
    time."""
    root = ElementTree.parse(path).getroot()
    templates = {dataset.get("name"): dataset.findtext("{*}uri-template")
                 for dataset in root.iterfind(".//{*}dataset")}
    inputs = {data.get("name"): data.get("dataset") for data in root.iterfind(".//{*}data-in")}
    values = sample_values(YEAR=f"{nominal:%Y}", MONTH=f"{nominal:%m}", DAY=f"{nominal:%d}")

    def evaluate(expression: str) -> str:
        expression = expression.strip()
        if expression == "${coord:nominalTime()}":
            return f"{nominal:%Y-%m-%dT%H:%MZ}"
        formatted = re.fullmatch(r"\$\{coord:formatTime\(coord:nominalTime\(\), '([^']*)'\)\}",
                                 expression)
        if formatted:
            return java_time_format(nominal, formatted.group(1))
        data_in = re.fullmatch(r"\$\{coord:dataIn\('([^']*)'\)\}", expression)
        if data_in:
            return deploy.expand(templates[inputs[data_in.group(1)]], values)
        return deploy.expand(expression, values)

    configuration = root.find("{*}action/{*}workflow/{*}configuration")
    return {item.findtext("{*}name"): evaluate(item.findtext("{*}value"))
            for item in configuration.findall("{*}property")}


def broken_copy(tmp_path, old: str, new: str, source=WORKFLOW) -> Path:
    text = source.read_text(encoding="utf-8")
    assert old in text, f"the workflow no longer contains {old!r}; update this test"
    broken = tmp_path / f"broken-{source.name}"
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    return broken


# --- checkers ------------------------------------------------------------------------------

def transition_problems(path) -> list[str]:
    _, nodes = deploy.read_workflow(path)
    return [f"{node.name} goes to {target!r}, which is not a node"
            for node in nodes.values() for target in node.transitions if target not in nodes]


def cycle_problems(path) -> list[str]:
    _, nodes = deploy.read_workflow(path)
    problems, state = [], {}

    def visit(name, trail):
        if state.get(name) == "open":
            problems.append("cycle: " + " -> ".join(trail[trail.index(name):] + [name]))
            return
        if state.get(name) == "done" or name not in nodes:
            return
        state[name] = "open"
        for target in nodes[name].transitions:
            visit(target, trail + [name])
        state[name] = "done"
    visit("start", [])
    return problems


def reachability_problems(path) -> list[str]:
    """Every node is reachable from start, and from every action and decision the
    successful path can still reach the end node."""
    _, nodes = deploy.read_workflow(path)
    reached, waiting = set(), ["start"]
    while waiting:
        name = waiting.pop()
        if name in reached or name not in nodes:
            continue
        reached.add(name)
        waiting.extend(nodes[name].transitions)
    problems = [f"{name} cannot be reached from start" for name in nodes if name not in reached]
    ends = {name for name, node in nodes.items() if node.kind == "end"}
    if not ends & reached:
        problems.append("start never reaches the end node")

    def reaches_end(name, seen=()):
        node = nodes.get(name)
        if node is None or name in seen:
            return False
        if node.kind == "end":
            return True
        onward = [node.ok] if node.kind == "action" else node.transitions
        return any(reaches_end(target, seen + (name,)) for target in onward)
    problems += [f"{name} cannot reach the end" for name, node in nodes.items()
                 if node.kind in ("action", "decision") and not reaches_end(name)]
    return problems


def kill_problems(path) -> list[str]:
    _, nodes = deploy.read_workflow(path)
    problems = []
    for node in nodes.values():
        if node.kind == "action":
            target = nodes.get(node.error)
            if target is None or target.kind != "kill":
                problems.append(f"{node.name}: its error transition does not go to a kill node")
        if node.kind == "kill" and not ("${wf:lastErrorNode()}" in node.message
                                        and "wf:errorMessage(wf:lastErrorNode())" in node.message):
            problems.append(f"kill node {node.name}: its message does not name the failed "
                            "action and its error")
    return problems


def el_names(expression: str) -> tuple[set, set]:
    """The variables and the functions used in one EL expression."""
    variables, functions = set(), set()
    for match in EL_TOKEN.finditer(expression):
        name, call = match.group(1), match.group(2)
        if not name:
            continue
        if call:
            functions.add(name)
        elif name not in EL_KEYWORDS and name not in EL_CONSTANTS:
            variables.add(name)
    return variables, functions


def variable_problems(text: str, defined: set, source: str) -> list[str]:
    problems = []
    for expression in deploy.EL_EXPRESSION.findall(text):
        variables, functions = el_names(expression)
        problems += [f"{source}: ${{{expression}}} uses {name}, which is not defined"
                     for name in sorted(variables - defined)]
        problems += [f"{source}: ${{{expression}}} calls {name}(), which is not an Oozie "
                     "function" for name in sorted(functions - EL_FUNCTIONS)]
    return problems


def workflow_variable_problems(path) -> list[str]:
    """Every variable of the workflow is defined (job.properties or the coordinator) and
    declared in its parameters; every declared parameter has a value in job.properties."""
    defined = set(properties()) | set(coordinator_configuration())
    text = Path(path).read_text(encoding="utf-8")
    root = ElementTree.fromstring(text)
    declared = {item.findtext("{*}name") for item in root.iterfind("{*}parameters/{*}property")}
    used = set()
    for expression in deploy.EL_EXPRESSION.findall(text):
        used |= el_names(expression)[0]
    problems = variable_problems(text, defined, "workflow.xml")
    problems += [f"workflow.xml uses {name} without declaring it in <parameters>"
                 for name in sorted(used - declared)]
    problems += [f"parameter {name} has no value in job.properties"
                 for name in sorted(declared - set(properties()))]
    return problems


def spark_actions(path) -> list:
    _, nodes = deploy.read_workflow(path)
    return [node for node in nodes.values() if node.spark is not None]


def jar_problems(path, app_dir: Path, values: dict) -> list[str]:
    values = {**values, "wf:appPath()": str(app_dir)}
    problems = []
    for node in spark_actions(path):
        jar = Path(deploy.expand(node.spark["jar"], values))
        if jar.parent != app_dir / "lib" or not jar.is_file():
            problems.append(f"{node.name}: its jar {jar} is not a file in the application's lib/")
        elif jar.read_bytes() != (REPO / "jobs" / jar.name).read_bytes():
            problems.append(f"{node.name}: {jar.name} in lib/ differs from jobs/{jar.name}")
    return problems


def parse_action_args(node, values):
    """Parse one action's arguments with its job's own parser; returns (namespace, error)."""
    module = Path(node.spark["jar"]).stem
    parser = importlib.import_module(f"jobs.{module}").build_parser()
    args = [deploy.expand(arg, values) for arg in node.spark["args"]]
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            return parser.parse_args(args), None
    except SystemExit:
        return None, errors.getvalue().strip() or "exited"


def argument_problems(path, values: dict) -> list[str]:
    problems = []
    for node in spark_actions(path):
        _, error = parse_action_args(node, values)
        if error:
            problems.append(f"{node.name}: {error}")
    return problems


def spark_opts(node, values) -> tuple[dict, dict]:
    """The --conf settings and the other options of one action's spark-opts."""
    tokens = shlex.split(deploy.expand(node.spark["spark-opts"], values))
    conf, options = {}, {}
    for option, value in zip(tokens[::2], tokens[1::2]):
        if option == "--conf":
            key, _, setting = value.partition("=")
            conf[key] = setting
        else:
            options[option] = value
    return conf, options


def settings_problems(path, values: dict) -> list[str]:
    """Each action carries exactly the settings of gan_lib.deploy.submit_conf, the archive
    under the alias env and the queue."""
    environment = {"HADOOP_USER_NAME": values["wf:user()"],
                   "HDP_GAN_WEBHDFS_URL": deploy.expand("${webhdfsUrl}", values)}
    settings = Settings(executors=int(values["executors"]))
    problems = []
    for node in spark_actions(path):
        conf, options = spark_opts(node, values)
        wanted = deploy.submit_conf(Path(node.spark["jar"]).stem, settings, environment)
        for key in sorted(set(conf) | set(wanted)):
            if conf.get(key) != wanted.get(key):
                problems.append(f"{node.name}: {key} is {conf.get(key)!r}, submit_conf says "
                                f"{wanted.get(key)!r}")
        archive = deploy.expand("${envArchive}", values)
        if options.get("--archives") != f"{archive}#{deploy.ENV_ALIAS}":
            problems.append(f"{node.name}: --archives is {options.get('--archives')!r}, not "
                            f"the env archive as #{deploy.ENV_ALIAS}")
        if options.get("--queue") != values["queueName"]:
            problems.append(f"{node.name}: no --queue {values['queueName']}")
        if (node.spark.get("master"), node.spark.get("mode")) != ("yarn", "cluster"):
            problems.append(f"{node.name}: runs on {node.spark.get('master')} in "
                            f"{node.spark.get('mode')} mode, not yarn in cluster mode")
    return problems


def evaluate_decision(node, values: dict, existing: set) -> str:
    """The target a decision takes, for the forms of condition this workflow uses:
    ``empty NAME``, ``fs:exists(NAME)``, ``and``, ``or``, ``not``."""
    for expression, target in node.cases:
        if expression is None:
            return target
        condition = deploy.EL_EXPRESSION.fullmatch(expression).group(1)
        condition = re.sub(r"fs:exists\((\w+)\)", lambda match: str(
            deploy.expand(values[match.group(1)], values) in existing), condition)
        condition = re.sub(r"\bempty\s+(\w+)", lambda match: str(
            not deploy.expand(values[match.group(1)], values)), condition)
        if not re.fullmatch(r"(\s|True|False|and|or|not|\(|\))*", condition):
            raise ConfigError(f"decision {node.name}: cannot evaluate {expression}")
        if eval(condition):  # only True, False, and, or, not and parentheses are left
            return target
    raise ConfigError(f"decision {node.name} has no default")


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def assembled_app(tmp_path_factory):
    """The application folder as scripts/deploy_oozie.sh --local-only lays it out (without
    the env archive, which tests/test_deploy.py covers)."""
    folder = tmp_path_factory.mktemp("oozie") / "app"
    result = subprocess.run(["bash", str(REPO / "scripts" / "deploy_oozie.sh"), "--local-only",
                             str(folder), "--env-archive", str(folder.parent / "no-env.tar.gz")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return folder


# --- schemas -------------------------------------------------------------------------------

def test_workflow_matches_the_oozie_1_0_workflow_and_spark_action_schemas():
    workflow_schema("1.0").validate(str(WORKFLOW))


def test_workflow_for_oozie_4_3_matches_the_0_5_schemas(tmp_path):
    folder = deploy.assemble_app(tmp_path / "app", oozie_schema="0.5")
    workflow_schema("0.5").validate(str(folder / "workflow.xml"))
    with pytest.raises(Exception):
        workflow_schema("1.0").validate(str(folder / "workflow.xml"))


def test_coordinator_matches_the_oozie_coordinator_0_5_schema():
    import xmlschema

    xmlschema.XMLSchema(str(schema_dir() / "oozie-coordinator-0.5.xsd")).validate(
        str(COORDINATOR))


def test_schema_validation_rejects_a_spark_action_without_a_jar(tmp_path):
    broken = broken_copy(tmp_path, "<jar>${wf:appPath()}/lib/generate.py</jar>", "")
    with pytest.raises(Exception, match="jar"):
        workflow_schema("1.0").validate(str(broken))


# --- the shape of the workflow ---------------------------------------------------------------

def test_every_transition_names_an_existing_node(tmp_path):
    assert transition_problems(WORKFLOW) == []
    broken = broken_copy(tmp_path, '<ok to="label"/>', '<ok to="labels"/>')
    assert transition_problems(broken) == ["generate goes to 'labels', which is not a node"]


def test_workflow_has_no_cycles(tmp_path):
    assert cycle_problems(WORKFLOW) == []
    broken = broken_copy(tmp_path, '<ok to="end"/>', '<ok to="train"/>')
    assert any("train -> classifier-needed" in problem for problem in cycle_problems(broken))


def test_start_reaches_end_through_every_node(tmp_path):
    assert reachability_problems(WORKFLOW) == []
    broken = broken_copy(tmp_path, '<start to="preprocess"/>', '<start to="failed"/>')
    problems = reachability_problems(broken)
    assert "start never reaches the end node" in problems
    assert "preprocess cannot be reached from start" in problems


def test_workflow_runs_the_stages_in_pipeline_order():
    start, nodes = deploy.read_workflow(WORKFLOW)
    order, name = [], start
    while nodes[name].kind != "end":
        order.append(name)
        node = nodes[name]
        name = node.ok if node.kind == "action" else node.cases[0][1]
    assert order == ["preprocess", "train", "classifier-needed", "train-classifier",
                     "generate", "label"]
    assert nodes["classifier-needed"].cases[-1] == (None, "generate")


def test_every_action_fails_to_a_kill_node_naming_the_failed_action(tmp_path):
    assert kill_problems(WORKFLOW) == []
    broken = broken_copy(tmp_path, "${wf:lastErrorNode()} failed", "the pipeline failed")
    assert kill_problems(broken) == ["kill node failed: its message does not name the failed "
                                     "action and its error"]


# --- variables -----------------------------------------------------------------------------

def test_every_workflow_variable_is_defined_and_declared(tmp_path):
    assert workflow_variable_problems(WORKFLOW) == []
    broken = broken_copy(tmp_path, "--epochs=${trainEpochs}", "--epochs=${trainEpoch}")
    problems = workflow_variable_problems(broken)
    assert "workflow.xml: ${trainEpoch} uses trainEpoch, which is not defined" in problems
    assert "workflow.xml uses trainEpoch without declaring it in <parameters>" in problems


def test_every_coordinator_variable_is_defined_or_an_oozie_builtin(tmp_path):
    defined = set(properties()) | DATASET_VARIABLES
    assert variable_problems(COORDINATOR.read_text(), defined, "coordinator.xml") == []
    broken = broken_copy(tmp_path, "${coord:days(1)}", "${coord:day(1)}", source=COORDINATOR)
    assert variable_problems(broken.read_text(), defined, "coordinator.xml") == [
        "coordinator.xml: ${coord:day(1)} calls coord:day(), which is not an Oozie function"]


def test_job_properties_refer_only_to_their_own_keys_and_the_user_name():
    values = properties()
    problems = []
    for key, value in values.items():
        problems += variable_problems(value, set(values) | OOZIE_PROVIDED, f"job.properties {key}")
    assert problems == []
    assert variable_problems("${nameNode}/${appPth}", set(values), "sample") == [
        "sample: ${appPth} uses appPth, which is not defined"]


def test_job_properties_hold_no_secrets():
    secret = re.compile(r"password|token|secret|keytab", re.IGNORECASE)
    assert [key for key in properties() if secret.search(key)] == []


# --- the coordinator -------------------------------------------------------------------------

def test_coordinator_waits_for_the_done_flag_of_each_days_image_folder():
    root = ElementTree.parse(COORDINATOR).getroot()
    assert root.get("frequency") == "${coord:days(1)}"
    dataset = root.find("{*}datasets/{*}dataset")
    assert dataset.findtext("{*}done-flag") == "_SUCCESS"
    assert root.find("{*}input-events/{*}data-in").get("dataset") == dataset.get("name")


def test_coordinator_passes_the_days_folder_and_nominal_time_to_the_workflow():
    configuration = coordinator_configuration()
    raw_root = deploy.expand("${rawRoot}", sample_values())
    assert configuration["inputDir"] == f"{raw_root}/20260102"
    assert configuration["runTag"] == "202601020000"
    assert configuration["nominalTime"] == "2026-01-02T00:00Z"


# --- the actions and their jobs ----------------------------------------------------------------

def test_every_action_jar_is_a_job_file_in_the_assembled_lib(assembled_app, tmp_path):
    values = sample_values()
    assert jar_problems(WORKFLOW, assembled_app, values) == []
    broken = broken_copy(tmp_path, "lib/train_dcgan.py", "lib/train.py")
    assert jar_problems(broken, assembled_app, values) == [
        f"train: its jar {assembled_app}/lib/train.py is not a file in the application's lib/"]


def test_assembled_lib_holds_pyspark_and_py4j_zips(assembled_app):
    names = sorted(path.name for path in (assembled_app / "lib").iterdir())
    assert "pyspark.zip" in names
    assert any(re.fullmatch(r"py4j-[\d.]+-src\.zip", name) for name in names)
    assert sorted(name for name in names if name.endswith(".py")) == sorted(
        f"{module}.py" for module in deploy.WORKFLOW_JOBS)


def test_every_action_argument_list_parses_with_its_jobs_own_parser(tmp_path):
    assert argument_problems(WORKFLOW, sample_values()) == []
    broken = broken_copy(tmp_path, "--count=${generateCount}", "--images=${generateCount}")
    problems = argument_problems(broken, sample_values())
    assert len(problems) == 1 and problems[0].startswith("generate: ")
    assert "--images" in problems[0]


def test_empty_classifier_handle_reaches_the_label_job_as_its_default():
    _, nodes = deploy.read_workflow(WORKFLOW)
    args, error = parse_action_args(nodes["label"], sample_values(classifierHandle=""))
    assert error is None and args.classifier == ""
    from jobs.train_classifier import default_handle
    values = sample_values()
    settings = Settings(root=deploy.expand("${root}", values))
    assert deploy.expand("${classifierDefaultHandle}", values) == default_handle(
        settings, values["dataset"])


@pytest.mark.parametrize("source", ["coordinator", "job.properties"])
def test_run_ids_chain_from_train_to_generate_to_label_and_are_valid_names(source):
    overrides = coordinator_configuration() if source == "coordinator" else {}
    values = sample_values(**overrides)
    _, nodes = deploy.read_workflow(WORKFLOW)
    parsed = {name: parse_action_args(node, values)[0] for name, node in nodes.items()
              if node.spark is not None}
    assert parsed["generate"].generator_run == parsed["train"].run_id
    assert parsed["label"].generated == parsed["generate"].run_id
    for name, args in parsed.items():
        for option in ("run_id", "generator_run", "generated", "dataset"):
            if getattr(args, option, None):
                validate_name(getattr(args, option), f"{name} --{option}")
    # the reason for formatTime: Oozie's own nominal time is not a valid name
    with pytest.raises(ConfigError):
        validate_name("train-" + coordinator_configuration()["nominalTime"], "--run-id")


def test_spark_settings_of_every_action_are_those_of_submit_conf(tmp_path):
    assert settings_problems(WORKFLOW, sample_values()) == []
    broken = broken_copy(tmp_path, "--conf spark.task.maxFailures=1\n", "")
    assert settings_problems(broken, sample_values()) == [
        "train: spark.task.maxFailures is None, submit_conf says '1'"]


def test_job_properties_container_sizes_are_those_of_submit_conf():
    values = properties()
    assert {"spark.driver.memory": values["driverMemory"],
            "spark.driver.memoryOverhead": values["driverMemoryOverhead"],
            "spark.executor.memory": values["executorMemory"],
            "spark.executor.memoryOverhead": values["executorMemoryOverhead"]} \
        == deploy.YARN_MEMORY


def test_classifier_is_trained_only_when_no_handle_is_configured_or_published():
    _, nodes = deploy.read_workflow(WORKFLOW)
    decision = nodes["classifier-needed"]
    values = sample_values(classifierHandle="")
    published = deploy.expand("${classifierDefaultHandle}", values)
    assert evaluate_decision(decision, values, existing=set()) == "train-classifier"
    assert evaluate_decision(decision, values, existing={published}) == "generate"
    configured = sample_values(classifierHandle="hdfs:///models/mine")
    assert evaluate_decision(decision, configured, existing=set()) == "generate"
