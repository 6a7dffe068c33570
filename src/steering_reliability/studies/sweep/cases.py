"""The sweep's grid: layer x intervention x alpha, in the config's declared order."""

from __future__ import annotations

from dataclasses import dataclass

from steering_reliability.config import Config
from steering_reliability.studies.shared import alpha_id


def case_id(layer: int, intervention: str, alpha: float) -> str:
    """The case id contract of DESIGN.md: layer{L}-{intervention}-a{alpha}."""
    return f"layer{layer}-{intervention}-a{alpha_id(alpha)}"


@dataclass(frozen=True)
class Case:
    """One cell of the sweep grid."""

    layer: int
    intervention: str
    alpha: float

    @property
    def id(self) -> str:
        return case_id(self.layer, self.intervention, self.alpha)


def sweep_cases(cfg: Config) -> list[Case]:
    """The grid in the config's declared order (layers, then interventions, then alphas)."""
    return [
        Case(layer, kind, alpha)
        for layer in cfg.sweep.layers
        for kind in cfg.sweep.interventions
        for alpha in cfg.sweep.alphas
    ]
