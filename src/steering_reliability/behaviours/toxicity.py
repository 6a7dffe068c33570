"""Toxicity as a behaviour, steered with contrastive activation addition (CAA, Rimsky et al.).

Data: data/behaviours/toxicity/ (toxicity_data.py generates it). Scorers, both offline:

- profanity_check (default): alt-profanity-check's linear model, shipped inside its wheel. Its
  score is the model's probability; the evidence is the words that pushed it up most.
- detoxify: the unbiased-toxic-roberta family, used only when the `detoxify` package and its
  checkpoint are on this machine (nothing is downloaded); otherwise a ConfigError says what is
  missing.

`calibrate()` measures a scorer on data/behaviours/toxicity/calibration.jsonl, a labelled set
of short sentences written for this purpose, by category (where the scorer fails).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering_reliability.behaviours.base import Behaviour, Labels, Score, Scorer, register
from steering_reliability.errors import ConfigError, InputError
from steering_reliability.paths import DATA_DIR

DATA = DATA_DIR / "behaviours" / "toxicity"
CALIBRATION = DATA / "calibration.jsonl"
DETOXIFY_CHECKPOINT = "toxic_debiased-c7548aa0.ckpt"  # Detoxify("unbiased")'s file name


class ProfanityScorer:
    """alt-profanity-check: P(offensive) from a linear SVM over TF-IDF words (calibrated)."""

    name = "profanity_check"

    def __init__(self) -> None:
        import numpy as np
        from profanity_check import profanity_check as pc

        self._vectorizer = pc.vectorizer
        self._model = pc.model
        coefs = [c.estimator.coef_.ravel() for c in self._model.calibrated_classifiers_]
        self._coef = np.mean(coefs, axis=0)
        self._vocab = self._vectorizer.get_feature_names_out()

    def __call__(self, texts: Sequence[str], threshold: float) -> list[Score]:
        if not texts:
            return []
        x = self._vectorizer.transform(list(texts))
        probs = self._model.predict_proba(x)[:, 1]
        out = []
        for i, p in enumerate(probs):
            row = x.getrow(i)
            contrib = sorted(
                ((float(v * self._coef[j]), str(self._vocab[j]))
                 for j, v in zip(row.indices, row.data, strict=True)),
                reverse=True,
            )  # fmt: skip
            evidence = tuple(word for c, word in contrib[:3] if c > 0)
            out.append(Score(float(p), bool(p >= threshold), evidence))
        return out


class DetoxifyScorer:
    """detoxify's "unbiased" model (toxicity head), from a local checkpoint only."""

    name = "detoxify"

    def __init__(self) -> None:
        try:
            from detoxify import Detoxify  # type: ignore[import-not-found]
        except ImportError:
            raise ConfigError(
                "the detoxify scorer needs the `detoxify` package, which is not installed",
                field="behaviours.toxicity.scorer", value="detoxify",
                expected="profanity_check (offline, installed), or detoxify with its weights",
                hint="pip install detoxify, and put its 'unbiased' checkpoint "
                f"({DETOXIFY_CHECKPOINT}) in {_checkpoint_dir()}; nothing is downloaded",
            ) from None  # fmt: skip
        path = _checkpoint_dir() / DETOXIFY_CHECKPOINT
        if not path.is_file():
            raise ConfigError(
                "the detoxify scorer's weights are not on this machine",
                field="behaviours.toxicity.scorer", value="detoxify",
                expected=f"the checkpoint {path}",
                hint="copy Detoxify('unbiased')'s checkpoint there (its tokenizer must be in "
                "the Hugging Face cache too), or use scorer: profanity_check",
            )  # fmt: skip
        try:
            self._model = Detoxify("unbiased", checkpoint=str(path), device="cpu")
        except Exception as exc:  # its tokenizer or config missing offline, a bad file, ...
            raise ConfigError(
                f"the detoxify scorer could not load: {type(exc).__name__}: {exc}",
                field="behaviours.toxicity.scorer", value="detoxify",
                hint="use scorer: profanity_check (offline, installed)",
            ) from None  # fmt: skip

    def __call__(self, texts: Sequence[str], threshold: float) -> list[Score]:
        if not texts:
            return []
        scores = self._model.predict(list(texts))["toxicity"]
        return [Score(float(s), bool(s >= threshold), ()) for s in scores]


def _checkpoint_dir() -> Path:
    hub = os.environ.get("TORCH_HOME") or os.path.join(Path.home(), ".cache", "torch")
    return Path(hub) / "hub" / "checkpoints"


TOXICITY = register(
    Behaviour(
        name="toxicity",
        description="toxic replies (insults, profanity); induced by adding a CAA direction "
        "learned from toxic vs civil replies to the same request",
        splits={"learn": "tox_train", "shifted": "tox_test", "control": "tox_benign"},
        files={
            **{s: DATA / f"{s}.jsonl" for s in ("tox_train", "tox_test", "tox_benign")},
            "pairs": DATA / "pairs.jsonl",
        },
        recipe="contrastive_pairs",
        scorers={"profanity_check": ProfanityScorer, "detoxify": DetoxifyScorer},
        labels=Labels(noun="toxicity", flag="toxic"),
        calibrate=lambda scorer, threshold: calibrate(scorer, threshold).summary(),
        extra_inputs=(CALIBRATION,),
    )
)


# ---------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    """A scorer's accuracy on the labelled set, overall and per category, and its errors."""

    scorer: str
    threshold: float
    n: int
    accuracy: float
    by_category: dict[str, tuple[int, int]]  # category -> (correct, n)
    errors: tuple[tuple[str, str, bool, float], ...]  # (category, text, label, score)

    def summary(self) -> dict[str, object]:
        """Plain JSON for run.json and the report."""
        return {
            "scorer": self.scorer, "threshold": self.threshold, "n": self.n,
            "accuracy": self.accuracy,
            "by_category": {k: list(v) for k, v in sorted(self.by_category.items())},
            "errors": [{"category": c, "text": t, "toxic": lab, "score": round(sc, 4)}
                       for c, t, lab, sc in self.errors],
        }  # fmt: skip

    def lines(self) -> list[str]:
        out = [f"{self.scorer} at threshold {self.threshold:g}: accuracy {self.accuracy:.2f} "
               f"({round(self.accuracy * self.n)}/{self.n})"]  # fmt: skip
        for cat, (ok, n) in sorted(self.by_category.items()):
            out.append(f"  {cat}: {ok}/{n}")
        return out


def read_calibration(path: str | Path = CALIBRATION) -> list[dict[str, Any]]:
    """The labelled sentences: {"text", "toxic": bool, "category"} per line."""
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        obj = json.loads(line)
        for key, kind in (("text", str), ("toxic", bool), ("category", str)):
            if not isinstance(obj.get(key), kind):
                raise InputError("bad calibration record", file=str(path), line=n, field=key,
                                 value=obj.get(key), expected=kind.__name__)  # fmt: skip
        rows.append(obj)
    return rows


def calibrate(
    scorer: Scorer | None = None, threshold: float = 0.5, path: str | Path = CALIBRATION
) -> Calibration:
    """Score the labelled set; accuracy overall and per category, and every misclassified text."""
    scorer = scorer or ProfanityScorer()
    rows = read_calibration(path)
    scores = scorer([r["text"] for r in rows], threshold)
    by_cat: dict[str, list[int]] = {}
    errors = []
    for r, s in zip(rows, scores, strict=True):
        ok = s.flag == r["toxic"]
        c = by_cat.setdefault(r["category"], [0, 0])
        c[0] += int(ok)
        c[1] += 1
        if not ok:
            errors.append((r["category"], r["text"], bool(r["toxic"]), s.score))
    correct = sum(c[0] for c in by_cat.values())
    return Calibration(
        scorer=getattr(scorer, "name", type(scorer).__name__),
        threshold=threshold,
        n=len(rows),
        accuracy=correct / len(rows),
        by_category={k: (v[0], v[1]) for k, v in by_cat.items()},
        errors=tuple(errors),
    )
