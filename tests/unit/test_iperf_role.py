# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The iperf role without guests. Its real templates are rendered through ansible-playbook (the role's validate and
render task files, with the unit and credential directories in tmp_path); systemd-analyze checks the units offline
(this machine has no systemd as PID 1); then each unit's ExecStart runs for real, as root, in the scratch network
namespace h3-srv, with its LoadCredential files copied where %d points, and the real iperf3 client measures against it
from h3-cli over a veth pair: plain, with the users file the role wrote (right and wrong passwords), bound to one
address, and held to its bit rate limit. The restarts (handlers), the apt install and the units' start need systemd;
the Molecule scenario extensions/molecule/iperf covers them on a Debian guest."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SERVER_NS, CLIENT_NS = "h3-srv", "h3-cli"
SERVER_ADDRESS, OTHER_SERVER_ADDRESS, CLIENT_ADDRESS = "10.33.0.1", "10.33.0.3", "10.33.0.2"
PASSWORDS = {"alice": "s3cret-alice", "bob": "Bob's-pw#1"}
HARDENING = {
    "DynamicUser": "yes", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes", "MemoryDenyWriteExecute": "yes",
}
# systemd-analyze security's overall exposure, times 10: 2.0 or lower ("OK").
EXPOSURE_THRESHOLD = 20

# A callback that writes, per host, the tasks that ran and their results to $H3_RECORD.
RECORDER = '''
import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "h3_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.ran = {}
        self.play = None

    def v2_playbook_on_play_start(self, play):
        self.play = play.get_name()

    def _record(self, result, status):
        host = getattr(result, "host", None) or result._host
        task = getattr(result, "task", None) or result._task
        data = getattr(result, "result", None)
        data = result._result if data is None else data
        self.ran.setdefault(host.get_name(), []).append(
            {"play": self.play, "task": task.get_name(), "action": task.action, "status": status, "result": data})

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["H3_RECORD"], "w") as record:
            json.dump(self.ran, record, default=repr)
'''


# ---------------------------------------------------------------------------------------------------------------------
# ansible-playbook over local hosts


def render_play(*tasks_from, end=True):
    """A play over all hosts that includes the role's task files (their variables public, to be read back) and ends
    there: the handlers would restart units through systemd."""
    tasks = [{"name": "Role tasks %s" % name, "ansible.builtin.include_role": {
        "name": "arctictern.virt.iperf", "tasks_from": name, "public": True}} for name in tasks_from]
    tasks.append({"name": "Changed ports", "ansible.builtin.debug": {"var": "__iperf_changed_ports"}})
    if end:
        tasks.append({"name": "End before the handlers", "ansible.builtin.meta": "end_play"})
    return {"name": "Render", "hosts": "all", "gather_facts": False, "tasks": tasks}


class Playbook:
    """One ansible-playbook run over local hosts (host variables: the role's), started at once, read with result()."""

    def __init__(self, directory, hosts, plays, *options):
        directory.mkdir(parents=True, exist_ok=True)
        local = {"ansible_connection": "ansible.builtin.local", "ansible_python_interpreter": sys.executable}
        inventory = {"all": {"hosts": {name: dict(local, **data) for name, data in hosts.items()}}}
        (directory / "inventory.yml").write_text(yaml.safe_dump(inventory))
        (directory / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
        callbacks = directory / "callback_plugins"
        callbacks.mkdir(exist_ok=True)
        (callbacks / "h3_record.py").write_text(RECORDER)
        self.record = directory / "record.json"
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
                   ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".collections"), ANSIBLE_HOME=str(directory / "home"),
                   ANSIBLE_LOCAL_TEMP=str(directory / "tmp"), ANSIBLE_CALLBACK_PLUGINS=str(callbacks),
                   ANSIBLE_CALLBACKS_ENABLED="h3_record", ANSIBLE_NOCOLOR="1", ANSIBLE_FORKS="20",
                   ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_RETRY_FILES_ENABLED="0", H3_RECORD=str(self.record),
                   PATH="%s:%s" % (VENV_BIN, os.environ.get("PATH", "")))
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(directory / "inventory.yml"),
                str(directory / "play.yml"), *options]
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)

    def result(self):
        """(return code, {host: [task record, ...]}, output)."""
        output = self.proc.communicate(timeout=180)[0]
        assert self.record.exists(), "ansible-playbook recorded nothing (rc %s):\n%s" % (self.proc.returncode, output)
        return self.proc.returncode, json.loads(self.record.read_text()), output


def role_dirs(base):
    """The role's directories under ``base``; the unit directory exists already, as /etc/systemd/system does."""
    (base / "units").mkdir(parents=True, exist_ok=True)
    return {"iperf_unit_dir": str(base / "units"), "iperf_config_dir": str(base / "config")}


def task_result(tasks, name):
    found = [task for task in tasks if task["task"].split(" : ")[-1] == name]
    assert found, "no task %r ran: %s" % (name, [task["task"] for task in tasks])
    return found[-1]["result"]


def failure_message(result):
    """The messages of a failed task, its loop items' included."""
    return " ".join(str(item.get("msg", "")) for item in result.get("results", [])) + " " + str(result.get("msg"))


def changed_ports(tasks):
    return task_result(tasks, "Changed ports")["__iperf_changed_ports"]


# ---------------------------------------------------------------------------------------------------------------------
# The rendered files


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """An RSA key pair made with openssl: (private PEM as the file lookup returns it, without the last newline,
    path of the public key)."""
    directory = tmp_path_factory.mktemp("keys")
    private, public = directory / "private.pem", directory / "public.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out",
                    str(private)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True,
                   capture_output=True)
    return private.read_text().rstrip("\n"), public


def users():
    return [{"user": name, "password": password} for name, password in PASSWORDS.items()]


def main_servers(private_key):
    return [
        {"port": 5201},
        {"port": 5202, "bind": SERVER_ADDRESS, "idle_timeout": 30, "time_skew_threshold": 20, "pkcs1_padding": True,
         "rsa_private_key": private_key, "authorized_users": users()},
        {"port": 5203, "server_bitrate_limit": "20M/1"},
        {"port": 80},
    ]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, keys):
    """The role's files for main_servers(), rendered with the real iperf3 (3.12) and, for the padding option, with
    iperf_installed_version=3.17.1; both runs at -vvv, whose output must hold no secret."""
    base = tmp_path_factory.mktemp("rendered")
    main = Playbook(base / "run", {"main": dict(role_dirs(base / "main"), iperf_servers=main_servers(keys[0]))},
                    [render_play("validate", "render")], "-vvv")
    authenticated = main_servers(keys[0])[1]
    newer_servers = [authenticated, dict(authenticated, port=5204, pkcs1_padding=False, bind=None)]
    newer = Playbook(base / "run317", {"newer": dict(role_dirs(base / "newer"), iperf_servers=newer_servers)},
                     [render_play("validate", "render")], "-vvv", "-e", "iperf_installed_version=3.17.1")
    runs = {"main": main.result(), "newer": newer.result()}
    for name, (rc, _ran, output) in runs.items():
        assert rc == 0, output
    return {"main": base / "main", "newer": base / "newer", "runs": runs}


def unit_entries(path):
    """[(section, key, value)] of a unit file, comments left out, in file order (keys may repeat)."""
    entries, section = [], None
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _separator, value = line.partition("=")
        entries.append((section, key, value))
    return entries


def service_values(path, key):
    return [value for section, name, value in unit_entries(path) if section == "Service" and name == key]


def unit_path(base, port):
    return base / "units" / ("arctictern-iperf3-%d.service" % port)


def specifiers(word, credentials):
    """``word`` with the systemd specifiers the role's units use replaced: %d (credentials directory) and %%."""
    def replace(match):
        if match.group(1) == "d":
            return str(credentials)
        assert match.group(1) == "%", "unexpected specifier %%%s in %r" % (match.group(1), word)
        return "%"
    return re.sub(r"%(.)", replace, word)


def exec_start(path, credentials="CREDENTIALS"):
    """The unit's command line as systemd would run it."""
    (line,) = service_values(path, "ExecStart")
    return [specifiers(word, credentials) for word in shlex.split(line)]


def test_units_pass_systemd_analyze_verify(rendered):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    units = sorted((rendered["main"] / "units").glob("*.service"))
    assert [unit.name for unit in units] == ["arctictern-iperf3-%d.service" % port for port in (5201, 5202, 5203, 80)]
    for unit in units:
        verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
        assert (verified.returncode, verified.stderr) == (0, ""), unit


def test_units_are_hardened(rendered):
    for port in (5201, 5202, 5203, 80):
        unit = unit_path(rendered["main"], port)
        values = {key: value for section, key, value in unit_entries(unit) if section == "Service"}
        assert {key: values.get(key) for key in HARDENING} == HARDENING, unit
        assert service_values(unit, "SystemCallFilter") == ["@system-service", "~@privileged"]
        if port < 1024:
            assert (values.get("AmbientCapabilities"), values.get("CapabilityBoundingSet")) == (
                "CAP_NET_BIND_SERVICE", "CAP_NET_BIND_SERVICE")
            assert "PrivateUsers" not in values
        else:
            assert (values.get("CapabilityBoundingSet"), values.get("PrivateUsers")) == ("", "yes")
            assert "AmbientCapabilities" not in values
        if shutil.which("systemd-analyze"):
            security = subprocess.run(["systemd-analyze", "security", "--offline=true",
                                       "--threshold=%d" % EXPOSURE_THRESHOLD, str(unit)],
                                      capture_output=True, text=True, check=False)
            assert security.returncode == 0, security.stdout[-400:]


def test_command_lines_carry_each_servers_options(rendered):
    main = rendered["main"]
    assert exec_start(unit_path(main, 5201)) == ["/usr/bin/iperf3", "--server", "--port", "5201", "--forceflush"]
    assert exec_start(unit_path(main, 5202)) == [
        "/usr/bin/iperf3", "--server", "--port", "5202", "--forceflush", "--bind", SERVER_ADDRESS,
        "--idle-timeout", "30", "--rsa-private-key-path", "CREDENTIALS/rsa_private_key",
        "--authorized-users-path", "CREDENTIALS/authorized_users", "--time-skew-threshold", "20"]
    assert exec_start(unit_path(main, 5203))[-2:] == ["--server-bitrate-limit", "20M/1"]
    config = main / "config" / "5202"
    assert service_values(unit_path(main, 5202), "LoadCredential") == [
        "rsa_private_key:%s/rsa_private_key.pem" % config, "authorized_users:%s/authorized_users.csv" % config]
    assert service_values(unit_path(main, 5201), "LoadCredential") == []


def test_pkcs1_padding_is_rendered_only_for_iperf3_3_17_and_later(rendered):
    main_tasks = rendered["runs"]["main"][1]["main"]
    assert task_result(main_tasks, "Note the version")["ansible_facts"]["iperf_installed_version"] == "3.12"
    assert "--use-pkcs1-padding" not in exec_start(unit_path(rendered["main"], 5202))
    assert exec_start(unit_path(rendered["newer"], 5202))[-1] == "--use-pkcs1-padding"
    assert "--use-pkcs1-padding" not in exec_start(unit_path(rendered["newer"], 5204))


def test_credentials_are_root_only_and_the_users_file_is_iperf3s(rendered, keys):
    config = rendered["main"] / "config" / "5202"
    for path in (config, config / "rsa_private_key.pem", config / "authorized_users.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    # The key's last line ends, though the lookup it came from had dropped the newline.
    assert (config / "rsa_private_key.pem").read_text() == keys[0] + "\n"
    lines = [line for line in (config / "authorized_users.csv").read_text().splitlines() if not line.startswith("#")]
    assert lines == ["%s,%s" % (user, hashlib.sha256(("{%s}%s" % (user, password)).encode()).hexdigest())
                     for user, password in PASSWORDS.items()]
    assert not (rendered["main"] / "config" / "5201").exists()


def test_no_secret_reaches_the_verbose_output(rendered, keys):
    key_lines = [line for line in keys[0].splitlines() if not line.startswith("-----")]
    for _rc, _ran, output in rendered["runs"].values():
        assert "Install the servers' private keys" in output
        for secret in list(PASSWORDS.values()) + key_lines[:3]:
            assert secret not in output


# ---------------------------------------------------------------------------------------------------------------------
# The command lines, run for real


def ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


@pytest.fixture(scope="module")
def lanes():
    """h3-srv (10.33.0.1 and 10.33.0.3) and h3-cli (10.33.0.2) joined by a veth pair; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if not shutil.which("iperf3"):
        pytest.skip("iperf3 is not installed")
    for name in (SERVER_NS, CLIENT_NS):
        ip("netns", "del", name, check=False)
    try:
        ip("netns", "add", SERVER_NS)
        ip("netns", "add", CLIENT_NS)
        ip("link", "add", "h3v-srv", "netns", SERVER_NS, "type", "veth", "peer", "name", "h3v-cli", "netns", CLIENT_NS)
        for address in (SERVER_ADDRESS, OTHER_SERVER_ADDRESS):
            ip("-n", SERVER_NS, "address", "add", address + "/24", "dev", "h3v-srv")
        ip("-n", CLIENT_NS, "address", "add", CLIENT_ADDRESS + "/24", "dev", "h3v-cli")
        for namespace, link in ((SERVER_NS, "h3v-srv"), (CLIENT_NS, "h3v-cli")):
            ip("-n", namespace, "link", "set", "lo", "up")
            ip("-n", namespace, "link", "set", link, "up")
        yield
    finally:
        for name in (SERVER_NS, CLIENT_NS):
            ip("netns", "del", name, check=False)


def load_credentials(unit, directory):
    """What systemd's LoadCredential=ID:PATH does: PATH copied to <credentials directory>/ID, readable only there."""
    directory.mkdir()
    for value in service_values(unit, "LoadCredential"):
        name, _separator, source = value.partition(":")
        shutil.copyfile(source, directory / name)
        os.chmod(directory / name, 0o400)
    return directory


def listening(port):
    sockets = ip("netns", "exec", SERVER_NS, "ss", "-Htln", "sport = :%d" % port).stdout
    return [line.split()[3] for line in sockets.splitlines()]


@contextlib.contextmanager
def serving(unit, tmp_path):
    """The unit's ExecStart running in h3-srv until the block ends; yields the path of its output."""
    argv = exec_start(unit, load_credentials(unit, tmp_path / "credentials"))
    port = int(argv[argv.index("--port") + 1])
    log = tmp_path / "server.log"
    with open(log, "w") as output:
        proc = subprocess.Popen(["ip", "netns", "exec", SERVER_NS, *argv], stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not listening(port):
            assert proc.poll() is None, "the server exited: %s" % log.read_text()
            assert time.monotonic() < deadline, "the server does not listen on %d" % port
            time.sleep(0.05)
        yield log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def measure(port, address=SERVER_ADDRESS, seconds=1, user=None, password=None, public_key=None, bitrate=None):
    """The real iperf3 client's JSON report, from h3-cli."""
    argv = ["ip", "netns", "exec", CLIENT_NS, "iperf3", "--client", address, "--port", str(port), "--time",
            str(seconds), "--json", "--connect-timeout", "3000"]
    if bitrate:
        argv += ["--bitrate", bitrate]
    env = dict(os.environ)
    if user:
        argv += ["--username", user, "--rsa-public-key-path", str(public_key)]
        env["IPERF3_PASSWORD"] = password
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 20, check=False)
    return json.loads(done.stdout)


def received_bps(report):
    assert "error" not in report, report.get("error")
    return report["end"]["sum_received"]["bits_per_second"]


def test_plain_server_measures(rendered, lanes, tmp_path):
    with serving(unit_path(rendered["main"], 5201), tmp_path):
        assert received_bps(measure(5201)) > 10e6
        assert received_bps(measure(5201, address=OTHER_SERVER_ADDRESS)) > 10e6


def test_authenticated_server_takes_its_users_only_on_its_address(rendered, lanes, tmp_path, keys):
    public = keys[1]
    with serving(unit_path(rendered["main"], 5202), tmp_path):
        assert listening(5202) == ["%s:5202" % SERVER_ADDRESS]
        for user, password in PASSWORDS.items():
            assert received_bps(measure(5202, user=user, password=password, public_key=public)) > 10e6
        assert measure(5202, user="alice", password="wrong", public_key=public)["error"] == "test authorization failed"
        assert measure(5202, user="bob", password=PASSWORDS["alice"], public_key=public)["error"] == \
            "test authorization failed"
        assert measure(5202)["error"] == "test authorization failed"
        assert "Connection refused" in measure(5202, address=OTHER_SERVER_ADDRESS, user="alice",
                                               password=PASSWORDS["alice"], public_key=public)["error"]


def test_server_bitrate_limit_ends_a_faster_test(rendered, lanes, tmp_path):
    with serving(unit_path(rendered["main"], 5203), tmp_path) as log:
        assert 4e6 < received_bps(measure(5203, seconds=2, bitrate="5M")) < 6e6
        assert "error" in measure(5203, seconds=3)
        assert "total required bandwidth is larger than server limit" in log.read_text()


# ---------------------------------------------------------------------------------------------------------------------
# Changes and validation


def test_a_change_restarts_only_its_port_and_a_second_run_changes_nothing(tmp_path, keys):
    servers = [{"port": 5201}, {"port": 5202, "rsa_private_key": keys[0], "authorized_users": users()}]
    runs = {
        "first": servers,
        "again": servers,
        "password": [servers[0], dict(servers[1], authorized_users=[users()[0], {"user": "bob", "password": "new"}])],
        "no_auth": [servers[0], {"port": 5202}],
    }
    # One play per run, one after the other on the same files (a play's variables override the host's).
    plays = [dict(render_play("render"), name=name, vars={"iperf_servers": entries}) for name, entries in runs.items()]
    rc, ran, output = Playbook(tmp_path / "run", {"host": role_dirs(tmp_path / "files")}, plays).result()
    assert rc == 0, output
    by_play = {name: [task for task in ran["host"] if task["play"] == name] for name in runs}
    assert {name: changed_ports(tasks) for name, tasks in by_play.items()} == {
        "first": [5201, 5202], "again": [], "password": [5202], "no_auth": [5202]}
    assert [task["task"] for task in by_play["again"] if task["result"].get("changed")] == []
    assert not (tmp_path / "files" / "config" / "5202").exists()
    assert "--authorized-users-path" not in exec_start(tmp_path / "files" / "units" / "arctictern-iperf3-5202.service")


def bad_cases(private_key):
    """{host: (iperf_servers, the words its failure must hold)}."""
    auth = {"rsa_private_key": private_key, "authorized_users": users()}
    return {
        "port_zero": ([{"port": 0}], "iperf_servers[0].port must be a number from 1 to 65535 (not 0)"),
        "port_high": ([{"port": 5201}, {"port": 70000}], "iperf_servers[1].port must be a number from 1 to 65535"),
        "port_text": ([{"port": "http"}], "iperf_servers[0].port must be a number from 1 to 65535 (not http)"),
        "port_twice": ([{"port": 5201}, {"port": 5202}, {"port": "5201"}],
                       "iperf_servers[2].port: 5201 is also the port of iperf_servers[0]"),
        "state": ([{"port": 5201, "state": "gone"}], "iperf_servers[0].state present or absent (not gone)"),
        "bind": ([{"port": 5201, "bind": "10.0.0.1 --daemon"}], "bind must be an address or name"),
        "idle_timeout": ([{"port": 5201, "idle_timeout": 0}], "idle_timeout from 1 to 86400 seconds (not 0)"),
        "bitrate": ([{"port": 5201, "server_bitrate_limit": "fast"}], "server_bitrate_limit a rate like 100M"),
        "skew": ([{"port": 5201, "time_skew_threshold": 0}], "time_skew_threshold at least 1 (not 0)"),
        "key_alone": ([{"port": 5201, "rsa_private_key": private_key}],
                      "iperf_servers[0] (port 5201): rsa_private_key and authorized_users go together"),
        "users_alone": ([{"port": 5201, "authorized_users": users()}],
                        "rsa_private_key and authorized_users go together"),
        "encrypted_key": ([dict(auth, port=5201, rsa_private_key="-----BEGIN ENCRYPTED PRIVATE KEY-----\nx\n")],
                          "iperf_servers[0].rsa_private_key (port 5201) must be a private key in PEM"),
        "public_key": ([dict(auth, port=5201, rsa_private_key="-----BEGIN PUBLIC KEY-----\nx\n")],
                       "must be a private key in PEM"),
        "no_users": ([dict(auth, port=5201, authorized_users=[])], "needs at least one user"),
        "user_comma": ([dict(auth, port=5201, authorized_users=[{"user": "a,b", "password": "pw"}])],
                       "(wrong: a,b)"),
        "user_twice": ([dict(auth, port=5201, authorized_users=users() + users()[:1])], "each name once"),
        "password_space": ([dict(auth, port=5201, authorized_users=[{"user": "carol", "password": "two words"}])],
                           "(wrong: the passwords of carol)"),
    }


def test_validation_names_the_variable(tmp_path, keys):
    cases = bad_cases(keys[0])
    hosts = {name: dict(role_dirs(tmp_path / name), iperf_servers=servers) for name, (servers, _words) in cases.items()}
    # Entries to remove are not checked beyond their port.
    hosts["absent_entry"] = dict(role_dirs(tmp_path / "absent"), iperf_servers=[
        {"port": 5201, "state": "absent", "idle_timeout": 0, "bind": "not an address"}])
    hosts["valid"] = dict(role_dirs(tmp_path / "valid"), iperf_servers=main_servers(keys[0]))
    # The argument spec (checked for the main entry point only) refuses keys it does not know and wrong types.
    spec_hosts = {"spec_unknown_key": [{"port": 5201, "idle_timout": 30}], "spec_port_type": [{"port": "http"}]}
    hosts.update({name: dict(role_dirs(tmp_path / name), iperf_servers=servers)
                  for name, servers in spec_hosts.items()})
    plays = [dict(render_play("validate", end=False), hosts=":".join(sorted(set(hosts) - set(spec_hosts)))),
             {"name": "Main", "hosts": ":".join(sorted(spec_hosts)), "gather_facts": False,
              "roles": ["arctictern.virt.iperf"]}]
    # Check mode: were the argument spec to pass, the role would go on to apt and systemd on this machine.
    rc, ran, output = Playbook(tmp_path / "run", hosts, plays, "--check").result()
    assert rc != 0
    for name, (_servers, words) in cases.items():
        last = ran[name][-1]
        assert last["status"] == "failed", (name, last, output)
        assert words in failure_message(last["result"]), (name, failure_message(last["result"]))
    for name in ("absent_entry", "valid"):
        assert [task["status"] for task in ran[name]] == ["ok"] * len(ran[name]), (name, output)
    assert "idle_timout" in ran["spec_unknown_key"][-1]["result"]["msg"] + str(
        ran["spec_unknown_key"][-1]["result"].get("argument_errors"))
    for name in spec_hosts:
        assert [(task["action"], task["status"]) for task in ran[name]] == [
            ("ansible.builtin.validate_argument_spec", "failed")], (name, ran[name])
    for password in ["two words"] + list(PASSWORDS.values()):
        assert password not in output
