"""The config's one way in (:func:`load_sweep`: schema check, the schema's defaults, then
:func:`convergent.sweep.plan_sweep`) and errors a person can read: YAML syntax (file, line, column) and schema errors (key path,
offending value, allowed keys or values) in a short paragraph, plus numbers written like ``1e6``.

Snakemake's own ``validate`` prints the whole jsonschema error (the schema and the config:
hundreds of lines) and its config loader reports a YAML syntax error without a line. The
Snakefile calls :func:`load_sweep` instead (no ``validate``), so a bad config stops with a
paragraph like::

    invalid config (1 problem):
      - sweep.training: unknown key 'lrr'. Allowed keys here: batch_size, epochs, ...

YAML 1.1 (PyYAML, which Snakemake uses) reads ``1e6`` or ``5e-4`` -- no dot, or no sign in the
exponent -- as *strings*; :func:`coerce_numbers` turns such strings into numbers wherever the
schema expects a number, so ``lr: 5e-4`` means what its author meant.

Command line (what ``make`` runs before Snakemake, because ``snakemake --configfile bad.yaml``
parses the file before the Snakefile can say anything)::

    python -m convergent.config config.yaml [more.yaml ...]
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config value that is well-formed but not allowed; the message names the key."""


SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
#: a float as people write it: 1e6, 5e-4, 1.5E+3, .5, 3.
_FLOAT = re.compile(r"^[-+]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][-+]?\d+)?$")
#: at most this many problems are listed; the rest are counted
MAX_PROBLEMS = 5


# --------------------------------------------------------------------------- YAML

def load_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in YAML/JSON file ``path``; a syntax error raises :class:`ConfigError` with
    the file, line and column (1-based) and the parser's reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(yaml_error_text(path, err)) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys at the top level, "
                          f"got a {type(data).__name__}")
    return data


def yaml_error_text(path: str | Path, err: yaml.YAMLError) -> str:
    """``<file>, line L, column C: <problem> (<context>)`` from a PyYAML error."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(path)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    tab = "\t" in str(problem) or "\\t" in str(problem)
    hint = " (YAML indents with spaces only: replace the tab)" if tab else ""
    return f"{where}: YAML syntax error: {problem}" + (f" ({context})" if context else "") + hint


# --------------------------------------------------------------------------- schema walking

def load_schema(path: str | Path = SCHEMA) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def _resolve(node: Any, root: Mapping[str, Any]) -> Any:
    """Follow local ``$ref`` pointers ("#/$defs/...") until a plain schema node."""
    seen = 0
    while isinstance(node, Mapping) and "$ref" in node and seen < 32:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            return node
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        seen += 1
    return node


def _alternatives(node: Any, root: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    node = _resolve(node, root)
    if not isinstance(node, Mapping):
        return []
    alts = [node]
    for key in ("oneOf", "anyOf", "allOf"):
        for sub in node.get(key, []):
            alts += _alternatives(sub, root)
    return alts


def _types(node: Mapping[str, Any]) -> set[str]:
    t = node.get("type")
    return set(t) if isinstance(t, list) else ({t} if t else set())


def coerce_numbers(config: Any, schema: Mapping[str, Any], node: Any = None) -> Any:
    """``config`` with every string that reads as a number (``1e6``, ``5e-4``) turned into one
    where ``schema`` expects a number (an integer where it expects an integer and the value is
    whole). Returns the new value; containers are changed in place."""
    node = schema if node is None else node
    alts = _alternatives(node, schema)
    if isinstance(config, str) and _FLOAT.match(config.strip()):
        kinds = set().union(*(_types(a) for a in alts)) if alts else set()
        value = float(config.replace("_", ""))
        if "integer" in kinds and value.is_integer():
            return int(value)
        if "number" in kinds:
            return value
        return config
    if isinstance(config, dict):
        for key in list(config):
            for a in alts:
                props = a.get("properties", {})
                sub = props.get(key, a.get("additionalProperties") if key not in props else None)
                if isinstance(sub, Mapping):
                    config[key] = coerce_numbers(config[key], schema, sub)
                    break
    elif isinstance(config, list):
        for a in alts:
            if isinstance(a.get("items"), Mapping):
                config[:] = [coerce_numbers(v, schema, a["items"]) for v in config]
                break
    return config


# --------------------------------------------------------------------------- messages

def key_path(parts: Iterable[Any]) -> str:
    """``sweep.training.lr``, ``sweep.widths[0]``, ``overrides[1].arch``; "the top level" for ()."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "the top level"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else yaml.safe_dump(
        value, default_flow_style=True, width=10_000).strip()
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _describe(node: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    """What a schema node accepts, in words: "one of: a, b", "a number > 0", "null"."""
    node = _resolve(node, root)
    if "pattern" in node and node.get("description"):   # e.g. an import path: its form in words
        return str(node["description"])
    if "enum" in node:
        return "one of: " + ", ".join(map(str, node["enum"]))
    if "const" in node:
        return repr(node["const"])
    alts = node.get("oneOf") or node.get("anyOf")
    if alts:
        return " or ".join(_describe(a, root) for a in alts)
    kinds = sorted(_types(node)) or ["value"]
    text = " or ".join("null" if k == "null" else f"{'an' if k[0] in 'aeiou' else 'a'} {k}" for k in kinds)
    bounds = [f"≥ {node['minimum']}" if "minimum" in node else "", f"> {node['exclusiveMinimum']}"
              if "exclusiveMinimum" in node else "", f"≤ {node['maximum']}" if "maximum" in node else ""]
    bounds = [b for b in bounds if b]
    if kinds == ["array"] and isinstance(node.get("items"), Mapping):
        text += f" of {_describe(node['items'], root)}"
    return text + (" " + " and ".join(bounds) if bounds else "")


def explain(error: Any, root: Mapping[str, Any]) -> str:
    """One line for one jsonschema ``ValidationError``: key path, offending value, what is allowed."""
    path = key_path(error.absolute_path)
    kind, inst, sch = error.validator, error.instance, error.schema
    if kind == "additionalProperties":
        allowed = sorted(sch.get("properties", {}))
        extra = sorted(set(inst) - set(allowed)) if isinstance(inst, Mapping) else []
        names = ", ".join(repr(k) for k in extra)
        return (f"{path}: unknown key{'s' if len(extra) > 1 else ''} {names}. "
                f"Allowed keys here: {', '.join(allowed) or '(none)'}")
    if kind == "required":
        return f"{path}: missing required key: {error.message.split(' is a required')[0]}"
    if kind in ("enum", "const"):
        return f"{path} = {_short(inst)} is not allowed. Allowed: {_describe(sch, root).removeprefix('one of: ')}"
    if kind in ("oneOf", "anyOf"):
        return f"{path} = {_short(inst)} is not allowed. Allowed: {_describe(sch, root).removeprefix('one of: ')}"
    if kind == "type":
        hint = ""
        if isinstance(inst, str) and _FLOAT.match(inst.strip()):
            hint = " (it reads as a number but was quoted)"
        return f"{path} = {_short(inst)} has the wrong type; expected {_describe(sch, root)}{hint}"
    return f"{path} = {_short(inst)}: {error.message}; expected {_describe(sch, root)}"


def schema_problems(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Every schema violation of ``config`` as one readable line each (empty: valid)."""
    from jsonschema.validators import validator_for

    cls = validator_for(schema)
    errors = sorted(cls(schema).iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    return [explain(e, schema) for e in errors]


def fill_defaults(config: Any, schema: Mapping[str, Any], node: Any = None) -> None:
    """Put the schema's ``default`` of every absent key into ``config`` (in place, nested mappings
    too), as Snakemake's ``validate(set_default=True)`` would: the top-level keys (``device``,
    ``threads``, ...) have their one default there. The keys of a section with a settings class
    (:data:`convergent.settings.SWEEP_SECTIONS`; ``sweep.training`` and ``sweep.extract`` state
    none) are left out: the class's fields are their one definition, and the schema's ``default``
    there is for the reader (``tests/test_settings.py`` checks they agree)."""
    from convergent.settings import SWEEP_SECTIONS

    top = node is None
    node = _resolve(schema if node is None else node, schema)
    if not isinstance(config, dict) or not isinstance(node, Mapping):
        return
    for key, sub in (node.get("properties") or {}).items():
        sub = _resolve(sub, schema)
        if key not in config and isinstance(sub, Mapping) and "default" in sub:
            config[key] = copy.deepcopy(sub["default"])
        if key in config and not (top and key in SWEEP_SECTIONS):
            fill_defaults(config[key], schema, sub)


def check_config(config: dict[str, Any], schema: str | Path | Mapping[str, Any] = SCHEMA,
                 source: str = "") -> dict[str, Any]:
    """Coerce number-like strings in ``config`` (in place) and raise :class:`ConfigError` with a
    short paragraph if it violates the schema; then fill in the schema's defaults
    (:func:`fill_defaults`). Returns ``config``."""
    schema = load_schema(schema) if not isinstance(schema, Mapping) else schema
    coerce_numbers(config, schema)
    problems = schema_problems(config, schema)
    if problems:
        shown = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown)
        head = f"invalid config{f' ({source})' if source else ''}: {len(problems)} problem{'s' * (len(problems) > 1)}"
        lines = [head] + [f"  - {p}" for p in shown] + ([f"  ... and {more} more"] if more else [])
        lines.append("Every key is documented in schemas/config.schema.yaml.")
        raise ConfigError("\n".join(lines))
    fill_defaults(config, schema)
    return config


def load_sweep(config: dict[str, Any], schema: str | Path | Mapping[str, Any] = SCHEMA, source: str = "") -> Any:
    """The config's one validation path: :func:`check_config` (schema, number coercion, defaults;
    ``config`` is completed in place) then :func:`convergent.sweep.plan_sweep` (what needs the
    architectures, and every section's settings). Returns the :class:`~convergent.sweep.Sweep`;
    raises :class:`ConfigError` naming the key."""
    from convergent.sweep import plan_sweep

    check_config(config, schema, source)
    return plan_sweep(config)


def check_files(paths: Sequence[str | Path], schema: str | Path = SCHEMA) -> dict[str, Any]:
    """Load and merge config files in order (later keys win, nested mappings merged) and check the result."""
    merged: dict[str, Any] = {}
    for path in paths:
        _merge(merged, load_config_file(path))
    return check_config(merged, schema, source=", ".join(map(str, paths)))


def _merge(base: dict[str, Any], new: Mapping[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv) or ["config.yaml"]
    try:
        merged: dict[str, Any] = {}
        for path in args:
            _merge(merged, load_config_file(path))
        load_sweep(merged, source=", ".join(args))
    except ConfigError as err:
        print(f"{err}", file=sys.stderr)
        return 1
    print(f"config OK: {', '.join(args)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
