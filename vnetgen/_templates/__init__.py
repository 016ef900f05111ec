"""Precompiled bundle templates: see vnetgen.templatec."""
