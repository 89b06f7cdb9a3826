"""The layout's promises, checked: modules stay small, imports form no cycle (function-level
imports included), the engine is generic, and a paper component has one switch."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mlfo"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the mlfo modules it imports (``from pkg import submodule`` counts as the submodule)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    edges.add(target if target in modules else base)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_module_exceeds_the_size_limit():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_import_cycle_among_mlfo_modules():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


ENGINE = [PACKAGE / "train" / "engine.py", PACKAGE / "train" / "interface.py"]


@pytest.mark.parametrize("word", ["prototype", "queue", "graph", "sinkhorn", "reversed", "objective",
                                  "mlfo_model", "MLFO", "timestamp", "motion", "backbone", "encoder",
                                  "cfg.data.", "cfg.train.", "cfg.optim.", "cfg.checkpoint."])
def test_the_engine_names_no_method_concept(word):
    for path in ENGINE:
        text = path.read_text().replace("MLFOError", "")
        if word.isupper():  # the method's name, not the package's (``mlfo.method``)
            assert word not in text, f"{path.name} mentions {word!r}"
        else:
            assert word.lower() not in text.lower(), f"{path.name} mentions {word!r}"


def test_the_engine_takes_no_mlfo_config():
    """It imports nothing of MLFO's config, method, losses or models, and its Trainer is
    configured by its own TrainerConfig."""
    import inspect

    from mlfo.train.engine import Trainer
    from mlfo.train.interface import TrainerConfig

    graph = import_graph()
    for module in ("mlfo.train.engine", "mlfo.train.interface"):
        forbidden = {m for m in graph[module] if m.split(".")[1] in ("config", "method", "losses", "models")}
        assert not forbidden, f"{module} imports {forbidden}"
    assert inspect.signature(Trainer).parameters["cfg"].annotation in ("TrainerConfig", TrainerConfig)
    assert not {"data", "train", "optim", "backbone", "objective"} & set(TrainerConfig.__dataclass_fields__)


def test_reversed_negatives_is_one_switch():
    from mlfo.config import Config
    from mlfo.models import ModelConfig

    assert "reversed_negatives" not in ModelConfig.__dataclass_fields__
    assert "reversed_negatives" in Config().objective.__dataclass_fields__
