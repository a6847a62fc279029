"""The type stubs match the compiled module, and the package ships them."""

import ast
import inspect
from pathlib import Path

import vitrust
from vitrust import _vitrust

PKG = Path(vitrust.__file__).parent
STUB = ast.parse((PKG / "_vitrust.pyi").read_text())


def _stub_names(body):
    names = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def _public(obj):
    return {n for n in dir(obj) if not n.startswith("_")}


def test_every_public_name_is_stubbed_and_every_stub_exists():
    stubbed = set(_stub_names(STUB.body))
    assert stubbed == _public(_vitrust)


def test_function_parameters_match():
    for name, node in _stub_names(STUB.body).items():
        if not isinstance(node, ast.FunctionDef):
            continue
        sig = inspect.signature(getattr(_vitrust, name))
        stub_params = [a.arg for a in node.args.args + node.args.kwonlyargs]
        assert stub_params == list(sig.parameters), name
        # which parameters have defaults
        n_defaults = len(node.args.defaults) + sum(d is not None for d in node.args.kw_defaults)
        assert n_defaults == sum(p.default is not inspect.Parameter.empty for p in sig.parameters.values()), name


def test_class_members_match():
    for name, node in _stub_names(STUB.body).items():
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(_vitrust, name)
        members = {n for n in _stub_names(node.body) if not n.startswith("_")}
        # An exception's own members, beside what every exception has.
        inherited = _public(BaseException) if issubclass(cls, BaseException) else set()
        assert members == _public(cls) - inherited, name
        init = _stub_names(node.body).get("__init__")
        if init is not None:
            stub_params = [a.arg for a in init.args.args[1:]]
            assert stub_params == list(inspect.signature(cls).parameters), name


def test_the_package_is_marked_typed():
    assert (PKG / "py.typed").is_file()
