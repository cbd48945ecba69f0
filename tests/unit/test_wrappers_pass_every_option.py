# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nothing dropped on the way in (issue #6): the roles and playbooks that wrap a module pass every option of it.

For each wrapper the module's real argument spec is taken from the module itself (its ``main()`` runs until it builds
the AnsibleModule, whose ``__init__`` records the spec and stops), wherever the module keeps the spec. Then:

* the role's argument spec for the list variable of the module mirrors the module's options (names, type, elements,
  choices, required, no_log, nested options and their constraints; a default only where the role spec gives one, and
  then equal to the module's), so that a key the module does not know fails the role's argument validation;
* the wrapping task passes exactly the module's options, each from the item (roles) or from its ``<prefix>_<option>``
  play variable (playbooks), whose value is the module's default (or null where the module has none);
* ansible-playbook really rejects an unknown key in a role's items before any task of the role ran, and accepts an
  item that gives every option (and the lab's and the Molecule scenario's data).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.module_utils import basic

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
COLLECTION = "arctictern.virt"

# (role, role variable holding the items, module each item is passed to)
ROLE_WRAPPERS = [
    ("guests", "guests_list", "guest"),
    ("networks", "networks_host_bridges", "host_bridge"),
    ("networks", "networks_libvirt", "network"),
]
# (playbook, prefix of its play variables, module)
PLAYBOOK_WRAPPERS = [
    ("playbooks/migrate.yml", "migrate_", "migrate"),
    ("playbooks/evacuate.yml", "evacuate_", "migrate"),
]
# Options of a playbook's task that say which guest goes where; they come from the request and the inventory, not
# from one play variable each.
PER_MIGRATION_OPTIONS = {"name", "uri", "dest_uri", "migrate_uri"}
# Keys of an option's spec that constrain its suboptions (AnsibleModule keyword arguments at the top level).
CONSTRAINTS = ("mutually_exclusive", "required_together", "required_one_of", "required_if", "required_by")


# ---------------------------------------------------------------------------------------------------------------------
# The module's argument spec, as the module gives it to AnsibleModule


class _SpecCaptured(Exception):
    """Raised by the recording AnsibleModule.__init__ so that main() goes no further."""


def module_spec(module_name):
    """The keyword arguments the module gives AnsibleModule: argument_spec and constraints like mutually_exclusive.

    Works whether the module keeps its spec in a constant or builds it in main(), and whatever base class it uses
    (ArcticternModule adds the common libvirt options before it calls AnsibleModule.__init__).
    """
    module = importlib.import_module("ansible_collections.%s.plugins.modules.%s" % (COLLECTION, module_name))
    original = basic.AnsibleModule.__init__
    signature = inspect.signature(original)
    captured = {}

    def record(self, *args, **kwargs):
        captured.update(signature.bind(self, *args, **kwargs).arguments)
        raise _SpecCaptured()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(basic.AnsibleModule, "__init__", record)
        with pytest.raises(_SpecCaptured):
            module.main()
    captured.pop("self", None)
    assert captured.get("argument_spec"), "%s: main() gave AnsibleModule no argument_spec" % module_name
    return captured


# ---------------------------------------------------------------------------------------------------------------------
# Comparing a role's argument spec with a module's


def _choices(spec):
    return sorted(spec.get("choices") or [], key=repr)


def _constraint(spec, key):
    value = spec.get(key) or []
    if isinstance(value, dict):  # required_by
        return {k: sorted([v] if isinstance(v, str) else v) for k, v in value.items()}
    return sorted([sorted(group) if key != "required_if" else list(group) for group in value], key=repr)


def compare_options(module_options, role_options, where):
    """Differences between the module's options and the role's, as messages naming the option."""
    problems = []
    role_options = role_options or {}
    for name in sorted(module_options.keys() - role_options.keys()):
        problems.append("%s.%s: option of the module missing from the role's argument spec" % (where, name))
    for name in sorted(role_options.keys() - module_options.keys()):
        problems.append("%s.%s: in the role's argument spec but not an option of the module" % (where, name))
    for name in sorted(module_options.keys() & role_options.keys()):
        path = "%s.%s" % (where, name)
        mod, role = module_options[name], role_options[name] or {}
        for key, unset in (("type", "str"), ("elements", None), ("required", False), ("no_log", False)):
            if mod.get(key, unset) != role.get(key, unset):
                problems.append("%s: %s is %r in the module, %r in the role"
                                % (path, key, mod.get(key, unset), role.get(key, unset)))
        if _choices(mod) != _choices(role):
            problems.append("%s: choices are %r in the module, %r in the role" % (path, _choices(mod), _choices(role)))
        # The role gives no default where its task omits the option; one it does give must be the module's.
        if "default" in role and role["default"] != mod.get("default"):
            problems.append("%s: default is %r in the module, %r in the role"
                            % (path, mod.get("default"), role["default"]))
        if not role.get("description"):
            problems.append("%s: no description in the role's argument spec" % path)
        problems += compare_constraints(mod, role, path)
        if mod.get("options") or role.get("options"):
            if not mod.get("options") or not role.get("options"):
                where_only = "the module" if mod.get("options") else "the role"
                problems.append("%s: suboptions in %s only" % (path, where_only))
            else:
                problems += compare_options(mod["options"], role["options"], path)
    return problems


def compare_constraints(module_spec_, role_spec, path):
    return ["%s: %s is %r in the module, %r in the role" % (path, key, module_spec_.get(key), role_spec.get(key))
            for key in CONSTRAINTS if _constraint(module_spec_, key) != _constraint(role_spec, key)]


def role_entry_options(role):
    data = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return data["argument_specs"]["main"]["options"]


def test_compare_options_names_what_differs():
    """The comparison itself: each kind of difference is reported with the option's path."""
    module = {"a": {"type": "int", "default": 1}, "b": {"type": "list", "elements": "dict", "options": {
        "c": {"type": "str", "choices": ["x", "y"]}, "d": {"type": "bool", "required": True}}}}
    role = {
        "a": {"type": "int", "default": 2, "description": "A."},
        "b": {"type": "list", "elements": "dict", "description": "B.", "options": {
            "c": {"type": "str", "choices": ["x"], "description": "C."},
            "e": {"type": "str", "description": "E."}}},
        "f": {"description": "F."},
    }
    assert compare_options(module, role, "v") == [
        "v.f: in the role's argument spec but not an option of the module",
        "v.a: default is 1 in the module, 2 in the role",
        "v.b.d: option of the module missing from the role's argument spec",
        "v.b.e: in the role's argument spec but not an option of the module",
        "v.b.c: choices are ['x', 'y'] in the module, ['x'] in the role",
    ]
    assert compare_options(module, {"a": {"type": "int", "description": "A."}, "b": {
        "type": "list", "elements": "dict", "description": "B.", "options": {
            "c": {"choices": ["y", "x"], "description": "C."},
            "d": {"type": "bool", "required": True, "description": "D."}}}}, "v") == []


@pytest.mark.parametrize("role, variable, module_name", ROLE_WRAPPERS, ids=["%s:%s" % w[:2] for w in ROLE_WRAPPERS])
def test_role_spec_mirrors_module(role, variable, module_name):
    """Every item option of the role is an option of the module, with the same type, choices and suboptions."""
    captured = module_spec(module_name)
    item_list = role_entry_options(role)[variable]
    assert (item_list.get("type"), item_list.get("elements")) == ("list", "dict"), \
        "%s: %s must be a list of dicts" % (role, variable)
    problems = compare_options(captured["argument_spec"], item_list.get("options"), variable)
    # AnsibleModule's own constraints between options apply to each item.
    problems += compare_constraints(captured, item_list, variable)
    assert not problems, "roles/%s/meta/argument_specs.yml vs arctictern.virt.%s:\n%s" % (
        role, module_name, "\n".join(problems))


# ---------------------------------------------------------------------------------------------------------------------
# What the wrapping tasks pass


def walk_tasks(tasks):
    for task in tasks or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from walk_tasks(task.get(key))


def module_tasks(tasks, module_name):
    """The tasks (with blocks walked) whose action is the module's FQCN; returns their arguments."""
    fqcn = "%s.%s" % (COLLECTION, module_name)
    found = []
    for task in walk_tasks(tasks):
        if fqcn in task:
            found.append(task[fqcn] or {})
        elif isinstance(task.get("action"), dict) and task["action"].get("module") == fqcn:
            found.append({k: v for k, v in task["action"].items() if k != "module"})
    return found


def compare_keys(module_options, passed, where):
    missing = sorted(set(module_options) - set(passed))
    extra = sorted(set(passed) - set(module_options))
    return ["%s: does not pass option %s" % (where, name) for name in missing] + \
           ["%s: passes %s, which is no option of the module" % (where, name) for name in extra]


@pytest.mark.parametrize("role, variable, module_name", ROLE_WRAPPERS, ids=["%s:%s" % w[:2] for w in ROLE_WRAPPERS])
def test_role_task_passes_every_option(role, variable, module_name):
    options = module_spec(module_name)["argument_spec"]
    tasks = []
    for path in sorted((ROOT / "roles" / role / "tasks").glob("*.y*ml")):
        tasks += yaml.safe_load(path.read_text()) or []
    found = module_tasks(tasks, module_name)
    assert len(found) == 1, "roles/%s/tasks: %d tasks use arctictern.virt.%s, expected one" % (
        role, len(found), module_name)
    args = found[0]
    where = "roles/%s task of arctictern.virt.%s" % (role, module_name)
    problems = compare_keys(options, args, where)
    # Each option comes from the item: a value that does not read item.<option> would drop what the item says.
    problems += ["%s: %s does not come from item.%s (%r)" % (where, name, name, args[name])
                 for name in sorted(set(options) & set(args))
                 if not re.search(r"\bitem\.%s\b" % re.escape(name), str(args[name]))]
    assert not problems, "\n".join(problems)


def playbook_wrappers():
    """(playbook, prefix, module, play, task arguments) for every task of the module in the playbooks."""
    cases = []
    for playbook, prefix, module_name in PLAYBOOK_WRAPPERS:
        plays = yaml.safe_load((ROOT / playbook).read_text())
        for play in plays:
            tasks = [task for key in ("pre_tasks", "tasks", "post_tasks", "handlers") for task in play.get(key) or []]
            for args in module_tasks(tasks, module_name):
                cases.append(pytest.param(playbook, prefix, module_name, play, args, id=playbook))
    return cases


def test_playbooks_have_their_wrapper_tasks():
    assert sorted({case.values[0] for case in playbook_wrappers()}) == sorted(wrapper[0] for wrapper in PLAYBOOK_WRAPPERS)


@pytest.mark.parametrize("playbook, prefix, module_name, play, args", playbook_wrappers())
def test_playbook_task_passes_every_option(playbook, prefix, module_name, play, args):
    options = module_spec(module_name)["argument_spec"]
    where = "%s, play %r" % (playbook, play.get("name"))
    problems = compare_keys(options, args, where)
    play_vars = play.get("vars") or {}
    for name in sorted(set(options) - PER_MIGRATION_OPTIONS):
        variable = prefix + name
        if variable not in play_vars:
            problems.append("%s: no play variable %s for option %s" % (where, variable, name))
            continue
        if name in args and not re.search(r"\b%s\b" % re.escape(variable), str(args[name])):
            problems.append("%s: option %s does not come from %s (%r)" % (where, name, variable, args[name]))
        value = play_vars[variable]
        if isinstance(value, str) and "{{" in value:
            continue
        # The play's value is the module's default, or null (not given) where the module has none.
        default = options[name].get("default")
        if value != default or (default is None) != (value is None):
            problems.append("%s: %s is %r, the module's default for %s is %r" % (where, variable, value, name, default))
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------------------------------------
# ansible-playbook: the roles' argument validation rejects an unknown key before any task ran, and accepts valid data

# Hosts of the negative run: each gives one unknown key, in one role's items (the other role gets no items), and
# the path Ansible's error names it by.
UNKNOWN_KEYS = {
    "guest_top_level": ("guests", {"guests_list": [{"name": "g1", "memroy": 512}]}, "guests_list.memroy"),
    "guest_disk": ("guests", {"guests_list": [{"name": "g1", "disks": [{"path": "/x.qcow2", "fromat": "raw"}]}]},
                   "guests_list.disks.fromat"),
    "network_top_level": ("networks", {"networks_libvirt": [{"name": "n1", "mode": "nat", "domian": "lab"}]},
                          "networks_libvirt.domian"),
    "network_port_forward": ("networks", {"networks_libvirt": [{"name": "n1", "port_forwards": [
        {"host_port": 80, "guest_ip": "198.18.100.10", "guest_prot": 8080}]}]},
        "networks_libvirt.port_forwards.guest_prot"),
    "host_bridge": ("networks", {"networks_host_bridges": [{"name": "br9", "uplnik": "eth0"}]},
                    "networks_host_bridges.uplnik"),
}

SAMPLE_BY_TYPE = {"str": "x", "int": 1, "float": 1.5, "bool": True, "path": "/tmp/x", "raw": "x"}


def sample_value(spec):
    """A value of the option's type (its first choice), with every suboption given, for the positive control."""
    if spec.get("choices"):
        return spec["choices"][0]
    if spec.get("type") == "dict":
        return sample_item(spec.get("options") or {})
    if spec.get("type") == "list":
        element = dict(spec, type=spec.get("elements", "str"))
        element.pop("elements", None)
        return [sample_value(element)]
    return SAMPLE_BY_TYPE[spec.get("type", "str")]


def sample_item(options):
    return {name: sample_value(spec) for name, spec in options.items()}


# A callback that writes, per host, the tasks that ran and their results to $ATV_RECORD (ansible-core has no JSON
# stdout callback of its own).
RECORDER = '''
import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "atv_record"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.ran = {}

    def _record(self, result, status):
        host = getattr(result, "host", None) or result._host
        task = getattr(result, "task", None) or result._task
        data = getattr(result, "result", None)
        data = result._result if data is None else data
        self.ran.setdefault(host.get_name(), []).append(
            {"task": task.get_name(), "action": task.action, "status": status, "result": data})

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._record(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["ATV_RECORD"], "w") as record:
            json.dump(self.ran, record, default=repr)
'''


def write_recorder(tmp_path):
    directory = tmp_path / "callback_plugins"
    directory.mkdir(exist_ok=True)
    (directory / "atv_record.py").write_text(RECORDER)
    return directory


def ansible_env(tmp_path):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".collections"),
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_CALLBACK_PLUGINS": str(write_recorder(tmp_path)),
        "ANSIBLE_CALLBACKS_ENABLED": "atv_record",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "PATH": "%s:%s" % (VENV_BIN, env.get("PATH", "")),
        "PYTHONPATH": "%s:%s" % (ROOT / ".collections", ROOT),
    })
    return env


def write_run(directory, hosts, extra_play_vars=None, vars_files=()):
    """An inventory of local hosts (host variables: the role data) and a play of both roles over them."""
    directory.mkdir()
    local = {"ansible_connection": "ansible.builtin.local", "ansible_python_interpreter": sys.executable}
    inventory = {"all": {"hosts": {name: dict(local, **data) for name, data in hosts.items()}}}
    play = {"name": "Both roles", "hosts": "all", "gather_facts": False, "vars": extra_play_vars or {},
            "vars_files": [str(path) for path in vars_files],
            "roles": [{"role": "%s.networks" % COLLECTION}, {"role": "%s.guests" % COLLECTION}]}
    (directory / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (directory / "play.yml").write_text(yaml.safe_dump([play], sort_keys=False))
    return directory


def start_run(directory, tmp_path, *options):
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(directory / "inventory.yml"), str(directory / "play.yml"),
            *options]
    env = dict(ansible_env(tmp_path), ATV_RECORD=str(directory / "record.json"))
    return directory, subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True)


def finish_run(directory, proc):
    """(return code, {host: [task record, ...] in the order they ran}, output)."""
    output = proc.communicate(timeout=120)[0]
    # Failed validations print the whole argument spec: keep the lines short enough to read in a failure message.
    output = "\n".join(line if len(line) <= 400 else line[:400] + " ..." for line in output.splitlines())
    record = directory / "record.json"
    assert record.exists(), "ansible-playbook recorded nothing (rc %s):\n%s" % (proc.returncode, output)
    return proc.returncode, json.loads(record.read_text()), output


@pytest.fixture(scope="module")
def playbook_runs(tmp_path_factory):
    """Both ansible-playbook runs, started together (a few seconds each)."""
    tmp_path = tmp_path_factory.mktemp("roles")
    empty = {"guests_list": [], "networks_host_bridges": [], "networks_libvirt": []}
    negative = write_run(tmp_path / "negative", {
        name: dict(empty, **case[1]) for name, case in UNKNOWN_KEYS.items()})
    # Positive control: one item per wrapped module giving every option, and the data the lab's site.yml and the
    # Molecule scenario give the roles. Only the validation runs (its task is tagged always; no other task has the
    # tag), so no libvirt daemon is needed, but it does run, and must pass, for every host.
    every_option = {variable: [sample_item(module_spec(module_name)["argument_spec"])]
                    for _role, variable, module_name in ROLE_WRAPPERS}
    positive_hosts = {"every_option": every_option}
    for host_vars in sorted((ROOT / "inventories" / "lab" / "host_vars").glob("*.yml")):
        declared = yaml.safe_load(host_vars.read_text())
        # Only the hypervisors' files declare bridges, networks and guests (deb1's configures its proxy).
        if any(key.startswith(("networks_", "guests_")) for key in declared):
            positive_hosts["lab_" + host_vars.stem] = dict(empty, **declared)
    positive_hosts["molecule_roles"] = dict(empty, networks_host_bridges=[{"name": "br0", "uplink": "eth0"}],
                                            networks_libvirt="{{ scenario_networks }}",
                                            guests_list="{{ scenario_guests }}")
    lab_values = {"guest_virt_type": "kvm", "guest_kernel": "/boot/vmlinuz", "guest_initrd": "/boot/initrd.img"}
    positive = write_run(tmp_path / "positive", positive_hosts, lab_values,
                         [ROOT / "extensions" / "molecule" / "roles" / "vars" / "scenario.yml"])
    procs = {"negative": start_run(negative, tmp_path), "positive": start_run(positive, tmp_path, "--tags",
                                                                              "atv_validation_only")}
    return {name: finish_run(*run) for name, run in procs.items()}


VALIDATION = "ansible.builtin.validate_argument_spec"


@pytest.mark.parametrize("host", sorted(UNKNOWN_KEYS))
def test_role_validation_rejects_unknown_key(playbook_runs, host):
    role, _data, key_path = UNKNOWN_KEYS[host]
    rc, ran, output = playbook_runs["negative"]
    assert rc != 0, output
    tasks = ran.get(host)
    assert tasks, "nothing ran for %s:\n%s" % (host, output)
    last = tasks[-1]
    assert (last["action"], last["status"]) == (VALIDATION, "failed"), \
        "%s: the last task was %r (%s), not a failed argument validation:\n%s" % (
            host, last["task"], last["status"], output)
    assert last["result"]["validate_args_context"]["name"].split(".")[-1] == role
    assert last["result"]["msg"].startswith("Validation of arguments failed:"), last["result"]["msg"]
    # Ansible's unsupported-parameter message: "<path>.<key>. Supported parameters include: ...".
    errors = last["result"]["argument_errors"]
    assert [error for error in errors if error.startswith(key_path + ". Supported parameters include: ")] == errors, \
        "%s: the errors do not (only) name %s: %s" % (host, key_path, errors)
    # Before it only validations and the networks role's loops over empty lists (which call no module) ran.
    for earlier in tasks[:-1]:
        assert earlier["action"] == VALIDATION or earlier["status"] == "skipped", \
            "%s: %r ran before the validation failed:\n%s" % (host, earlier["task"], output)


def test_role_validation_accepts_valid_items(playbook_runs):
    rc, ran, output = playbook_runs["positive"]
    assert rc == 0, output
    assert sorted(ran) == ["every_option", "lab_hv1", "lab_hv2", "molecule_roles"], output
    for host, tasks in ran.items():
        # Both roles' validations ran and passed, and nothing else ran.
        assert [(task["action"], task["status"], task["result"]["validate_args_context"]["name"].split(".")[-1])
                for task in tasks] == [(VALIDATION, "ok", "networks"), (VALIDATION, "ok", "guests")], (host, tasks)
        assert all(task["result"]["msg"] == "The arg spec validation passed" for task in tasks), (host, tasks)
