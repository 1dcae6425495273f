"""Design parameters: the catalogue a space is validated against, and design -> (Arch, Workload).

Public: `DSE_PARAMETERS`, `catalog(preset)`, `build_arch(preset, design)`,
`apply_to_workload(workload, design)`.

A design is a flat dict. Its keys are either keyword parameters of the architecture preset's
builder (`picojoule.arch.presets`, e.g. `magnet(vector_width=..., weight_buffer_kb=...)` -
"any preset parameter", read from the builder's signature) or one of the five DSE-level
parameters below, which act on the Arch fields or on the workload's layers.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from picojoule.arch.spec import Arch, SparseSupport
from picojoule.dse.area import NODES_NM
from picojoule.dse.space import ParamSpec, Scalar, did_you_mean
from picojoule.errors import ConfigError, PicojouleError
from picojoule.workload.layer import Workload

__all__ = ["DSE_PARAMETERS", "catalog", "build_arch", "apply_to_workload", "sparsity_density"]


def _check_format(value: Scalar) -> None:
    from picojoule import formats

    formats.get(str(value))


def sparsity_density(value: str) -> float:
    """Kept fraction of weights for `dense` or a `picojoule.sparsity` pattern ("2:4"...)."""
    if value == "dense":
        return 1.0
    from picojoule.sparsity.patterns import parse_pattern

    return parse_pattern(value).density


def _check_sparsity(value: Scalar) -> None:
    sparsity_density(str(value))


def _check_clock(value: Scalar) -> None:
    from picojoule.arch.limits import check_number

    try:
        check_number("clock_ghz", value)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _check_node(value: Scalar) -> None:
    if int(value) not in NODES_NM:
        raise ConfigError(f"no area data for {value} nm; nodes: {list(NODES_NM)}")


DSE_PARAMETERS: dict[str, ParamSpec] = {
    "weight_format": ParamSpec(
        name="weight_format",
        type="str",
        doc="format of every layer's weights (picojoule format name); the MACs are built for it",
        check=_check_format,
    ),
    "activation_format": ParamSpec(
        name="activation_format",
        type="str",
        doc="format of every layer's inputs and outputs",
        check=_check_format,
    ),
    "sparsity": ParamSpec(
        name="sparsity",
        type="str",
        doc="'dense' or a weight sparsity pattern ('2:4', 'unstructured:0.3'); sparse designs "
        "gate zero MACs and store weights compressed with a 1-bit-per-element mask",
        check=_check_sparsity,
    ),
    "node_nm": ParamSpec(
        name="node_nm", type="int", doc="technology node (energy and area)", check=_check_node
    ),
    "clock_ghz": ParamSpec(
        name="clock_ghz", type="float", doc="clock frequency", minimum=1e-3, check=_check_clock
    ),
}


def _builder(preset: str) -> Callable[..., Arch]:
    from picojoule.arch.presets import PRESETS

    if preset not in PRESETS:
        raise ConfigError(
            f"unknown architecture preset {preset!r}{did_you_mean(preset, PRESETS)}; "
            f"presets: {', '.join(PRESETS)}"
        )
    return PRESETS[preset]


def _spec_for(name: str, param: inspect.Parameter, hints: Mapping[str, Any]) -> ParamSpec | None:
    """A ParamSpec from a builder keyword: Literal -> text with allowed values, else by the
    default's type. Keywords without a usable default are not design parameters."""
    hint = hints.get(name)
    args = typing.get_args(hint)
    literal = next((a for a in [hint, *args] if typing.get_origin(a) is typing.Literal), None)
    if literal is not None:
        allowed = tuple(typing.get_args(literal))

        def check(value: Scalar, allowed: tuple[Any, ...] = allowed) -> None:
            if value not in allowed:
                raise ConfigError(f"use one of {', '.join(map(str, allowed))}")

        return ParamSpec(name=name, type="str", doc=f"one of {allowed}", check=check)
    default = param.default
    if isinstance(default, bool) or default is inspect.Parameter.empty:
        return None
    if isinstance(default, int):
        return ParamSpec(
            name=name, type="int", doc=f"preset keyword (default {default})", minimum=1
        )
    if isinstance(default, float):
        return ParamSpec(
            name=name, type="float", doc=f"preset keyword (default {default})", minimum=0
        )
    if isinstance(default, str) or (default is None and str in args):
        check = _check_format if name.endswith("format") else None
        return ParamSpec(
            name=name, type="str", doc=f"preset keyword (default {default})", check=check
        )
    return None


def _builds(preset: str, name: str) -> Callable[[Scalar], None]:
    def check(value: Scalar) -> None:
        build_arch(preset, {name: value})

    return check


def catalog(preset: str) -> dict[str, ParamSpec]:
    """Every parameter a space on `preset` may sweep."""
    fn = _builder(preset)
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError):
        hints = {}
    out: dict[str, ParamSpec] = {}
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD):
            spec = _spec_for(name, param, hints)
            if spec is not None and spec.type != "str":
                # Building the preset at a value checks it against the Arch's sane ranges.
                spec = replace(spec, check_ends=_builds(preset, name))
            if spec is not None:
                out[name] = spec
    # A preset keyword of the same name (nvdla's node_nm, clock_ghz) is passed to the builder
    # too; the DSE entry wins here because it carries the stricter check.
    return {**out, **DSE_PARAMETERS}


def build_arch(preset: str, design: Mapping[str, Scalar]) -> Arch:
    """The Arch of one design: the preset built with its keywords, then node, clock and
    sparse support set. When the design picks operand formats but not `mac_format`, the MACs
    are built for the layer formats (`mac_format=None`)."""
    fn = _builder(preset)
    keywords = set(inspect.signature(fn).parameters)
    kwargs = {k: v for k, v in design.items() if k in keywords}
    if (
        "mac_format" in keywords
        and "mac_format" not in design
        and ("weight_format" in design or "activation_format" in design)
    ):
        kwargs["mac_format"] = None
    try:
        arch = fn(**kwargs)
        update: dict[str, Any] = {}
        if "node_nm" in design:
            update["node_nm"] = float(design["node_nm"])
        if "clock_ghz" in design:
            update["clock_ghz"] = float(design["clock_ghz"])
        if sparsity_density(str(design.get("sparsity", "dense"))) < 1.0:
            update["sparse"] = SparseSupport(gate_zero_macs=True, compressed=True)
        return Arch.model_validate({**arch.model_dump(), **update}) if update else arch
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        msg = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"preset {preset!r} rejects this design: {where}: {msg}") from None
    except PicojouleError:
        raise
    except TypeError as e:
        raise ConfigError(f"preset {preset!r}: {e}") from None


def apply_to_workload(workload: Workload, design: Mapping[str, Scalar]) -> Workload:
    """The workload as this design runs it: operand formats, weight density and pattern set."""
    w = workload
    if "weight_format" in design or "activation_format" in design:
        first = w.layers[0]
        w = w.with_formats(
            weight_format=str(design.get("weight_format", first.weight_format)),
            input_format=str(design.get("activation_format", first.input_format)),
        )
    pattern = str(design.get("sparsity", "dense"))
    density = sparsity_density(pattern)
    if density < 1.0:  # the pattern too: an N:M engine runs only the masks it was built for
        layers = tuple(
            replace(layer, weight_density=density, weight_pattern=pattern) for layer in w.layers
        )
        w = Workload(name=w.name, layers=layers)
    return w
