# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tinyproxy role (roles/tinyproxy) without guests: Ansible runs the role itself, with its real defaults, on this
machine (installed tinyproxy, real dpkg and apt-cache; only the service and the apt refresh are off, and the files,
port, user and group go where a test run can have them, all through role variables). The real /usr/bin/tinyproxy
then serves each configuration the role wrote, in the scratch network namespaces h2-proxy and h2-client (a veth
between them), in front of a python http.server, and curl's requests through it show what each configuration does.

One ansible-playbook run renders every case at once (one inventory host per case, -v --diff): the cases the role
must accept and the ones it must refuse; a second run of the accepted cases must change nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ROLE = ROOT / "roles" / "tinyproxy"
TINYPROXY = "/usr/bin/tinyproxy"
CURL = "/usr/bin/curl"

PROXY_NS, CLIENT_NS = "h2-proxy", "h2-client"
PROXY_IP, CLIENT_IP, OTHER_CLIENT_IP = "198.51.100.1", "198.51.100.2", "198.51.100.3"
PROXY_PORT = 8888  # given as tinyproxy_port to every case (the role's default value)
WEB_PORT = 8000
WEB_URL = "http://%s:%d/" % (PROXY_IP, WEB_PORT)
WEB_MARKER = "h2 test web server"
PASSWORD = "Proxy-pw.7"
UPSTREAM_PASSWORD = "Upstream-pw.9"
BLOCKED = "blocked.lab.test"

# Role variables of each case, besides the test paths every case gets (case_variables).
ACCEPTED = {
    "defaults": {},
    "allow": {"tinyproxy_allow": [CLIENT_IP], "tinyproxy_connect_ports": [WEB_PORT]},
    "auth": {"tinyproxy_allow": [CLIENT_IP], "tinyproxy_basic_auth": [{"user": "alice", "password": PASSWORD}],
             # Never used by the requests below (only for .example.net): here for its password.
             "tinyproxy_upstream": [{"type": "http", "host": "upstream.invalid", "port": 3128, "user": "up",
                                     "password": UPSTREAM_PASSWORD, "site": ".example.net"},
                                    {"type": "none", "site": ".lab.test"}]},
    # With IPv6 entries, which the role's checks must take too.
    "filter": {"tinyproxy_allow": [CLIENT_IP, "fe80::/10"], "tinyproxy_deny": ["2001:db8::/32"],
               "tinyproxy_filter_rules": [r"^blocked\.lab\.test$"]},
}
# Cases the role must refuse before it writes anything, and what its message must say.
REFUSED = {
    "vulnerable": ({"tinyproxy_fixed_versions": [{"from": "1.11.2"}]},
                   ["CVE-2023-49606", "installed 1.11.1-2.1+deb12u1", "tinyproxy_fixed_versions"]),
    "realm": ({"tinyproxy_basic_auth_realm": "Lab", "tinyproxy_basic_auth": [{"user": "alice", "password": PASSWORD}]},
              ["BasicAuthRealm", "tinyproxy_basic_auth_realm", "1.11.3"]),
    "open": ({"tinyproxy_allow": ["0.0.0.0/0"]}, ["tinyproxy_allow", "0.0.0.0/0", "open proxy"]),
    "bad_prefix": ({"tinyproxy_deny": ["10.0.0.0/33"]}, ["tinyproxy_deny", "10.0.0.0/33"]),
    "upstream_none": ({"tinyproxy_upstream": [{"type": "none"}]}, ["tinyproxy_upstream", "rule 1 (none)", "site"]),
    "bad_password": ({"tinyproxy_basic_auth": [{"user": "bob", "password": "p@ss word"}]},
                     ["tinyproxy_basic_auth", "password of bob"]),
    "default_deny_without_rules": ({"tinyproxy_filter_default_deny": True}, ["tinyproxy_filter_default_deny"]),
    "bad_octet": ({"tinyproxy_allow": ["10.0.0.256"]}, ["tinyproxy_allow", "10.0.0.256"]),
    "listen_name": ({"tinyproxy_listen": ["localhost"]}, ["tinyproxy_listen", "localhost"]),
    "upstream_incomplete": ({"tinyproxy_upstream": [{"type": "socks5", "host": "proxy.example", "user": "u"}]},
                            ["rule 1 (socks5) needs a port", "needs a user and a password, or neither"]),
    "rule_with_space": ({"tinyproxy_filter_rules": ["ads example"]}, ["tinyproxy_filter_rules", "white space"]),
    "connect_port_zero": ({"tinyproxy_connect_ports": [0]}, ["tinyproxy_connect_ports: 0 is no port"]),
    "quote_in_via": ({"tinyproxy_via_proxy_name": 'a"b'}, ["tinyproxy_via_proxy_name"]),
    # Passes the role's own checks; tinyproxy refuses it when the role checks the filter file.
    "bad_filter": ({"tinyproxy_filter_rules": [r"\(unbalanced"]}, ["tinyproxy refuses", "Bad regex"]),
}

RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", re.MULTILINE)
FAILURE = re.compile(r"^(?:fatal|failed): \[([^\]]+)\].*? => (\{.*\})$", re.MULTILINE)

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(TINYPROXY) or not os.path.exists(CURL),
                                reason="needs root (network namespaces), tinyproxy and curl")


def case_variables(directory):
    return {
        "ansible_connection": "ansible.builtin.local",
        "ansible_python_interpreter": sys.executable,
        "tinyproxy_update_cache": False,
        "tinyproxy_manage_service": False,
        "tinyproxy_user": "root",
        "tinyproxy_group": "root",
        "tinyproxy_port": PROXY_PORT,
        "tinyproxy_config_file": str(directory / "tinyproxy.conf"),
        "tinyproxy_filter_file": str(directory / "filter"),
        "tinyproxy_config_check": str(directory / "tinyproxy_config_check.py"),
        "tinyproxy_pid_file": str(directory / "tinyproxy.pid"),
        "tinyproxy_log_file": str(directory / "tinyproxy.log"),
    }


def ansible_env(tmp_path):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".collections"),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORKS": "16",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "PATH": "%s:%s" % (VENV_BIN, env.get("PATH", "")),
        "PYTHONPATH": "%s:%s" % (ROOT / ".collections", ROOT),
    })
    return env


class PlaybookRun:
    """One ansible-playbook -v --diff run of the role over local hosts: its output, PLAY RECAP and failures."""

    def __init__(self, tmp_path, inventory, limit=None):
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(tmp_path / "play.yml"), "-v", "--diff"]
        argv += ["--limit", ",".join(limit)] if limit else []
        proc = subprocess.run(argv, cwd=ROOT, env=ansible_env(tmp_path), capture_output=True, text=True, timeout=600,
                              check=False)
        self.output = proc.stdout + proc.stderr
        self.changed = {host: int(changed) for host, changed, _failed in RECAP.findall(self.output)}
        self.failed = {host for host, _changed, failed in RECAP.findall(self.output) if int(failed)}
        self.messages = {}
        for host, result in FAILURE.findall(self.output):
            result = json.loads(result)
            # A failed validate: tells why in its stderr.
            self.messages.setdefault(host, []).append("%s %s" % (result.get("msg", ""), result.get("stderr", "")))


@pytest.fixture(scope="module")
def role_runs(tmp_path_factory):
    """The first run over every case, then a second run over the accepted ones; each case in a directory of its own."""
    tmp_path = tmp_path_factory.mktemp("tinyproxy-role")
    cases = dict(ACCEPTED, **{name: case[0] for name, case in REFUSED.items()})
    hosts = {}
    for name, variables in cases.items():
        (tmp_path / name).mkdir()
        hosts[name] = dict(case_variables(tmp_path / name), **variables)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    play = [{"name": "The tinyproxy role", "hosts": "all", "gather_facts": False,
             "roles": [{"role": "arctictern.virt.tinyproxy"}]}]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    first = PlaybookRun(tmp_path, inventory)
    second = PlaybookRun(tmp_path, inventory, limit=sorted(ACCEPTED))
    return {"first": first, "second": second, "dirs": {name: tmp_path / name for name in cases}}


def config_of(role_runs, case):
    return role_runs["dirs"][case] / "tinyproxy.conf"


# --------------------------------------------------------------------------------------------------------------------
# Scratch namespaces, the web server and tinyproxy


def run(*argv, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, check=True, **kwargs)


def remove_namespaces():
    for namespace in (PROXY_NS, CLIENT_NS):
        subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, check=False)


def in_namespace(namespace, *argv):
    return ["ip", "netns", "exec", namespace, *argv]


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    """h2-proxy (198.51.100.1, web servers on ports 8000 and 443) and h2-client (198.51.100.2 and .3), joined by a
    veth; removed with everything in them afterwards, also after a failure."""
    remove_namespaces()
    web_root = tmp_path_factory.mktemp("web")
    (web_root / "index.html").write_text(WEB_MARKER + "\n")
    servers = []
    try:
        run("ip", "netns", "add", PROXY_NS)
        run("ip", "netns", "add", CLIENT_NS)
        run("ip", "link", "add", "h2-p0", "netns", PROXY_NS, "type", "veth",
            "peer", "name", "h2-c0", "netns", CLIENT_NS)
        for namespace, link, addresses in ((PROXY_NS, "h2-p0", [PROXY_IP]),
                                           (CLIENT_NS, "h2-c0", [CLIENT_IP, OTHER_CLIENT_IP])):
            for address in addresses:
                run(*in_namespace(namespace, "ip", "address", "add", address + "/24", "dev", link))
            run(*in_namespace(namespace, "ip", "link", "set", link, "up"))
            run(*in_namespace(namespace, "ip", "link", "set", "lo", "up"))
        for port in (WEB_PORT, 443):
            servers.append(subprocess.Popen(
                in_namespace(PROXY_NS, sys.executable, "-m", "http.server", str(port), "--directory", str(web_root)),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for(lambda port=port: request(PROXY_NS, "http://127.0.0.1:%d/" % port, proxy=None).status == 200,
                     "the web server on port %d" % port)
        yield
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
        remove_namespaces()


def wait_for(condition, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("%s did not come up within %s s" % (what, timeout))
        time.sleep(0.1)


@contextlib.contextmanager
def serving(role_runs, case):
    """The real tinyproxy on the configuration the role wrote for the case, in h2-proxy."""
    directory = role_runs["dirs"][case]
    pid_file = directory / "tinyproxy.pid"
    pid_file.unlink(missing_ok=True)
    proc = subprocess.Popen(in_namespace(PROXY_NS, TINYPROXY, "-d", "-c", str(config_of(role_runs, case))),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # tinyproxy writes its PID file once it listens.
        wait_for(lambda: pid_file.exists() or proc.poll() is not None, "tinyproxy (%s)" % case)
        assert proc.poll() is None, "tinyproxy refused the %s configuration: %s" % (case, proc.stderr.read())
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Response:
    def __init__(self, stdout):
        self.body, _separator, codes = stdout.rpartition("\n")
        status, connect = codes.split()
        self.status = int(status)  # of the request (0 when a CONNECT was refused)
        self.connect = int(connect)  # the proxy's answer to CONNECT (0 without one)

    def __repr__(self):
        return "<%d, CONNECT %d: %s>" % (self.status, self.connect, self.body[:200])


def request(namespace, url, proxy="http://%s:%d" % (PROXY_IP, PROXY_PORT), source=None, credentials=None,
            tunnel=False):
    """A GET with curl from inside the namespace, through the proxy (with CONNECT when tunnel)."""
    argv = [CURL, "-q", "--silent", "--max-time", "10", "--output", "-",
            "--write-out", "\n%{http_code} %{http_connect}"]
    argv += ["--proxy", proxy] if proxy else ["--noproxy", "*"]
    argv += ["--interface", source] if source else []
    argv += ["--proxy-user", credentials] if credentials else []
    argv += ["--proxytunnel"] if tunnel else []
    env = {key: value for key, value in os.environ.items() if not key.lower().endswith("_proxy")}
    proc = subprocess.run(in_namespace(namespace, *argv, url), capture_output=True, text=True, env=env, check=False)
    return Response(proc.stdout)


# --------------------------------------------------------------------------------------------------------------------
# What Ansible did


def test_the_role_writes_each_accepted_case_and_a_second_run_changes_nothing(role_runs):
    first, second = role_runs["first"], role_runs["second"]
    for case in ACCEPTED:
        assert case not in first.failed, (case, first.messages.get(case), first.output[-3000:])
        assert first.changed[case] > 0, case
        assert config_of(role_runs, case).is_file(), case
        assert second.changed.get(case) == 0, (case, second.output[-3000:])
        assert case not in second.failed, (case, second.messages.get(case))
    # The filter file exists only where there are rules.
    assert (role_runs["dirs"]["filter"] / "filter").read_text() == "^blocked\\.lab\\.test$\n"
    assert not (role_runs["dirs"]["allow"] / "filter").exists()
    # Readable by root and the group tinyproxy runs as only: it holds the passwords.
    assert config_of(role_runs, "auth").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_the_role_refuses_before_writing_anything(role_runs, case):
    first = role_runs["first"]
    assert case in first.failed, (case, first.output[-3000:])
    message = " ".join(first.messages.get(case, []))
    for phrase in REFUSED[case][1]:
        assert phrase in message, (phrase, message)
    assert not config_of(role_runs, case).exists()
    assert not (role_runs["dirs"][case] / "filter").exists()


def test_passwords_never_appear_in_the_output(role_runs):
    output = role_runs["first"].output + role_runs["second"].output
    # They did reach the configuration, and the run did show diffs (of the cases without secrets).
    config = config_of(role_runs, "auth").read_text()
    assert "BasicAuth alice %s" % PASSWORD in config and "up:%s@upstream.invalid:3128" % UPSTREAM_PASSWORD in config
    assert "+Port %d" % PROXY_PORT in output
    assert PASSWORD not in output and UPSTREAM_PASSWORD not in output


# --------------------------------------------------------------------------------------------------------------------
# What tinyproxy does with what the role wrote


def test_default_configuration_serves_only_this_host(role_runs, network):
    with serving(role_runs, "defaults"):
        local = request(PROXY_NS, "http://127.0.0.1:%d/" % WEB_PORT, proxy="http://127.0.0.1:%d" % PROXY_PORT)
        assert local.status == 200 and WEB_MARKER in local.body, local
        assert request(CLIENT_NS, WEB_URL).status == 403


def test_default_configuration_allows_connect_to_443_only(role_runs, network):
    local_proxy = "http://127.0.0.1:%d" % PROXY_PORT
    with serving(role_runs, "defaults"):
        https_port = request(PROXY_NS, "http://127.0.0.1:443/", proxy=local_proxy, tunnel=True)
        assert https_port.connect == 200 and WEB_MARKER in https_port.body, https_port
        other_port = request(PROXY_NS, "http://127.0.0.1:%d/" % WEB_PORT, proxy=local_proxy, tunnel=True)
        assert other_port.connect == 403, other_port
    with serving(role_runs, "allow"):  # tinyproxy_connect_ports: [8000]
        assert request(CLIENT_NS, WEB_URL, tunnel=True).connect == 200


def test_allow_list_admits_its_client_and_refuses_others(role_runs, network):
    with serving(role_runs, "allow"):
        allowed = request(CLIENT_NS, WEB_URL, source=CLIENT_IP)
        assert allowed.status == 200 and WEB_MARKER in allowed.body, allowed
        assert request(CLIENT_NS, WEB_URL, source=OTHER_CLIENT_IP).status == 403
        # The allow list replaces the default, this host included.
        assert request(PROXY_NS, WEB_URL, proxy="http://127.0.0.1:%d" % PROXY_PORT).status == 403


def wrong_credentials_status():
    """tinyproxy answers wrong credentials with 407 from 1.11.3 on; before, with 401 (upstream issue #532)."""
    version = run("dpkg-query", "--showformat", "${Version}", "--show", "tinyproxy-bin").stdout
    newer = subprocess.run(["dpkg", "--compare-versions", version, "ge", "1.11.3"], check=False).returncode == 0
    return 407 if newer else 401


def test_basic_auth_wants_the_right_credentials(role_runs, network):
    refused = wrong_credentials_status()
    with serving(role_runs, "auth"):
        assert request(CLIENT_NS, WEB_URL).status == 407
        assert request(CLIENT_NS, WEB_URL, credentials="alice:wrong-pw").status == refused
        assert request(CLIENT_NS, WEB_URL, credentials="mallory:%s" % PASSWORD).status == refused
        right = request(CLIENT_NS, WEB_URL, credentials="alice:%s" % PASSWORD)
        assert right.status == 200 and WEB_MARKER in right.body, right


def test_filtered_domain_is_refused(role_runs, network):
    blocked = "http://%s:%d/" % (BLOCKED, WEB_PORT)
    with serving(role_runs, "filter"):
        refused = request(CLIENT_NS, blocked)
        assert refused.status == 403 and "Filtered" in refused.body, refused
        assert request(CLIENT_NS, "http://localhost:%d/" % WEB_PORT).status == 200
    with serving(role_runs, "allow"):  # no filter: the same request gets past the filter (and fails to resolve)
        assert request(CLIENT_NS, blocked).status not in (200, 403)


# --------------------------------------------------------------------------------------------------------------------
# The configuration check (files/tinyproxy_config_check.py), as the role's validate: runs it

BROKEN = {
    "unknown directive": "Port 8888\nNoSuchDirective yes\n",
    "BasicAuthRealm (tinyproxy 1.11.3)": 'Port 8888\nBasicAuthRealm "Lab"\n',
    "BasicAuth password with @": "Port 8888\nBasicAuth alice p@ss\n",
    "port out of range": "Port 70000\n",
    "no port": "Allow 127.0.0.1\n",
    "missing filter file": 'Port 8888\nFilter "/nonexistent/h2-filter"\n',
}


def check(path, *options, namespace=None):
    argv = ["/usr/bin/python3", str(ROLE / "files" / "tinyproxy_config_check.py"), "--tinyproxy", TINYPROXY, *options,
            str(path)]
    return subprocess.run(in_namespace(namespace, *argv) if namespace else argv, capture_output=True, text=True,
                          timeout=30, check=False)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_check_refuses_a_broken_configuration(tmp_path, name):
    config = tmp_path / "tinyproxy.conf"
    config.write_text(BROKEN[name])
    proc = check(config)
    assert proc.returncode == 1 and "tinyproxy refuses" in proc.stderr, (proc.returncode, proc.stderr)


def test_check_refuses_a_broken_filter_and_accepts_a_good_one(tmp_path):
    rules = tmp_path / "filter"
    rules.write_text("^ok\\.example$\n\\(unbalanced\n")
    proc = check(rules, "--filter")
    assert proc.returncode == 1 and "Bad regex" in proc.stderr, proc.stderr
    # The same rule is no regular expression problem for fnmatch.
    assert check(rules, "--filter", "--filter-type", "fnmatch").returncode == 0


def test_check_accepts_what_the_role_wrote_and_leaves_a_running_proxy_alone(role_runs, network):
    for case in ACCEPTED:
        proc = check(config_of(role_runs, case))
        assert proc.returncode == 0, (case, proc.stderr)
    # Checked in the namespace of a proxy running on the same configuration (same port, PID file and log): the
    # check passes, and the proxy keeps its PID file and still answers.
    directory = role_runs["dirs"]["defaults"]
    with serving(role_runs, "defaults") as proxy:
        pid_before = (directory / "tinyproxy.pid").read_text()
        log_before = (directory / "tinyproxy.log").stat().st_size
        proc = check(config_of(role_runs, "defaults"), namespace=PROXY_NS)
        assert proc.returncode == 0, proc.stderr
        assert proxy.poll() is None and (directory / "tinyproxy.pid").read_text() == pid_before
        assert (directory / "tinyproxy.log").stat().st_size == log_before
        local = request(PROXY_NS, "http://127.0.0.1:%d/" % WEB_PORT, proxy="http://127.0.0.1:%d" % PROXY_PORT)
        assert local.status == 200


# --------------------------------------------------------------------------------------------------------------------
# Which versions count as fixed: the role's own comparison script, with the role's default ranges, through dpkg

FIXED = {
    "1.11.1-2.1+deb12u1": True,   # Debian 12's security update
    "1.11.1-2.1+deb12u2": True,   # a later update of the same build
    "1.11.1-2.1+deb12u1+b1": True,  # a binary rebuild of it
    "1.11.2": True,               # upstream's fix
    "1.11.2-1": True,
    "1.11.3-1": True,
    "1.11.1-2.1": False,          # Debian 12 before the update
    "1.11.1-3": False,            # another build of 1.11.1: no reason to believe it fixed
    "1.11.2~rc1-1": False,        # before the release
    "1.11.0-1": False,
    "1.10.0-5": False,
}


def test_fixed_versions_are_compared_by_dpkg():
    if not shutil.which("dpkg"):
        pytest.skip("needs dpkg")
    script = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["_tinyproxy_fixed_script"]
    ranges = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())["tinyproxy_fixed_versions"]
    bounds = [value for item in ranges for value in (item["from"], item.get("below", ""))]
    found = {version: subprocess.run(["sh", "-c", script, "fixed", version, *bounds], check=False).returncode
             for version in FIXED}
    assert found == {version: 0 if fixed else 1 for version, fixed in FIXED.items()}
    # A malformed bound is an error, not "not fixed".
    assert subprocess.run(["sh", "-c", script, "fixed", "1.11.2", "not a version", ""], capture_output=True,
                          check=False).returncode == 2
