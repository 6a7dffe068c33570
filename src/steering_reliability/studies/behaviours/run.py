"""One behaviour's experiment (experiments/test_behaviours.py): its prompts and parts, its
direction per layer, steered generation at its decoding settings, and scored rows.

Holds no pytest code. Works for any registered behaviour that a config lists under
`behaviours:`; refusal has its own experiments (experiment.py and the tests beside it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering_reliability.atomic import file_sha256
from steering_reliability.behaviours import Behaviour, Pair, Scorer, get, load_pairs
from steering_reliability.config import BehaviourConfig, Config, behaviour_layers, config_hash
from steering_reliability.directions import contrastive_pairs, diff_in_means
from steering_reliability.errors import InputError
from steering_reliability.generation import generate
from steering_reliability.generation.cache import cached_generate
from steering_reliability.interventions import Steering
from steering_reliability.prompts import Prompt, load_prompts
from steering_reliability.prompts.benchmarks import is_benchmark
from steering_reliability.prompts.leakage import normalise
from steering_reliability.prompts.parts import assign_parts, sample_parts
from steering_reliability.studies.shared import alpha_id, request_for, score_rows

EXPERIMENT_PREFIX = "behaviour:"  # rows of behaviour cases: experiment "behaviour:<name>"


@dataclass(frozen=True)
class BehaviourCase:
    """One cell of a behaviour's grid: activation addition at a layer and alpha (alpha 0: the
    shared baseline, layer -1)."""

    behaviour: str
    layer: int
    alpha: float

    @property
    def id(self) -> str:
        if self.alpha == 0:
            return f"{self.behaviour}-baseline"
        return f"{self.behaviour}-layer{self.layer}-add-a{alpha_id(self.alpha)}"


def behaviour_cases(cfg: Config) -> list[BehaviourCase]:
    """Every listed behaviour's grid in config order: layers, then alphas."""
    return [
        BehaviourCase(name, layer, float(alpha))
        for name, b in cfg.behaviours.items()
        for layer in behaviour_layers(cfg, name)
        for alpha in b.alphas
    ]


@dataclass(frozen=True)
class BehaviourRun:
    """A behaviour as configured in one run: files, prompts, parts, pairs, scorer, steering."""

    cfg: Config
    name: str

    @property
    def behaviour(self) -> Behaviour:
        return get(self.name)

    @property
    def settings(self) -> BehaviourConfig:
        return self.cfg.behaviours[self.name]

    def file(self, key: str) -> Path:
        """A split's (or "pairs") file: the config's override, else the behaviour's default."""
        own = self.settings.files.get(key)
        return self.cfg.resolve_path(own) if own else self.behaviour.files[key]

    @property
    def splits(self) -> tuple[str, ...]:
        return self.behaviour.split_names

    def all_prompts(self, split: str) -> tuple[Prompt, ...]:
        return load_prompts(self.file(split), split=split)

    def parts(self, split: str) -> dict[str, str]:
        """prompt id -> select/report over the split's whole file (seeded, stratified)."""
        return _parts(self, split)

    def prompts(self) -> dict[str, tuple[Prompt, ...]]:
        """The evaluated prompts per split: n_prompts, half from each part; file order."""
        return _prompts(self)

    def pairs(self) -> tuple[Pair, ...]:
        """The contrastive pairs the direction is learned from (the first n_pairs)."""
        b = self.behaviour
        if b.recipe == "contrastive_pairs":
            pairs = load_pairs(self.file("pairs"))
        else:  # contrastive_prefix: every learn prompt of the select part + the two prefixes
            assert b.prefixes is not None
            learn = b.split("learn")
            parts = self.parts(learn)
            pairs = tuple(
                Pair(p.id, p.prompt, b.prefixes[0], b.prefixes[1], "main")
                for p in self.all_prompts(learn)
                if parts[p.id] == "select"
            )
        n = self.settings.n_pairs
        return pairs if n is None else pairs[:n]

    @functools.cached_property
    def scorer(self) -> Scorer:
        return self.behaviour.scorer(self.settings.scorer)

    def score(self, texts: Sequence[str]) -> list[Any]:
        return self.scorer(texts, self.settings.threshold)

    @property
    def layers(self) -> tuple[int, ...]:
        return behaviour_layers(self.cfg, self.name)

    @property
    def sanity_alpha(self) -> float:
        a = self.settings.sanity_alpha  # > 0; else the grid has a positive alpha (config)
        return float(a) if a is not None else float(max(self.settings.alphas))

    def sanity_layer(self) -> int:
        return self.layers[len(self.layers) // 2]

    def directions(
        self, model: Any, layers: Sequence[int], pairs: Sequence[Pair] | None = None
    ) -> dict[int, Any]:
        """The behaviour's direction at each layer: CAA over the pairs, or a difference in
        means (learn vs control prompts of the select part, last prompt token)."""
        b, s = self.behaviour, self.settings
        system = self.cfg.model.system_prompt
        if b.recipe == "diff_in_means":
            learn, control = b.split("learn"), b.split("control")
            a = [p.prompt for p in self.all_prompts(learn) if self.parts(learn)[p.id] == "select"]
            c = [p.prompt for p in self.all_prompts(control)
                 if self.parts(control)[p.id] == "select"]  # fmt: skip
            n = s.n_pairs
            found = diff_in_means(model, a[:n] if n else a, c[:n] if n else c,
                                  layers=list(layers), system_prompt=system)  # fmt: skip
            return {layer: found[(layer, -1)] for layer in layers}
        chosen = self.pairs() if pairs is None else pairs
        triples = [(p.prompt, p.positive, p.negative) for p in chosen]
        return contrastive_pairs(model, triples, layers=list(layers),
                                 last_tokens=s.pair_tokens, system_prompt=system)  # fmt: skip

    def steering(self, layer: int, vector: Any, alpha: float) -> Any:
        """Activation addition of the raw direction (CAA's multiplier) at every position."""
        return Steering(kind="add", layer=layer, vector=vector, alpha=alpha,
                        hook_point="resid_pre", apply_to="all")  # fmt: skip

    def request(self, model: Any, prompts: Sequence[Prompt]) -> Any:
        """The unsteered generation request of these prompts (its key names the shared cache)."""
        s = self.settings
        return request_for(model, self.cfg, prompts, max_new_tokens=s.max_new_tokens,
                           temperature=s.temperature, top_p=s.top_p,
                           extra={"behaviour": self.name})  # fmt: skip

    def baseline(self, model: Any, split: str, prompts: Sequence[Prompt]) -> list[Any]:
        """The unsteered generations of a split, once across workers (content-addressed)."""
        return cached_generate(model, self.request(model, prompts),
                               batch_size=self.cfg.generation.batch_size)  # fmt: skip

    def generate(
        self,
        model: Any,
        prompts: Sequence[Prompt],
        steerings: Sequence[Any] = (),
        *,
        max_new_tokens: int | None = None,
    ) -> list[Any]:
        """Generations at the behaviour's decoding settings (per-prompt seeds: the same prompt
        draws the same random numbers under every steering)."""
        s = self.settings
        return generate(
            model, [p.prompt for p in prompts], prompt_ids=[p.id for p in prompts],
            max_new_tokens=max_new_tokens or s.max_new_tokens, temperature=s.temperature,
            top_p=s.top_p, seed=self.cfg.seed, steerings=steerings,
            system_prompt=self.cfg.model.system_prompt, batch_size=self.cfg.generation.batch_size,
        )  # fmt: skip

    def rows(
        self,
        model: Any,
        run_id: str,
        case: BehaviourCase,
        split: str,
        prompts: Sequence[Prompt],
        gens: Sequence[Any],
        teacher_forced: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        """One scored row per prompt: the behaviour's scorer in the behaviour columns, and the
        refusal, helpfulness and confound columns as for every row."""
        baseline = case.alpha == 0
        return score_rows(
            cfg=self.cfg,
            model=model,
            run_id=run_id,
            experiment=EXPERIMENT_PREFIX + self.name,
            case=case.id,
            split=split,
            prompts=prompts,
            gens=gens,
            layer=-1 if baseline else case.layer,
            intervention="none" if baseline else "add",
            alpha=case.alpha,
            teacher_forced=teacher_forced,
            parts=self.parts(split),
            behaviour=self.name,
            scores=self.score([g.text for g in gens]),
            site=self.site(),
        )

    def site(self) -> dict[str, Any]:
        s = self.settings
        position = f"pair_last{s.pair_tokens}" if self.behaviour.recipe != "diff_in_means" else "-1"
        return {"hook_point": "resid_pre", "position": position, "alpha_scale": "raw",
                "direction_method": self.behaviour.recipe}  # fmt: skip


_MEMO: dict[tuple[str, ...], Any] = {}  # (config hash, source, behaviour, what) -> value


def _memo(run: BehaviourRun, *what: str) -> tuple[str, ...]:
    return (config_hash(run.cfg), run.cfg.source, run.name, *what)


def _parts(run: BehaviourRun, split: str) -> dict[str, str]:
    key = _memo(run, "parts", split)
    if key not in _MEMO:
        seed = f"{run.cfg.seed}:parts:{run.name}:{split}"
        _MEMO[key] = assign_parts(run.all_prompts(split), seed)
    found: dict[str, str] = _MEMO[key]
    return found


def _prompts(run: BehaviourRun) -> dict[str, tuple[Prompt, ...]]:
    key = _memo(run, "prompts")
    if key not in _MEMO:
        _MEMO[key] = _chosen_prompts(run)
    found: dict[str, tuple[Prompt, ...]] = _MEMO[key]
    return found


def _chosen_prompts(run: BehaviourRun) -> dict[str, tuple[Prompt, ...]]:
    n, seed = run.settings.n_prompts, f"{run.cfg.seed}:{run.name}"
    return {split: sample_parts(run.all_prompts(split), run.parts(split), n, f"{seed}:{split}")
            for split in run.splits}  # fmt: skip


def check_files(cfg: Config) -> None:
    """Before work starts: read and validate every listed behaviour's prompt and pairs files,
    build its scorer (a missing package or weights is said now), and refuse pairs whose request
    is one of the behaviour's evaluated prompts (the direction would be learned on them)."""
    for name in cfg.behaviours:
        run = BehaviourRun(cfg, name)
        evaluated = {normalise(p.prompt): (split, p.id)
                     for split, ps in run.prompts().items() for p in ps}  # fmt: skip
        if run.behaviour.recipe == "contrastive_pairs":
            for pair in run.pairs():
                hit = evaluated.get(normalise(pair.prompt))
                if hit is not None:
                    raise InputError(
                        "a contrastive pair's request is an evaluated prompt",
                        file=str(run.file("pairs")), field="prompt", value=pair.id,
                        expected=f"requests that no set evaluates ({hit[1]} of {hit[0]} has it)",
                        hint="pairs must come from other requests than the ones scored",
                    )  # fmt: skip
        run.scorer  # noqa: B018  (built now: its own error says what is missing)


def input_files(cfg: Config, root: Path) -> dict[str, str]:
    """{path: sha256} of every file the listed behaviours read (their sets, pairs, and a
    calibration set), so editing one is a change of the run's inputs like a prompt file's."""
    found: dict[str, str] = {}
    for name in cfg.behaviours:
        run = BehaviourRun(cfg, name)
        b = run.behaviour
        paths = [run.file(k) for k in b.files]
        paths += [Path(p) for p in b.extra_inputs]
        for path in paths:
            if path.is_file():
                found.setdefault(portable(path, root), file_sha256(path))
    return found


def portable(path: Path, root: Path) -> str:
    """A path relative to the repository root where it lies below it (run.json moves with the
    checkout), else absolute; a `benchmark:NAME` source as it is."""
    if is_benchmark(path):
        return str(path)
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
