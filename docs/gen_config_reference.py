"""The configuration reference page, generated from the config classes.

Every field of `TrainConfig`, `FewShotConfig` and `SearchConfig` with its type, default, the
values its validation allows and its meaning from the class docstring's ``Fields:`` section.
The allowed values are read from the ``_require`` calls in the class's ``__post_init__``, so
the page says what the code checks.

MkDocs runs this file as a hook (``hooks:`` in mkdocs.yml): ``on_files`` adds the page
``reference/configuration.md`` to the site at build time, so it is never committed and never
stale. ``python docs/gen_config_reference.py`` prints the page.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import re
import textwrap
from types import ModuleType
from typing import Any, get_type_hints

PAGE = "reference/configuration.md"

# (module, class, what the class configures)
CLASSES = (
    ("metarl.config", "TrainConfig",
     "A meta-RL run: `metarl train` with a preset that has an `env_id` field."),
    ("metarl.fewshot.config", "FewShotConfig",
     "A supervised few-shot run: `metarl train` with a preset that has a `problem` field."),
    ("metarl.autometa.config", "SearchConfig",
     "An Auto-Meta architecture search: `metarl search`."),
)

_ENTRY = re.compile(r"^(?P<names>[a-z_][a-z_0-9]*(?:, [a-z_][a-z_0-9]*)*): ?(?P<text>.*)$")


def field_descriptions(cls: type) -> dict[str, str]:
    """Field name -> its text in the docstring's ``Fields:`` section (one line, whitespace
    collapsed); an entry naming several fields ("a, b: ...") describes each of them."""
    doc = inspect.getdoc(cls) or ""
    lines = doc.splitlines()
    try:
        start = lines.index("Fields:") + 1
    except ValueError:
        return {}
    section = []
    for line in lines[start:]:
        if line.strip() and not line.startswith(" "):
            break
        section.append(line)
    body = textwrap.dedent("\n".join(section))
    out: dict[str, str] = {}
    names: list[str] = []
    for line in body.splitlines():
        match = _ENTRY.match(line)
        if match:
            names = match["names"].split(", ")
            for name in names:
                out[name] = match["text"]
        elif names and line.strip():
            for name in names:
                out[name] += " " + line.strip()
    return {name: " ".join(text.split()) for name, text in out.items()}


def field_requirements(module: ModuleType, cls: type) -> dict[str, list[str]]:
    """Field name -> the requirements its validation states, in the order checked.

    Reads the ``_require(self, NAME, OK, REQUIREMENT)`` and ``self._require(NAME, OK,
    REQUIREMENT)`` calls of ``__post_init__``; NAME and REQUIREMENT are evaluated in the
    module's namespace, with the variables of enclosing ``for`` loops bound in turn.
    """
    tree = ast.parse(inspect.getsource(module))
    method = next(
        node for klass in tree.body
        if isinstance(klass, ast.ClassDef) and klass.name == cls.__name__
        for node in klass.body
        if isinstance(node, ast.FunctionDef) and node.name == "__post_init__"
    )
    out: dict[str, list[str]] = {}
    _collect(method.body, {}, vars(module), out)
    return out


def _evaluate(node: ast.expr, namespace: dict[str, Any], bindings: dict[str, Any]) -> Any:
    return eval(compile(ast.Expression(node), "<config>", "eval"), namespace, bindings)


def _bind(target: ast.expr, value: Any, bindings: dict[str, Any]) -> None:
    if isinstance(target, ast.Name):
        bindings[target.id] = value
    elif isinstance(target, ast.Tuple):
        for element, item in zip(target.elts, value):
            _bind(element, item, bindings)


def _collect(statements: list[ast.stmt], bindings: dict[str, Any], namespace: dict[str, Any],
             out: dict[str, list[str]]) -> None:
    for statement in statements:
        if isinstance(statement, ast.For):
            try:
                values = _evaluate(statement.iter, namespace, bindings)
            except Exception:  # a loop over something only known at run time
                continue
            for value in values:
                inner = dict(bindings)
                _bind(statement.target, value, inner)
                _collect(statement.body, inner, namespace, out)
            continue
        for node in ast.walk(statement):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id == "_require" and len(node.args) == 4:
                name_node, requirement_node = node.args[1], node.args[3]
            elif (isinstance(func, ast.Attribute) and func.attr == "_require"
                  and len(node.args) == 3):
                name_node, requirement_node = node.args[0], node.args[2]
            else:
                continue
            try:
                name = _evaluate(name_node, namespace, bindings)
                requirement = _evaluate(requirement_node, namespace, bindings)
            except Exception:
                continue
            if requirement not in out.setdefault(name, []):
                out[name].append(requirement)


def _type_name(annotation: object) -> str:
    if annotation == tuple[int, ...]:
        return "list of int"
    if annotation == tuple[str, ...]:
        return "list of str"
    return getattr(annotation, "__name__", str(annotation))


def _default(value: object) -> str:
    if isinstance(value, tuple):
        value = list(value)
    return json.dumps(value)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: outside code spans, pipes, asterisks and
    angle brackets are escaped (inside them Python-Markdown keeps pipes as they are)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # the even parts lie outside code spans
        parts[i] = (parts[i].replace("\\", "\\\\").replace("|", "\\|")
                    .replace("*", "\\*").replace("<", "&lt;"))
    return "`".join(parts)


def render_class(module_name: str, class_name: str, summary: str) -> str:
    """The section of one config class: a heading, a line on what it configures, the table."""
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    descriptions = field_descriptions(cls)
    requirements = field_requirements(module, cls)
    if class_name == "TrainConfig":  # the registries are the only lists of these names
        requirements.update(registry_requirements())
    hints = get_type_hints(cls)
    lines = [
        f"## {class_name}",
        "",
        f"{summary} Class `{module_name}.{class_name}`.",
        "",
        "| field | type | default | allowed | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for field in dataclasses.fields(cls):
        allowed = "; ".join(requirements.get(field.name, [])) or "any"
        meaning = descriptions.get(field.name, "(no description in the docstring)")
        lines.append(
            f"| `{field.name}` | {_type_name(hints[field.name])} | `{_default(field.default)}` "
            f"| {_cell(allowed)} | {_cell(meaning)} |"
        )
    return "\n".join(lines) + "\n"


def registry_requirements() -> dict[str, list[str]]:
    """The RL config's learner and outer step: the names registered in ``metarl.rl``."""
    from metarl.rl.learners import LEARNERS
    from metarl.rl.outer_steps import OUTER_STEPS

    return {name: ["one of " + ", ".join(repr(key) for key in registry)]
            for name, registry in (("learner", LEARNERS), ("outer", OUTER_STEPS))}


def render() -> str:
    """The whole page."""
    parts = [
        "# Configuration reference",
        "",
        "Generated from the config classes when the site is built "
        "(`docs/gen_config_reference.py`). A preset in `experiments/` is a YAML file of these "
        "fields; a missing field takes its default. On the command line every field can be "
        "overridden with its dashed name, its value read as YAML: `--meta-batch-size 10`, "
        '`--hidden-sizes "[32, 32]"`. A value of the wrong type or outside the allowed range '
        "is refused with one line naming the field; so are settings that contradict each "
        "other (see [Learners and estimators](../learners.md#valid-combinations)).",
        "",
    ]
    for module_name, class_name, summary in CLASSES:
        parts.append(render_class(module_name, class_name, summary))
    return "\n".join(parts)


def on_files(files: Any, config: Any) -> Any:
    """MkDocs hook: add the generated page to the site."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    print(render(), end="")
