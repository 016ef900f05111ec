"""vnetgen's dataclasses with their methods compiled ahead of time (vnetgen.dataclassc): the module
vnetgen/_dataclasses.py is current, its code is exactly what compiling each text gives, a build
compiles none of it, and the classes are the classes `dataclasses` makes, to the byte of their code
(rewrite the module with `python -m vnetgen.dataclassc --write`)."""
from __future__ import annotations

import dataclasses
import dis
import importlib
import importlib.util
import inspect
import json
import marshal
import os
import re
import subprocess
import sys
from types import CodeType, ModuleType
from typing import Any, Dict, List, Optional

import pytest

from vnetgen import dataclassc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _generated_module() -> Any:
    return importlib.import_module(f"vnetgen.{dataclassc.MODULE}")


def _generated() -> List[str]:
    return sorted(_generated_module().MODULES)


def _made_here() -> bool:
    return _generated_module().MAGIC == importlib.util.MAGIC_NUMBER   # this Python's bytecode


def test_generated_module_is_current():
    # Under another Python minor release the classes are made as dataclasses makes them (correct,
    # slower: the texts differ, so none is found); say so, do not fail CI.
    if not _made_here():
        pytest.skip(f"vnetgen/_dataclasses.py was made with Python {_generated_module().PYTHON}: "
                    "run python -m vnetgen.dataclassc --write")
    assert not dataclassc.stale(), "run: python -m vnetgen.dataclassc --write"
    assert {"vnetgen.model", "vnetgen.api", "vnetgen.facts.model"} <= set(_generated())


def _code_facts(code: CodeType) -> Dict[str, Any]:
    """Everything about a code object, the code inside it included (== on code ignores the file name)."""
    return {
        "name": code.co_name, "qualname": code.co_qualname, "filename": code.co_filename,
        "firstlineno": code.co_firstlineno, "code": code.co_code, "names": code.co_names,
        "varnames": code.co_varnames, "freevars": code.co_freevars, "cellvars": code.co_cellvars,
        "flags": code.co_flags, "argcount": (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount),
        "stacksize": code.co_stacksize, "linetable": code.co_linetable,
        "exceptiontable": code.co_exceptiontable, "positions": list(code.co_positions()),
        "consts": [_code_facts(c) if isinstance(c, CodeType) else (type(c).__name__, repr(c)) for c in code.co_consts],
    }


@pytest.mark.parametrize("name", _generated())
def test_each_code_is_what_compiling_its_text_gives(name):
    if not _made_here():
        pytest.skip(f"vnetgen/_dataclasses.py was made with Python {_generated_module().PYTHON}'s bytecode")
    texts, code = _generated_module().MODULES[name]
    codes = marshal.loads(code)
    assert len(texts) == len(codes) > 0
    for text, cached in zip(texts, codes):
        compiled = compile(text, "<string>", "exec", dont_inherit=True)   # as dataclasses' exec: no __future__
        inner = [c for c in compiled.co_consts if isinstance(c, CodeType)]
        assert len(inner) == 1
        assert cached == inner[0]
        assert _code_facts(cached) == _code_facts(inner[0])
        # Running the text only binds that function (what _exec does instead): no default,
        # annotation or decorator is evaluated, nothing else is stored.
        ops = [(i.opname, i.argval) for i in dis.get_instructions(compiled) if i.opname not in ("RESUME", "CACHE")]
        assert ops == [("LOAD_CONST", inner[0]), ("MAKE_FUNCTION", 0), ("STORE_NAME", inner[0].co_name),
                       ("LOAD_CONST", None), ("RETURN_VALUE", None)]


# --- the classes, with and without the compiled code ------------------------------------------

_FINGERPRINTS = r"""
import dataclasses, importlib, inspect, json, pkgutil, sys
from types import CodeType, FunctionType
from vnetgen import dataclassc
compiled = []
if sys.argv[1] == "plain":
    dataclassc._load = lambda module: {}
else:
    class _Builtins:   # every text dataclassc leaves to exec
        def exec(self, source, *args, **kwargs):
            compiled.append(source)
            return __builtins__.exec(source, *args, **kwargs)
    dataclassc.builtins = _Builtins()

def code(c):
    return {"filename": c.co_filename, "firstlineno": c.co_firstlineno, "qualname": c.co_qualname,
            "code": c.co_code.hex(), "names": c.co_names, "varnames": c.co_varnames,
            "linetable": c.co_linetable.hex(), "positions": list(c.co_positions()),
            "consts": [code(k) if isinstance(k, CodeType) else repr(k) for k in c.co_consts]}

def function(f):
    return {"code": code(f.__code__), "name": f.__name__, "qualname": f.__qualname__, "module": f.__module__,
            "defaults": repr(f.__defaults__), "kwdefaults": repr(f.__kwdefaults__),
            "annotations": repr(f.__annotations__), "globals": repr(f.__globals__.get("__name__")),
            "builtins": f.__builtins__ is __builtins__.__dict__ if hasattr(__builtins__, "__dict__") else None,
            "closure": repr(f.__closure__), "doc": f.__doc__, "signature": str(inspect.signature(f))}

import vnetgen
for info in pkgutil.walk_packages(vnetgen.__path__, "vnetgen."):
    if info.name.rsplit(".", 1)[-1] != "__main__" and ".lab" not in info.name:
        importlib.import_module(info.name)
out = {}
for name, module in sorted(sys.modules.items()):
    if not name.startswith("vnetgen"):
        continue
    for cls in vars(module).values():
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == name):
            continue
        methods = {}
        for attr, value in sorted(vars(cls).items()):
            value = getattr(value, "__wrapped__", value)   # __repr__ is wrapped against recursion
            if isinstance(value, FunctionType):
                methods[attr] = function(value)
            elif attr in ("__hash__", "__match_args__", "__doc__", "__dataclass_params__"):
                methods[attr] = repr(value)
        fields = [repr(f) for f in dataclasses.fields(cls)]
        out[f"{name}.{cls.__qualname__}"] = {"methods": methods, "fields": fields,
                                              "signature": str(inspect.signature(cls))}
json.dump({"classes": out, "compiled": compiled}, sys.stdout)
"""


def _fingerprints(mode: str) -> Dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _FINGERPRINTS, mode], check=True, capture_output=True, text=True,
                         cwd=ROOT).stdout
    return json.loads(re.sub(r" at 0x[0-9a-f]+", " at ADDRESS", out))   # reprs of objects name their address


def test_the_classes_are_those_dataclasses_makes_and_none_is_compiled():
    """Every dataclass of the package, made from the compiled code and as dataclasses makes it: the
    same methods, down to their code, file name and line numbers, defaults, annotations, globals;
    the same fields, signature, hash and match args. And none of their texts was compiled."""
    plain, fast = _fingerprints("plain"), _fingerprints("fast")
    assert len(plain["classes"]) > 60
    assert fast["classes"] == plain["classes"]
    if _made_here():
        assert fast["compiled"] == []


def test_a_build_compiles_no_dataclass_method(tmp_path):
    script = ("import runpy, sys\n"
              "from vnetgen import dataclassc\n"
              "compiled = []\n"
              "class _Builtins:\n"
              "    def exec(self, source, *args, **kwargs):\n"
              "        compiled.append(source)\n"
              "        return __builtins__.exec(source, *args, **kwargs)\n"
              "dataclassc.builtins = _Builtins()\n"
              f"sys.argv = ['vnetgen', 'build', 'profiles/nat-default.yaml', '-o', {str(tmp_path / 'out')!r}]\n"
              "try:\n"
              "    runpy.run_module('vnetgen', run_name='__main__')\n"
              "except SystemExit as exc:\n"
              "    assert not exc.code, exc.code\n"
              "made = [m for m in dataclassc._codes.values() if m]\n"
              "print(len(compiled), len(made))\n")
    if not _made_here():
        pytest.skip("vnetgen/_dataclasses.py was made with another Python")
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=ROOT)
    compiled, modules = map(int, out.stdout.split()[-2:])
    assert (compiled, modules >= 8) == (0, True)


# --- the mechanism, on classes of a module of this test's own -----------------------------------

_FAKE = "vnetgen_dataclassc_test_module"


@pytest.fixture(autouse=True)
def fake_module(monkeypatch):
    """The module the test's classes belong to (dataclasses makes their methods with its globals)."""
    module = ModuleType(_FAKE)
    module.Optional = Optional
    monkeypatch.setitem(sys.modules, _FAKE, module)
    return module


def _make(decorator: Any, options: Dict[str, Any], module: str) -> type:
    """The same class body each time, decorated by `decorator(**options)`."""
    namespace = {"__module__": module, "__qualname__": "Thing", "__annotations__": {
        "name": "str", "size": "int", "tags": "list", "note": "Optional[str]"}}
    namespace.update(size=3, tags=dataclasses.field(default_factory=list), note=dataclasses.field(default=None, compare=False))
    cls = type("Thing", (), namespace)
    return decorator(**options)(cls)


def _texts(options: Dict[str, Any]) -> List[str]:
    texts: List[str] = []

    def record(source, globals=None, locals=None):
        texts.append(source)
        return exec(source, globals, locals)

    dataclasses.exec = record  # type: ignore[attr-defined]
    try:
        _make(dataclasses.dataclass, options, _FAKE)
    finally:
        del dataclasses.exec  # type: ignore[attr-defined]
    return texts


def _stored(text: str) -> CodeType:
    """The text's function as a generated module holds it: compiled, marshalled, read back."""
    return marshal.loads(marshal.dumps(dataclassc.compiled(text)))


OPTIONS = [{}, {"frozen": True}, {"order": True}, {"eq": False}, {"unsafe_hash": True}, {"frozen": True, "order": True},
           {"repr": False}, {"kw_only": True}, {"slots": True}, {"frozen": True, "slots": True}]


@pytest.mark.parametrize("options", OPTIONS, ids=[",".join(o) or "plain" for o in OPTIONS])
def test_a_class_made_from_compiled_code_behaves_as_dataclasses_makes_it(monkeypatch, options):
    texts = _texts(options)
    assert texts
    codes = {t: _stored(t) for t in texts}
    monkeypatch.setitem(dataclassc._codes, _FAKE, codes)
    used: List[str] = []
    real_get = dict.get

    class Counting(dict):
        def get(self, key, default=None):
            value = real_get(self, key, default)
            if value is not None:
                used.append(key)
            return value

    monkeypatch.setitem(dataclassc._codes, _FAKE, Counting(codes))
    fast = _make(dataclassc.dataclass, options, _FAKE)
    plain = _make(dataclasses.dataclass, options, _FAKE)
    assert sorted(used) == sorted(texts)
    assert "exec" not in vars(dataclasses)   # put back

    assert [repr(f) for f in dataclasses.fields(fast)] == [repr(f) for f in dataclasses.fields(plain)]
    assert inspect.signature(fast) == inspect.signature(plain)
    assert fast.__doc__ == plain.__doc__
    assert getattr(fast, "__match_args__", None) == getattr(plain, "__match_args__", None)
    assert (fast.__hash__ is None) == (plain.__hash__ is None)
    for name, value in vars(plain).items():
        if callable(value) and hasattr(value, "__code__"):
            mine = vars(fast)[name]
            assert _code_facts(mine.__code__) == _code_facts(value.__code__), name
            assert (mine.__qualname__, mine.__defaults__, mine.__kwdefaults__) == \
                   (value.__qualname__, value.__defaults__, value.__kwdefaults__)
            assert mine.__annotations__ == value.__annotations__

    kw = options.get("kw_only")
    a = fast(name="a", size=1) if kw else fast("a", 1)
    b = plain(name="a", size=1) if kw else plain("a", 1)
    other = fast(name="x") if kw else fast("x")
    assert a.tags == [] and a.tags is not other.tags
    assert a.size == 1 and fast(name="z").size == 3
    if options.get("repr", True):
        assert repr(a) == repr(b) == "Thing(name='a', size=1, tags=[], note=None)"
    if options.get("eq", True):
        assert a == (fast(name="a", size=1, note="other") if kw else fast("a", 1, [], "other"))   # compare=False
        assert a != (fast(name="a", size=2) if kw else fast("a", 2))
    else:
        assert a != (fast(name="a", size=1) if kw else fast("a", 1))
    if options.get("frozen"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            a.size = 5
        with pytest.raises(dataclasses.FrozenInstanceError):
            del a.size
    else:
        a.size = 5
        assert a.size == 5
    hashable = options.get("frozen") or options.get("unsafe_hash") or options.get("eq") is False
    if hashable and options.get("eq", True):
        c = fast(name="a", size=a.size) if kw else fast("a", a.size)
        if options.get("unsafe_hash"):
            c.tags = a.tags = ()
        else:
            object.__setattr__(c, "tags", ())
            object.__setattr__(a, "tags", ())
        assert hash(a) == hash(c)
    if options.get("order"):
        assert (fast("a", 1) < fast("b", 0)) and (fast("a", 2) > fast("a", 1))
    with pytest.raises(TypeError):
        fast()
    traced = []
    try:
        fast(name=1, size=1, bogus=2) if kw else fast("a", 1, [], None, 5)
    except TypeError as exc:
        traced.append(str(exc))
    assert traced and "__init__()" in traced[0]


def test_a_text_that_is_not_held_is_compiled_as_always(monkeypatch):
    """An edited class (or another Python) writes a text the module does not hold: exec compiles it."""
    texts = _texts({"frozen": True})
    stale = {t.replace("self", "me"): _stored(t.replace("self", "me")) for t in texts}
    monkeypatch.setitem(dataclassc._codes, _FAKE, stale)
    made = []
    monkeypatch.setattr(dataclassc, "builtins", type("B", (), {"exec": staticmethod(
        lambda source, *a, **k: (made.append(source), exec(source, *a, **k))[1])})())
    fast = _make(dataclassc.dataclass, {"frozen": True}, _FAKE)
    assert made == texts
    assert fast("a", 1) == fast("a", 1) and repr(fast("a", 1)).endswith("(name='a', size=1, tags=[], note=None)")
    assert fast.__init__.__code__.co_filename == "<string>"


def test_the_real_classes_work():
    from vnetgen.api import Action, Step
    from vnetgen.diagnostics import Diagnostic, Report
    from vnetgen.model import Network, Profile

    step = Step(order=(1,), title="t", why="w", actions=(Action(commands=("true",)),))
    assert step == Step((1,), "t", "w", (Action(("true",)),)) and hash(step) == hash(Step((1,), "t", "w", (Action(("true",)),)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.title = "x"
    assert repr(Action()) == ("Action(commands=(), check='', done='', record='', kind='change', installs=(), "
                              "removes=())")
    assert Step((1,), "t", "w").actions == ()
    assert sorted([Diagnostic("f", 2, 1, "error", "b"), Diagnostic("f", 1, 9, "error", "a")])[0].line == 1
    assert Report("f").items is not Report("f").items
    assert Network(name="n") == Network(name="n", marks={"name": (9, 9)})   # marks do not compare
    assert Network(name="n", mark=(1, 1)) != Network(name="n", mark=(2, 1))
    assert Profile().rollout is not Profile().rollout
    assert Network.__init__.__code__.co_filename == "<string>"


def test_code_for_another_bytecode_is_not_used(monkeypatch):
    """vnetgen/_dataclasses.py made by a Python of other bytecode (its MAGIC) gives no code: every
    text is compiled as dataclasses compiles it."""
    module = _generated_module()
    monkeypatch.setattr(module, "MAGIC", b"\x00\x00\r\n")
    monkeypatch.setattr(dataclassc, "_generated", None)
    monkeypatch.delitem(dataclassc._codes, "vnetgen.model", raising=False)
    assert dataclassc._load("vnetgen.model") == {}
    monkeypatch.setattr(module, "MAGIC", importlib.util.MAGIC_NUMBER)
    monkeypatch.setattr(dataclassc, "_generated", None)
    monkeypatch.delitem(dataclassc._codes, "vnetgen.model")
    assert len(dataclassc._load("vnetgen.model")) == len(module.MODULES["vnetgen.model"][0]) > 0
