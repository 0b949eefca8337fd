"""The lab: the whole system on one machine, VMs as network namespaces."""
