"""vnetgen's dataclasses' methods, compiled ahead of time: see vnetgen.dataclassc."""
