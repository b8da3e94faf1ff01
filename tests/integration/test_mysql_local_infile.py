"""The loader's connection (CdcMySqlHook with LOCAL INFILE on) against a rogue MySQL server
(tests.integration.fake_mysql): the server gets a worker file only when the statement in
flight is a LOAD DATA LOCAL INFILE naming that file; any other request is refused with an
error and not one byte of the file is sent. TLS from the connection's extras is required
once a CA is given: a server that does not offer it is refused."""

from __future__ import annotations

import json

import certifi
import pymysql
import pytest

from cdc_sync.orchestration.hooks.mysql import CdcMySqlHook, LocalFileRefused
from tests.integration.fake_mysql import FakeMySqlServer

SECRET = b"[core]\nfernet_key = not-for-the-database\n"


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "airflow.cfg"
    path.write_bytes(SECRET)
    return str(path)


def _hook(monkeypatch, server: FakeMySqlServer, **extra) -> CdcMySqlHook:
    monkeypatch.setenv(
        "AIRFLOW_CONN_ROGUE",
        json.dumps(
            {
                "conn_type": "mysql",
                "host": "127.0.0.1",
                "port": server.port,
                "login": "loader",
                "schema": "tgt",
                "extra": extra,
            }
        ),
    )
    return CdcMySqlHook(mysql_conn_id="rogue")


def test_a_file_request_in_answer_to_an_ordinary_statement_is_refused_and_nothing_sent(monkeypatch, secret):
    with FakeMySqlServer(lambda s: secret if s.startswith("SET SESSION") else None) as server:
        conn = _hook(monkeypatch, server).get_conn(local_infile=True)
        try:
            with conn.cursor() as cur, pytest.raises(LocalFileRefused) as refused:
                cur.execute("SET SESSION time_zone = '+00:00'")
            assert f"asked for local file '{secret}'" in str(refused.value)
            assert "named no file" in str(refused.value)
            with conn.cursor() as cur:  # the connection stayed in step with the server
                cur.execute("COMMIT")
        finally:
            conn.close()
    (transfer,) = server.transfers
    assert transfer.requested == secret
    assert transfer.sent == b""  # the transfer was ended at once: no byte of the file
    assert server.statements[-2:] == ["SET SESSION time_zone = '+00:00'", "COMMIT"]


def test_a_load_statement_sends_its_own_file_and_no_other(monkeypatch, secret, tmp_path):
    chunk = tmp_path / "aurora-000000-00000.csv"
    chunk.write_bytes(b"1,a\n2,b\n")
    load = f"-- a comment as the templates have\nLOAD DATA LOCAL INFILE '{chunk}' INTO TABLE `tgt`.`t`"
    asks = {"-- honest": str(chunk), "-- rogue": secret}
    with FakeMySqlServer(lambda s: asks.get(s.split(":", 1)[0])) as server:
        conn = _hook(monkeypatch, server).get_conn(local_infile=True)
        try:
            with conn.cursor() as cur:
                # the server asks for the statement's file: it gets exactly that file
                cur.execute(load.replace("-- a comment", "-- honest: a comment"))
                # the same statement, but the server asks for another file: refused
                with pytest.raises(LocalFileRefused) as refused:
                    cur.execute(load.replace("-- a comment", "-- rogue: a comment"))
                assert f"asked for local file '{secret}'" in str(refused.value)
                assert f"named '{chunk}'" in str(refused.value)
        finally:
            conn.close()
    honest, rogue = server.transfers
    assert (honest.requested, honest.sent) == (str(chunk), b"1,a\n2,b\n")
    assert (rogue.requested, rogue.sent) == (secret, b"")


def test_without_local_infile_no_request_is_answered(monkeypatch, secret):
    with FakeMySqlServer(lambda s: secret if s.startswith("SELECT") else None) as server:
        conn = _hook(monkeypatch, server).get_conn()
        try:
            with conn.cursor() as cur, pytest.raises(LocalFileRefused):
                cur.execute("SELECT 1")
        finally:
            conn.close()
    assert [t.sent for t in server.transfers] == [b""]


def test_a_ca_in_the_extras_requires_tls(monkeypatch):
    """ssl_ca alone makes TLS required and verified: a server (or a man in the middle) that
    does not offer it is refused before any statement."""
    ca = certifi.where()  # any CA bundle: the server offers no TLS to verify
    with FakeMySqlServer(lambda s: None) as server:
        with pytest.raises(pymysql.err.OperationalError, match="SSL is required"):
            _hook(monkeypatch, server, ssl_ca=ca).get_conn(local_infile=True)
        assert server.statements == []
        # without TLS settings the same server is reachable (pymysql's unverified PREFERRED mode)
        _hook(monkeypatch, server).get_conn().close()


def test_statements_pymysql_sends_as_bytes_pass_the_guard(monkeypatch, secret):
    """executemany sends its batch as bytes: it runs, and a request in answer is refused."""
    rows = [(n, f"name {n}") for n in range(2000)]
    with FakeMySqlServer(lambda s: secret if "'name 1999')" in s else None) as server:
        conn = _hook(monkeypatch, server).get_conn(local_infile=True)
        try:
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO t (id, name) VALUES (%s, %s)", rows[:10])
                with pytest.raises(LocalFileRefused):
                    cur.executemany("INSERT INTO t (id, name) VALUES (%s, %s)", rows)
        finally:
            conn.close()
    assert server.statements[-2].endswith("(9, 'name 9')")
    assert [t.sent for t in server.transfers] == [b""]
