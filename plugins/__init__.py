"""vnetgen's built-in modes and targets, registered through the `vnetgen.plugins` entry points."""
