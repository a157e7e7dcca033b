"""The one registry helper, and the one-way dependency between weights and networks."""

import ast
from pathlib import Path

import pytest

from skad_transfer._registry import Registry, UnknownNameError

PACKAGE = Path(__file__).resolve().parents[1] / "skad_transfer"


def test_register_list_get_and_the_error_naming_the_choices():
    registry = Registry("thing", {"b": 2})
    assert registry.register("a", 1) == 1
    assert registry.names() == ["a", "b"] and list(registry) == ["b", "a"]  # sorted; registration order
    assert "a" in registry and "c" not in registry and registry["a"] == 1 and registry.get("c") is None
    with pytest.raises(ValueError, match=r"^thing 'a' is already registered; pass overwrite=True$"):
        registry.register("a", 3)
    registry.register("a", 3, overwrite=True)
    assert registry["a"] == 3
    with pytest.raises(UnknownNameError, match=r"^thing: unknown name 'c'; registered names are \['a', 'b'\]$"):
        registry["c"]
    assert issubclass(UnknownNameError, KeyError) and issubclass(UnknownNameError, ValueError)
    registry.unregister("a")
    registry.unregister("a")  # no error
    assert registry.names() == ["b"]


def test_messages_can_be_worded_per_registry():
    registry = Registry("loss", {"bce": object}, unknown="loss must be one of {choices}, got {name!r}",
                        duplicate="{kind} {name!r} exists")
    with pytest.raises(ValueError, match=r"^loss must be one of \['bce'\], got 'x'$"):
        registry["x"]
    with pytest.raises(ValueError, match="^loss 'bce' exists$"):
        registry.register("bce", object)


def test_lazy_entries_are_built_once_on_first_lookup():
    calls = []
    registry = Registry("weights")
    registry.register_lazy("default", lambda: calls.append(1) or "built")
    assert "default" in registry and calls == []
    assert registry["default"] == registry["default"] == "built" and calls == [1]


def test_a_store_is_looked_up_at_every_use():
    tables = [{"a": 1}]
    registry = Registry("thing", store=lambda: tables[-1])
    tables.append(dict(tables[0]))  # what monkeypatch.setattr(module, "_REGISTRY", copy) does
    registry.register("b", 2)
    assert registry.names() == ["a", "b"] and tables[0] == {"a": 1}


def test_weights_import_no_network():
    """nn imports weights, never the reverse (torchvision's models/_api.py imports no model)."""
    tree = ast.parse((PACKAGE / "weights.py").read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in imported if name == "nn" or name.startswith("nn.") or ".nn" in name], imported
