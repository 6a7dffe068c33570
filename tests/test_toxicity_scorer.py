"""The toxicity scorers: the default's calibration on the labelled set, its evidence, and a
scorer whose weights are missing said as a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steering_reliability.behaviours import get
from steering_reliability.behaviours.toxicity import (
    CALIBRATION,
    ProfanityScorer,
    calibrate,
    read_calibration,
)
from steering_reliability.errors import ConfigError, InputError


@pytest.fixture(scope="module")
def scorer() -> ProfanityScorer:
    return ProfanityScorer()


def test_the_calibration_set_has_both_labels_and_hard_cases() -> None:
    rows = read_calibration()
    assert len(rows) >= 60
    labels = [r["toxic"] for r in rows]
    assert sum(labels) >= 25 and len(labels) - sum(labels) >= 25
    cats = {r["category"] for r in rows}
    assert {"insult_plain", "benign_trigger_words", "civil_criticism"} <= cats
    assert len({r["text"] for r in rows}) == len(rows)


def test_the_default_scorer_is_accurate_on_the_calibration_set(scorer: ProfanityScorer) -> None:
    """0.88 (56/64) when written: every miss but one is an insult without a swear word (the
    linear model scores words, not intent); one benign "screw" is flagged. A scorer or version
    change that moves accuracy below 0.85 fails here."""
    cal = calibrate(scorer)
    assert cal.n >= 60
    assert cal.accuracy >= 0.85, cal.lines()
    assert cal.by_category["insult_profane"] == (12, 12)
    assert cal.by_category["neutral"][0] == cal.by_category["neutral"][1]


def test_scores_are_probabilities_with_the_words_that_raised_them(scorer: ProfanityScorer) -> None:
    toxic, clean = scorer(["You stupid idiot, shut up.", "The meeting is on Thursday."], 0.5)
    assert 0.0 <= clean.score < 0.5 <= toxic.score <= 1.0
    assert (toxic.flag, clean.flag) == (True, False)
    assert {"stupid", "idiot"} & set(toxic.evidence)
    assert clean.evidence == () or all(isinstance(w, str) for w in clean.evidence)
    assert scorer([], 0.5) == []


def test_the_threshold_decides_the_flag(scorer: ProfanityScorer) -> None:
    (s,) = scorer(["You stupid idiot."], 0.5)
    assert scorer(["You stupid idiot."], min(1.0, s.score + 1e-6))[0].flag is False
    assert scorer(["You stupid idiot."], s.score)[0].flag is True


def test_a_scorer_that_flags_everything_fails_the_calibration(tmp_path: Path) -> None:
    """The calibration can fail: a scorer that calls every text toxic is right only on the
    toxic half."""
    from steering_reliability.behaviours import Score

    def everything(texts: list[str], threshold: float) -> list[Score]:
        return [Score(1.0, True) for _ in texts]

    cal = calibrate(everything)  # type: ignore[arg-type]
    assert cal.accuracy < 0.6
    assert cal.by_category["neutral"][0] == 0


def test_detoxify_without_its_package_or_weights_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as err:
        get("toxicity").scorer("detoxify")
    text = str(err.value)
    assert err.value.field == "behaviours.toxicity.scorer"
    assert "detoxify" in text and "profanity_check" in text


def test_a_bad_calibration_record_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "cal.jsonl"
    good = json.loads(CALIBRATION.read_text().splitlines()[0])
    path.write_text(json.dumps(good) + "\n" + json.dumps(good | {"toxic": "yes"}) + "\n")
    with pytest.raises(InputError) as err:
        read_calibration(path)
    assert (err.value.line, err.value.field) == (2, "toxic")
