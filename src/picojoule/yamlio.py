"""Untrusted YAML as data: `load_yaml(text, source)` is `yaml.safe_load` that also refuses
duplicate keys (every standard loader silently keeps the last one, so a DSE space with two
`parameters:` blocks used to run with one of them dropped) and turns every parse error into
one `ConfigError` line naming the file, the line and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from picojoule.errors import ConfigError

__all__ = ["load_yaml", "load_yaml_file"]


def _strict_loader() -> type:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader whose mappings refuse a key given twice."""

    def construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:  # before `<<` merges: a merged key may be overridden
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise ConfigError(
                    f"line {key_node.start_mark.line + 1}: a mapping key must be a plain value, "
                    f"not {type(key).__name__}"
                ) from None
            if key in seen:
                raise ConfigError(
                    f"line {key_node.start_mark.line + 1}: key {key!r} is given twice (first on "
                    f"line {seen[key]}); keep one"
                )
            seen[key] = key_node.start_mark.line + 1
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


_LOADER: type | None = None


def load_yaml(text: str, source: str = "YAML") -> Any:
    """Parse `text` as YAML data (no Python objects, no duplicate keys). `source` names the
    input in messages (a path, or "--recipes")."""
    import yaml

    global _LOADER
    if _LOADER is None:
        _LOADER = _strict_loader()
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}:{where}: not valid YAML ({problem}); fix the syntax") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a config; flatten it") from None


def load_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file; a missing, unreadable or non-UTF-8 file is one clear line."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory; give a YAML file")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file; check the path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text; give a YAML file") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot be read ({e.strerror}); check its permissions") from None
    return load_yaml(text, str(p))
