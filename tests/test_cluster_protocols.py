"""The pipeline against cluster protocols: the root on WebHDFS (Spark's own webhdfs:// client
and HdfsCLI do the talking), every stage a separate process sharing one metastore (Derby's
network server), and the README's queries through a HiveServer2 endpoint (Spark's Thrift
server) with PyHive and beeline."""

import json
import subprocess
from pathlib import Path

import pytest

from conftest import ONE_JVM_MASTER, run_job
from services import DerbyNetworkServer, ThriftServer
from webhdfs_server import WebHdfsServer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    (base / "hdfs" / "user").mkdir(parents=True)  # as on a cluster: home folders live here
    hdfs = WebHdfsServer(base / "hdfs").start()
    derby = DerbyNetworkServer(base / "derby").start()
    shared = ["--root", hdfs.webhdfs_uri("/user/gan"), "--metastore-jdbc-url", derby.jdbc_url,
              "--state-dir", base / "state"]
    yield {"hdfs": hdfs, "derby": derby, "shared": shared, "base": base}
    derby.stop()
    hdfs.stop()


# Preprocess runs on local-cluster, so that executor JVMs of their own read the input
# (binaryFile) and write Parquet through Spark's webhdfs:// client, and training needs one
# executor per TensorFlow node. The other stages run in one JVM: their executor-side storage
# work happens in Python workers (HdfsCLI), separate processes on either master, and their
# JVM side reads and writes as preprocess does.
LOCAL_CLUSTER_STAGES = {"preprocess", "train"}


def _job(cluster, *args):
    master = None if args[0] in LOCAL_CLUSTER_STAGES else ONE_JVM_MASTER
    result = run_job(*args[:1], *cluster["shared"], *args[1:], master=master)
    assert result.code == 0, result.stderr[-4000:]
    return result.summary


@pytest.fixture(scope="module")
def pipeline_on_webhdfs(cluster):
    summaries = {"ingest": _job(cluster, "ingest", "--limit", "150")}
    summaries["preprocess"] = _job(cluster, "preprocess")
    summaries["train"] = _job(cluster, "train", "--epochs", "1", "--max-images", "256",
                              "--batch-size", "64", "--sample-count", "8")
    summaries["classifier"] = _job(cluster, "train-classifier", "--epochs", "1")
    summaries["generate"] = _job(cluster, "generate", "--generator-run",
                                 summaries["train"]["run_id"], "--count", "40")
    summaries["label"] = _job(cluster, "label", "--generated", summaries["generate"]["run_id"])
    return summaries


def test_preprocess_reads_and_writes_through_webhdfs(cluster, pipeline_on_webhdfs):
    counts = pipeline_on_webhdfs["preprocess"]["counts"]
    assert counts["accepted"] == 300 and counts["rejected"] == 0
    hdfs_root = Path(cluster["base"] / "hdfs" / "user" / "gan")
    parquet_files = list((hdfs_root / "warehouse" / "hdp_gan.db" / "images").rglob("*.parquet"))
    assert parquet_files
    assert any(op == "CREATE" for _, op, _ in cluster["hdfs"].requests)


def test_training_outputs_reach_hdfs_through_the_storage_layer(cluster, pipeline_on_webhdfs):
    run = Path(cluster["base"] / "hdfs" / "user" / "gan" / "runs" /
               pipeline_on_webhdfs["train"]["run_id"])
    assert (run / "checkpoints" / "latest.json").exists()
    assert (run / "generator" / "saved_model.pb").exists()
    assert (run / "samples" / "epoch-0001.png").exists()
    assert not list(run.rglob(".*.tmp")), "a temporary file was left behind"


def test_separate_processes_share_one_metastore(cluster, pipeline_on_webhdfs):
    result = run_job("sql", *cluster["shared"], "--json",
                     "SELECT stage, count(*) AS runs FROM runs GROUP BY stage ORDER BY stage")
    assert result.code == 0, result.stderr[-3000:]
    stages = {json.loads(line)["stage"] for line in result.stdout.splitlines()
              if line.startswith("{")}
    assert {"preprocess", "train", "train-classifier", "generate", "label"} <= stages


@pytest.fixture(scope="module")
def hiveserver2(cluster, pipeline_on_webhdfs):
    options = ["--root", cluster["hdfs"].webhdfs_uri("/user/gan"),
               "--metastore-jdbc-url", cluster["derby"].jdbc_url,
               "--state-dir", cluster["base"] / "thrift-state", "--executors", 1]
    server = ThriftServer(options, cluster["base"] / "thrift.log").start()
    yield server
    server.stop()


README_QUERY = ("SELECT label, count(*) AS images, round(avg(confidence), 3) AS mean_confidence "
                "FROM hdp_gan.labels WHERE run_id = '{run}' AND status = 'ok' "
                "GROUP BY label ORDER BY images DESC")


def test_readme_query_through_hiveserver2_with_pyhive(hiveserver2, pipeline_on_webhdfs):
    from pyhive import hive

    run = pipeline_on_webhdfs["generate"]["run_id"]
    connection = hive.connect(host="127.0.0.1", port=hiveserver2.port, auth="NONE",
                              username="analyst")
    cursor = connection.cursor()
    cursor.execute(README_QUERY.format(run=run))
    rows = cursor.fetchall()
    connection.close()
    assert sum(row[1] for row in rows) == 40
    assert all(0 < row[2] <= 1 for row in rows)


def test_readme_query_through_hiveserver2_with_beeline(hiveserver2, pipeline_on_webhdfs):
    import pyspark

    beeline = Path(pyspark.__file__).parent / "bin" / "beeline"
    run = pipeline_on_webhdfs["generate"]["run_id"]
    result = subprocess.run(
        [str(beeline), "-u", f"jdbc:hive2://127.0.0.1:{hiveserver2.port}", "-n", "analyst",
         "--outputformat=csv2", "--silent=true", "-e", README_QUERY.format(run=run)],
        capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.rsplit("> ", 1)[-1] for line in result.stdout.splitlines() if "," in line]
    assert lines[0] == "label,images,mean_confidence"
    assert sum(int(line.split(",")[1]) for line in lines[1:]) == 40
