"""data_prep.registry.Registry, the project's one registration pattern: a decorator fills it, a
duplicate name is an error, built-in modules are imported lazily on the first lookup, an unknown
name is a KeyError listing the known ones, and it reads like the dict it replaced."""

from __future__ import annotations

import sys
import textwrap

import pytest

from data_prep.registry import Registry


def test_decorator_registers_and_returns_the_entry_unchanged():
    reg: Registry[object] = Registry("widget")

    @reg.register("b")
    def build_b():
        return "b"

    @reg.register("a")
    class A:
        pass

    assert build_b() == "b" and reg.get("b") is build_b and reg.get("a") is A
    assert reg.add("c", 3) == 3 and reg["c"] == 3
    assert reg.names() == ["a", "b", "c"]  # sorted, whatever the order of registration
    assert reg.kind == "widget"


def test_a_second_entry_under_a_name_is_an_error_naming_kind_name_and_first_entry():
    reg: Registry[object] = Registry("gadget")
    first = object()
    reg.add("x", first)
    with pytest.raises(ValueError, match=r"gadget 'x' is already registered by <object object"):
        reg.add("x", object())
    with pytest.raises(ValueError, match="gadget 'x' is already registered"):
        reg.register("x")(lambda: None)
    assert reg["x"] is first
    # The same entry again (a module imported twice) is not a clash.
    assert reg.add("x", first) is first and reg.names() == ["x"]


def test_unknown_name_is_a_key_error_listing_the_known_names_or_a_default():
    reg: Registry[int] = Registry("method")
    with pytest.raises(KeyError, match=r"unknown method 'x'; known: none"):
        reg.get("x")
    reg.add("zeta", 1)
    reg.add("alpha", 2)
    with pytest.raises(KeyError, match=r"unknown method 'x'; known: alpha, zeta") as err:
        reg.get("x")
    assert err.value.args[0] == "unknown method 'x'; known: alpha, zeta"  # one clear line
    with pytest.raises(KeyError, match="unknown method 'y'"):
        reg["y"]
    sentinel = object()
    assert reg.get("x", sentinel) is sentinel and reg.get("x", None) is None
    assert reg.get("alpha", None) == 2


def test_mapping_access(monkeypatch):
    reg: Registry[int] = Registry("thing")
    for name, value in (("b", 2), ("c", 3), ("a", 1)):
        reg.add(name, value)
    assert "a" in reg and "z" not in reg and 1 not in reg
    assert list(reg) == ["a", "b", "c"] and len(reg) == 3
    assert reg.items() == [("a", 1), ("b", 2), ("c", 3)] and reg.values() == [1, 2, 3]
    assert dict(reg.items()) == {name: reg[name] for name in reg}
    # monkeypatch.setitem puts an entry in (or replaces one) and takes it out again.
    with monkeypatch.context() as m:
        m.setitem(reg, "d", 4)
        m.setitem(reg, "a", 10)  # item assignment replaces without the duplicate check
        assert reg["d"] == 4 and reg["a"] == 10 and len(reg) == 4
    assert "d" not in reg and reg["a"] == 1 and reg.names() == ["a", "b", "c"]
    del reg["b"]
    assert reg.names() == ["a", "c"]


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A throw-away package ``<name>`` on sys.path whose ``REG`` has one built-in module and one
    built-in package of plugin modules; returns (name, write) with write(relpath, source)."""
    name = f"regtest_{tmp_path.name.replace('-', '_')}"
    root = tmp_path / name
    (root / "plugins").mkdir(parents=True)

    def write(rel: str, source: str) -> None:
        (root / rel).write_text(textwrap.dedent(source))

    write("__init__.py", f"""
        from data_prep.registry import Registry
        REG = Registry("widget", ["{name}.builtin"], ["{name}.plugins"])
        """)
    write("builtin.py", f"""
        from {name} import REG
        REG.add("core", "core entry")
        """)
    write("plugins/__init__.py", "")
    write("plugins/first.py", f"""
        from {name} import REG
        @REG.register("first")
        def first():
            return 1
        """)
    write("plugins/second.py", f"""
        from {name} import REG
        REG.add("second", 2)
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, write
    for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[module]


def test_builtin_modules_and_packages_are_imported_on_the_first_lookup(package):
    name, _ = package
    reg = __import__(name).REG
    # Creating the registry imports nothing: the modules that fill it import it.
    assert f"{name}.builtin" not in sys.modules and f"{name}.plugins.first" not in sys.modules
    assert reg.names() == ["core", "first", "second"]
    assert {f"{name}.builtin", f"{name}.plugins.first", f"{name}.plugins.second"} <= set(sys.modules)
    assert reg["first"]() == 1 and reg["core"] == "core entry"


@pytest.mark.parametrize("lookup", [
    lambda reg: "core" in reg,
    lambda reg: reg.get("core"),
    lambda reg: reg["second"],
    lambda reg: list(reg),
    lambda reg: len(reg),
    lambda reg: reg.items(),
    lambda reg: reg.values(),
    lambda reg: reg.get("nothing", None),
])
def test_every_kind_of_lookup_loads_the_builtins(package, lookup):
    name, _ = package
    reg = __import__(name).REG
    lookup(reg)
    assert f"{name}.builtin" in sys.modules and f"{name}.plugins.second" in sys.modules


def test_an_unknown_name_lists_the_builtins_even_when_asked_first(package):
    name, _ = package
    with pytest.raises(KeyError, match="unknown widget 'x'; known: core, first, second"):
        __import__(name).REG.get("x")


def test_adding_a_plugin_is_adding_a_file(package):
    name, write = package
    write("plugins/third.py", f"""
        from {name} import REG
        REG.add("third", 3)
        """)
    assert __import__(name).REG.names() == ["core", "first", "second", "third"]


def test_a_builtin_module_may_use_the_registry_while_it_loads(package):
    """A module registering its entry and then reading the registry must not recurse."""
    name, write = package
    write("plugins/reader.py", f"""
        from {name} import REG
        REG.add("reader", 0)
        SEEN = REG.names()
        """)
    reg = __import__(name).REG
    assert "reader" in reg.names()
    assert "reader" in sys.modules[f"{name}.plugins.reader"].SEEN


def test_a_broken_builtin_module_fails_the_first_lookup_loudly(package):
    name, write = package
    write("plugins/broken.py", "raise ImportError('half-edited module')\n")
    with pytest.raises(ImportError, match="half-edited module"):
        __import__(name).REG.names()
    # ... and every later one: never an answer from a partial registry.
    with pytest.raises(ImportError, match="half-edited module"):
        __import__(name).REG.get("a")


def test_the_project_registries_list_their_builtins():
    from data_prep.datasets import DATASETS
    from data_prep.video_dataset import VIDEO_DATASETS
    from data_prep.weights import REGISTRY
    from methods.registry import METHODS
    from metrics.backends.base import IDENTITY_BACKENDS, KEYPOINT_BACKENDS

    assert {"fomm", "mraa", "tpsmm", "cpab"} <= set(METHODS)  # every file of methods/models
    assert {"synthetic", "mgif", "taichi", "ted", "vox"} <= set(DATASETS)
    assert VIDEO_DATASETS.names() == ["taichi", "ted", "vox"]
    assert {"facenet", "torchreid"} <= set(IDENTITY_BACKENDS)
    assert {"face_alignment", "openpifpaf"} <= set(KEYPOINT_BACKENDS)
    assert "vgg19" in REGISTRY
    for reg, kind in ((METHODS, "method"), (DATASETS, "dataset"), (REGISTRY, "weights")):
        with pytest.raises(KeyError, match=f"unknown {kind} 'nope'; known: "):
            reg.get("nope")
