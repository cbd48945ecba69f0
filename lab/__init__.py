"""The embedded lab: hypervisor hosts, a LAN and clients as network namespaces on one machine."""
