"""Mutated profiles never crash: each one either builds or is refused with located errors."""
from __future__ import annotations

import random

import pytest

from conftest import PROFILES

TOKENS = ["", "~", "null", "[]", "{}", "-1", "0", "99999999999999999999", "yes", "'x'", "\"$(id)\"", "a b",
          "10.0.0.1/33", "::1", "52:54:00:00:00:00", "nat", "&a x", "*a", "<<: {}", "!!binary aGk=", "\t", "é",
          "256.1.1.1", "10.0.0.0/8", "--", "%", "@", "`", "|", ">"]


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        op = rng.randrange(6)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 2 and ":" in lines[i]:
            key, _, _ = lines[i].partition(":")
            lines[i] = f"{key}: {rng.choice(TOKENS)}"
        elif op == 3:
            lines[i] = " " * rng.randrange(8) + lines[i].lstrip()
        elif op == 4:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + rng.choice(TOKENS) + lines[i][pos:]
        if not lines:
            lines = [""]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(8))
def test_mutations_build_or_fail_cleanly(tmp_path, pm, seed):
    from vnetgen.bundle import build
    from vnetgen.diagnostics import InvalidProfile
    from vnetgen.profile import load_valid

    rng = random.Random(seed)
    outcomes = {"built": 0, "refused": 0}
    for case in range(60):
        source = rng.choice(PROFILES)
        path = tmp_path / f"m{case}.yaml"
        path.write_text(mutate(source.read_text(), rng))
        try:
            profile, _ = load_valid(str(path), pm)
        except InvalidProfile as err:
            assert err.report.errors and all(d.line >= 1 and d.col >= 1 for d in err.report.errors)
            outcomes["refused"] += 1
            continue
        bundle = build(profile, pm, path.name)  # a valid profile must build, never crash
        assert "SHA256SUMS" in bundle.files
        outcomes["built"] += 1
    assert outcomes["refused"] > 0  # the mutations do reach the validator
