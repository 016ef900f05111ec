"""vnetgen: compile libvirt virtual networking profiles into reviewable bundles, and audit hosts."""

__version__ = "0.1.0"
