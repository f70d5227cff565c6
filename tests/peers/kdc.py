"""A throwaway MIT Kerberos realm on loopback: KDC, principals and keytabs.

Nothing under /etc is used: the configuration, database, keytabs and logs
live in one temporary directory, ``krb5kdc -n`` runs in the foreground as a
child process and is stopped by its PID.

A second KDC on the same database can run with its clock an hour ahead
through libfaketime (Debian package ``faketime``), which is how the tests
produce a real clock skew without touching the system clock.
"""

from __future__ import annotations

import glob
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REALM = "POSTROOM.TEST"
MASTER_PASSWORD = "master-password-of-a-test-realm"

# libfaketime's preload library, wherever the architecture puts it.
_FAKETIME_PATTERNS = (
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)


def free_udp_tcp_port() -> int:
    """Return a loopback port free for both TCP and UDP, as a KDC needs."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no loopback port is free for both TCP and UDP")


def faketime_library() -> str | None:
    for pattern in _FAKETIME_PATTERNS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@dataclass
class Kdc:
    directory: Path
    port: int = 0
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.directory / "krb5.conf"

    @property
    def ccache(self) -> Path:
        """The default ticket cache of this test process, which must stay unused."""
        return self.directory / "default-ccache"

    def environment(self) -> dict[str, str]:
        return {
            "KRB5_CONFIG": str(self.config),
            "KRB5_KDC_PROFILE": str(self.directory / "kdc.conf"),
            "KRB5CCNAME": f"FILE:{self.ccache}",
        }

    def client_config(self, path: Path, kdc_port: int) -> Path:
        """Write a krb5.conf for this realm whose KDC is at ``kdc_port``."""
        path.write_text(
            f"""[libdefaults]
  default_realm = {REALM}
  dns_lookup_kdc = false
  dns_lookup_realm = false
  dns_canonicalize_hostname = false
  rdns = false
  udp_preference_limit = 1
[realms]
  {REALM} = {{
    kdc = 127.0.0.1:{kdc_port}
  }}
[domain_realm]
  localhost = {REALM}
  .localhost = {REALM}
"""
        )
        return path

    def _kdc_config(self, path: Path, port: int) -> Path:
        d = self.directory
        path.write_text(
            f"""[kdcdefaults]
  kdc_listen = 127.0.0.1:{port}
  kdc_tcp_listen = 127.0.0.1:{port}
[realms]
  {REALM} = {{
    database_name = {d}/principal
    key_stash_file = {d}/stash
    acl_file = {d}/kadm5.acl
    kdc_listen = 127.0.0.1:{port}
    kdc_tcp_listen = 127.0.0.1:{port}
    max_life = 10h
    supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
  }}
[logging]
  kdc = FILE:{d}/kdc.log
  default = FILE:{d}/krb5lib.log
"""
        )
        return path

    def _run(self, *args: str) -> None:
        subprocess.run(
            args,
            env={**os.environ, **self.environment()},
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=30,
        )

    def admin(self, query: str) -> None:
        self._run("kadmin.local", "-r", REALM, "-q", query)

    def start(self) -> Kdc:
        self.port = free_udp_tcp_port()
        self.client_config(self.config, self.port)
        self._kdc_config(self.directory / "kdc.conf", self.port)
        (self.directory / "kadm5.acl").write_text("")
        self._run("kdb5_util", "create", "-s", "-r", REALM, "-P", MASTER_PASSWORD)
        self._launch(self.directory / "kdc.conf", self.port, {})
        return self

    def start_skewed(self, offset: str = "+1h") -> Path:
        """Start a KDC whose clock is ``offset`` ahead; return a krb5.conf for it."""
        library = faketime_library()
        if library is None:
            raise RuntimeError(
                "libfaketime is missing: apt-get install faketime "
                "(scripts/install-system-packages installs it)"
            )
        port = free_udp_tcp_port()
        kdc_config = self._kdc_config(self.directory / "kdc-skewed.conf", port)
        self._launch(kdc_config, port, {"LD_PRELOAD": library, "FAKETIME": offset})
        return self.client_config(self.directory / "krb5-skewed.conf", port)

    def _launch(self, kdc_config: Path, port: int, extra: dict[str, str]) -> None:
        environment = {
            **os.environ,
            **self.environment(),
            "KRB5_KDC_PROFILE": str(kdc_config),
            **extra,
        }
        process = subprocess.Popen(
            ["krb5kdc", "-n", "-r", REALM, "-P", str(kdc_config) + ".pid"],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(process)
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"krb5kdc exited with {process.returncode}; see "
                    f"{self.directory}/kdc.log"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def add_user(self, name: str, password: str) -> None:
        # +requires_preauth, as Active Directory does: a wrong password is
        # then "Preauthentication failed" rather than a decryption error.
        self.admin(f"addprinc +requires_preauth -pw {password} {name}")

    def add_service(self, principal: str) -> None:
        self.admin(f"addprinc -randkey {principal}")

    def export_keytab(self, principal: str, keytab: Path) -> Path:
        self.admin(f"ktadd -k {keytab} {principal}")
        return keytab

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait()
        self.processes.clear()
