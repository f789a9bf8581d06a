"""Install, start, stop and inspect a local Argilla server (argilla-server 2.8 in its own venv).

The server runs as three processes started from here, each in its own process group:

- ``redis-server`` (Debian's) on a free local port, nothing saved to disk (Argilla's job queue);
- ``launcher.py serve``: uvicorn on ``argilla_server:app`` on a free local port, SQLite database in
  the instance folder, the ``medinjection-sql`` search engine (``search_engine.py``);
- ``launcher.py worker``: the rq worker for the server's background jobs (status updates when a
  dataset's task distribution changes).

Before the first start, ``launcher.py setup`` migrates the database and creates an owner and the
annotators, with generated passwords and API keys kept in ``credentials.json`` (mode 0600) in the
instance folder, so a restart finds the same users and the same data. ``state.json`` records the
URL, the ports and the process ids; ``stop`` ends the three process groups and waits until the
ports are free.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

SERVER_REQUIREMENTS = ("argilla-server==2.8.0", "click<8.2")
SEARCH_ENGINE_NAME = "medinjection-sql"
LAUNCHER = Path(__file__).resolve().parent / "launcher.py"
DEFAULT_WORKSPACE = "review"
OWNER = "owner"


class ServerError(RuntimeError):
    """The local Argilla server cannot be installed, started or reached; the message says what to do."""


def default_home() -> Path:
    """``$MEDINJECTION_ARGILLA_HOME``, else ``~/.cache/medinjection/argilla-server``."""
    env = os.environ.get("MEDINJECTION_ARGILLA_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "medinjection" / "argilla-server"


def venv_python(home: Path) -> Path:
    return home / "venv" / "bin" / "python"


def is_installed(home: Path | None = None) -> bool:
    home = home or default_home()
    marker = home / "venv" / "installed.json"
    return (
        venv_python(home).exists()
        and marker.exists()
        and json.loads(marker.read_text()) == list(SERVER_REQUIREMENTS)
    )


def install(home: Path | None = None, python: str | None = None, quiet: bool = True) -> Path:
    """Create ``HOME/venv`` and pip install the pinned server into it; do nothing when already there.

    ``python`` is the interpreter to base the venv on (default: the one running medinjection).
    Returns the venv's Python.
    """
    home = home or default_home()
    if is_installed(home):
        return venv_python(home)
    home.mkdir(parents=True, exist_ok=True)
    # Several test sessions may start at once on one machine: one installs, the others wait for it.
    with open(home / "install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not is_installed(home):
                _install_venv(home, python, quiet)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return venv_python(home)


def _install_venv(home: Path, python: str | None, quiet: bool) -> None:
    venv = home / "venv"
    base = python or getattr(sys, "_base_executable", None) or sys.executable
    run = [base, "-m", "venv", str(venv)]
    if subprocess.run(run, capture_output=True, text=True).returncode != 0:
        raise ServerError(f"could not create the server venv with {' '.join(run)}")
    pip = [
        str(venv_python(home)),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        *(["-q"] if quiet else []),
        *SERVER_REQUIREMENTS,
    ]
    result = subprocess.run(pip, capture_output=quiet, text=True)
    if result.returncode != 0:
        tail = (result.stderr or "")[-2000:] if quiet else ""
        raise ServerError(f"pip install of {' '.join(SERVER_REQUIREMENTS)} into {venv} failed:\n{tail}")
    (venv / "installed.json").write_text(json.dumps(list(SERVER_REQUIREMENTS)))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


def _pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Annotator:
    username: str
    password: str
    api_key: str


@dataclass
class ServerState:
    """What ``state.json`` holds for a running server."""

    url: str
    port: int
    redis_port: int
    workspace: str
    owner_username: str
    owner_password: str
    owner_api_key: str
    annotators: list[Annotator]
    pids: dict[str, int]
    instance_dir: str
    started_at: float
    start_seconds: float = 0.0

    @classmethod
    def read(cls, path: Path) -> ServerState:
        data = json.loads(path.read_text())
        data["annotators"] = [Annotator(**a) for a in data["annotators"]]
        return cls(**data)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))
        path.chmod(0o600)


class LocalArgilla:
    """A local Argilla server: ``with LocalArgilla(instance_dir) as server: server.url ...``.

    Args:
        instance_dir: the folder for the database, logs, credentials and state of this server.
        n_annotators: how many annotator users to create (``annotator1``, ``annotator2``...) on the
            first start of this instance folder.
        workspace: the workspace the owner and the annotators belong to.
        home: where the server venv lives (see ``default_home``).
        install_if_missing: pip install the server venv when it is not there yet.
        timeout: seconds to wait for each step of the start.

    Once started: ``url``, ``owner_api_key``, ``owner_password``, ``annotators`` (``Annotator``:
    ``username``, ``password``, ``api_key``), ``workspace``; ``stop()`` ends it.
    """

    def __init__(
        self,
        instance_dir: Path | str,
        n_annotators: int = 2,
        workspace: str = DEFAULT_WORKSPACE,
        home: Path | None = None,
        install_if_missing: bool = False,
        timeout: float = 180.0,
    ) -> None:
        self.instance_dir = Path(instance_dir).resolve()
        self.n_annotators = n_annotators
        self.workspace = workspace
        self.home = Path(home) if home else default_home()
        self.install_if_missing = install_if_missing
        self.timeout = timeout
        self.state: ServerState | None = None

    @classmethod
    def attach(cls, instance_dir: Path | str) -> LocalArgilla:
        """The running server of an instance folder (started elsewhere, e.g. by the CLI)."""
        server = cls(instance_dir)
        if not server.state_file.exists():
            raise ServerError(f"no local Argilla server is running for {server.instance_dir}")
        server.state = ServerState.read(server.state_file)
        server.workspace = server.state.workspace
        return server

    @property
    def state_file(self) -> Path:
        return self.instance_dir / "state.json"

    @property
    def url(self) -> str:
        return self._running().url

    @property
    def owner_api_key(self) -> str:
        return self._running().owner_api_key

    @property
    def owner_password(self) -> str:
        return self._running().owner_password

    @property
    def annotators(self) -> list[Annotator]:
        return self._running().annotators

    def _running(self) -> ServerState:
        if self.state is None:
            raise ServerError(f"the local Argilla server of {self.instance_dir} is not started")
        return self.state

    def __enter__(self) -> LocalArgilla:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------- start

    def _credentials(self) -> dict:
        path = self.instance_dir / "credentials.json"
        if path.exists():
            return json.loads(path.read_text())
        users = [{"username": OWNER, "role": "owner"}] + [
            {"username": f"annotator{i}", "role": "annotator"} for i in range(1, self.n_annotators + 1)
        ]
        for user in users:
            user["password"] = secrets.token_urlsafe(12)
            user["api_key"] = f"{user['username']}.{secrets.token_urlsafe(24)}"
            user["workspace"] = self.workspace
        credentials = {"workspace": self.workspace, "users": users}
        path.write_text(json.dumps(credentials, indent=2))
        path.chmod(0o600)
        return credentials

    def _env(self, redis_port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARGILLA_")}
        env.update(
            ARGILLA_HOME_PATH=str(self.instance_dir / "home"),
            ARGILLA_DATABASE_URL=f"sqlite+aiosqlite:///{self.instance_dir / 'argilla.db'}?check_same_thread=False",
            ARGILLA_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            ARGILLA_SEARCH_ENGINE=SEARCH_ENGINE_NAME,
            HF_HUB_DISABLE_TELEMETRY="1",
            PYTHONUNBUFFERED="1",
            PYTHONWARNINGS="ignore",
        )
        return env

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.instance_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            return subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()

    def _log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.instance_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"

    def start(self) -> LocalArgilla:
        """Start Redis, the server and its worker; wait until ``/api/v1/status`` answers; write state.json."""
        if self.state_file.exists():
            previous = ServerState.read(self.state_file)
            if any(pid_alive(pid) for pid in previous.pids.values()):
                raise ServerError(
                    f"a local Argilla server of {self.instance_dir} is already running at {previous.url}; stop it first"
                )
            self.state_file.unlink()
        if shutil.which("redis-server") is None:
            raise ServerError("redis-server not found: install it (Debian: apt-get install redis-server)")
        if not is_installed(self.home):
            if not self.install_if_missing:
                raise ServerError(
                    f"the Argilla server venv is not installed in {self.home}: run `medinjection quality server install`"
                )
            install(self.home)
        began = time.monotonic()
        (self.instance_dir / "logs").mkdir(parents=True, exist_ok=True)
        credentials = self._credentials()
        python = str(venv_python(self.home))
        redis_port, port = free_port(), free_port()
        while port == redis_port:
            port = free_port()
        env = self._env(redis_port)
        processes: dict[str, subprocess.Popen] = {}
        try:
            processes["redis"] = self._spawn(
                "redis",
                [
                    "redis-server",
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                ],
                env,
            )
            users_file = self.instance_dir / "users.json"
            users_file.write_text(json.dumps(credentials["users"]))
            users_file.chmod(0o600)
            setup = subprocess.run(
                [python, str(LAUNCHER), "setup", str(users_file)],
                env=env,
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
            users_file.unlink()
            (self.instance_dir / "logs" / "setup.log").write_text(setup.stdout + setup.stderr)
            if setup.returncode != 0:
                raise ServerError(
                    f"database setup failed (see {self.instance_dir}/logs/setup.log):\n{(setup.stdout + setup.stderr)[-3000:]}"
                )
            processes["server"] = self._spawn(
                "server", [python, str(LAUNCHER), "serve", "--host", "127.0.0.1", "--port", str(port)], env
            )
            processes["worker"] = self._spawn("worker", [python, str(LAUNCHER), "worker"], env)
            url = f"http://127.0.0.1:{port}"
            owner = next(u for u in credentials["users"] if u["role"] == "owner")
            self._wait_ready(url, owner["api_key"], processes, began)
        except BaseException:
            for process in processes.values():
                _terminate_group(process.pid)
            raise
        self.state = ServerState(
            url=url,
            port=port,
            redis_port=redis_port,
            workspace=credentials["workspace"],
            owner_username=owner["username"],
            owner_password=owner["password"],
            owner_api_key=owner["api_key"],
            annotators=[
                Annotator(u["username"], u["password"], u["api_key"])
                for u in credentials["users"]
                if u["role"] == "annotator"
            ],
            pids={name: process.pid for name, process in processes.items()},
            instance_dir=str(self.instance_dir),
            started_at=time.time(),
            start_seconds=round(time.monotonic() - began, 2),
        )
        self.state.write(self.state_file)
        return self

    def _wait_ready(
        self, url: str, api_key: str, processes: dict[str, subprocess.Popen], began: float
    ) -> None:
        while True:
            for name, process in processes.items():
                if process.poll() is not None:
                    raise ServerError(
                        f"{name} exited with code {process.returncode} during start:\n{self._log_tail(name)}"
                    )
            try:
                response = httpx.get(
                    f"{url}/api/v1/status", headers={"X-Argilla-Api-Key": api_key}, timeout=5
                )
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() - began > self.timeout:
                raise ServerError(
                    f"the Argilla server did not answer at {url} within {self.timeout:.0f} s:\n{self._log_tail('server')}"
                )
            time.sleep(0.25)

    # --------------------------------------------------------------- stop

    def stop(self) -> None:
        """End the server, its worker and Redis (and their children); wait until their ports are free."""
        state = self.state
        if state is None and self.state_file.exists():
            state = ServerState.read(self.state_file)
        if state is None:
            return
        stop_state(state)
        self.state_file.unlink(missing_ok=True)
        self.state = None


def _terminate_group(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process group led by ``pid`` (each child is a session leader), then SIGKILL if needed."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not _group_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _group_alive(pid) and time.monotonic() < deadline + 5:
        _reap(pid)
        time.sleep(0.1)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        # fields[0] is the state, fields[2] the process group id.
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_state(state: ServerState) -> None:
    """Stop the processes a state names: the worker and the server first, Redis last."""
    for name in ("worker", "server", "redis"):
        pid = state.pids.get(name)
        # Only signal a process that is still ours (a pid can be reused after a reboot).
        if (
            pid
            and pid_alive(pid)
            and (
                name == "redis"
                and "redis-server" in _pid_cmdline(pid)
                or str(LAUNCHER.name) in _pid_cmdline(pid)
            )
        ):
            _terminate_group(pid)
    deadline = time.monotonic() + 10
    while (port_in_use(state.port) or port_in_use(state.redis_port)) and time.monotonic() < deadline:
        time.sleep(0.1)


def status(instance_dir: Path) -> dict:
    """What is known about the server of an instance folder: its state and whether it answers."""
    state_file = Path(instance_dir) / "state.json"
    if not state_file.exists():
        return {"running": False, "instance_dir": str(instance_dir)}
    state = ServerState.read(state_file)
    alive = {name: pid_alive(pid) for name, pid in state.pids.items()}
    try:
        answers = (
            httpx.get(
                f"{state.url}/api/v1/status", headers={"X-Argilla-Api-Key": state.owner_api_key}, timeout=5
            ).status_code
            == 200
        )
    except httpx.HTTPError:
        answers = False
    return {
        "running": answers and all(alive.values()),
        "answers": answers,
        "processes": alive,
        "url": state.url,
        "instance_dir": str(instance_dir),
    }
