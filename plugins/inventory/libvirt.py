# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: libvirt
short_description: Guests of several libvirt hypervisors as inventory hosts
version_added: 0.1.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Reads the guests (libvirt domains) of every hypervisor listed in O(uris) and makes each guest an inventory host.
  - The configuration file name must end with C(.libvirt.yml) or C(.libvirt.yaml).
  - Each host is named after its guest. A guest name found on more than one hypervisor (for example while a guest
    is being migrated, or two unrelated guests of the same name) is suffixed with C(@) and the hypervisor alias
    on every hypervisor it appears on, for example C(web1@hv1) and C(web1@hv2); the real guest name stays in
    C(libvirt_name).
  - 'Groups: C(hypervisor_<alias>) for the hypervisor that runs the guest, C(state_<state>) for its state
    (C(state_running), C(state_shutoff), ...), and C(network_<name>) for each libvirt network or host bridge
    the guest is attached to. Characters not valid in group names are replaced by C(_).'
  - 'Host variables: C(libvirt_name), C(libvirt_uri), C(libvirt_hypervisor) (the alias), C(libvirt_uuid),
    C(libvirt_state), C(libvirt_nics), C(libvirt_addresses), and C(ansible_host) set to the first address
    known for the guest, when one is.'
  - A hypervisor that cannot be reached is reported with a warning and skipped, unless O(strict) is true.
  - A guest that disappears while it is being read (undefined, or migrated away) is left out; the other guests of
    its hypervisor are not affected.
  - Hypervisors are read concurrently, up to O(max_workers) at a time, each over its own connection. Hosts, groups,
    warnings and errors come in the order of O(uris) whatever the order in which the hypervisors answer.
options:
  plugin:
    description: Marks the file as a configuration of this plugin.
    required: true
    type: str
    choices: [arctictern.virt.libvirt]
  uris:
    description:
      - The hypervisors to read, each a libvirt URI or a dictionary with the keys C(uri) and C(name).
      - C(name) is the hypervisor alias used in group names and host name suffixes. It defaults to the host
        part of the URI, or C(localhost) for a local URI; aliases must be unique, so give local URIs
        that differ only by socket a name each.
    type: list
    elements: raw
    default: [qemu:///system]
  connect_timeout:
    description: Seconds to wait for each libvirt daemon to answer.
    type: float
    default: 10.0
  max_workers:
    description:
      - How many hypervisors are read at the same time. Reading a hypervisor mostly waits for its daemon's
        answers (several round trips per guest), so a fleet behind slow links is read in about the time of its
        slowest hypervisor when this is at least the number of O(uris).
      - C(1) reads one hypervisor after the other.
    type: int
    default: 8
  include_inactive:
    description: Also make hosts of guests that are not running.
    type: bool
    default: true
  address_sources:
    description:
      - Where to look for guest addresses, most trusted first. See the O(arctictern.virt.guest_info#module:address_sources)
        option of M(arctictern.virt.guest_info).
    type: list
    elements: str
    choices: [metadata, lease, arp, agent]
    default: [metadata, lease, arp]
extends_documentation_fragment:
  - constructed
  - inventory_cache
requirements:
  - libvirt-python on the controller
notes:
  - The cache is not written when a hypervisor could not be read, so that its guests come back on the next run.
"""

EXAMPLES = r"""
# fleet.libvirt.yml: two hypervisors over SSH and the local one
plugin: arctictern.virt.libvirt
uris:
  - qemu:///system
  - qemu+ssh://root@hv1.example.com/system
  - uri: qemu+ssh://root@10.0.0.12/system
    name: hv2
keyed_groups:
  - key: libvirt_nics | map(attribute='model') | list
    prefix: model

---
# lab.libvirt.yaml: two daemons on private sockets of the same machine, only running guests, cached
plugin: arctictern.virt.libvirt
uris:
  - uri: qemu+unix:///system?socket=/run/arctictern-lab/hosts/hv1/run/libvirt-sock
    name: hv1
  - uri: qemu+unix:///system?socket=/run/arctictern-lab/hosts/hv2/run/libvirt-sock
    name: hv2
include_inactive: false
address_sources: [metadata, lease, arp, agent]
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: /tmp/arctictern-inventory
compose:
  ansible_user: "'root'"
groups:
  big: libvirt_nics | length > 1
"""

import contextlib
import functools
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from ansible.errors import AnsibleParserError
from ansible.inventory.group import to_safe_group_name
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.display import Display
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.arctictern.virt.plugins.module_utils import _facts, _libvirt
from ansible_collections.arctictern.virt.plugins.module_utils._errors import VirtError

display = Display()


def hypervisors(uris):
    """``uris`` as ``[(alias, uri), ...]``; raises AnsibleParserError naming ``uris`` for a bad entry."""
    found = []
    for entry in uris:
        if isinstance(entry, str):
            entry = {"uri": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("uri"), str) or set(entry) - {"uri", "name"}:
            raise AnsibleParserError("uris: each entry must be a URI or a dictionary with the keys uri and name, got %r" % (entry,))
        alias = entry.get("name") or urlsplit(entry["uri"]).hostname or "localhost"
        found.append((str(alias), entry["uri"]))
    repeated = sorted(alias for alias, count in Counter(alias for alias, _uri in found).items() if count > 1)
    if repeated:
        raise AnsibleParserError("uris: hypervisor alias %s is used by more than one URI; give each URI its own name" % ", ".join(repeated))
    return found


def max_workers(value):
    """The ``max_workers`` option checked: a whole number of at least 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AnsibleParserError("max_workers: must be a whole number of at least 1, got %r" % (value,))
    return value


def read_guests(uri, timeout, sources, active_only):
    """The guests of one hypervisor, over a connection of its own (so that it can run in a worker thread)."""
    with _libvirt.connection(uri, timeout) as conn:
        return _facts.describe_guests(conn, sources, active_only=active_only)


def read_all(read, targets, workers):
    """Yields ``(result, None)`` or ``(None, VirtError)`` of ``read(uri)`` for each ``(alias, uri)`` of ``targets``,
    in their order, running up to ``workers`` reads at a time (in this thread when 1).

    Each result is yielded as soon as it and all before it are in, so that a caller stopping at the first error
    (strict) does not wait for the rest; closing the generator then cancels the reads not yet started."""
    def attempt(uri):
        try:
            return read(uri), None
        except VirtError as error:
            return None, error

    if workers == 1 or len(targets) <= 1:
        for _alias, uri in targets:
            yield attempt(uri)
        return
    pool = ThreadPoolExecutor(max_workers=min(workers, len(targets)), thread_name_prefix="libvirt-inventory")
    try:
        futures = [pool.submit(attempt, uri) for _alias, uri in targets]
        for future in futures:
            yield future.result()
    finally:
        # Stopped early (strict, or an unexpected error): do not start the reads still queued.
        pool.shutdown(wait=True, cancel_futures=True)


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "arctictern.virt.libvirt"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith((".libvirt.yml", ".libvirt.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        if _libvirt.LIBVIRT_IMPORT_ERROR is not None:
            raise AnsibleParserError("the arctictern.virt.libvirt inventory needs libvirt-python on the controller: %s" % _libvirt.LIBVIRT_IMPORT_ERROR)
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        found = None
        if use_cache:
            try:
                found = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if found is None:
            found, complete = self._read_hypervisors()
            if update_cache and complete:
                self._cache[cache_key] = found
        self._populate(found)

    def _read_hypervisors(self):
        """``([{alias, uri, guests}, ...], complete)`` in the order of ``uris``; complete is false when a
        hypervisor could not be read."""
        targets = hypervisors(self.get_option("uris"))
        workers = max_workers(self.get_option("max_workers"))
        read = functools.partial(read_guests, timeout=self.get_option("connect_timeout"), sources=self.get_option("address_sources"),
                                 active_only=not self.get_option("include_inactive"))
        found = []
        complete = True
        with contextlib.closing(read_all(read, targets, workers)) as results:
            for (alias, uri), (guests, error) in zip(targets, results):
                if error is not None:
                    if self.get_option("strict"):
                        raise AnsibleParserError("hypervisor %s (%s): %s" % (alias, uri, error.msg))
                    display.warning("arctictern.virt.libvirt: skipping hypervisor %s (%s): %s" % (alias, uri, error.msg))
                    complete = False
                    continue
                found.append({"alias": alias, "uri": uri, "guests": guests})
        return found, complete

    def _populate(self, found):
        names = Counter(guest["name"] for hypervisor in found for guest in hypervisor["guests"])
        strict = self.get_option("strict")
        for hypervisor in found:
            for guest in hypervisor["guests"]:
                host = guest["name"] if names[guest["name"]] == 1 else "%s@%s" % (guest["name"], hypervisor["alias"])
                host = self.inventory.add_host(host)
                groups = ["hypervisor_" + hypervisor["alias"], "state_" + guest["state"]]
                groups += ["network_" + nic["source"] for nic in guest["nics"] if nic["source"]]
                for group in groups:
                    self.inventory.add_child(self.inventory.add_group(to_safe_group_name(group, force=True, silent=True)), host)
                hostvars = {
                    "libvirt_name": guest["name"],
                    "libvirt_uri": hypervisor["uri"],
                    "libvirt_hypervisor": hypervisor["alias"],
                    "libvirt_uuid": guest["uuid"],
                    "libvirt_state": guest["state"],
                    "libvirt_nics": guest["nics"],
                    "libvirt_addresses": guest["addresses"],
                }
                if guest["addresses"]:
                    hostvars["ansible_host"] = guest["addresses"][0]
                # Guest names and metadata are anyone's text: never let them be templated.
                hostvars = wrap_var(hostvars)
                for name, value in hostvars.items():
                    self.inventory.set_variable(host, name, value)
                self._set_composite_vars(self.get_option("compose"), hostvars, host, strict=strict)
                self._add_host_to_composed_groups(self.get_option("groups"), hostvars, host, strict=strict)
                self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, host, strict=strict)
