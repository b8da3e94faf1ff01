"""A MariaDB server of its own with the ROW binlog on: the source of binlog capture tests and
the binlog benchmark (the shared server on 3306 has its binlog off and stays so).

    with BinlogServer.start(Path("/tmp/x")) as server:
        server.mariadb.connect()      # a tools.local_stack.MariaDB on the server's free port

The data directory is made with `mariadb-install-db --no-defaults` (the system config would
set `user=mysql`); the server runs until `stop()`, which ends exactly the process it started.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tools.local_stack import MariaDB, StackError, free_port

SERVER_ID = 7


@dataclass
class BinlogServer:
    mariadb: MariaDB
    process: subprocess.Popen
    workdir: Path

    @classmethod
    def start(cls, workdir: Path, *, row_metadata: str = "FULL", extra_args: tuple[str, ...] = ()) -> "BinlogServer":
        server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        install = shutil.which("mariadb-install-db")
        if not Path(server).exists() or not install:
            raise StackError(
                "binlog tests need mariadbd and mariadb-install-db (Debian: apt-get install mariadb-server)"
            )
        data = workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                install,
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(f"mariadb-install-db failed: {result.stderr[-2000:]}")
        port = free_port()
        log = workdir / "mariadbd.log"
        process = subprocess.Popen(
            [
                server,
                "--no-defaults",
                "--user=root",
                f"--datadir={data}",
                f"--port={port}",
                f"--socket={workdir / 'sock'}",
                "--bind-address=127.0.0.1",
                f"--log-bin={data / 'binlog'}",
                "--binlog-format=ROW",
                "--binlog-row-image=FULL",
                f"--binlog-row-metadata={row_metadata}",
                f"--server-id={SERVER_ID}",
                f"--pid-file={workdir / 'pid'}",
                "--innodb-buffer-pool-size=64M",
                "--skip-name-resolve",
                f"--log-error={log}",
                *extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        mariadb = MariaDB(port=port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                text = log.read_text()[-2000:] if log.exists() else ""
                raise StackError(f"mariadbd exited with code {process.returncode}: {text}")
            try:
                mariadb.connect().close()
                return cls(mariadb, process, workdir)
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
        process.kill()
        raise StackError(f"mariadbd on port {port} did not answer within 60s; log: {log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "BinlogServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
