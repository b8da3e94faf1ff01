"""A chunk read by LOAD DATA LOCAL INFILE (MariaDB) while it is still being written: the
database gets every line written before the chunk was finished, however the writes and
reads interleave, and a reader that stops early does not leave the feeder hanging."""

from __future__ import annotations

import threading

import pytest

from cdc_sync.targets.aurora.chunk_file import ChunkFile

pytestmark = pytest.mark.services


@pytest.fixture
def table(stack, unique_name):
    db = f"chunk_{unique_name}"
    admin = stack.mariadb.connect()
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}`")
        cur.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, note VARCHAR(100))")
    yield f"`{db}`.t"
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE `{db}`")
    admin.close()


def _load(stack, table: str, path: str, result: dict) -> None:
    conn = stack.mariadb.connect(local_infile=True)
    try:
        with conn.cursor() as cur:
            result["rows"] = cur.execute(
                f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {table} FIELDS TERMINATED BY ',' LINES TERMINATED BY '\\n'"
            )
    except Exception as error:  # noqa: BLE001 - handed to the test's thread
        result["error"] = error
    finally:
        conn.close()


def test_load_data_reads_a_chunk_while_it_is_written(stack, table, tmp_path):
    chunk = ChunkFile(tmp_path / "c.csv", streamed=True)
    lines = [f"{i},note {i} {'x' * (i % 90)}\n" for i in range(30_000)]
    parts = [lines[:10], lines[10:20_000], lines[20_000:]]  # the last part larger than a pipe buffer
    with chunk.path.open("w") as out:
        out.write("".join(parts[0]))
        out.flush()
        chunk.grew(len(parts[0]))
        result: dict = {}
        with chunk.load_path() as path:
            assert path.startswith("/dev/fd/")  # not finished: read through the feeder's pipe
            loader = threading.Thread(target=_load, args=(stack, table, path, result))
            loader.start()
            for part in parts[1:]:
                out.write("".join(part))
                out.flush()
                chunk.grew(len(part))
            chunk.finish()
            loader.join()
    assert "error" not in result, result
    assert result["rows"] == chunk.rows == len(lines)
    with stack.mariadb.connect().cursor() as cur:
        cur.execute(f"SELECT id, note FROM {table} ORDER BY id")
        assert [f"{i},{note}\n" for i, note in cur.fetchall()] == lines


def test_a_reader_that_fails_early_does_not_hang_the_feeder(stack, tmp_path):
    chunk = ChunkFile(tmp_path / "c.csv", streamed=True)
    chunk.path.write_text("1,a\n")
    chunk.grew(1)
    result: dict = {}

    def load_and_keep_writing() -> None:
        with chunk.load_path() as path:  # the server refuses before it asks for the file
            _load(stack, "no_such_db.no_such_table", path, result)
            with chunk.path.open("a") as out:  # more than a pipe holds, that nobody will read
                out.write("2,b\n" * 100_000)
            chunk.grew(100_000)
            chunk.finish()
        # leaving load_path joins the feeder: it must have ended although nobody read its pipe

    worker = threading.Thread(target=load_and_keep_writing, daemon=True)
    worker.start()
    worker.join(timeout=60)  # a failure detector, not a wait for the result: the feeder hung
    assert not worker.is_alive(), "the feeder kept writing into a pipe nobody reads"
    assert "no_such_db" in str(result["error"])
