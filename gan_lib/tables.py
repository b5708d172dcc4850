"""Hive DDL and idempotent writes: every table the project owns is defined here.

All tables are EXTERNAL Parquet tables with an explicit location under
``<root>/warehouse/<database>.db/<table>``, so that both Spark and Hive 3 read them and
Spark can write them (Spark cannot write Hive 3 managed ACID tables). Each table is
partitioned so that a rerun of one run (or one dataset) replaces exactly its own partition
and nothing else: writes go through ``write_partitions`` with dynamic partition overwrite.

Tables
------
images            the preprocessed datasets, one row per distinct image
rejects           files that could not be used, with the reason
runs              one row per stage run: status, counts, parameters, lineage
training_metrics  one row per training epoch
generated         images drawn from a trained generator
labels            classifier labels for a run's images
quality           "how real are they?" scores for a generator run
"""

import logging

from gan_lib import storage
from gan_lib.config import Settings, validate_identifier

logger = logging.getLogger(__name__)

# name -> (columns, partition columns); types are Hive types.
TABLES = {
    "images": (
        [("image_id", "STRING"), ("source_path", "STRING"), ("label", "STRING"),
         ("label_index", "INT"), ("height", "INT"), ("width", "INT"), ("channels", "INT"),
         ("pixels", "BINARY"), ("run_id", "STRING")],
        [("dataset", "STRING"), ("split", "STRING")],
    ),
    "rejects": (
        [("path", "STRING"), ("reason", "STRING"), ("detail", "STRING"),
         ("size_bytes", "BIGINT"), ("detected_format", "STRING"), ("run_id", "STRING")],
        [("dataset", "STRING")],
    ),
    "runs": (
        [("status", "STRING"), ("started_at", "TIMESTAMP"), ("finished_at", "TIMESTAMP"),
         ("duration_s", "DOUBLE"), ("counts", "STRING"), ("parameters", "STRING"),
         ("outputs", "STRING"), ("lineage", "STRING"), ("code_version", "STRING"),
         ("message", "STRING")],
        [("stage", "STRING"), ("run_id", "STRING")],
    ),
    "training_metrics": (
        [("epoch", "INT"), ("step", "BIGINT"), ("d_loss", "DOUBLE"), ("g_loss", "DOUBLE"),
         ("d_real", "DOUBLE"), ("d_fake", "DOUBLE"), ("images_per_second", "DOUBLE"),
         ("learning_rate", "DOUBLE"), ("duration_s", "DOUBLE"), ("recorded_at", "TIMESTAMP")],
        [("run_id", "STRING")],
    ),
    "generated": (
        [("image_id", "STRING"), ("seed", "BIGINT"), ("sample_index", "BIGINT"),
         ("path", "STRING"), ("generator_run", "STRING")],
        [("run_id", "STRING")],
    ),
    "labels": (
        [("image_id", "STRING"), ("path", "STRING"), ("status", "STRING"), ("label", "STRING"),
         ("label_index", "INT"), ("confidence", "DOUBLE"),
         ("top_k", "ARRAY<STRUCT<label:STRING,score:DOUBLE>>"),
         ("classifier_handle", "STRING"), ("classifier_version", "STRING"),
         ("labelled_at", "TIMESTAMP")],
        [("run_id", "STRING")],
    ),
    "quality": (
        [("generator_run", "STRING"), ("frechet_distance", "DOUBLE"),
         ("classifier_score", "DOUBLE"), ("real_classifier_score", "DOUBLE"),
         ("kernel_distance", "DOUBLE"), ("kernel_distance_stderr", "DOUBLE"),
         ("class_shares", "MAP<STRING,DOUBLE>"), ("largest_class_share", "DOUBLE"),
         ("mode_collapse", "BOOLEAN"), ("mean_confidence", "DOUBLE"), ("fake_count", "BIGINT"),
         ("real_count", "BIGINT"), ("classifier_handle", "STRING"),
         ("scored_at", "TIMESTAMP")],
        [("run_id", "STRING")],
    ),
}


def qualified(settings: Settings, table: str) -> str:
    """``database.table`` after checking both names."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; the project's tables are {sorted(TABLES)}")
    return f"{validate_identifier(settings.database, '--database')}.{table}"


def database_location(settings: Settings, database: str | None = None) -> str:
    """The database's folder, which holds its tables' folders."""
    return storage.join(settings.root, "warehouse", f"{database or settings.database}.db")


def table_location(settings: Settings, table: str) -> str:
    return storage.join(database_location(settings), table)


def create_statement(settings: Settings, table: str) -> str:
    """The ``CREATE EXTERNAL TABLE`` statement for one table."""
    columns, partitions = TABLES[table]
    column_list = ",\n  ".join(f"`{name}` {kind}" for name, kind in columns)
    partition_list = ", ".join(f"`{name}` {kind}" for name, kind in partitions)
    return (f"CREATE EXTERNAL TABLE IF NOT EXISTS {qualified(settings, table)} (\n"
            f"  {column_list}\n)\nPARTITIONED BY ({partition_list})\nSTORED AS PARQUET\n"
            f"LOCATION '{table_location(settings, table)}'")


def ensure_tables(spark, settings: Settings, names=None) -> None:
    """Create the database and the named tables (all by default) when missing.

    A table created here over a folder that already holds partitions (the table was dropped,
    which leaves an external table's files in place) gets those partitions back, so that
    dropping a table loses no rows.
    """
    database = validate_identifier(settings.database, "--database")
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {database} "
              f"LOCATION '{database_location(settings, database)}'")
    for table in names or TABLES:
        existed = spark.catalog.tableExists(qualified(settings, table))
        spark.sql(create_statement(settings, table))
        if not existed and has_partition_folders(settings, table):
            spark.sql(f"ALTER TABLE {qualified(settings, table)} RECOVER PARTITIONS")
            found = len(spark.sql(f"SHOW PARTITIONS {qualified(settings, table)}").collect())
            logger.info("table %s was created over a folder that held %d partitions; they are "
                        "back in the table", qualified(settings, table), found)


def has_partition_folders(settings: Settings, table: str) -> bool:
    """Whether the table's folder holds folders of its first partition column."""
    location = table_location(settings, table)
    store = storage.open_storage(location, settings)
    first_partition = TABLES[table][1][0][0]
    return store.is_dir(location) and any(
        is_folder and name.startswith(first_partition + "=")
        for name, is_folder in store.entries(location))


def column_names(table: str) -> list[str]:
    columns, partitions = TABLES[table]
    return [name for name, _ in columns + partitions]


def schema(table: str) -> str:
    """The table's columns (partition columns last) as a Spark DDL schema string."""
    columns, partitions = TABLES[table]
    return ", ".join(f"`{name}` {kind}" for name, kind in columns + partitions)


def rows_frame(spark, table: str, rows: list[dict]):
    """A DataFrame with the table's schema from a few rows built on the driver."""
    names = column_names(table)
    return spark.createDataFrame([{name: row.get(name) for name in names} for row in rows],
                                 schema=schema(table))


def write_partitions(spark, settings: Settings, table: str, frame) -> None:
    """Replace the partitions present in ``frame`` and leave every other partition alone.

    ``frame`` must hold every column of the table (partition columns included); columns are
    reordered here because Spark's ``insertInto`` matches them by position. With dynamic
    partition overwrite Spark writes the new files to a staging folder of its own and swaps
    each partition in only when the write has succeeded, so a failed or killed rerun leaves
    the partition's previous rows in place.
    """
    ensure_tables(spark, settings, [table])
    ordered = frame.select(*column_names(table))
    ordered.write.insertInto(qualified(settings, table), overwrite=True)
    logger.debug("wrote %s", qualified(settings, table))


def drop_partitions_except(spark, settings: Settings, table: str, prefix: dict,
                           keep: list[dict]) -> list[str]:
    """Drop the partitions under ``prefix`` (e.g. one dataset) that are not in ``keep``, files
    included, after a rerun has written its own: dynamic overwrite replaces only the
    partitions a write holds, so a split or a rejects partition that the new run no longer
    has would otherwise stay behind. Returns the partitions dropped (``key=value/...``)."""
    def spec(values: dict) -> str:
        return "/".join(f"{key}={value}" for key, value in values.items())

    ensure_tables(spark, settings, [table])
    kept = {spec({**prefix, **values}) for values in keep}
    listed = spark.sql(f"SHOW PARTITIONS {qualified(settings, table)} PARTITION ("
                       + ", ".join(f"{key} = {sql_string(value)}" for key, value in prefix.items())
                       + ")").collect()
    dropped = [row[0] for row in listed if row[0] not in kept]
    for name in dropped:
        values = dict(part.split("=", 1) for part in name.split("/"))
        spark.sql(f"ALTER TABLE {qualified(settings, table)} DROP IF EXISTS PARTITION ("
                  + ", ".join(f"{key} = {sql_string(value)}" for key, value in values.items())
                  + ")")
        location = storage.join(table_location(settings, table), name)
        storage.open_storage(location, settings).delete(location)
        logger.info("dropped %s partition %s, which this run no longer has", table, name)
    return dropped


def sql_string(value: str) -> str:
    """Quote a validated value as an SQL string literal."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"
