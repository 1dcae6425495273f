"""`SparsityConfig`, the frozen recipe `sparsify_` applies, and its one-line text form.

Public: `SparsityConfig`, `parse_recipe(text)`, `pattern_for(cfg, name)`.

Text form: comma-separated entries; the first without `=` is the default pattern.

    "2:4"                               2:4 everywhere it fits; first conv and classifier dense
    "2:4,fc1=1:4,conv3=dense"           per-layer globs, first match wins ("dense" = leave alone)
    "unstructured:0.5,skip=conv*|fc2"   skip globs, `|`-separated
    "2:4,first_conv=sparse,classifier=sparse"   prune those too
    "sparsegpt-2:4"                     masks chosen by SparseGPT from calibration data
                                        (`picojoule.sparsity.calibrated`; N:M and unstructured)

Why the default skips: the first conv sees raw pixels through very few input channels (too
few for an N:M group, and accuracy-sensitive) and the classifier maps features to labels
one-to-one; ASP and most pruning recipes leave both dense.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from picojoule.config import check_keys, match_name
from picojoule.errors import ConfigError
from picojoule.sparsity.patterns import Pattern, parse_pattern

__all__ = ["SparsityConfig", "parse_recipe", "config_from_dict", "pattern_for", "DENSE"]

DENSE = "dense"
METHODS = ("magnitude", "sparsegpt")
_ROLE_VALUES = {"dense": True, "sparse": False}


@dataclass(frozen=True, kw_only=True)
class SparsityConfig:
    """Which layers get which sparsity pattern.

    pattern:          default pattern text, e.g. "2:4", "unstructured:0.5", "block:4x4:0.5".
    layers:           (glob, pattern-or-"dense") overrides on module names; first match wins.
    skip:             module-name globs left dense.
    skip_first_conv:  leave the first convolution dense (resolved by `sparsify_`).
    skip_classifier:  leave the last Linear dense (resolved by `sparsify_`).
    resolved_skips:   (module name, reason) filled in by `sparsify_` from the two role flags;
                      not set by hand.
    """

    pattern: str = "2:4"
    method: str = "magnitude"  # or "sparsegpt": masks and weight updates from calibration data
    layers: tuple[tuple[str, str], ...] = ()
    skip: tuple[str, ...] = ()
    skip_first_conv: bool = True
    skip_classifier: bool = True
    resolved_skips: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        pat = parse_pattern(self.pattern)
        if self.method not in METHODS:
            raise ConfigError(f"sparsity method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.method == "sparsegpt" and pat.kind not in ("nm", "unstructured"):
            raise ConfigError(
                f"sparsegpt-{self.pattern}: SparseGPT chooses N:M or unstructured masks; "
                "use e.g. sparsegpt-2:4 or sparsegpt-unstructured:0.5"
            )
        for glob, value in self.layers:
            if not glob:
                raise ConfigError("a per-layer override needs a module-name glob, e.g. fc*=1:4")
            if value != DENSE:
                parse_pattern(value)

    @property
    def roles_resolved(self) -> bool:
        """False while a role flag still needs the whole model (see `sparsify_`)."""
        return not (self.skip_first_conv or self.skip_classifier)

    def with_resolved_skips(self, skips: tuple[tuple[str, str], ...]) -> SparsityConfig:
        """The config with role flags turned into explicit (name, reason) skips."""
        return replace(
            self,
            skip_first_conv=False,
            skip_classifier=False,
            resolved_skips=self.resolved_skips + skips,
        )


def pattern_for(cfg: SparsityConfig, name: str) -> tuple[Pattern | None, str]:
    """(pattern, "") for a layer to prune, or (None, reason) for a layer left dense."""
    for skipped, reason in cfg.resolved_skips:
        if skipped == name:
            return None, reason
    for glob in cfg.skip:
        if match_name(name, glob):
            return None, f"skip rule {glob!r}"
    for glob, value in cfg.layers:
        if match_name(name, glob):
            if value == DENSE:
                return None, f"rule {glob}=dense"
            return parse_pattern(value), ""
    return parse_pattern(cfg.pattern), ""


_CONFIG_KEYS = ("pattern", "method", "layers", "skip", "skip_first_conv", "skip_classifier")


def _strings(value: object, key: str) -> tuple[str, ...]:
    """A glob list from one string or a list of strings."""
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(g, str) for g in items):
        raise ConfigError(f"SparsityConfig {key}: a glob or a list of globs, got {value!r}")
    return tuple(items)


def config_from_dict(data: Mapping[str, object]) -> SparsityConfig:
    """The `SparsityConfig` a dict of its fields describes: `{"pattern": "2:4", "layers":
    {"fc1": "1:4"}, "skip": ["conv*"]}` equals `SparsityConfig(pattern="2:4", layers=(("fc1",
    "1:4"),), skip=("conv*",))`. `layers` is a dict (or list of pairs) glob -> pattern or
    "dense", `skip` a glob or a list of them. Unknown keys and wrong types: `ConfigError`."""
    fields = dict(check_keys(data, _CONFIG_KEYS, "SparsityConfig dict"))
    for key in ("pattern", "method"):
        if key in fields and not isinstance(fields[key], str):
            raise ConfigError(f"SparsityConfig {key}: a string, got {fields[key]!r}")
    for key in ("skip_first_conv", "skip_classifier"):
        if key in fields and not isinstance(fields[key], bool):
            raise ConfigError(f"SparsityConfig {key}: True or False, got {fields[key]!r}")
    if "skip" in fields:
        fields["skip"] = _strings(fields["skip"], "skip")
    if "layers" in fields:
        layers = fields["layers"]
        pairs = list(layers.items()) if isinstance(layers, Mapping) else layers
        if not isinstance(pairs, list | tuple) or not all(
            isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(v, str) for v in p)
            for p in pairs
        ):
            raise ConfigError(
                f"SparsityConfig layers: a dict of glob -> pattern (or 'dense'), e.g. "
                f"{{'fc1': '1:4'}}; got {layers!r}"
            )
        fields["layers"] = tuple((g, v) for g, v in pairs)
    return SparsityConfig(**fields)  # type: ignore[arg-type]


def parse_recipe(text: str) -> SparsityConfig:
    """Parse the one-line recipe form (see module docstring); `ConfigError` on anything else."""
    entries = [e.strip() for e in text.split(",") if e.strip()]
    if not entries:
        raise ConfigError('empty sparsity recipe; try "2:4" or "unstructured:0.5"')
    pattern = ""
    layers: list[tuple[str, str]] = []
    skip: list[str] = []
    roles = {"first_conv": True, "classifier": True}
    for entry in entries:
        if "=" not in entry:
            if pattern:
                raise ConfigError(
                    f"recipe {text!r} names two default patterns ({pattern!r}, {entry!r}); "
                    "give per-layer patterns as glob=pattern"
                )
            pattern = entry
            continue
        key, _, value = (part.strip() for part in entry.partition("="))
        if key == "skip":
            skip.extend(g.strip() for g in value.split("|") if g.strip())
        elif key in roles:
            if value not in _ROLE_VALUES:
                raise ConfigError(f"{key}= takes dense or sparse, got {value!r}")
            roles[key] = _ROLE_VALUES[value]
        else:
            layers.append((key, value))
    method = "magnitude"
    if pattern.startswith("sparsegpt-"):
        method, pattern = "sparsegpt", pattern.removeprefix("sparsegpt-")
    return SparsityConfig(
        pattern=pattern or "2:4",
        method=method,
        layers=tuple(layers),
        skip=tuple(skip),
        skip_first_conv=roles["first_conv"],
        skip_classifier=roles["classifier"],
    )
