"""The lab's HTTP server: Python's http.server inside the client's network namespace, serving a directory (the apt
repository of the Debian guests). Found again through its pid file, like the lab's other daemons."""

from __future__ import annotations

import subprocess
import sys
import time

from lab.daemon import running_pid, terminate
from lab.namespaces import CLONE_NEWNET, setns
from lab.topology import LAB_WEB_HOST, LAB_WEB_PORT

PROGRAM = "http.server"   # what /proc/PID/cmdline holds (python -m http.server)


class WebServer:
    name = "http.server"

    def __init__(self, directory, host=LAB_WEB_HOST, port=LAB_WEB_PORT):
        self.directory = directory
        self.host = host
        self.port = port
        self.pid_file = host.state_dir / "http.pid"
        self.log_file = host.state_dir / "http.out"

    def _enter(self):
        setns("/run/netns/%s" % self.host.netns, CLONE_NEWNET)

    def pid(self):
        return running_pid(self.pid_file, PROGRAM)

    def start(self, timeout=15):
        """Starts the server unless it runs; True when it started it."""
        if self.pid():
            return False
        self.host.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(  # pylint: disable=subprocess-popen-preexec-fn,consider-using-with
                [sys.executable, "-m", PROGRAM, str(self.port), "--bind", self.host.lan_address,
                 "--directory", str(self.directory)],
                preexec_fn=self._enter, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self.pid_file.write_text("%d\n" % proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if self._answers():
                return True
            time.sleep(0.1)
        raise RuntimeError("the lab's web server did not come up; see %s" % self.log_file)

    def _answers(self):
        """Whether the port accepts connections, checked from inside the client's namespace."""
        probe = ("import socket; socket.create_connection((%r, %d), timeout=1).close()"
                 % (self.host.lan_address, self.port))
        return subprocess.run([sys.executable, "-c", probe], preexec_fn=self._enter,  # pylint: disable=subprocess-popen-preexec-fn
                              capture_output=True, check=False).returncode == 0

    def stop(self, timeout=5):
        pid = self.pid()
        if pid:
            terminate(pid, self.pid, timeout, interval=0.05)
        return bool(pid)
