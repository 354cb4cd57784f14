"""A Raspberry Pi (or any SSH host) as a benchmark target, over paramiko.

    with RemoteTarget("pi@192.0.2.10", identity="~/.ssh/id_ed25519") as pi:
        print(pi.probe())
        result = pi.run_script(Path("m.tflite"), Path("faces.npz"), threads=[1, 4])

Host keys are checked against known_hosts: an unknown key is refused unless ``trust_new_host``
(then it is saved), a changed key always. Each run uses the edge_fer installed on the device
(``python3 -m edge_fer.runtime.device``) when the probe finds this version there, else copies the
standalone device benchmark script (:mod:`edge_fer.runtime.standalone`); the record's ``runner`` says
which. The model and the faces are copied
into a fresh ``mktemp -d`` directory (over SFTP; through ``cat`` on the shell channel when the
server has no SFTP subsystem), runs with a timeout, reads the JSON on the last stdout line and
removes the directory in every case. Every remote path and argument is shell-quoted.
"""

from __future__ import annotations

import logging
import shlex
import socket
import tempfile
import time
from pathlib import Path

from ..errors import ConfigError, DeviceUnreachable, RemoteError
from ..runtime.standalone import SCRIPT_NAME, build_device_script
from .script import read_result, script_args

log = logging.getLogger("edge_fer")


def parse_host(host: str) -> tuple[str | None, str]:
    user, _, address = host.rpartition("@")
    if not address:
        raise ConfigError(f"--host {host!r}: expected user@address or address")
    return (user or None), address


class RemoteTarget:
    def __init__(self, host: str, *, port: int = 22, identity: str | None = None, remote_python: str = "python3",
                 known_hosts: str | Path | None = None, trust_new_host: bool = False, connect_timeout: float = 10.0):
        self.host, self.port = host, port
        self.user, self.address = parse_host(host)
        self.identity = str(Path(identity).expanduser()) if identity else None
        self.remote_python = remote_python
        self.known_hosts = Path(known_hosts).expanduser() if known_hosts else Path.home() / ".ssh" / "known_hosts"
        self.trust_new_host = trust_new_host
        self.connect_timeout = connect_timeout
        self.client = None
        self._info: dict | None = None

    # -- connection -------------------------------------------------------------------------
    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    def connect(self) -> None:
        import paramiko

        where = f"{self.host}:{self.port}"
        client = paramiko.SSHClient()
        if self.known_hosts.is_file():
            client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy() if self.trust_new_host else paramiko.RejectPolicy())
        try:
            client.connect(self.address, port=self.port, username=self.user, key_filename=self.identity,
                           timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                           auth_timeout=self.connect_timeout, look_for_keys=self.identity is None, allow_agent=False)
        except paramiko.BadHostKeyException:
            raise DeviceUnreachable(f"{where}: the host key has CHANGED from the one in {self.known_hosts}; this may be "
                               "an attack or a reinstalled device. Check it, then remove the old entry "
                               f"(ssh-keygen -R '[{self.address}]:{self.port}' -f {self.known_hosts})") from None
        except paramiko.AuthenticationException:
            raise DeviceUnreachable(f"{where}: authentication failed for user {self.user or '(default)'}; "
                               "pass --identity KEYFILE or install your public key on the device") from None
        except paramiko.SSHException as e:
            if "not found in known_hosts" in str(e):
                raise DeviceUnreachable(f"{where}: unknown host key (not in {self.known_hosts}); verify the device and "
                                   "pass --trust-new-host to accept and save it") from None
            raise DeviceUnreachable(f"{where}: SSH failed ({e})") from None
        except (OSError, socket.timeout) as e:
            raise DeviceUnreachable(f"{where}: unreachable ({e.strerror or e}); check the address, the port and that "
                               "sshd runs on the device") from None
        if self.trust_new_host:
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
            client.save_host_keys(str(self.known_hosts))
        self.client = client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    # -- commands -----------------------------------------------------------------------------
    def run(self, command: str, *, timeout: float = 60.0, stdin: Path | None = None) -> tuple[int, str, str]:
        """Run a shell command, fed the file ``stdin`` if given; returns (exit code, stdout, stderr);
        raises RemoteError on timeout."""
        chan = self.client.get_transport().open_session()
        chan.exec_command(command)
        deadline = time.monotonic() + timeout
        if stdin is not None:
            chan.settimeout(timeout)
            try:
                with open(stdin, "rb") as f:
                    while block := f.read(1 << 16):
                        chan.sendall(block)
            except socket.timeout:
                chan.close()
                raise RemoteError(f"{self.host}: timed out after {timeout:.0f} s") from None
            except OSError:
                pass  # the command ended early (it could not write, say): its exit code and stderr tell why
            chan.shutdown_write()
        out, err = bytearray(), bytearray()
        while True:
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            if time.monotonic() > deadline:
                chan.close()
                raise RemoteError(f"{self.host}: timed out after {timeout:.0f} s")
            time.sleep(0.02)
        return chan.recv_exit_status(), out.decode(errors="replace"), err.decode(errors="replace")

    def probe(self) -> dict:
        """What the device is: model, CPU, cores, governor, temperature and throttling, Python (asked once)."""
        if self._info is None:
            self._info = self._probe()
        return self._info

    def _probe(self) -> dict:
        script = (
            "printf 'model=%s\\n' \"$(tr -d '\\0' < /proc/device-tree/model 2>/dev/null)\"; "
            "printf 'arch=%s\\n' \"$(uname -m)\"; printf 'cores=%s\\n' \"$(nproc 2>/dev/null)\"; "
            "printf 'governor=%s\\n' \"$(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null)\"; "
            "printf 'temp=%s\\n' \"$(vcgencmd measure_temp 2>/dev/null)\"; "
            "printf 'throttled=%s\\n' \"$(vcgencmd get_throttled 2>/dev/null)\"; "
            f"printf 'python=%s\\n' \"$(timeout 10 {shlex.quote(self.remote_python)} -c 'import platform; "
            "print(platform.python_version())' 2>/dev/null)\"; "
            # the edge_fer installed for that python, when its device runner imports (empty otherwise)
            f"printf 'edge_fer=%s\\n' \"$(timeout 20 {shlex.quote(self.remote_python)} -c 'import edge_fer, "
            "edge_fer.runtime.device; print(edge_fer.__version__)' 2>/dev/null)\""
        )
        try:
            code, out, _ = self.run(script, timeout=45)
        except RemoteError as e:
            return {"error": str(e)}
        info = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return {k: v.strip() for k, v in info.items()}

    def runner(self) -> str:
        """How the device runs the benchmark: ``installed edge_fer X`` (``python3 -m edge_fer.runtime.device``
        of the edge_fer installed there, when it is this edge_fer's version) or ``standalone edgefer_device.pyz``
        (copied with the model, as on a device without edge_fer)."""
        from .. import __version__

        there = self.probe().get("edge_fer") or ""
        if there == __version__:
            return f"installed edge_fer {there}"
        if there:
            log.info("%s: edge_fer %s is installed there, not %s; copying the standalone runner", self.host, there,
                     __version__)
        return f"standalone {SCRIPT_NAME}"

    def run_script(self, model: Path, faces: Path | None, *, threads, xnnpack: bool = True, min_seconds: float = 2.0,
                   timeout: float = 900.0, extra: tuple[str, ...] = ()) -> dict:
        """Copy the model + faces (and the device script where edge_fer is not installed there, see
        :meth:`runner`) to a fresh temp dir, run, read its JSON (``runner`` added), always clean up.
        ``faces`` None: latency of random inputs only; ``extra``: more script arguments."""
        runner = self.runner()
        installed = runner.startswith("installed")
        code, out, err = self.run("mktemp -d /tmp/edgefer-bench.XXXXXX", timeout=30)
        remote_dir = out.strip()
        if code != 0 or not remote_dir.startswith("/tmp/edgefer-bench."):
            raise RemoteError(f"{self.host}: cannot create a temporary directory ({err.strip() or out.strip()})")
        try:
            with tempfile.TemporaryDirectory(prefix="edgefer-script-") as d:
                self.put_files(([] if installed else [(build_device_script(d), f"{remote_dir}/{SCRIPT_NAME}")])
                               + [(Path(model), f"{remote_dir}/{model.name}")]
                               + ([(Path(faces), f"{remote_dir}/faces.npz")] if faces is not None else []))
            q = shlex.quote
            args = script_args(model.name, "faces.npz" if faces is not None else None, threads, min_seconds=min_seconds,
                               xnnpack=xnnpack, extra=extra)
            run = ["-m", "edge_fer.runtime.device"] if installed else [SCRIPT_NAME]
            cmd = " ".join(["cd", q(remote_dir), "&&", q(self.remote_python), *run, *map(q, args)])
            code, out, err = self.run(cmd, timeout=timeout)
        finally:
            try:
                self.run(f"rm -rf -- {shlex.quote(remote_dir)}", timeout=30)
            except Exception:
                pass
        return {**read_result(code, out, err, where=self.host, python=self.remote_python), "runner": runner}

    def put_files(self, files: list[tuple[Path, str]]) -> str:
        """Copy (local path, remote path) pairs over SFTP or, where the server has no SFTP subsystem,
        through ``cat > PATH`` on the shell channel (size checked); returns "sftp" or "shell".
        RemoteError when neither works: ``unavailable`` (no way to copy), or ``failed`` (a copy broke)."""
        import paramiko

        try:
            sftp = self.client.open_sftp()
        except (paramiko.SSHException, EOFError, OSError) as e:
            no_sftp = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        else:
            try:
                for local, remote in files:
                    try:
                        sftp.put(str(local), remote)
                    except (OSError, paramiko.SSHException) as e:
                        raise RemoteError(f"{self.host}: copying {Path(local).name} to {remote} over SFTP failed "
                                          f"({e or type(e).__name__})") from None
            finally:
                sftp.close()
            return "sftp"
        log.info("%s: no SFTP (%s); copying through the shell channel", self.host, no_sftp)
        q = shlex.quote
        for local, remote in files:
            size = Path(local).stat().st_size
            code, out, err = self.run(f"cat > {q(remote)} && wc -c < {q(remote)}", timeout=max(60.0, size / 1e5),
                                      stdin=Path(local))
            if code != 0 or out.strip() != str(size):
                got = (err.strip().splitlines() or [f"exit code {code}, {out.strip() or 0} of {size} bytes written"])[-1]
                raise RemoteError(f"{self.host}: cannot copy files there: the server has no SFTP ({no_sftp}) and "
                                  f"`cat > {remote}` failed ({got}); enable SFTP on the device (sshd_config: "
                                  "Subsystem sftp internal-sftp) or check its disk space and /tmp",
                                  status="unavailable")
        return "shell"
