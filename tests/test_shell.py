"""vnetgen.shell.q, the one quoting function: shlex.quote's answer, or double quotes around a word
that holds a single quote and nothing a double-quoted word would expand."""
from __future__ import annotations

import shlex
import subprocess

import pytest

from vnetgen.shell import Raw, cmd, q

WORDS = ["", "plain", "a-b_c.d/e:f,g=h+i%j@k", "two words", "ends\n", "\nstarts", "mid\nline", "tab\t",
         "$HOME", "`id`", "back\\slash", "it's", "it's $HOME", 'say "hi"', "<x a='1'/>", "é",
         "-n", "*", "a;b", "'", "''", "\x7f", "cr\r"]


@pytest.mark.parametrize("word", WORDS)
def test_q_is_shlex_quote_or_double_quotes(word):
    quoted = q(word)
    if "'" in word and not any(c in word for c in '$`"\\!') and all(c >= " " and c != "\x7f" for c in word):
        assert quoted == f'"{word}"'
    else:
        assert quoted == shlex.quote(word)
    assert q(Raw(word)) == word


@pytest.mark.parametrize("word", WORDS)
def test_bash_reads_back_the_word(word):
    out = subprocess.run(["bash", "-c", f"printf %s {q(word)}"], capture_output=True, check=True).stdout
    assert out == word.encode()


def test_a_word_ending_in_a_newline_is_quoted():
    """It used to pass as safe (a $ matched before the newline) and end the command line there."""
    assert q("ubuntu14.04\n") == "'ubuntu14.04\n'"
    assert cmd("virt-install", "--os-variant", "x\n", "--disk", "d") == "virt-install --os-variant 'x\n' --disk d"
