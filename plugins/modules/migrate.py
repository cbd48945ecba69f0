#!/usr/bin/python
# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: migrate
short_description: Move a running guest live to another libvirt host
version_added: 0.1.0
author:
  - arctictern.virt developers (@arctictern)
description:
  - Migrates a running guest live and peer to peer (C(VIR_MIGRATE_LIVE|VIR_MIGRATE_PEER2PEER)) from the host it
    runs on (O(uri)) to another host (O(dest_uri)). The source daemon connects to the destination daemon itself,
    so run the module on the source hypervisor, or with an O(uri) that reaches its daemon.
  - Idempotent. When the guest does not run on the source but already runs on the destination, nothing happens
    and the module reports no change. The module connects to O(dest_uri) itself for this check and to validate
    the destination, so O(dest_uri) must also be reachable from where the module runs.
  - Everything is checked before anything moves. The guest must run on the source. The destination must be
    reachable and must be another host, which the host UUIDs (and host names) of both daemons tell. A different
    guest of the same name on the destination is a conflict.
  - The destination's QEMU must offer the guest's machine type for the guest's architecture and virt type. A guest
    keeps the versioned machine type it was started with, so a guest started on a newer QEMU (V(pc) is
    C(pc-i440fx-10.0) on QEMU 10.0) cannot move to an older one (QEMU 7.2 offers up to C(pc-i440fx-7.2)). The
    module then fails with RV(cause=incompatible_destination), in check mode too, and the guest keeps running.
    A guest started on the older QEMU keeps its older machine type on the newer one, which this check lets back.
  - The migration runs in a worker thread while the module watches the job ten times a second. It
    applies O(max_downtime), switches to post-copy (O(mode)), and acts on O(timeout). It keeps a progress sample
    every second, and returns them with the job's statistics.
  - On failure the module says what happened. The destination was unreachable, the destination daemon died
    mid-migration, the migration link was cut, or the timeout aborted the job. The message also says where the
    guest is.
  - A pre-copy job whose data has not moved for 30 seconds while memory remains is aborted as a cut migration link.
    When O(dest_uri) takes another network than the data (C(qemu+ssh) on a management network), nothing else
    would notice before TCP gives up, about 15 minutes later. As long as post-copy has not started, a failed migration rolls back and the guest keeps running on
    the source with its definition.
  - B(Once post-copy has started, the guest cannot roll back.) Its memory is split between both hosts. If the
    destination or the link fails then, the guest stays paused. It runs again only when the migration is resumed
    with libvirt's post-copy recovery (C(VIR_MIGRATE_POSTCOPY_RESUME)) once the destination is reachable. It is
    lost if the destination host is gone. The module says so when it happens. Choose O(mode=postcopy) or
    O(mode=auto) (or O(timeout_action=postcopy)) only where that risk is acceptable.
  - Ansible shows a module's result only when the module ends, so the module cannot print progress while the
    migration runs. For long migrations, run the task with C(async) and wait for it with
    M(ansible.builtin.async_status). While it runs, M(arctictern.virt.guest_info) on the source reports the live
    job in RV(arctictern.virt.guest_info#module:guests[].job), with the share sent, bytes remaining, pass and
    dirty rate. The progress samples come with the final result too.
options:
  name:
    description:
      - Name of the guest to migrate.
    type: str
    required: true
  dest_uri:
    description:
      - libvirt URI of the destination daemon as the source daemon reaches it. For example
        V(qemu+ssh://root@hv2.example.com/system) or V(qemu+tls://hv2.example.com/system).
      - The module connects to it as well, to validate the destination and to check idempotence.
    type: str
    required: true
  migrate_uri:
    description:
      - Where the migration data goes (C(VIR_MIGRATE_PARAM_URI)). For example V(tcp://198.18.1.2) for a
        dedicated migration link, or V(tcp://[2001:db8::2]) for IPv6.
      - Without it, the destination chooses. QEMU's C(migration_host), else the destination's host name.
    type: str
  mode:
    description:
      - V(precopy) copies memory while the guest runs on the source, pass after pass, until the rest fits
        into the allowed downtime. A guest that dirties memory faster than the link carries never converges;
        use O(timeout), O(auto_converge) or another mode for those.
      - V(postcopy) starts in pre-copy and switches to post-copy as soon as the first pass has begun. The guest
        then runs on the destination and pulls the missing pages over the link. The migration always converges,
        but the guest cannot roll back once the switch has happened.
      - V(auto) starts in pre-copy and switches to post-copy when the job has not finished within
        O(postcopy_after) seconds, or after O(postcopy_after_iterations) passes over memory.
    type: str
    choices: [precopy, postcopy, auto]
    default: precopy
  postcopy_after:
    description:
      - With O(mode=auto), seconds of pre-copy after which the job switches to post-copy.
    type: float
    default: 10.0
  postcopy_after_iterations:
    description:
      - With O(mode=auto), also switch to post-copy once pre-copy has made this many passes over memory
        without converging.
    type: int
  auto_converge:
    description:
      - Throttle the guest's vCPUs while pre-copy does not converge (C(VIR_MIGRATE_AUTO_CONVERGE)).
    type: bool
    default: false
  auto_converge_initial:
    description:
      - Initial CPU throttling in percent with O(auto_converge=true).
    type: int
  auto_converge_increment:
    description:
      - Throttling added in percent, with O(auto_converge=true), each time pre-copy still does not converge.
    type: int
  bandwidth:
    description:
      - Bandwidth limit of the migration in MiB/s (C(VIR_MIGRATE_PARAM_BANDWIDTH)). Without it, the link's speed.
    type: int
  postcopy_bandwidth:
    description:
      - Bandwidth limit in MiB/s for the post-copy phase (C(VIR_MIGRATE_PARAM_BANDWIDTH_POSTCOPY)).
      - Only when the job can switch to post-copy.
    type: int
  max_downtime:
    description:
      - Longest time in milliseconds the guest may be paused for the final copy. QEMU finishes pre-copy once the
        rest of memory can be sent within it.
      - Set with C(virDomainMigrateSetMaxDowntime) as soon as the job runs. libvirt 9.0 has no migration
        parameter for it.
      - Not with O(profile=low_blackout), which sets it.
    type: int
  profile:
    description:
      - A named set of settings whose effect on guests was measured under client traffic in the collection's lab
        (C(benchmarks/migration_health.py), C(docs/performance.md)).
      - V(default) sets nothing beyond the other options (QEMU's own downtime limit, 300 ms).
      - V(low_blackout) sets O(max_downtime) to 10 ms for a shorter pause of the guest at the switch-over and,
        unless the task gives one, O(timeout) to 60 s, so that a job that does not converge within a minute meets
        O(timeout_action) (by default aborted, the guest still on the source). It needs QEMU 10.0 or newer on both
        hosts and is refused before anything moves on older QEMU.
      - Measured in the lab under TCG with a UDP datagram every millisecond (run
        C(docs/results/migration-health-debian13-100-20261207-1859.json)) on QEMU 10.0, 100 migrations each, no guest
        broken with either, the client's median blackout was 312 ms with V(low_blackout) and 444 ms with V(default).
        On QEMU 7.2 the same settings broke 21 of 24 guests after migrations that libvirt reported as successful.
    type: str
    choices: [default, low_blackout]
    default: default
  compression:
    description:
      - V(xbzrle) sends pages that changed since the last pass as deltas against a cache (C(VIR_MIGRATE_COMPRESSED)
        with C(VIR_MIGRATE_PARAM_COMPRESSION=xbzrle)). It helps guests that rewrite the same pages.
    type: str
    choices: [none, xbzrle]
    default: none
  parallel_connections:
    description:
      - Send memory over this many connections (C(VIR_MIGRATE_PARALLEL), QEMU's multifd).
      - QEMU cannot combine it with post-copy or with O(compression).
    type: int
  tls:
    description:
      - Encrypt the migration data with TLS (C(VIR_MIGRATE_TLS)). Both hosts need libvirt's migration TLS
        certificates.
    type: bool
    default: false
  persist_dest:
    description:
      - Keep the guest defined on the destination after the migration (C(VIR_MIGRATE_PERSIST_DEST)).
    type: bool
    default: true
  undefine_source:
    description:
      - Remove the guest's definition from the source after a successful migration (C(VIR_MIGRATE_UNDEFINE_SOURCE)).
    type: bool
    default: true
  copy_storage:
    description:
      - V(none) for disks on storage both hosts share.
      - V(all) copies the guest's disks to the destination (C(VIR_MIGRATE_NON_SHARED_DISK)). V(inc) copies only
        what is not in a backing file both hosts have (C(VIR_MIGRATE_NON_SHARED_INC)). The destination needs
        disk images of the same size at the same paths.
    type: str
    choices: [none, all, inc]
    default: none
  unsafe:
    description:
      - Migrate even where libvirt considers the guest's disks unsafe to share (C(VIR_MIGRATE_UNSAFE), as
        C(virsh migrate --unsafe)). libvirt refuses a disk file it cannot see on a shared file system it knows
        (NFS, GlusterFS, Ceph and the like), and a shared disk whose cache mode is not V(none) or V(directsync).
      - Only for storage that both hosts really see coherently (for example a cluster file system libvirt does not
        recognise, or one kernel's file system seen by two hypervisors as in the lab); otherwise the guest's disks
        can be corrupted.
    type: bool
    default: false
  timeout:
    description:
      - Seconds after which O(timeout_action) is taken if the migration has not finished.
      - Without it, the migration may run as long as it takes; O(profile=low_blackout) sets 60 s.
    type: float
  timeout_action:
    description:
      - What to do when O(timeout) has passed.
      - V(abort) cancels the job. The guest keeps running on the source and the module fails. Post-copy cannot be
        aborted; once it has started, the job continues.
      - V(postcopy) switches to post-copy, which always converges (see the warning above).
      - V(suspend) pauses the guest on the source so that pre-copy finishes. The guest is paused for the rest of
        the copy and resumes on the destination. If the migration fails, the module resumes it on the source.
    type: str
    choices: [abort, postcopy, suspend]
    default: abort
  verify:
    description:
      - Checks that the guest is alive on the destination before the module reports success. Without them, a
        migration that libvirt finished is a success.
      - The checks run after a migration that succeeded, and also when the guest already ran on the destination,
        so that running the task again does not turn a guest that failed them into a success. Check mode runs
        none; it returns them in RV(plan.verify).
      - The checks run in rounds, one attempt of each check that has not passed yet, a second apart, until all
        passed or O(verify.timeout) ended. A check that passed once stays passed.
      - A guest that fails a check is B(not moved back). The module fails with RV(cause=guest_unhealthy), says where
        the guest runs, and returns RV(verify) and RV(serial_tail).
    type: dict
    suboptions:
      agent:
        description:
          - Ping the guest's QEMU guest agent (C(guest-ping) through libvirt on O(dest_uri)).
          - The guest needs the agent's channel (C(<channel type='unix'>) with
            C(<target type='virtio' name='org.qemu.guest_agent.0'/>)) and a running agent (C(qemu-guest-agent)).
            A guest without the channel is refused before anything moves.
        type: bool
        default: false
      tcp:
        description:
          - A TCP connection to V(host:port) that must be accepted, for example V(198.51.100.10:22) or
            V([2001:db8::10]:443). It starts on the host the module runs on (usually the source).
        type: str
      http:
        description:
          - An V(http://) or V(https://) URL that a GET must answer with a status from 200 to 399, for example
            V(http://198.51.100.10/health). From the host the module runs on, without a proxy; redirects are not
            followed (a 3xx passes); HTTPS certificates are checked against the system's CAs.
        type: str
      timeout:
        description:
          - Seconds all checks together may take. Each check is tried at least once, each attempt for at most
            5 seconds.
        type: float
        default: 60.0
extends_documentation_fragment:
  - arctictern.virt.libvirt
attributes:
  check_mode:
    support: full
    description: Validates both hosts and the guest and reports whether the guest would move; moves nothing.
  diff_mode:
    support: full
    description: Shows the host the guest runs on before and after.
notes:
  - A link cut is noticed through libvirt's keepalive on the connection between the daemons. With libvirt's
    defaults (C(keepalive_interval=5), C(keepalive_count=5) in C(qemu.conf)) that takes about 30 seconds. Set
    O(timeout) for a quicker end.
  - After the migration QEMU announces the guest on its networks (self-announce, gratuitous RARP). Switches then
    learn the guest's new port at once. libvirt 9.0 has no setting for these announcements, so the module has none.
  - RV(serial_tail) comes from a file the guest's serial console is logged to (C(<serial type='file'>), or
    C(<log file=.../>) on a serial port or console) on the destination. The module reads it where it runs, so
    that works where the module runs on the destination or the hosts share that path; otherwise RV(serial_tail.error)
    says why there are no lines.
  - Live migration needs compatible CPUs and the guest's networks, bridges and storage on the destination.
    libvirt refuses a guest it cannot place there, and the guest keeps running on the source.
seealso:
  - module: arctictern.virt.guest_info
  - module: arctictern.virt.guest
"""

EXAMPLES = r"""
- name: Move web1 from hv1 to hv2 over the migration link
  arctictern.virt.migrate:
    name: web1
    dest_uri: qemu+ssh://root@hv2.example.com/system
    migrate_uri: tcp://10.10.0.2
    max_downtime: 300
  delegate_to: hv1.example.com
  register: moved

- name: Show how long the guest was paused
  ansible.builtin.debug:
    msg: "{{ moved.migration.downtime_ms }} ms downtime, {{ moved.migration.total_time_ms }} ms in all"

- name: Move a busy database, switching to post-copy if pre-copy has not finished after 30 s
  arctictern.virt.migrate:
    name: db1
    dest_uri: qemu+tls://hv3.example.com/system
    mode: auto
    postcopy_after: 30
    bandwidth: 800
  delegate_to: hv1.example.com

- name: Give up after five minutes; the guest stays on the source
  arctictern.virt.migrate:
    name: batch7
    dest_uri: qemu+ssh://root@hv2.example.com/system
    auto_converge: true
    timeout: 300
    timeout_action: abort
  delegate_to: hv1.example.com

- name: Move web1 and fail unless its agent and its web server answer on hv2 within two minutes
  arctictern.virt.migrate:
    name: web1
    dest_uri: qemu+ssh://root@hv2.example.com/system
    verify:
      agent: true
      http: http://198.51.100.10/health
      timeout: 120
  delegate_to: hv1.example.com
  register: web1_moved

- name: Show what the checks saw
  ansible.builtin.debug:
    msg: "agent answered after {{ web1_moved.verify.agent.seconds }} s ({{ web1_moved.verify.agent.attempts }} attempts)"

# Ansible shows no output while a module runs: start a long migration in the background and wait for it.
- name: Start a large migration in the background
  arctictern.virt.migrate:
    name: big1
    dest_uri: qemu+ssh://root@hv2.example.com/system
    bandwidth: 200
  delegate_to: hv1.example.com
  async: 7200
  poll: 0
  register: big1_job

- name: See how far it has got (guests[].job of the guest on the source)
  arctictern.virt.guest_info:
    state: [running, paused]
  delegate_to: hv1.example.com
  register: hv1_guests

- name: Wait for it (the result, with its progress samples, arrives at the end)
  ansible.builtin.async_status:
    jid: "{{ big1_job.ansible_job_id }}"
  delegate_to: hv1.example.com
  register: big1_result
  until: big1_result.finished
  retries: 720
  delay: 10
"""

RETURN = r"""
name:
  description: Name of the guest.
  returned: success
  type: str
  sample: web1
uuid:
  description: UUID of the guest.
  returned: success
  type: str
  sample: 0b8e3b9c-2f7a-4d0e-9a51-6b7c1d2e3f40
state:
  description: State of the guest where it runs now (on the source in check mode).
  returned: success
  type: str
  sample: running
source:
  description: The host the guest ran on.
  returned: success
  type: dict
  contains:
    hostname:
      description: Host name of the source daemon's host.
      type: str
      sample: hv1
    uri:
      description: The source URI (O(uri)).
      type: str
      sample: qemu:///system
    uuid:
      description: Host UUID of the source.
      type: str
      sample: 4c4c4544-0042-3510-8052-b4c04f4e4d32
destination:
  description: The host the guest moves to.
  returned: success
  type: dict
  contains:
    hostname:
      description: Host name of the destination daemon's host.
      type: str
      sample: hv2
    uri:
      description: The destination URI (O(dest_uri)).
      type: str
      sample: qemu+ssh://root@hv2.example.com/system
    uuid:
      description: Host UUID of the destination.
      type: str
      sample: 4c4c4544-0042-3510-8052-b4c04f4e4d33
plan:
  description: What the migration call is (or would be) given.
  returned: success
  type: dict
  contains:
    flags:
      description: The C(VIR_MIGRATE_*) flags, lower case without the prefix.
      type: list
      elements: str
      sample: [live, peer2peer, persist_dest, undefine_source]
    parameters:
      description: The C(VIR_MIGRATE_PARAM_*) typed parameters by libvirt's name.
      type: dict
      sample: {"migrate_uri": "tcp://10.10.0.2", "bandwidth": 800}
    max_downtime:
      description: The downtime limit in ms the job is given, from O(max_downtime) or O(profile).
      returned: when one is set
      type: int
      sample: 10
    verify:
      description: The checks O(verify) asks for, with their defaults.
      returned: when O(verify) is given
      type: dict
      sample: {"agent": true, "tcp": null, "http": "http://198.51.100.10/health", "timeout": 120.0}
verify:
  description:
    - What each check of O(verify) did, by name (V(agent), V(tcp), V(http)).
    - Also returned when a check failed (RV(cause=guest_unhealthy)).
  returned: when the checks ran
  type: dict
  sample: {"agent": {"passed": true, "attempts": 2, "seconds": 1.02, "last_error": "Guest agent is not responding: QEMU guest agent is not connected"}}
  contains:
    passed:
      description: Whether the check passed.
      type: bool
    attempts:
      description: How often it was tried.
      type: int
    seconds:
      description: Seconds from the start of the checks until it passed, or until its last attempt ended.
      type: float
    last_error:
      description: Why its last failed attempt failed (null when none failed).
      type: str
serial_tail:
  description: The end of the guest's serial console log on the destination, for a guest that failed a check.
  returned: when a check of O(verify) failed
  type: dict
  contains:
    path:
      description: The log file (null when the guest logs its console to none).
      type: str
      sample: /var/log/libvirt/qemu/web1-serial0.log
    lines:
      description: Its last 40 lines.
      type: list
      elements: str
      sample: ["Debian GNU/Linux 12 web1 ttyS0", "", "web1 login:"]
    error:
      description: Why there are no lines (no file-backed console, or the file is not readable where the module runs); null otherwise.
      type: str
migration:
  description:
    - Statistics of the finished job as QEMU reports them. They come from libvirt's job-completed event when
      available, else from the destination's record of the job, else from the last progress sample. Values
      libvirt did not report are null.
    - Also returned when the migration fails, with what the module saw until then.
  returned: when the migration ran
  type: dict
  contains:
    mode:
      description: The mode that finished the job, V(precopy) or V(postcopy).
      type: str
      sample: precopy
    total_time_ms:
      description: Duration of the job in milliseconds, as QEMU measured it.
      type: int
      sample: 727
    downtime_ms:
      description: How long the guest was paused, in milliseconds (C(VIR_DOMAIN_JOB_DOWNTIME)).
      type: int
      sample: 99
    setup_time_ms:
      description: Time QEMU took to set the migration up, in milliseconds.
      type: int
      sample: 2
    data_total_bytes:
      description: Bytes the job had to move in all.
      type: int
      sample: 134873088
    data_processed_bytes:
      description: Bytes moved.
      type: int
      sample: 67131275
    data_remaining_bytes:
      description: Bytes left when the statistics were taken (0 when finished).
      type: int
      sample: 0
    memory_transferred_bytes:
      description: Bytes of guest memory sent.
      type: int
      sample: 67131275
    memory_bps:
      description: Memory transfer rate in bytes per second.
      type: int
      sample: 329729955
    memory_dirty_rate:
      description: Pages per second the guest dirtied.
      type: int
      sample: 0
    iterations:
      description: Passes over guest memory (C(memory_iteration)).
      type: int
      sample: 3
    postcopy_requests:
      description: Page requests the destination made during post-copy.
      type: int
      sample: 0
    wall_time_ms:
      description: Duration of the whole migration call in milliseconds, including the setup of both ends.
      type: int
      sample: 2252
    statistics_from:
      description: Where the figures come from, V(job_completed_event), V(destination), V(last_sample) or V(none).
      type: str
      sample: job_completed_event
    progress:
      description: Samples taken during the job, about one a second (thinned on very long jobs).
      type: list
      elements: dict
      contains:
        time_ms:
          description: Milliseconds since the module started the migration.
          type: int
        data_total:
          description: Bytes to move in all.
          type: int
        data_processed:
          description: Bytes moved so far.
          type: int
        data_remaining:
          description: Bytes left.
          type: int
        memory_iteration:
          description: Pass over memory.
          type: int
        memory_dirty_rate:
          description: Pages per second the guest dirtied.
          type: int
    events:
      description:
        - What the module did or saw during the job, with the time in milliseconds since the start.
        - For example V(max_downtime), V(postcopy_requested), V(postcopy_started), V(timeout), V(abort_refused),
          or a failed job control call (V(postcopy_switch_failed)).
      type: list
      elements: dict
      sample: [{"time_ms": 2010, "event": "postcopy_requested", "iteration": 2}]
cause:
  description:
    - Why the migration failed. V(destination_unreachable), V(destination_died), V(link_cut), V(timeout),
      V(postcopy_failed) or V(failed) for any other libvirt error.
    - V(guest_unhealthy) when the guest runs on the destination but failed a check of O(verify). The result then
      also has what a success has (C(changed) true when the guest moved) and the guest's RV(state) there.
    - V(destination_unreachable) also when the connection to O(dest_uri) was lost mid-migration while the address
      in O(migrate_uri) still answers (told only when the module runs on the source host). V(link_cut) when neither
      answers, or when the data stopped moving. V(destination_died) when the host answers but its daemon does not;
      over C(qemu+ssh), a host whose SSH port answers.
    - Told from libvirt's error codes, the state of the job and the guest and how the destination answers
      afterwards, never from the wording of libvirt's messages, so it is the same whatever the hosts' locale.
    - V(incompatible_destination) when the destination does not offer the guest's machine type, found before
      anything moves. The message names the machine type and the newest one of its family that the destination
      offers.
  returned: failure of the migration itself, of its checks, or a destination that cannot run the guest
  type: str
  sample: link_cut
source_state:
  description: State of the guest on the source after a failed migration.
  returned: failure of the migration itself
  type: str
  sample: running
libvirt_error:
  description: libvirt's message for the failed migration.
  returned: failure of the migration itself
  type: str
  sample: "internal error: client socket is closed"
"""

from ansible_collections.arctictern.virt.plugins.module_utils import _libvirt, _migration
from ansible_collections.arctictern.virt.plugins.module_utils._changes import Changes
from ansible_collections.arctictern.virt.plugins.module_utils._module import ArcticternModule


def run(module):
    changes = Changes(module)
    options = _migration.MigrationOptions.from_params(module.params)
    result = _migration.migrate(options, check_mode=changes.check_mode)
    if result["changed"]:
        changes.record()
        changes.diff({"name": result["name"], "host": result["source"]["hostname"]},
                     {"name": result["name"], "host": result["destination"]["hostname"]})
    return changes.result(result)


def main():
    module = ArcticternModule(
        argument_spec=_migration.ARGUMENT_SPEC,
        required_libs=_libvirt.REQUIRED_LIBS,
        supports_check_mode=True,
    )
    module.run(run)


if __name__ == "__main__":
    main()
