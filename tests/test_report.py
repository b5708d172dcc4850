"""The HTML report of a run: lineage, escaping, and the page as a browser shows it.

The browser tests open the report in headless Chromium (Debian package ``chromium``, which
scripts/test.sh installs) and keep a screenshot in test-artifacts/.
"""

import datetime as dt
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pyarrow.parquet as parquet
import pytest
from PIL import Image

from gan_lib import report
from gan_lib.config import ConfigError
from gan_lib.report import Facts, Picture, Pictures, RunRow

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
TRAIN_ID = "train-20260101T000000-aaaaaa"
GENERATE_ID = "generate-20260101T010000-bbbbbb"
HANDLE = "file:///data/models/fashion-mnist-classifier"

# Set on <body> once the page has loaded: how many images it has and which did not load.
IMAGE_CHECK = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (image) {
    return !(image.complete && image.naturalWidth > 0);
  });
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-broken", broken.map(function (image) {
    return image.getAttribute("src");
  }).join(" "));
  document.body.setAttribute("data-height", String(document.documentElement.scrollHeight));
});
</script>"""


def _row(stage, run_id, minute, **fields) -> RunRow:
    started = dt.datetime(2026, 1, 1, 0, minute)
    values = {"status": "succeeded", "started_at": started,
              "finished_at": started + dt.timedelta(seconds=30), "duration_s": 30.0,
              "counts": {}, "parameters": {}, "outputs": {}, "lineage": {},
              "code_version": "0.1.0+abc", "message": ""}
    values.update(fields)
    return RunRow(stage=stage, run_id=run_id, **values)


def _history() -> list[RunRow]:
    """A root's runs, newest first: two preprocess runs, a train run, a classifier, two generate
    runs of which one is labelled, and a train run of another dataset."""
    rows = [
        _row("preprocess", "preprocess-old", 1, parameters={"dataset": "fashion-mnist"}),
        _row("preprocess", "preprocess-new", 2, parameters={"dataset": "fashion-mnist"},
             counts={"files_seen": 10, "accepted": 9, "rejected": 1, "duplicates": 0}),
        _row("train", TRAIN_ID, 3, counts={"epochs": 2, "steps": 40},
             lineage={"dataset": "fashion-mnist", "preprocess_runs": ["preprocess-new"]}),
        _row("train-classifier", "classifier-1", 4, outputs={"handle": HANDLE},
             counts={"test_accuracy": 0.9}),
        _row("generate", GENERATE_ID, 5, lineage={"generator_run": TRAIN_ID},
             counts={"images": 40}, parameters={"seed": 5}),
        _row("label", GENERATE_ID, 6, lineage={"classifier": HANDLE,
                                               "source": f"generate run {GENERATE_ID}"}),
        _row("generate", "generate-unlabelled", 7, lineage={"generator_run": TRAIN_ID}),
        _row("train", "train-other", 8, lineage={"dataset": "faces"}),
        _row("report", TRAIN_ID, 9),
    ]
    return sorted(rows, key=report._newest_first_key)


def test_report_of_a_train_run_follows_the_lineage_to_its_generate_and_label_runs():
    related = report.related_runs(_history(), TRAIN_ID)
    assert related.stage == "train" and related.dataset == "fashion-mnist"
    assert [run.run_id for run in related.preprocess] == ["preprocess-new"]
    assert [run.run_id for run in related.generates] == ["generate-unlabelled", GENERATE_ID]
    assert list(related.labels) == [GENERATE_ID]
    assert [run.run_id for run in related.classifiers] == ["classifier-1"]
    assert "report" not in {run.stage for run in related.all_runs()}


def test_report_of_a_generate_run_shows_that_run_and_its_train_run():
    related = report.related_runs(_history(), GENERATE_ID)
    assert related.stage == "generate"
    assert related.train.run_id == TRAIN_ID
    assert [run.run_id for run in related.generates] == [GENERATE_ID]
    assert related.labels[GENERATE_ID].stage == "label"


def test_report_of_a_generate_run_whose_train_run_is_gone_says_so():
    rows = [row for row in _history() if row.run_id != TRAIN_ID]
    related = report.related_runs(rows, GENERATE_ID)
    assert related.train is None
    page = report.render_page(related, Facts(), Pictures(), dt.datetime(2026, 1, 2),
                              "file:///r", "0.1.0")
    assert "The training run this run came from is not in the runs table." in page


@pytest.mark.parametrize("source, dataset", [
    ("/home/me/photos", None), ("dataset faces split test", "faces")], ids=["folder", "split"])
def test_report_of_a_label_run_shows_the_dataset_it_labelled_and_no_other(source, dataset):
    """A folder's label run holds --dataset's default among its parameters; it labelled no
    dataset."""
    rows = _history() + [_row("label", "label-own", 10, parameters={"dataset": "fashion-mnist"},
                              lineage={"classifier": HANDLE, "source": source})]
    assert report.related_runs(rows, "label-own").dataset == dataset


def test_report_of_an_unknown_run_says_how_to_list_the_runs():
    with pytest.raises(ConfigError, match="hdp-gan runs"):
        report.related_runs(_history(), "train-nowhere")


def _page_with(hostile: str) -> str:
    """A rendered page whose recorded values all hold ``hostile`` text."""
    rows = _history()
    for row in rows:
        if row.stage == "train":
            row.parameters = {"note": hostile, "url": "http://alice:s3cret@nn:9870/x"}
        if row.run_id == "preprocess-new":
            row.status, row.message = "failed", hostile
    related = report.related_runs(rows, TRAIN_ID)
    facts = Facts(
        splits=[{"split": hostile, "images": 9, "labels": 2, "height": 28, "width": 28,
                 "channels": 1}],
        rejects=[{"reason": "corrupt", "files": 1, "example": f"/in/{hostile}.png"}],
        epochs=[{"epoch": 1, "step": 20, "d_loss": 1.25, "g_loss": 0.75, "d_real": 0.6,
                 "d_fake": 0.4, "images_per_second": 100.0, "learning_rate": 2e-4,
                 "duration_s": 3.0}],
        quality={GENERATE_ID: {"frechet_distance": 12.3456, "classifier_score": 4.5,
                               "real_classifier_score": 8.25, "kernel_distance": 0.0123,
                               "kernel_distance_stderr": 0.001, "largest_class_share": 0.5,
                               "mode_collapse": False, "mean_confidence": 0.8,
                               "fake_count": 40, "real_count": 600}},
        label_counts={GENERATE_ID: [(hostile, 20, 0.9), ("Bag", 20, 0.7)]},
        classifier_versions={GENERATE_ID: {(HANDLE, hostile)}},
        real_label_counts={"Bag": 300, hostile: 300})
    pictures = Pictures(loss_curve=Picture(f"{hostile}.png", 640, 360, hostile))
    return report.render_page(related, facts, pictures, dt.datetime(2026, 1, 2), "file:///r",
                              "0.1.0")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_picture_is_left_out_like_a_missing_one_naming_its_file(tmp_path, caplog,
                                                                        damage):
    import io

    from gan_lib.config import Settings
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 7).save(buffer, "PNG", compress_level=0)
    whole = buffer.getvalue()
    picture = tmp_path / "loss_curve.png"
    picture.write_bytes(b"not a picture" if damage == "garbage" else whole[:len(whole) // 2])
    folder = report.ReportFolder(Settings(root=tmp_path.as_uri()), (tmp_path / "report").as_uri())
    assert folder.copy(picture.as_uri(), "loss_curve.png") is None
    assert folder.written == [] and not (tmp_path / "report").exists()
    assert f"{picture.as_uri()} cannot be read as a picture" in caplog.text
    picture.write_bytes(whole)
    assert folder.copy(picture.as_uri(), "loss_curve.png") == Picture("loss_curve.png", 64, 64)


def test_every_recorded_value_is_escaped_on_the_page():
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    page = _page_with(hostile)
    assert "<script" not in page.lower() and "<img src=x" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "s3cret" not in page


def test_page_shows_the_key_numbers_and_refers_only_to_files_beside_it():
    page = _page_with("Sneaker")
    for shown in ("12.346", "4.500", "8.250", "0.012", ">40<", ">600<", "1.250", "0.750"):
        assert shown in page, shown
    references = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert references, "the page shows no picture"
    assert all("://" not in ref and not ref.startswith(("/", "..")) for ref in references)


@pytest.mark.parametrize("value, text", [(0.04403, "0.044"), (25.3124, "25.312"),
                                         (0.000119, "0.000119"), (1234, "1,234"),
                                         (True, "yes"), (None, "-")])
def test_numbers_are_written_the_same_way_everywhere(value, text):
    assert report.format_number(value) == text


# --- The report job on a real root, opened in Chromium ------------------------------------------

def _table(root: Path, table: str, partition: str) -> list[dict]:
    folder = root / "warehouse" / "hdp_gan.db" / table / partition
    return parquet.read_table(folder).to_pylist() if folder.exists() else []


@pytest.fixture(scope="module")
def reported(trained, labelled, job):
    """The small root with a labelled generate run of the trained generator ('generate-test')
    and the train run's report; a stale file is left in the report folder beforehand."""
    root, train_summary = trained
    folder = root / "runs" / train_summary["run_id"] / "report"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stale-picture.png").write_bytes(b"left over from an earlier report")
    result = job("report", "--root", root, train_summary["run_id"])
    assert result.code == 0, result.stderr[-3000:]
    return root, train_summary["run_id"], result.summary


def _chromium(profile: Path, *arguments, timeout: int = 120) -> str:
    """Run headless Chromium on local files only and return its standard output."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is missing: scripts/test.sh installs the Debian package "
                    "chromium (HDP_GAN_APT), or run apt-get install -y chromium")
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", "--disable-extensions",
               "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
               *arguments]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        try:  # Chromium's helper processes share its process group
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    assert process.returncode == 0, stderr[-2000:]
    return stdout


def test_report_is_written_in_the_run_folder_and_named_in_the_json_line(reported):
    root, train_id, summary = reported
    page = root / "runs" / train_id / "report" / "index.html"
    assert summary["outputs"]["report"] == page.as_uri()
    assert page.exists()
    assert not (page.parent / "stale-picture.png").exists()
    rows = _table(root, "runs", f"stage=report/run_id={train_id}")
    assert [row["status"] for row in rows] == ["succeeded"]


def test_report_opens_in_chromium_with_every_image_loaded_and_the_key_numbers(reported,
                                                                              tmp_path):
    root, train_id, _ = reported
    folder = tmp_path / "report"
    shutil.copytree(root / "runs" / train_id / "report", folder)
    page = (folder / "index.html").read_text()
    (folder / "check.html").write_text(page.replace("</body>", IMAGE_CHECK + "</body>"))

    dom = _chromium(tmp_path / "profile", "--virtual-time-budget=10000", "--dump-dom",
                    (folder / "check.html").as_uri())
    images = re.search(r'data-images="(\d+)"', dom)
    assert images, "the page did not finish loading"
    assert int(images.group(1)) == page.count("<img ") >= 6
    assert re.search(r'data-broken="([^"]*)"', dom).group(1) == ""

    quality = _table(root, "quality", "run_id=generate-test")[0]
    dataset_images = len(parquet.read_table(
        root / "warehouse" / "hdp_gan.db" / "images" / "dataset=fashion-mnist",
        columns=["image_id"]))
    epochs = _table(root, "training_metrics", f"run_id={train_id}")
    for shown in (report.format_number(quality["frechet_distance"]),
                  report.format_number(quality["classifier_score"]),
                  report.format_number(quality["real_classifier_score"]),
                  report.format_number(quality["fake_count"]),
                  report.format_number(dataset_images),
                  report.format_number(max(row["g_loss"] for row in epochs
                                           if row["epoch"] == len(epochs)))):
        assert f">{shown}<" in dom, shown
    assert "generate-test" in dom and train_id in dom


def test_report_screenshot_is_kept_as_a_test_artifact(reported, tmp_path):
    root, train_id, _ = reported
    page = root / "runs" / train_id / "report" / "index.html"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report-screenshot.png"
    screenshot.unlink(missing_ok=True)
    _chromium(tmp_path / "profile", "--window-size=1200,3600",
              f"--screenshot={screenshot}", page.as_uri())
    with Image.open(screenshot) as image:
        assert image.size == (1200, 3600)
        colours = image.convert("L").getextrema()
    assert colours[1] - colours[0] > 100, "the screenshot is blank"


def test_report_of_a_run_that_does_not_exist_fails_in_one_line_and_records_nothing(
        fashion_root, job):
    result = job("report", "--root", fashion_root, "train-that-never-ran")
    assert result.code == 2
    assert "hdp-gan runs" in result.last_error_line
    assert "Traceback" not in result.stderr
    assert not _table(fashion_root, "runs", "stage=report/run_id=train-that-never-ran")
