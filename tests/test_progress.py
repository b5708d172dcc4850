"""The progress bar for long local steps, and its use by uploads."""
import io

from gan_lib.progress import ProgressBar
from gan_lib.storage import LocalStorage


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_in_a_log_file_is_one_line_per_tenth_of_the_way():
    stream = io.StringIO()
    with ProgressBar("ingest: encoding train", 200, stream=stream, unit="images") as bar:
        for _ in range(200):
            bar.advance()

    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("ingest: encoding train [")
    assert "20/200 images" in lines[0]
    assert "200/200 images 100%" in lines[-1]
    assert "\r" not in stream.getvalue()


def test_progress_on_a_terminal_redraws_one_line_and_ends_it():
    stream = Terminal()
    with ProgressBar("export: generator", 5, stream=stream, redraw_s=0.0) as bar:
        for _ in range(5):
            bar.advance()

    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.count("\r") >= 5
    assert "5/5 files 100%" in text.split("\r")[-1]


def test_interrupted_progress_says_where_it_stopped():
    stream = Terminal()
    try:
        with ProgressBar("ingest: publishing", 10, stream=stream) as bar:
            bar.advance(3)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass

    assert stream.getvalue().rstrip("\n").endswith("(stopped)")
    assert "3/10 files" in stream.getvalue().split("\r")[-1]


def test_progress_never_counts_past_its_total():
    bar = ProgressBar("retry", 2, stream=io.StringIO())
    bar.advance(5)
    assert bar.done == 2


def test_upload_with_a_label_counts_every_file_copied(tmp_path, capsys):
    source = tmp_path / "source"
    (source / "inner").mkdir(parents=True)
    for index in range(4):
        (source / "inner" / f"{index}.bin").write_bytes(b"x" * index)

    LocalStorage().upload_dir(source, (tmp_path / "target").as_uri(), progress="publishing")

    assert sorted(p.name for p in (tmp_path / "target" / "inner").iterdir()) == [
        "0.bin", "1.bin", "2.bin", "3.bin"]
    progress = capsys.readouterr().err
    assert progress.startswith("publishing [")
    assert "4/4 files 100%" in progress
