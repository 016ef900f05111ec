"""Every artifact the seed tutorial prints is what we generate for its scenario: same meaning.

The expected side is read from the tutorial itself (tests/fixtures/seed/tutorial.md, a copy of
shared/seeds/000_1245493db5007ef8.txt), never written by hand.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from lxml import etree

from conftest import ROOT

SEED = (Path(__file__).parent / "fixtures" / "seed" / "tutorial.md").read_text()


def seed_networks():
    """Every <network>…</network> block the tutorial prints, in order."""
    return re.findall(r"^<network>\n.*?^</network>$", SEED, flags=re.S | re.M)


def seed_ifcfg(name):
    """The bodies printed after `vi|cat …/ifcfg-NAME`, in order."""
    pattern = rf"^# (?:vi|cat) /etc/sysconfig/network-scripts/ifcfg-{re.escape(name)}\n(.*?)^(?:```|#)"
    return re.findall(pattern, SEED, flags=re.S | re.M)


def meaning(element):
    """An XML element as libvirt understands it: attribute and child order do not matter,
    netmask and prefix are the same thing, MACs compare case-insensitively."""
    attrs = dict(element.attrib)
    if "netmask" in attrs:
        import ipaddress
        attrs["prefix"] = str(ipaddress.IPv4Network(f"0.0.0.0/{attrs.pop('netmask')}").prefixlen)
    if element.tag == "mac" or "mac" in attrs:
        attrs = {k: (v.lower() if k in ("address", "mac") else v) for k, v in attrs.items()}
    children = sorted(meaning(child) for child in element)
    return (element.tag, tuple(sorted(attrs.items())), (element.text or "").strip(), tuple(children))


def ifcfg_pairs(text):
    pairs = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = " ".join(shlex.split(value))
    return pairs


def by_uuid(uuid):
    found = [n for n in seed_networks() if f"<uuid>{uuid}</uuid>" in n]
    assert found, f"the tutorial prints no network with uuid {uuid}"
    return found[0]


@pytest.mark.parametrize("profile, path, uuid", [
    ("nat-default", "caldera02/networks/default.xml", "f6514662-26e5-431e-8544-fd216bed9312"),
    ("two-hosts", "caldera02/networks/default.xml", "f6514662-26e5-431e-8544-fd216bed9312"),
    ("bridged", "caldera02/networks/bridged_network.xml", "6579db1f-ca49-4e51-a116-c1342cd5d47a"),
    ("routed", "caldera02/networks/router.xml", "186ffd11-ce2d-452a-9970-baf07b723de8"),
    ("isolated", "caldera03/networks/default.xml", "e8849d67-243a-4b0f-83ea-bc2b447580cf"),
    ("two-hosts", "caldera03/networks/default.xml", "e8849d67-243a-4b0f-83ea-bc2b447580cf"),
])
def test_network_xml_means_what_the_seed_prints(build_bundle, profile, path, uuid):
    bundle = build_bundle(ROOT / "profiles" / f"{profile}.yaml")
    ours = etree.fromstring(bundle.files[path].text.encode())
    theirs = etree.fromstring(by_uuid(uuid).encode())
    assert meaning(ours) == meaning(theirs)


@pytest.mark.parametrize("profile, host, name, index", [
    ("bridged", "caldera02", "mybridge0", 0),
    ("bridged", "caldera02", "enp0s25", 0),
    ("nat-and-bridged", "caldera02", "mybridge0", 0),
    ("two-hosts", "caldera02", "ens2", 0),
    ("two-hosts", "caldera03", "ens2", 1),
])
def test_ifcfg_has_the_seeds_keys_and_values(build_bundle, profile, host, name, index):
    bundle = build_bundle(ROOT / "profiles" / f"{profile}.yaml")
    ours = ifcfg_pairs(bundle.files[f"{host}/ifcfg/ifcfg-{name}"].text)
    theirs = ifcfg_pairs(seed_ifcfg(name)[index])
    assert ours == theirs


def test_the_seed_blocks_were_found():
    # Guards the extraction above: the tutorial prints 5 network definitions (default twice) and these ifcfg files.
    assert len(seed_networks()) == 5
    assert len(seed_ifcfg("mybridge0")) == 1 and len(seed_ifcfg("enp0s25")) == 1 and len(seed_ifcfg("ens2")) == 2


def test_virt_install_uses_the_seeds_flags(build_bundle):
    runbook = build_bundle(ROOT / "profiles" / "nat-default.yaml").files["caldera02/runbook.sh"].text
    seed_command = re.search(r"# virt-install \\\n(.*?)\n\n", SEED, flags=re.S).group(1)
    seed_flags = {line.split()[0] for line in seed_command.splitlines() if line.startswith("--")}
    line = next(l for l in runbook.splitlines() if "virt-install --name VM1" in l)
    ours = {w for w in shlex.split(line) if w.startswith("--")}
    assert seed_flags <= ours, seed_flags - ours
