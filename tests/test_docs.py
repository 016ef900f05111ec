"""The generated parts of the docs match the registries they describe (rewrite them with
`python -m vnetgen.docgen --write`)."""
from __future__ import annotations

from conftest import ROOT
from vnetgen import docgen


def test_docs_audit_md_is_generated_from_the_registries(pm):
    text = (ROOT / "docs" / "audit.md").read_text()
    assert docgen.rewrite(text, docgen.blocks(pm)) == text, "run: python -m vnetgen.docgen --write"


def test_every_check_kind_and_capture_file_is_in_the_docs(pm):
    from vnetgen.checks import kinds

    text = (ROOT / "docs" / "audit.md").read_text()
    for name, kind in kinds(pm).items():
        assert f"| `{name}` | {kind.severity} |" in text
    for name in ("virsh-net-list.txt", "ip-addr.json", "ip-route.json", "brctl-show.txt", "iptables-forward.txt"):
        assert f"| `{name}` |" in text
