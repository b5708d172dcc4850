"""Option validation: wrong values fail in one line that names them."""

import re

import pytest

from gan_lib import config, storage
from gan_lib.config import ConfigError, Settings


def test_plain_path_root_becomes_absolute_file_uri(tmp_path):
    assert Settings(root=str(tmp_path / "r")).root == (tmp_path / "r").as_uri()


def test_plain_path_root_keeps_spaces_and_percent_signs_as_written(tmp_path):
    root = tmp_path / "my runs 100%"
    assert Settings(root=str(root)).root == f"file://{root}"
    assert storage.local_path(Settings(root=str(root)).root) == root


@pytest.mark.parametrize("root, held", [
    ("/data/gan#1", "'#'"), ("/data/gan?x", "'?'"), ("hdfs://nn:8020/gan#1", "'#'"),
    ("/data/g[ab]", "'[' and ']'"), ("/data/a{b}", "'{' and '}'"), ("/data/a*", "'*'"),
    ("/data/bs\\q", "'\\\\'"), ("/data/it's", '"\'"'), ("/data/semi;colon", "';'"),
    ("/data/c:olon", "':'"), ("/data/r,comma", "','")])
def test_root_holding_characters_read_as_syntax_is_refused_naming_them(root, held):
    with pytest.raises(ConfigError, match=f"holds {re.escape(held)}, which"):
        Settings(root=root)


@pytest.mark.parametrize("root", ["/data/tab\troot", "/data/new\nline"])
def test_root_holding_a_control_character_is_refused(root):
    with pytest.raises(ConfigError, match="control character"):
        Settings(root=root)


@pytest.mark.parametrize("master", ["LOCAL[2]", " local[2]", "bogus", "local[two]"])
def test_a_master_spark_would_not_parse_is_refused(master):
    with pytest.raises(ConfigError, match="is not a Spark master"):
        Settings(master=master)


@pytest.mark.parametrize("master", ["local", "local[*]", "local[2,3]", "local-cluster[2,1,2048]",
                                    "yarn", "spark://127.0.0.1:7077"])
def test_spark_masters_are_accepted(master):
    assert Settings(master=master).master == master


@pytest.mark.parametrize("root, wanted", [
    ("file:/data/gan", "file:///data/gan"), ("file://localhost/data/gan", "file:///data/gan"),
    ("file:////data/gan/", "file:///data/gan"), ("FILE:///data/gan", "file:///data/gan"),
    ("/data/trailing ", "file:///data/trailing "),
    ("file://LocalHost/data/gan", "file:///data/gan")])
def test_local_root_forms_become_one_file_uri_as_written(root, wanted):
    assert Settings(root=root).root == wanted


@pytest.mark.parametrize("root", ["file:", "file://localhost", "file://host/data", "file:///",
                                  "/"])
def test_file_root_without_a_folder_on_this_machine_is_refused(root):
    with pytest.raises(ConfigError, match="absolute path on this machine|file system's root"):
        Settings(root=root)


def test_unknown_root_scheme_is_refused():
    with pytest.raises(ConfigError, match="s3"):
        Settings(root="s3://bucket/gan")


def test_root_with_parent_reference_is_refused():
    with pytest.raises(ConfigError, match=r"\.\."):
        Settings(root="hdfs://nn:8020/gan/../etc")


@pytest.mark.parametrize("name", ["x; DROP TABLE labels", "../escape", "a/b", "", "-lead",
                                  "name'quote", "trailing-newline\n"])
def test_run_ids_that_could_reach_sql_or_escape_paths_are_refused(name):
    with pytest.raises(ConfigError):
        config.validate_name(name, "--run-id")


@pytest.mark.parametrize("name", ["hdp_gan", "Gan2"])
def test_valid_database_names_pass(name):
    assert config.validate_identifier(name, "--database") == name


@pytest.mark.parametrize("name", ["hdp-gan", "db; drop", "1db", "a.b", "gan\n"])
def test_database_names_outside_sql_identifiers_are_refused(name):
    with pytest.raises(ConfigError, match="--database"):
        Settings(database=name)


def test_credentials_are_removed_from_urls():
    assert config.redact_url("http://alice:secret@nn:9870/x") == "http://***@nn:9870/x"


def test_masked_settings_hide_secret_spark_options():
    settings = Settings(extra_spark_conf={"spark.ssl.keyPassword": "hunter2",
                                          "spark.executor.memory": "2g"})
    masked = settings.masked()["extra_spark_conf"]
    assert masked["spark.ssl.keyPassword"] == "***"
    assert masked["spark.executor.memory"] == "2g"


def test_executor_memory_below_what_spark_reserves_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="--executor-memory-mb 1 is below the 512 MB"):
        Settings(root=str(tmp_path), executor_memory_mb=1)
    assert Settings(root=str(tmp_path), executor_memory_mb=512).executor_memory_mb == 512


@pytest.mark.parametrize("key, value, message", [
    ("executors", 2.5, "executors = 2.5: the setting must be a whole number"),
    ("kerberos", "yes", "kerberos = 'yes': the setting must be true or false"),
    ("state_dir", True, "state_dir = True: the setting must be a string"),
    ("spark", 5, "spark = 5: [spark] must be a table of Spark options"),
])
def test_shared_settings_of_the_wrong_type_are_refused_in_one_line(tmp_path, key, value,
                                                                   message):
    with pytest.raises(ConfigError) as refused:
        config.settings_from({"root": str(tmp_path), key: value})
    assert str(refused.value) == message


def test_config_file_sections_are_flattened(tmp_path):
    path = tmp_path / "hdp-gan.toml"
    path.write_text('database = "other"\n[train]\nepochs = 3\n[spark]\n"spark.x" = "1"\n')
    values = config.load_file(str(path))
    assert values["database"] == "other"
    assert values["train.epochs"] == 3
    assert config.settings_from(values).extra_spark_conf == {"spark.x": "1"}


def test_spark_options_become_the_strings_sparks_configuration_holds(tmp_path):
    path = tmp_path / "hdp-gan.toml"
    path.write_text('[spark]\n"spark.ui.enabled" = false\n"spark.sql.shuffle.partitions" = 4\n'
                    '"spark.memory.fraction" = 0.5\n')
    assert config.settings_from(config.load_file(str(path))).extra_spark_conf == {
        "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4",
        "spark.memory.fraction": "0.5"}


@pytest.mark.parametrize("toml_value, shown", [
    ("inf", "inf"), ("nan", "nan"), ("[1, 2]", "[1, 2]"), ("{ a = 1 }", "{'a': 1}"),
    ("1979-05-27", "datetime.date(1979, 5, 27)")])
def test_a_spark_option_spark_cannot_read_is_refused_in_one_line(tmp_path, toml_value, shown):
    path = tmp_path / "hdp-gan.toml"
    path.write_text(f'[spark]\n"spark.memory.fraction" = {toml_value}\n')
    with pytest.raises(ConfigError) as refused:
        config.settings_from(config.load_file(str(path)))
    assert str(refused.value) == (f"[spark] spark.memory.fraction = {shown}: a Spark option "
                                  "must be a string, a finite number, or true or false")


def test_malformed_config_file_is_a_config_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("epochs = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load_file(str(path))


def test_storage_join_refuses_climbing_out_of_the_root():
    with pytest.raises(ConfigError):
        storage.join("file:///data/root", "runs", "../../etc")


def test_password_pairs_in_jdbc_urls_are_masked():
    masked = config.mask_secrets({"url": "jdbc:derby://db:1527/m;user=a;password=hunter2",
                                  "keytab_password": "x", "nested": ["token=abc"]})
    assert "hunter2" not in str(masked) and "abc" not in str(masked)
    assert masked["keytab_password"] == "***"


def test_credentials_inside_a_jdbc_url_are_removed():
    assert config.redact_url("jdbc:postgresql://alice:pw@db:5432/m") == \
        "jdbc:postgresql://***@db:5432/m"


def test_local_jobs_run_their_jvms_with_the_quick_jit_and_the_sql_server_without(tmp_path):
    from gan_lib import session

    settings = Settings(root=str(tmp_path / "r"))
    job = session.spark_conf(settings, "a job")
    server = session.spark_conf(settings, "the sql server", server=True)
    yarn = session.spark_conf(config.with_overrides(settings, master="yarn"), "a job")

    for options in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
        assert session.QUICK_JIT in job[options]
        assert session.QUICK_JIT not in server[options]
        assert session.QUICK_JIT not in yarn.get(options, "")


def test_one_core_local_executors_use_the_serial_collector_and_others_the_jvm_default(
        tmp_path):
    from gan_lib import session

    settings = Settings(root=str(tmp_path / "r"))
    one = session.spark_conf(settings, "a job")
    two = session.spark_conf(config.with_overrides(settings, executor_cores=2), "a job")
    named = session.spark_conf(config.with_overrides(settings, master="local-cluster[2,2,1024]"),
                               "a job")
    yarn = session.spark_conf(config.with_overrides(settings, master="yarn"), "a job")

    assert session.ONE_CORE_GC in one["spark.executor.extraJavaOptions"]
    assert session.ONE_CORE_GC not in one["spark.driver.extraJavaOptions"]
    for conf in (two, named):
        assert session.ONE_CORE_GC not in conf["spark.executor.extraJavaOptions"]
    assert session.ONE_CORE_GC not in yarn.get("spark.executor.extraJavaOptions", "")


def test_streaming_jobs_start_one_core_local_executors_with_a_small_heap_touched_up_front(
        tmp_path):
    from gan_lib import session

    settings = Settings(root=str(tmp_path / "r"))
    streaming = session.spark_conf(settings, "a job", streaming=True)
    other = session.spark_conf(settings, "a job")
    two = session.spark_conf(config.with_overrides(settings, executor_cores=2), "a job",
                             streaming=True)
    yarn = session.spark_conf(config.with_overrides(settings, master="yarn"), "a job",
                              streaming=True)

    assert session.STREAMING_HEAP in streaming["spark.executor.extraJavaOptions"]
    assert session.STREAMING_HEAP not in streaming["spark.driver.extraJavaOptions"]
    for conf in (other, two):
        assert session.STREAMING_HEAP not in conf["spark.executor.extraJavaOptions"]
    assert session.STREAMING_HEAP not in yarn.get("spark.executor.extraJavaOptions", "")


def test_streaming_jobs_write_partitions_without_a_planned_sort_on_any_master(tmp_path):
    from gan_lib import session

    settings = Settings(root=str(tmp_path / "r"))
    for master in ("local-cluster[2,1,1024]", "yarn"):
        chosen = config.with_overrides(settings, master=master)
        streaming = session.spark_conf(chosen, "a job", streaming=True)
        other = session.spark_conf(chosen, "a job")
        assert streaming["spark.sql.optimizer.plannedWrite.enabled"] == "false"
        assert int(streaming["spark.sql.maxConcurrentOutputFileWriters"]) >= 1
        assert "spark.sql.optimizer.plannedWrite.enabled" not in other


def test_local_jobs_read_files_without_checksums_and_the_sql_server_with_them(tmp_path):
    from gan_lib import session

    settings = Settings(root=str(tmp_path / "r"))
    key = "spark.hadoop.fs.file.impl"
    assert session.spark_conf(settings, "a job")[key].endswith("RawLocalFileSystem")
    assert key not in session.spark_conf(settings, "the sql server", server=True)
