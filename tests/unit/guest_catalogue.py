# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Guest definitions as users write them with plain libvirt, and the option changes to try on each.

The guest module must change only what an option models and keep everything else: devices of every kind,
tuning, firmware, metadata of other tools, attributes it does not set. The unit tests (fake libvirt) and the
integration tests (the lab's real daemons) both define each entry, change one option at a time through the
module, and compare the XML before and after as canonical trees (xml_compare.assert_same_except).
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

from ansible_collections.arctictern.virt.plugins.module_utils import _domain as domains
from ansible_collections.arctictern.virt.plugins.module_utils._domain_model import ADDRESSES_CHANGE, METADATA_NS
from ansible_collections.arctictern.virt.plugins.module_utils._domain_xml import metadata_addresses, spec_from_xml

# Placeholders: {name} the guest, {type} its domain type, {dir} a directory for images (nothing is created there),
# {bridge} a host bridge and {network} a libvirt network that exist on the host.
_DISK = ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{dir}/{name}-root.qcow2'/>"
         "<target dev='vda' bus='virtio'/></disk>")

ENTRIES = {
    # The report that opened the issue: a data disk, a network disk, the agent channel, RNG, VNC and a watchdog.
    "issue": """<domain type='{type}'>
  <name>{name}</name>
  <memory unit='KiB'>262144</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <devices>
    %(disk)s
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{dir}/{name}-data.img'/>
      <target dev='vdb' bus='virtio'/></disk>
    <disk type='network' device='disk'><driver name='qemu' type='raw'/>
      <source protocol='nbd' name='export'><host name='127.0.0.1' port='10809'/></source><target dev='vdc' bus='virtio'/></disk>
    <interface type='bridge'><source bridge='{bridge}'/><model type='virtio'/></interface>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <video><model type='cirrus'/></video>
    <watchdog model='i6300esb' action='reset'/>
  </devices>
</domain>""" % {"disk": _DISK},
    # UEFI firmware with NVRAM on q35, SMM, a CD-ROM on SATA, host-model CPU, clock timers, power management.
    "uefi": """<domain type='{type}'>
  <name>{name}</name>
  <memory unit='KiB'>524288</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/{name}_VARS.fd</nvram>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/><smm state='on'/></features>
  <cpu mode='host-model' check='partial'/>
  <clock offset='utc'><timer name='rtc' tickpolicy='catchup'/><timer name='pit' tickpolicy='delay'/>
    <timer name='hpet' present='no'/></clock>
  <pm><suspend-to-mem enabled='no'/><suspend-to-disk enabled='no'/></pm>
  <devices>
    %(disk)s
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{dir}/install.iso'/>
      <target dev='sda' bus='sata'/><readonly/></disk>
    <controller type='usb' model='qemu-xhci'/>
    <interface type='network'><source network='{network}'/><model type='virtio'/></interface>
    <memballoon model='virtio'><stats period='10'/></memballoon>
  </devices>
</domain>""" % {"disk": _DISK},
    # Every tuning knob: title, dumpCore, blkio/mem tune, vCPU pinning and a lower current count, NUMA policy,
    # SMBIOS, a custom CPU with topology and features, lifecycle actions, an I/O thread for the disk.
    "tuned": """<domain type='{type}'>
  <name>{name}</name>
  <title>Tuned guest</title>
  <description>Every knob set by hand</description>
  <memory unit='KiB' dumpCore='off'>1048576</memory>
  <currentMemory unit='KiB'>786432</currentMemory>
  <blkiotune><weight>500</weight></blkiotune>
  <memtune><soft_limit unit='KiB'>2097152</soft_limit></memtune>
  <memoryBacking><nosharepages/></memoryBacking>
  <vcpu placement='static' current='1' cpuset='0-1'>2</vcpu>
  <iothreads>1</iothreads>
  <cputune><shares>2048</shares><vcpupin vcpu='0' cpuset='0'/><emulatorpin cpuset='1'/></cputune>
  <numatune><memory mode='preferred' nodeset='0'/></numatune>
  <sysinfo type='smbios'><system><entry name='manufacturer'>Arctictern</entry><entry name='serial'>ATV-0001</entry></system></sysinfo>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/><bootmenu enable='yes' timeout='3000'/>
    <smbios mode='sysinfo'/></os>
  <features><acpi/><apic/><vmport state='off'/></features>
  <cpu mode='custom' match='exact' check='partial'><model fallback='forbid'>qemu64</model>
    <topology sockets='1' dies='1' cores='2' threads='1'/><feature policy='require' name='sse2'/></cpu>
  <clock offset='localtime'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>coredump-restart</on_crash>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none' io='native' discard='unmap' iothread='1'/>
      <source file='{dir}/{name}-root.qcow2'/><target dev='vda' bus='virtio'/>
      <iotune><total_iops_sec>1000</total_iops_sec></iotune><serial>ATVDISK1</serial></disk>
    <interface type='bridge'><source bridge='{bridge}'/><model type='virtio'/></interface>
  </devices>
  <seclabel type='none'/>
</domain>""",
    # NICs with everything the module does not set, and NIC kinds it does not manage (user, direct, ethernet).
    "nics": """<domain type='{type}'>
  <name>{name}</name>
  <memory unit='KiB'>262144</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
  <devices>
    %(disk)s
    <interface type='bridge'><mac address='52:54:00:c0:00:01'/><source bridge='{bridge}'/><model type='virtio'/>
      <driver name='qemu' queues='2' rx_queue_size='512'/>
      <filterref filter='clean-traffic'><parameter name='IP' value='198.18.0.99'/></filterref>
      <link state='down'/><mtu size='1400'/>
      <bandwidth><inbound average='1000' peak='5000' burst='1024'/><outbound average='1000'/></bandwidth>
      <rom bar='off'/></interface>
    <interface type='network'><mac address='52:54:00:c0:00:02'/><source network='{network}' portgroup='engineering'/>
      <model type='e1000'/></interface>
    <interface type='user'><mac address='52:54:00:c0:00:03'/><model type='virtio'/></interface>
    <interface type='direct'><mac address='52:54:00:c0:00:04'/><source dev='eth0' mode='bridge'/><model type='virtio'/></interface>
    <interface type='ethernet'><mac address='52:54:00:c0:00:05'/><target dev='atvtap5' managed='no'/><model type='virtio'/></interface>
  </devices>
</domain>""" % {"disk": _DISK},
    # Disks with driver tuning, I/O limits, serials and boot order, a shared block device, a SCSI disk on a drive
    # address, and disks the module does not manage (a storage volume, a floppy).
    "disks": """<domain type='{type}'>
  <name>{name}</name>
  <memory unit='KiB'>262144</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='writeback' discard='unmap' detect_zeroes='unmap'/>
      <source file='{dir}/{name}-root.qcow2'/><target dev='vda' bus='virtio'/>
      <iotune><total_bytes_sec>10485760</total_bytes_sec></iotune><serial>ROOT-1</serial><boot order='1'/></disk>
    <disk type='block' device='disk'><driver name='qemu' type='raw' cache='none' io='native'/>
      <source dev='/dev/atv-missing/{name}'/><target dev='vdb' bus='virtio'/><shareable/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{dir}/{name}-ro.img'/>
      <target dev='sdb' bus='scsi'/><readonly/><address type='drive' controller='0' bus='0' target='0' unit='1'/></disk>
    <disk type='volume' device='disk'><driver name='qemu' type='raw'/><source pool='default' volume='{name}-vol'/>
      <target dev='vdd' bus='virtio'/></disk>
    <disk type='file' device='floppy'><source file='{dir}/floppy.img'/><target dev='fda' bus='fdc'/></disk>
    <controller type='scsi' index='0' model='virtio-scsi'><driver queues='2'/></controller>
    <interface type='bridge'><source bridge='{bridge}'/><model type='virtio'/><boot order='2'/></interface>
  </devices>
</domain>""",
    # Direct kernel boot, other tools' metadata in their own namespaces, a serial log that appends.
    "metadata": """<domain type='{type}'>
  <name>{name}</name>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo='http://libosinfo.org/xmlns/libvirt/domain/1.0'>
      <libosinfo:os id='http://debian.org/debian/12'/></libosinfo:libosinfo>
    <acme:owner xmlns:acme='https://acme.example/ns/1'><acme:team>storage</acme:team></acme:owner>
  </metadata>
  <memory unit='KiB'>262144</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><kernel>{dir}/vmlinuz</kernel><initrd>{dir}/initrd.img</initrd>
    <cmdline>console=ttyS0 root=/dev/vda</cmdline></os>
  <devices>
    %(disk)s
    <interface type='bridge'><source bridge='{bridge}'/><model type='virtio'/></interface>
    <serial type='pty'><log file='/var/log/libvirt/qemu/{name}-serial.log' append='on'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>""" % {"disk": _DISK},
    # A desktop: SPICE with its channel, USB redirection and filter, QXL video, sound and audio, a tablet.
    "desktop": """<domain type='{type}'>
  <name>{name}</name>
  <memory unit='KiB'>524288</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <devices>
    %(disk)s
    <controller type='usb' model='qemu-xhci' ports='15'/>
    <interface type='network'><source network='{network}'/><model type='virtio'/></interface>
    <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>
    <input type='tablet' bus='usb'/>
    <graphics type='spice' autoport='yes' listen='127.0.0.1'><image compression='off'/></graphics>
    <sound model='ich9'/>
    <audio id='1' type='spice'/>
    <video><model type='qxl' ram='65536' vram='65536' vgamem='16384' heads='1' primary='yes'/></video>
    <redirdev bus='usb' type='spicevmc'/>
    <redirfilter><usbdev class='0x08' vendor='0x1234' product='0xbeef' version='2.00' allow='yes'/></redirfilter>
  </devices>
</domain>""" % {"disk": _DISK},
    # Shared folders, shared memory, a USB host device, vsock, a panic notifier, a USB hub, a parallel port.
    "passthrough": """<domain type='{type}'>
  <name>{name}</name>
  <memory unit='KiB'>262144</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
  <devices>
    %(disk)s
    <filesystem type='mount' accessmode='mapped'><source dir='/srv/share'/><target dir='share'/><readonly/></filesystem>
    <interface type='bridge'><source bridge='{bridge}'/><model type='virtio'/></interface>
    <parallel type='pty'><target port='0'/></parallel>
    <hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/><product id='0xbeef'/></source></hostdev>
    <hub type='usb'/>
    <panic model='isa'/>
    <shmem name='atv-{name}'><model type='ivshmem-plain'/><size unit='M'>4</size></shmem>
    <vsock model='virtio'><cid auto='yes'/></vsock>
  </devices>
</domain>""" % {"disk": _DISK},
    # A guest whose balloon holds it below its memory, with a balloon that deflates on OOM.
    "ballooned": """<domain type='{type}'>
  <name>{name}</name>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>524288</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
  <devices>
    %(disk)s
    <interface type='bridge'><source bridge='{bridge}'/><model type='virtio'/></interface>
    <memballoon model='virtio' autodeflate='on'><stats period='5'/></memballoon>
  </devices>
</domain>""" % {"disk": _DISK},
    # Hyper-V enlightenments and hidden KVM state, a variable clock, perf events, a console on TCP first.
    "features": """<domain type='{type}'>
  <name>{name}</name>
  <memory unit='KiB'>262144</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/><hyperv mode='custom'><relaxed state='on'/><vapic state='on'/></hyperv>
    <kvm><hidden state='on'/></kvm><pmu state='off'/></features>
  <cpu mode='custom' match='exact'><model fallback='allow'>qemu64</model><feature policy='disable' name='svm'/></cpu>
  <clock offset='variable' adjustment='3600' basis='utc'/>
  <on_reboot>destroy</on_reboot>
  <perf><event name='cmt' enabled='no'/></perf>
  <devices>
    %(disk)s
    <interface type='bridge'><source bridge='{bridge}'/><model type='virtio'/></interface>
    <serial type='tcp'><source mode='bind' host='127.0.0.1' service='4555'/><protocol type='raw'/><target port='0'/></serial>
    <console type='tcp'><source mode='bind' host='127.0.0.1' service='4555'/><protocol type='raw'/><target type='serial' port='0'/></console>
  </devices>
</domain>""" % {"disk": _DISK},
    # IDE CD-ROM and disk on i440fx, an e1000 NIC on a network, no explicit features.
    "legacy": """<domain type='{type}'>
  <name>{name}</name>
  <memory unit='KiB'>393216</memory>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type><boot dev='cdrom'/><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{dir}/{name}-ide.img'/>
      <target dev='hda' bus='ide'/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{dir}/install.iso'/>
      <target dev='hdc' bus='ide'/><readonly/></disk>
    <interface type='network'><source network='{network}'/><model type='e1000'/></interface>
    <sound model='ac97'/>
  </devices>
</domain>""",
    # A TPM, a virtiofs share over shared memory, a watchdog that powers off, an agent channel on a given path.
    "tpm": """<domain type='{type}'>
  <name>{name}</name>
  <memory unit='KiB'>262144</memory>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <vcpu placement='static'>1</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <devices>
    %(disk)s
    <filesystem type='mount' accessmode='passthrough'><driver type='virtiofs'/><source dir='/srv/share'/><target dir='share'/></filesystem>
    <interface type='bridge'><source bridge='{bridge}'/><model type='virtio'/></interface>
    <channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/{name}.agent'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>
    <watchdog model='i6300esb' action='poweroff'/>
  </devices>
</domain>""" % {"disk": _DISK},
    # What the module itself writes for a new guest.
    "module-made": None,
}

# Xen guests: libvirt's libxl driver cannot run here, so these are unit-tested (and schema-validated) only.
XEN_ENTRIES = {
    "xen-pv": """<domain type='xen'>
  <name>{name}</name>
  <memory unit='KiB'>524288</memory>
  <vcpu placement='static'>2</vcpu>
  <bootloader_args>--entry=xvda</bootloader_args>
  <os><type arch='x86_64' machine='xenpv'>linux</type><kernel>{dir}/vmlinuz</kernel><cmdline>root=/dev/xvda ro</cmdline></os>
  <on_crash>preserve</on_crash>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{dir}/{name}.img'/><target dev='xvda' bus='xen'/></disk>
    <disk type='block' device='disk'><driver name='phy'/><source dev='/dev/vg0/{name}-data'/><target dev='xvdb' bus='xen'/></disk>
    <interface type='bridge'><mac address='00:16:3e:00:00:01'/><source bridge='{bridge}'/><script path='vif-bridge'/></interface>
    <console type='pty'><target type='xen' port='0'/></console>
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
  </devices>
</domain>""",
    "xen-hvm": """<domain type='xen'>
  <name>{name}</name>
  <memory unit='KiB'>1048576</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='xenfv'>hvm</type><loader type='rom'>/usr/lib/xen-4.17/boot/hvmloader</loader>
    <boot dev='hd'/></os>
  <features><acpi/><apic/><pae/><viridian/></features>
  <clock offset='variable' adjustment='0' basis='localtime'/>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{dir}/{name}.img'/><target dev='xvda' bus='xen'/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='{dir}/install.iso'/><target dev='hdc' bus='ide'/><readonly/></disk>
    <interface type='bridge'><mac address='00:16:3e:00:00:02'/><source bridge='{bridge}'/><model type='e1000'/></interface>
    <input type='tablet' bus='usb'/>
    <graphics type='vnc' port='-1' autoport='yes'/>
  </devices>
</domain>""",
}


def definition(entry, name, virt_type="kvm", directory="/var/lib/libvirt/images/atvcat", bridge="br0", network="default",
               kernel="/var/lib/arctictern/vmlinuz"):
    """The XML a user would define for catalogue ``entry``."""
    template = ENTRIES.get(entry) or XEN_ENTRIES.get(entry)
    if template is None:
        params = dict(name=name, memory=256, kernel=kernel, cmdline="console=ttyS0",
                      disks=[dict(path="%s/%s-root.qcow2" % (directory, name))],
                      nics=[dict(bridge=bridge, addresses=["198.18.0.240/24"])], serial_log="/var/log/%s.log" % name)
        return domains.render_xml(domains.spec_from_options(params, virt_type))
    return template.format(name=name, type=virt_type, dir=directory, bridge=bridge, network=network)


@dataclasses.dataclass
class Change:
    """One option changed on one defined guest: the module options (besides name and uri), the option names the
    module must report, the parts of the XML allowed to differ (xml_compare paths), and a check of the new value
    (``check(before_root, after_root)`` returns a list of problems)."""

    label: str
    options: dict
    reports: list
    without: list
    check: object


def _nic_options(spec):
    return [{nic.source_type: nic.source} for nic in spec.nics]


def _disk_options(spec):
    return [{"path": disk.path} for disk in spec.disks]


def _source_path(path):
    return ["devices/disk/source[@file='%s']" % path, "devices/disk/source[@dev='%s']" % path]


def changes_for(defined_xml, directory="/var/lib/libvirt/images/atvcat", bridge="br0", pci_hotplug=True):
    """Every option change to try on the defined guest ``defined_xml`` (libvirt's inactive XML).

    ``pci_hotplug`` False leaves out adding devices, which on q35 makes libvirt add a PCIe root port too."""
    spec = spec_from_xml(defined_xml)
    root = ET.fromstring(defined_xml)
    name = spec.name
    found = []

    memory = spec.memory_mib + 128
    found.append(Change("memory", {"memory": memory}, ["memory"], ["memory", "currentMemory"], lambda before, after: [
        problem for problem in (
            "memory %s" % after.findtext("memory") if int(after.findtext("memory")) != memory * 1024 else None,
            "a lowered balloon target was raised"
            if before.find("currentMemory") is not None and int(before.findtext("currentMemory")) < int(before.findtext("memory"))
            and after.findtext("currentMemory") != before.findtext("currentMemory") else None,
        ) if problem]))

    if root.find("cpu/topology") is None:
        vcpus = spec.vcpus + 1
        found.append(Change("vcpus", {"vcpus": vcpus}, ["vcpus"], ["vcpu"], lambda before, after: [
            problem for problem in (
                "vcpu %s" % after.findtext("vcpu") if after.findtext("vcpu") != str(vcpus) else None,
                "vcpu attributes %s -> %s" % (before.find("vcpu").attrib, after.find("vcpu").attrib)
                if before.find("vcpu").attrib != after.find("vcpu").attrib else None,
            ) if problem]))

    if spec.virt_type != "xen":
        cpu_model = "kvm64" if spec.cpu_model != "kvm64" else "qemu64"
        without = ["cpu"] if root.find("cpu") is None else ["cpu/model", "cpu@mode", "cpu@match"]
        found.append(Change("cpu_model", {"cpu_model": cpu_model}, ["cpu_model"], without, lambda before, after: [
            "cpu %s %s" % (after.find("cpu").attrib, after.findtext("cpu/model"))
        ] if (after.find("cpu").get("mode"), after.findtext("cpu/model")) != ("custom", cpu_model) else []))

        machine = spec.machine.rsplit("-", 1)[0] + "-7.1" if spec.machine else None
        if machine:
            found.append(Change("machine", {"machine": machine}, ["machine"], ["os/type@machine"], lambda before, after: [
                "machine %s" % after.find("os/type").get("machine")] if after.find("os/type").get("machine") != machine else []))

    kernel = "%s/vmlinuz-changed" % directory
    found.append(Change("kernel", {"kernel": kernel}, ["kernel"], ["os/kernel"], lambda before, after: [
        "kernel %s" % after.findtext("os/kernel")] if after.findtext("os/kernel") != kernel else []))
    if spec.kernel:
        initrd = "%s/initrd-changed" % directory
        found.append(Change("initrd", {"initrd": initrd}, ["initrd"], ["os/initrd"], lambda before, after: [
            "initrd %s" % after.findtext("os/initrd")] if after.findtext("os/initrd") != initrd else []))
        cmdline = (spec.cmdline or "") + " atv.changed=1"
        found.append(Change("cmdline", {"cmdline": cmdline}, ["cmdline"], ["os/cmdline"], lambda before, after: [
            "cmdline %s" % after.findtext("os/cmdline")] if after.findtext("os/cmdline") != cmdline else []))

    if spec.disks:
        found.append(Change("disks (listed by path only)", {"disks": _disk_options(spec)}, [], [], lambda before, after: []))
        old, new = spec.disks[0], "%s/%s-swapped.qcow2" % (directory, name)
        listed = _disk_options(spec)
        listed[0] = {"path": new, "format": old.format, "target": old.target, "bus": old.bus}
        found.append(Change("disks (an image swapped)", {"disks": listed}, ["disks"], _source_path(old.path) + _source_path(new),
                            lambda before, after: [] if any(
                                disk.find("source").get("file") == new and disk.find("target").get("dev") == old.target
                                for disk in after.findall("devices/disk")) else ["no disk %s at %s" % (new, old.target)]))
        if len(spec.disks) > 1:
            gone = spec.disks[-1]
            found.append(Change("disks (the last removed)", {"disks": _disk_options(spec)[:-1]}, ["disks"],
                                ["devices/disk/target[@dev='%s']/.." % gone.target], lambda before, after: [
                                    "%s still there" % gone.target] if after.find("devices/disk/target[@dev='%s']" % gone.target) is not None else []))
        if pci_hotplug:
            extra = "%s/%s-extra.qcow2" % (directory, name)
            found.append(Change("disks (one added)", {"disks": _disk_options(spec) + [{"path": extra}]}, ["disks"],
                                ["devices/disk/source[@file='%s']/.." % extra], lambda before, after: [] if after.find(
                                    "devices/disk/source[@file='%s']" % extra) is not None else ["no disk %s" % extra]))

    if spec.nics:
        first = spec.nics[0]
        # Another virtio model for a virtio NIC: libvirt itself drops virtio-only <driver> settings (queues,
        # rx_queue_size) from a NIC that becomes an e1000.
        nic_model = "virtio-transitional" if (first.model or "").startswith("virtio") else "virtio"
        listed = _nic_options(spec)
        listed[0]["model"] = nic_model
        model_path = "devices/interface/mac[@address='%s']/../model" % first.mac
        found.append(Change("nics (a model changed)", {"nics": listed}, ["nics"], [model_path], lambda before, after: [
            "model %s" % after.find(model_path).attrib] if after.find(model_path).get("type") != nic_model else []))
        found.append(Change("nics (listed by source only)", {"nics": _nic_options(spec)}, [], [], lambda before, after: []))
        addresses = ["198.18.0.250/24"]
        listed = _nic_options(spec)
        listed[0]["addresses"] = addresses
        ours = "metadata" if root.find("metadata") is None else "metadata/{%s}guest" % METADATA_NS
        found.append(Change("nics[].addresses", {"nics": listed}, [ADDRESSES_CHANGE], [ours], lambda before, after: [
            "recorded %s" % metadata_addresses(after)] if metadata_addresses(after) != [(first.mac, addresses[0])] else []))
        if pci_hotplug:
            added = domains.stable_mac(name, len(spec.nics))
            found.append(Change("nics (one added)", {"nics": _nic_options(spec) + [{"bridge": bridge}]}, ["nics"],
                                ["devices/interface/mac[@address='%s']/.." % added], lambda before, after: [] if after.find(
                                    "devices/interface/mac[@address='%s']" % added) is not None else ["no NIC %s" % added]))

    log = "/var/log/libvirt/qemu/%s-changed.log" % name
    chardev = "console" if spec.is_xen_pv else "serial"
    chardevs = (["devices/serial/log", "devices/console/log"] if root.find("devices/" + chardev) is not None
                else ["devices/serial", "devices/console"])
    found.append(Change("serial_log", {"serial_log": log}, ["serial_log"], chardevs, lambda before, after: [
        "log %s" % after.find("devices/%s/log" % chardev).attrib] if after.find("devices/%s/log" % chardev).get("file") != log else []))
    return found
