"""The precompiled templates (vnetgen/_templates/) are current, are what a build renders with, and
give way to the source whenever they do not match it (rewrite them with
`python -m vnetgen.templatec --write`)."""
from __future__ import annotations

import jinja2
import pytest

from vnetgen import render, templatec


def test_precompiled_templates_are_current():
    # Under a later jinja2 release than the modules were made with, builds compile every template
    # from source (correct, slower: the test above the fallback proves it); say so, do not fail CI.
    made_with = templatec._namespace("sysctl.conf.j2")["JINJA2"]
    if made_with != jinja2.__version__:
        pytest.skip(f"the modules were made with jinja2 {made_with}, this is {jinja2.__version__}: "
                    "run python -m vnetgen.templatec --write")
    assert templatec.stale(render.source_environment()) == [], "run: python -m vnetgen.templatec --write"


def test_a_build_renders_from_the_precompiled_modules(monkeypatch):
    compiled = []
    real = jinja2.FileSystemLoader.load  # the fallback: compiling from source

    def from_source(self, environment, name, globals=None):
        compiled.append(name)
        return real(self, environment, name, globals)

    monkeypatch.setattr(jinja2.FileSystemLoader, "load", from_source)
    env = render._environment(templatec.Loader())
    for name in templatec.names():
        env.get_template(name)
    assert compiled == []


@pytest.mark.parametrize("field, value", [("SOURCE_SHA256", "0" * 64), ("JINJA2", "0.0")])
def test_a_stale_module_gives_way_to_the_template_source(monkeypatch, field, value):
    """A template edited since its module was made, or another jinja2: compiled from source instead,
    never rendered from the stale code."""
    real = templatec._namespace

    def stale(name):
        namespace = real(name)
        namespace[field] = value
        namespace["root"] = lambda *a, **k: iter(["stale code\n"])
        return namespace

    monkeypatch.setattr(templatec, "_namespace", stale)
    env = render._environment(templatec.Loader())
    text = env.get_template("sysctl.conf.j2").render(host="h", settings=[])
    assert "stale code" not in text
    assert text == render.source_environment().get_template("sysctl.conf.j2").render(host="h", settings=[])


def test_a_templates_source_is_read_as_jinja2s_loader_reads_it(tmp_path, monkeypatch):
    """Loader checks a module against the template's text read as bytes (templatec._source): the text
    FileSystemLoader.get_source gives, newlines translated as text mode does."""
    import jinja2

    for name in templatec.names():
        assert templatec._source(name) == jinja2.FileSystemLoader(templatec.TEMPLATES).get_source(
            jinja2.Environment(), name)[0]
    (tmp_path / "odd.j2").write_bytes("a\r\nb\rc\n\u00e9\n".encode())
    monkeypatch.setattr(templatec, "TEMPLATES", str(tmp_path))
    assert templatec._source("odd.j2") == jinja2.FileSystemLoader(str(tmp_path)).get_source(
        jinja2.Environment(), "odd.j2")[0] == "a\nb\nc\n\u00e9\n"
    assert templatec._source("missing.j2") == ""
