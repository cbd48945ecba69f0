"""Runs the collection's modules and playbooks over the lab inventory, and probes from inside lab hosts, the way
users do: through Ansible's own command-line tools, and tells where a guest runs. Shared by the integration tests and
the benchmarks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import libvirt

from lab import lab as lab_control

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def ansible_env():
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".collections"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "PATH": "%s:%s" % (VENV_BIN, env.get("PATH", "")),
        "PYTHONPATH": "%s:%s" % (ROOT / ".collections", ROOT),
    })
    return env


class Ansible:
    """Runs collection modules and playbooks over the lab inventory."""

    def module(self, host, module, check=False, diff=False, **args):
        """One module call on one lab host; returns Ansible's result dict (with 'failed' on failure)."""
        with tempfile.TemporaryDirectory() as tree:
            argv = [str(VENV_BIN / "ansible"), host, "-i", str(ROOT / "inventories" / "lab"),
                    "-m", module if "." in module else "arctictern.virt." + module, "--tree", tree]
            # Without arguments, -a '{}' would be taken as raw parameters, which collection modules refuse.
            argv += ["-a", json.dumps(args)] if args else []
            argv += ["--check"] if check else []
            # The tree callback keeps a result's diff only from verbosity 3 on.
            argv += ["--diff", "-vvv"] if diff else []
            proc = subprocess.run(argv, cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=600,
                                  check=False)
            result_file = Path(tree) / host
            if not result_file.exists():
                raise AssertionError("no result from %s: %s\n%s" % (module, proc.stdout, proc.stderr))
            result = json.loads(result_file.read_text())
        # ansible-core 2.19's tree callback drops 'failed' from the result; the exit code still tells (2, 4).
        if proc.returncode != 0:
            result["failed"] = True
        result["_stdout"] = proc.stdout
        return result

    def ok(self, host, module, **kwargs):
        """A module call that must succeed."""
        result = self.module(host, module, **kwargs)
        assert not result.get("failed"), result.get("msg", result)
        return result

    def module_passes(self, host, module, cases, passes, shards=1):
        """Run ``module`` on ``host`` over every case (a dict of module options) in one playbook, once per pass.

        ``passes`` is a list of (label, task keywords) run in order, e.g. ``[("predicted", {"check_mode": True,
        "diff": True}), ("applied", {})]``. Returns {label: [result, ...]} in case order; a failed call is a result
        with ``failed``. One playbook instead of a call per case: Ansible's start-up is most of a module call.
        With ``shards`` > 1 the cases are split into that many playbooks run side by side (cases that do not depend
        on one another only: each shard keeps its own order)."""
        size = -(-len(cases) // shards)
        chunks = [cases[start:start + size] for start in range(0, len(cases), size)]
        with tempfile.TemporaryDirectory() as tree:
            runs = [self._start_passes(Path(tree) / str(index), host, module, chunk, passes)
                    for index, chunk in enumerate(chunks)]
            merged = {label: [] for label, _keywords in passes}
            for proc, results_file in runs:
                stdout, stderr = proc.communicate(timeout=1800)
                if not results_file.exists():
                    raise AssertionError("no results from %s: %s\n%s" % (module, stdout[-3000:], stderr[-2000:]))
                for label, results in json.loads(results_file.read_text()).items():
                    merged[label] += results
            return merged

    def _start_passes(self, tree, host, module, cases, passes):
        """Start the playbook of module_passes for ``cases`` in directory ``tree``: (process, its results file)."""
        tree.mkdir()
        options = sorted({option for case in cases for option in case})
        args = {option: "{{ item.%s | default(omit) }}" % option for option in options}
        tasks = []
        labels = [label for label, _keywords in passes]
        for label, keywords in passes:
            task = {"name": label, "arctictern.virt." + module: args, "loop": "{{ cases }}", "register": label,
                    "ignore_errors": True, "loop_control": {"label": "{{ item.name | default(ansible_loop.index) }}",
                                                            "extended": True}}
            task.update(keywords)
            tasks.append(task)
        results_file = tree / "results.json"
        tasks.append({"name": "Keep the results", "ansible.builtin.copy": {
            "content": "{{ {%s} | to_json }}" % ", ".join("'%s': %s.results" % (label, label) for label in labels),
            "dest": str(results_file), "mode": "0600"}})
        playbook = tree / "passes.yml"
        playbook.write_text(json.dumps([{"name": "Run %s over every case" % module, "hosts": host,
                                         "gather_facts": False, "tasks": tasks}]))
        cases_file = tree / "cases.json"
        cases_file.write_text(json.dumps({"cases": cases}))
        return self._popen_playbook(playbook, extra_vars="@%s" % cases_file), results_file

    def playbook(self, playbook, extra_vars=None, check=False, skip_tags=()):
        proc = self._popen_playbook(playbook, extra_vars, check, skip_tags)
        stdout, stderr = proc.communicate(timeout=1800)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    @staticmethod
    def _popen_playbook(playbook, extra_vars=None, check=False, skip_tags=()):
        argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / "lab"), str(playbook)]
        # A dict of variables, or "@file" naming a file of them.
        argv += ["-e", extra_vars if isinstance(extra_vars, str) else json.dumps(extra_vars)] if extra_vars else []
        argv += ["--check"] if check else []
        argv += ["--skip-tags", ",".join(skip_tags)] if skip_tags else []
        return subprocess.Popen(argv, cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def recap(stdout):
    """{host: (ok, changed, unreachable, failed)} from the PLAY RECAP of ansible-playbook's output."""
    return {host: tuple(int(n) for n in numbers) for host, *numbers in RECAP.findall(stdout)}


def run_in(host, *argv, timeout=120):
    """Run a program of the project (python -m ...) inside a lab host's namespaces."""
    state = lab_control.read_state()
    return subprocess.run([state["hosts"][host]["python"], *argv], cwd=ROOT, env=ansible_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


def client_http(address, host="client", port=80, path="/", wait=0.0):
    """What the guest's agent answers to a request from a lab host (the client by default)."""
    proc = run_in(host, "-m", "lab.client", "http", address, "--port", str(port), "--path", path,
                  "--wait", str(wait), timeout=wait + 30)
    return json.loads(proc.stdout)


def guest_snapshot(booted):
    """A booted guest (Guests.boot) with what its agent says now: the boot id and counter assert_alive compares."""
    answer = client_http(booted["address"])["answer"]
    return {"name": booted["name"], "address": booted["address"], "boot": answer["boot"], "counter": int(answer["counter"])}


def assert_alive(vm, label):
    """One request from the client, at once: the same guest (boot id) answers and its counter has gone on since
    ``vm`` (a guest_snapshot, updated here); returns the agent's answer."""
    reply = client_http(vm["address"])
    assert reply["ok"], "%s: the guest did not answer at once: %s" % (label, reply)
    answer = reply["answer"]
    assert answer["boot"] == vm["boot"], "%s: the guest rebooted" % label
    assert int(answer["counter"]) > vm["counter"], "%s: the counter went back (%s after %s)" % (label, answer["counter"], vm["counter"])
    vm["counter"] = int(answer["counter"])
    return answer


def hypervisors(lab):
    """The names of the lab's hypervisors (the hosts with a libvirt daemon), from its state."""
    return [name for name, host in lab["hosts"].items() if host["uri"]]


def where(lab, name):
    """{host: state word} of every hypervisor that has the guest, looked at through our own connections."""
    found = {}
    for host in hypervisors(lab):
        conn = libvirt.open(lab["hosts"][host]["uri"])
        try:
            dom = conn.lookupByName(name)
            found[host] = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused"}.get(dom.state()[0], "other")
        except libvirt.libvirtError as error:
            if error.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
        finally:
            conn.close()
    return found
