"""The shape of the package, measured: which graphscope module imports which, cycles, torch, sizes.

    python tools/imports.py            # a report; exit 1 when a bar of the house is broken

Every import counts, at the top of a module or inside a function, `if TYPE_CHECKING:` included:
an import inside a function is a dependency all the same. The bars: no import cycle between
graphscope's modules, no module over MAX_LINES lines, and torch imported only under
graphscope/capture/.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "graphscope"
MAX_LINES = 500
TORCH_HOME = "graphscope.capture"


def module_name(root: Path, path: Path) -> str:
    """`graphscope/capture/walker.py` -> `graphscope.capture.walker` (a package by its folder)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(tree: ast.Module, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """Every module name one file imports, relative imports resolved: `from graphscope import
    safety` imports graphscope.safety, not the package's __init__."""
    found: set[str] = set()
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found


def graph(root: Path) -> tuple[dict[str, set[str]], dict[str, int], set[str]]:
    """Module -> the graphscope modules it imports; module -> lines; modules importing torch."""
    files = {module_name(root, p): p for p in sorted((root / PACKAGE).rglob("*.py"))}
    edges, lines, torch_users = {}, {}, set()
    for name, path in files.items():
        text = path.read_text(encoding="utf-8")
        lines[name] = text.count("\n")
        names = imported(ast.parse(text), name, path.name == "__init__.py", set(files))
        edges[name] = {target for target in names if target in files and target != name}
        if any(n == "torch" or n.startswith("torch.") for n in names):
            torch_users.add(name)
    return edges, lines, torch_users


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def problems(root: Path) -> list[str]:
    """One line per broken bar."""
    edges, lines, torch_users = graph(root)
    found = [f"import cycle: {' <-> '.join(group)}" for group in cycles(edges)]
    found += [f"{name}: {count} lines (more than {MAX_LINES})" for name, count in sorted(lines.items())
              if count > MAX_LINES]
    found += [f"{name} imports torch outside {TORCH_HOME}" for name in sorted(torch_users)
              if not (name == TORCH_HOME or name.startswith(TORCH_HOME + "."))]
    return found


def main() -> int:
    """Print the measurements and the broken bars."""
    root = Path(__file__).resolve().parent.parent
    edges, lines, torch_users = graph(root)
    print(f"{len(lines)} modules, {sum(lines.values())} lines; largest:")
    for name, count in sorted(lines.items(), key=lambda item: -item[1])[:5]:
        print(f"  {count:5d}  {name}")
    print(f"{sum(map(len, edges.values()))} imports between graphscope modules; torch imported by "
          f"{len(torch_users)}: {', '.join(sorted(torch_users))}")
    broken = problems(root)
    print("\n".join(broken) if broken else "no cycle, no module over the limit, torch only in the capture wing")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
