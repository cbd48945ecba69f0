# Copyright: (c) 2026, arctictern.virt developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Options shared by every module that talks to a libvirt daemon."""

    DOCUMENTATION = r"""
options:
  uri:
    description:
      - libvirt connection URI of the hypervisor, for example V(qemu:///system), V(xen:///system),
        V(qemu+ssh://root@hv1/system) or, for a daemon on a private socket,
        V(qemu+unix:///system?socket=/run/example/libvirt-sock).
    type: str
    default: qemu:///system
  connect_timeout:
    description:
      - Seconds to wait for the libvirt daemon to answer before failing.
    type: float
    default: 10.0
requirements:
  - libvirt-python on the host that runs the module
"""
