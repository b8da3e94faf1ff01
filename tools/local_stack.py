"""Local stand-ins for the cloud services: moto (S3 and friends) and the BigQuery emulator.

Both run as real HTTP servers on free loopback ports. MariaDB (the Aurora stand-in) is
expected to run already; if it does not, we try to start the distribution's server and
otherwise say how to get one.

Used by `make demo`, by the test suite (a session fixture) and by the benchmarks:

    with LocalStack.start() as stack:
        stack.airflow_env()   # AIRFLOW_CONN_* variables pointing at the stand-ins
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
BIGQUERY_BIN = REPO / ".venv-bigquery" / "bin" / "local-bigquery"
BIGQUERY_PROJECT = "local"


class StackError(RuntimeError):
    """A local service is missing or did not come up; the message says what to do."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, what: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode}; its log:\n{log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise StackError(f"{what} did not answer on {url} within {timeout:.0f}s; log: {log}")


@dataclass
class MariaDB:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""

    def connect(self, database: str | None = None, autocommit: bool = True, **kwargs):
        import pymysql

        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            charset="utf8mb4",
            autocommit=autocommit,
            **kwargs,
        )

    def ensure_running(self) -> None:
        try:
            self.connect().close()
            return
        except Exception as first_error:  # noqa: BLE001 - any failure means "not reachable"
            server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
            if not Path(server).exists():
                raise StackError(
                    f"MariaDB is not reachable on {self.host}:{self.port} ({first_error}) and no "
                    "server binary is installed. Install one (Debian: `apt-get install mariadb-server`) "
                    "or point CDC_SYNC_MYSQL_HOST/PORT/USER/PASSWORD at a MySQL-compatible server."
                ) from first_error
            subprocess.run(
                ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", server],
                check=False,
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    self.connect().close()
                    return
                except Exception:  # noqa: BLE001
                    time.sleep(0.5)
            raise StackError(f"started {server} but it does not answer on {self.host}:{self.port}") from first_error

    def airflow_conn(self, database: str) -> str:
        return json.dumps(
            {
                "conn_type": "mysql",
                "host": self.host,
                "port": self.port,
                "login": self.user,
                "password": self.password,
                "schema": database,
            }
        )

    @classmethod
    def from_env(cls) -> "MariaDB":
        return cls(
            host=os.environ.get("CDC_SYNC_MYSQL_HOST", "127.0.0.1"),
            port=int(os.environ.get("CDC_SYNC_MYSQL_PORT", "3306")),
            user=os.environ.get("CDC_SYNC_MYSQL_USER", "root"),
            password=os.environ.get("CDC_SYNC_MYSQL_PASSWORD", ""),
        )


@dataclass
class LocalStack:
    moto_port: int
    bigquery_port: int
    workdir: Path
    mariadb: MariaDB = field(default_factory=MariaDB.from_env)
    _procs: list[subprocess.Popen] = field(default_factory=list, repr=False)

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def bigquery_url(self) -> str:
        return f"http://127.0.0.1:{self.bigquery_port}"

    @classmethod
    def start(cls, workdir: Path | None = None, *, detached: bool = False) -> "LocalStack":
        """Start moto and the emulator; `detached` leaves them running when this process ends
        (`make airflow`; `make airflow-stop` stops them by their process groups)."""
        check_installed()
        stack = cls(
            moto_port=free_port(),
            bigquery_port=free_port(),
            workdir=workdir or Path(tempfile.mkdtemp(prefix="cdc-sync-stack-")),
        )
        stack.mariadb.ensure_running()
        try:
            stack._spawn(
                "moto",
                [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(stack.moto_port)],
                f"{stack.moto_url}/moto-api/",
            )
            data_dir = stack.workdir / "bigquery"
            data_dir.mkdir(parents=True, exist_ok=True)
            stack._spawn(
                "bigquery emulator",
                [
                    str(BIGQUERY_BIN),
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(stack.bigquery_port),
                    "--grpc-port",
                    str(free_port()),
                    "--project",
                    BIGQUERY_PROJECT,
                    "--data-dir",
                    str(data_dir),
                ],
                f"{stack.bigquery_url}/bigquery/v2/projects/{BIGQUERY_PROJECT}/datasets",
            )
        except BaseException:
            stack.stop()
            raise
        if not detached:
            # Servers run in their own sessions; make sure they go when we go, however we go.
            atexit.register(stack.stop)
            _stop_on_sigterm(stack)
        return stack

    def _spawn(self, what: str, argv: list[str], ready_url: str) -> None:
        log = self.workdir / f"{what.replace(' ', '_')}.log"
        proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self._procs.append(proc)
        _wait_http(ready_url, what, proc, log)

    def stop(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
                if proc.poll() is None:
                    proc.kill()
        self._procs.clear()

    def __enter__(self) -> "LocalStack":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def aws_conn(self) -> str:
        return json.dumps(
            {
                "conn_type": "aws",
                "login": "test",
                "password": "test",
                "extra": {"endpoint_url": self.moto_url, "region_name": "us-east-1"},
            }
        )

    def google_conn(self) -> str:
        # `api_endpoint` is read by cdc_sync's BigQuery hook; `is_anonymous` by the provider.
        return json.dumps(
            {
                "conn_type": "google_cloud_platform",
                "extra": {"project": BIGQUERY_PROJECT, "is_anonymous": True, "api_endpoint": self.bigquery_url},
            }
        )

    def airflow_env(self, mysql_database: str = "cdc_source") -> dict[str, str]:
        return {
            "AIRFLOW_CONN_AWS_DEFAULT": self.aws_conn(),
            "AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT": self.google_conn(),
            "AIRFLOW_CONN_MYSQL_SOURCE": self.mariadb.airflow_conn(mysql_database),
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def boto3_client(self, service: str):
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.moto_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def bigquery_client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=BIGQUERY_PROJECT,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.bigquery_url},
        )


def check_installed() -> None:
    missing = [str(p) for p in (VENV_BIN / "moto_server", BIGQUERY_BIN) if not p.exists()]
    if missing:
        raise StackError(f"missing {', '.join(missing)}: run `make venv` first")


def _stop_on_sigterm(stack: "LocalStack") -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum, frame):
        stack.stop()
        if callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str]) -> int:
    """`python tools/local_stack.py check`: say what is missing, start nothing."""
    if argv[1:] != ["check"]:
        print("usage: local_stack.py check", file=sys.stderr)
        return 2
    try:
        MariaDB.from_env().ensure_running()
        check_installed()
    except StackError as error:
        print(f"local stack: {error}", file=sys.stderr)
        return 1
    print("local stack: MariaDB reachable, moto and BigQuery emulator installed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
