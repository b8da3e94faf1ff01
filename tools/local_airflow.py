"""A real Airflow 3 on this machine: api-server, scheduler, dag-processor and triggerer on PostgreSQL.

Used by `make airflow` / `make airflow-stop` (a long-lived local Airflow on the local stand-ins),
by the tests marked `deployed` (a throwaway one per test session) and by `bench/`:

    with LocalAirflow.start(stack, home=Path("/tmp/af"), config_path=Path("pipelines.yaml")) as airflow:
        airflow.api("POST", "/api/v2/dags/cdc_x/dagRuns", {"logical_date": None})
        airflow.cli("backfill", "create", "--dag-id", "cdc_x", ...)

Everything runs as it does in production: LocalExecutor, every process in its own process
group (stopped by group, so task processes go too), the metadata database in PostgreSQL,
connections and pools in that database (visible in the UI), sign-in with the simple auth
manager's `admin` user.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "plugins")]

from tools.local_stack import LocalStack, StackError, free_port  # noqa: E402

PROCESSES = ("scheduler", "dag-processor", "triggerer", "api-server")
POSTGRES_URL = os.environ.get("CDC_SYNC_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
STATE_DIR = REPO / ".local-airflow"  # `make airflow`'s home, pids and ports


def _postgres_admin(statement: str) -> None:
    """Run one statement on the PostgreSQL server's `postgres` database (autocommit)."""
    try:
        import psycopg2
    except ImportError as error:  # pragma: no cover - the venv has it
        raise StackError("psycopg2 is missing: run `make venv`") from error
    try:
        conn = psycopg2.connect(f"{POSTGRES_URL}/postgres", connect_timeout=5)
    except psycopg2.OperationalError as error:
        raise StackError(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({str(error).strip()}). The local Airflow keeps its "
            "metadata there. Start one (Debian: `apt-get install postgresql && service postgresql start`; "
            "trust auth for 127.0.0.1) or point CDC_SYNC_POSTGRES at a server you may create databases on."
        ) from error
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


@dataclass
class LocalAirflow:
    home: Path
    port: int
    database: str
    password: str
    env: dict[str, str]
    airflow_bin: Path = field(default_factory=lambda: Path(sys.executable).parent / "airflow")
    pids: dict[str, int] = field(default_factory=dict)
    _token: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ start / stop
    @classmethod
    def start(
        cls,
        stack: LocalStack,
        *,
        home: Path,
        config_path: Path | None = None,
        dags_folder: Path = REPO / "dags",
        extra_env: dict[str, str] | None = None,
        connections: dict[str, str] | None = None,
        port: int | None = None,
        database: str | None = None,
        airflow_bin: Path | None = None,
    ) -> LocalAirflow:
        """Create a fresh metadata database, migrate it, add connections (the stand-ins' and
        `connections`: conn id → JSON) and pools, start the four processes and wait until all
        report healthy."""
        home.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        database = database or f"cdc_sync_airflow_{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(12)
        passwords_file = home / "passwords.json"
        passwords_file.write_text(json.dumps({"admin": password}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__", "AIRFLOW_CONN_"))}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{POSTGRES_URL.replace('postgresql://', 'postgresql+psycopg2://')}/{database}",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME": "86400",
                # a new DAG file or a changed config is seen within seconds, not minutes
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "15",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                "CDC_SYNC_SQL_DIR": str(REPO / "include" / "sql"),
                # macOS / some distros: forked task processes and proxies
                "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
            }
        )
        if config_path is not None:
            env["CDC_SYNC_CONFIG"] = str(config_path)
        env.update(stack.airflow_env())
        # connections live in the metadata database (the UI shows them), not in the environment
        connections = {
            **{k[len("AIRFLOW_CONN_") :].lower(): v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")},
            **(connections or {}),
        }
        for key in [k for k in env if k.startswith("AIRFLOW_CONN_")]:
            del env[key]
        env.update(extra_env or {})
        airflow = cls(home=home, port=port, database=database, password=password, env=env)
        if airflow_bin is not None:
            airflow.airflow_bin = airflow_bin

        _postgres_admin(f'DROP DATABASE IF EXISTS "{database}"')
        _postgres_admin(f'CREATE DATABASE "{database}"')
        try:
            airflow.cli("db", "migrate")
            conn_file = home / "connections.json"
            conn_file.write_text(json.dumps({k: json.loads(v) for k, v in connections.items()}, indent=2))
            airflow.cli("connections", "import", str(conn_file))
            airflow.create_pools(config_path)
            for name in PROCESSES:
                airflow._spawn(name)
            airflow.wait_healthy()
        except BaseException:
            airflow.stop()
            raise
        return airflow

    def create_pools(self, config_path: Path | None) -> None:
        from cdc_sync.config import load_pipelines, pools

        wanted = pools(load_pipelines(config_path))
        if wanted:
            pool_file = self.home / "pools.json"
            pool_file.write_text(json.dumps(wanted, indent=2))
            self.cli("pools", "import", str(pool_file))

    def _spawn(self, name: str) -> None:
        log = self.home / f"{name}.log"
        proc = subprocess.Popen(
            [str(self.airflow_bin), name],
            env=self.env,
            cwd=self.home,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopping it stops its task processes too
        )
        self.pids[name] = proc.pid

    def wait_healthy(self, timeout: float = 180) -> None:
        """Until the API answers and scheduler, dag-processor and triggerer report healthy."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            for name, pid in self.pids.items():
                if not _alive(pid):
                    raise StackError(f"airflow {name} exited; its log:\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as response:
                    health = json.load(response)
                last = json.dumps(health)
                if all(
                    (health.get(part) or {}).get("status") == "healthy"
                    for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                ):
                    return
            except (OSError, ValueError) as error:
                last = str(error)
            time.sleep(1)
        raise StackError(f"Airflow did not become healthy within {timeout:.0f}s (last: {last}); logs in {self.home}")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def stop(self) -> None:
        """Stop exactly the process groups this Airflow started."""
        for name in reversed(list(self.pids)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pids[name], signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(p) for p in self.pids.values()):
            time.sleep(0.2)
        for pid in self.pids.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        self.pids.clear()

    def drop_database(self) -> None:
        with contextlib.suppress(StackError):
            _postgres_admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def __enter__(self) -> LocalAirflow:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ public surfaces
    def cli(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run `airflow <args>` against this Airflow; fail with its output when it fails."""
        result = subprocess.run(
            [str(self.airflow_bin), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise StackError(
                f"`airflow {' '.join(args)}` exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def token(self) -> str:
        if self._token is None:
            body = json.dumps({"username": "admin", "password": self.password}).encode()
            request = urllib.request.Request(
                f"{self.url}/auth/token", data=body, headers={"Content-Type": "application/json"}, method="POST"
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                self._token = json.load(response)["access_token"]
        return self._token

    def api(self, method: str, path: str, body: dict | None = None, *, expect: tuple[int, ...] = (200,)) -> dict:
        """Call the REST API (`/api/v2/...`) as the admin user; the JSON answer."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"},
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode(errors="replace")
        if status not in expect:
            raise StackError(f"{method} {path} answered {status}: {text[:2000]}")
        return json.loads(text) if text else {}

    # ------------------------------------------------------------------ `make airflow`
    def save_state(self, stack: LocalStack) -> None:
        state = {
            "url": self.url,
            "home": str(self.home),
            "database": self.database,
            "password": self.password,
            "airflow": self.pids,
            "stand_ins": [p.pid for p in stack._procs],
            "moto": stack.moto_url,
            "bigquery": stack.bigquery_url,
        }
        (STATE_DIR / "state.json").write_text(json.dumps(state, indent=2))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


def up(config: Path | None = None, connections: dict[str, str] | None = None) -> LocalAirflow | None:
    """`make airflow`: the stand-ins and a local Airflow, left running; prints where to look.
    None (after saying why) when it cannot start or one is running already."""
    state_file = STATE_DIR / "state.json"
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if any(_alive(pid) for pid in state["airflow"].values()):
            print(f"a local Airflow is already running at {state['url']} (user admin, password {state['password']})")
            print("stop it first with `make airflow-stop`", file=sys.stderr)
            return None
    STATE_DIR.mkdir(exist_ok=True)
    config = config or Path(os.environ.get("CDC_SYNC_CONFIG", REPO / "config" / "pipelines.yaml"))
    stack = None
    try:
        (STATE_DIR / "stand-ins").mkdir(parents=True, exist_ok=True)
        stack = LocalStack.start(workdir=STATE_DIR / "stand-ins", detached=True)
        print(f"stand-ins: moto {stack.moto_url}, BigQuery emulator {stack.bigquery_url}, MariaDB 127.0.0.1:3306")
        print("starting Airflow (db migrate, then api-server, scheduler, dag-processor, triggerer) ...", flush=True)
        airflow = LocalAirflow.start(
            stack,
            home=STATE_DIR / "home",
            config_path=config,
            connections=connections,
            port=wanted if _port_free(wanted := int(os.environ.get("AIRFLOW_PORT", "8080"))) else None,
            database="cdc_sync_local_airflow",
        )
    except StackError as error:
        if stack is not None:
            stack.stop()
        print(f"local Airflow: {error}", file=sys.stderr)
        return None
    airflow.save_state(stack)
    print(f"Airflow UI: {airflow.url}  (user admin, password {airflow.password})")
    print(f"logs: {airflow.home}/<process>.log; pipelines from {config}")
    print("stop everything this started: make airflow-stop")
    return airflow


def down() -> int:
    """`make airflow-stop`: stop exactly the processes `make airflow` started."""
    state_file = STATE_DIR / "state.json"
    if not state_file.exists():
        print("no local Airflow started by `make airflow` (no .local-airflow/state.json)")
        return 0
    state = json.loads(state_file.read_text())
    groups = [*state["airflow"].values(), *state["stand_ins"]]
    for pid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in groups):
        time.sleep(0.2)
    for pid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    state_file.unlink()
    print(f"stopped the local Airflow at {state['url']} and its stand-ins ({len(groups)} process groups)")
    return 0


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


if __name__ == "__main__":
    if sys.argv[1:] == ["up"]:
        sys.exit(0 if up() is not None else 1)
    if sys.argv[1:] == ["down"]:
        sys.exit(down())
    print("usage: local_airflow.py up|down", file=sys.stderr)
    sys.exit(2)
