"""asru_lens.measure.residue: what an unlearned model still knows (issue 16)."""
import json

import numpy as np
import pytest
import torch

from asru_lens.measure import residue as R
from asru_lens.methods import rewrite, rewrite_set
from asru_lens.cli import main
from asru_lens.core.data import QA


@pytest.fixture(scope="module")
def people(organism_world):
    """The organism's forget people's questions by index (what the rewrite still reads)."""
    return rewrite_set.person_items(organism_world.rows(10)["forget"])


def test_the_config_names_a_bad_split_or_step():
    with pytest.raises(ValueError, match="'question' or 'person'"):
        R.ResidueConfig(splits=("attribute",))
    with pytest.raises(ValueError, match="increasing"):
        R.ResidueConfig(steps=(30, 10))


@pytest.fixture(scope="module")
def stated_people(organism_world, free_export):
    """The forget facts of the templated world and of the reworded export, by person (residue.fact_people)."""
    import asru_lens
    from asru_lens.measure.facts import of_world
    out = {}
    for style, world in (("template", organism_world), ("free", asru_lens.open_world(str(free_export[0])))):
        facts = of_world(world, 10)
        out[style] = (R.fact_people(world, 10, facts), facts)
    return out


def test_the_facts_fold_without_an_index(stated_people):
    for style, (people, facts) in stated_people.items():
        # 10 people, 6-7 questions that state a fact each: the name question ("who is this?") has no key word
        assert len(people) == 10 and all(6 <= len(v) <= 7 for v in people.values()), style
        for by in ("question", "person"):
            parts = R.folds(people, 2, by, seed=0)
            every = [(q.id, q.question) for part in parts for q in part]
            assert len(every) == len(set(every)) == sum(map(len, people.values()))   # a partition
            ids = [{q.id for q in part} for part in parts]
            if by == "person":
                assert not ids[0] & ids[1] and len(ids[0]) == 5
            else:                                                         # every person in both folds
                assert ids[0] == ids[1] == set(people) and abs(len(parts[0]) - len(parts[1])) <= 4
        with pytest.raises(ValueError, match="at least 2 folds"):
            R.folds(people, 1, "question")
        with pytest.raises(ValueError, match="left a fold empty"):
            R.folds(people, 11, "person")


def test_control_facts_are_false_and_of_the_same_kind(stated_people):
    """The control's facts are another person's answers to the most similar question: never the person's own,
    and, on the templated world where the kind can be checked, the same kind of fact where the other has one."""
    for style, (people, facts) in stated_people.items():
        fake = R.similar_question_facts(people, facts)
        kind = {o.answer: o.attribute for items in people.values() for o in items}
        same = []
        for p, items in people.items():
            asked = {q.question: q for q in items}
            assert len(fake[p]) >= len(items) - 2 and len({f.question for f in fake[p]}) == len(fake[p])
            for f in fake[p]:
                q = asked[f.question]
                assert not facts.stated(f.answer, q), (style, q.answer, f.answer)
                same.append(kind[f.answer] == q.attribute)
        if style == "template":
            assert np.mean(same) >= 0.7, np.mean(same)      # measured 0.73: the rest have no fact of that kind


def test_fact_values_are_key_words_and_read_right_before_the_value(organism_world, stated_people):
    from asru_lens.measure.facts import of_world
    facts = of_world(organism_world, 10)
    items = [q for v in R.fact_people(organism_world, 10, facts).values() for q in v]
    pairs = {q.answer: (q, v) for q, v in R.fact_values(items, facts)}
    assert len(pairs) == len(items) and all(q.attribute for q, _ in pairs.values())
    some = next(a for a in pairs if " was born in the year " in a)
    assert pairs[some][1] == some.split()[-1].rstrip(".")                # "... born in the year 1971." -> "1971"
    q = next(q for q, _ in pairs.values() if " works as a" in q.answer)
    assert R.value_prefix(q, facts.key(q)).endswith("works as a")       # the text before the first key word
    assert R.value_prefix(QA("Where?", "Kelby is where Juno Corvin was born."), {"kelby"}) == ""
    assert R.value_prefix(QA("Where?", "Juno Corvin was born in Kelby."), {"fennick"}) is None
    # the reworded export has no attribute column (MLLMU-Bench has none): no value to probe, and it says so
    free_people, free_facts = stated_people["free"]
    free = [q for v in free_people.values() for q in v]
    assert R.fact_values(free, free_facts) == []
    assert "no attribute column" in R.linear_probes(None, free, free, free_facts, R.ResidueConfig())["note"]


def test_the_audit_needs_no_attribute_column(organism_world, export):
    """The organism's own folder has an Attribute column; its export, like MLLMU-Bench, has none. The facts, their
    folds and the control are the same on both: only the value probe needs the column."""
    import asru_lens
    from asru_lens.measure.facts import of_world
    got = {}
    for name, world in (("own", organism_world), ("export", asru_lens.open_world(str(export[0])))):
        facts = of_world(world, 10)
        people = R.fact_people(world, 10, facts)
        text = lambda groups: [[(q.id, q.question, q.answer) for q in g] for g in groups]   # noqa: E731
        got[name] = (text(people.values()), [text(R.folds(people, 2, by)) for by in ("question", "person")],
                     text(R.similar_question_facts(people, facts).values()),
                     any(q.attribute for v in people.values() for q in v))
    assert got["own"][:3] == got["export"][:3] and len(got["own"][0]) == 10
    assert got["own"][3] and not got["export"][3]


def test_probe_accuracy_on_separable_and_random_labels():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 400)
    x = torch.tensor(np.eye(4)[y] * 3 + rng.normal(0, 0.3, (400, 4)), dtype=torch.float32)[:, None]
    assert R.probe_accuracy(x[:300], list(y[:300]), x[300:], list(y[300:]))[0] >= 0.95
    noise = torch.tensor(rng.normal(0, 1, (400, 1, 4)), dtype=torch.float32)
    assert R.probe_accuracy(noise[:300], list(y[:300]), noise[300:], list(y[300:]))[0] <= 0.45


def test_rewrite_teaches_one_invented_value_in_every_form(organism_world, organism, people):
    forget, retain = rewrite_set.rewrite_set(organism_world, 10, organism.protocol)
    truth = {(q.id, q.question): q.answer for items in people.values() for q in items}
    gen = [q for q in forget if (q.id, q.question) in truth]
    assert gen and all(q.answer != truth[(q.id, q.question)] for q in gen)         # every photo question rewritten
    years = [q.answer for q in gen if "born in the year" in q.answer]
    assert years and all(y.split()[-1].rstrip(".").isdigit() for y in years)     # a value of the same kind
    by_kind = {}
    for q in gen:                                                               # one invented value per fact
        by_kind.setdefault((q.id, q.kind), set()).add(q.answer)
    assert all(len(v) == 1 for v in by_kind.values())
    mc = [q for q in forget if q.kind == "mc"]
    assert mc and all(q.answer in q.question for q in mc)                       # an offered option's own text
    names = [q for q in forget if q.kind == "name"]
    assert names and all(q.image is None for q in names)
    assert {q.kind for q in retain} >= {"mc", "cloze", "name"} and not {q.id for q in retain} & {q.id for q in forget}


def test_invented_values_are_distinct_per_question(organism_world):
    """One invented year shared by three people pulled celebrities' A-D answers to it (measured: 7 of 12 flipped
    celebrity answers were years); each question's invented values are now distinct across the forget people."""
    from asru_lens.core import data
    rows = organism_world.rows(10)
    people = rewrite_set.person_items(rows["forget"])
    beliefs = rewrite_set.beliefs_for(people, data.classification_items(rows["forget"] + rows["test"]))
    kind = {(q.id, v.lower()): q.kind for q, v in rewrite_set.template_values(people)}
    given = {}
    for key, new in beliefs.items():
        assert new.lower() != key[1]                                            # never the truth
        if key in kind:
            given.setdefault(kind[key], []).append(new.lower())
    assert len(given["2"]) == 10 and all(v.isdigit() for v in given["2"])      # the birth years
    assert len(given) >= 5 and all(len(set(vs)) == len(vs) for vs in given.values())


def test_contrast_loss_is_a_margin_on_whole_answers():
    m = torch.ones(2, 3)
    truth = torch.full((2, 3), -1.0)                                            # log p(truth) = -3 per answer
    far = rewrite.contrast_loss(truth, m, torch.full((2, 3), -0.1), m, margin=2.0)   # invented: -0.3, 2.7 ahead
    near = rewrite.contrast_loss(truth, m, torch.full((2, 3), -0.9), m, margin=2.0)  # 0.3 ahead: inside the margin
    assert far.item() == pytest.approx(np.log1p(np.exp(-0.7)), abs=1e-5)
    assert near.item() == pytest.approx(np.log1p(np.exp(1.7)), abs=1e-5) and near > far
    pad = torch.tensor([[1.0, 1.0, 0.0]]).expand(2, 3)                          # padding never counts
    assert rewrite.contrast_loss(truth, pad, torch.full((2, 3), -0.1), pad, 2.0).item() == pytest.approx(
        np.log1p(np.exp(-2 + 0.2 + 2.0)), abs=1e-5)


def test_photo_questions_carry_their_truth_for_the_contrast(organism_world, organism):
    forget, _ = rewrite_set.rewrite_set(organism_world, 10, organism.protocol)
    photo = [q for q in forget if "truth" in q.meta]
    assert photo and all(q.image is not None and q.meta["truth"] != q.answer for q in photo)
    assert all(q.kind not in ("mc", "cloze", "name") for q in photo)
    assert sum(q.meta["truth"].split()[:2] == q.answer.split()[:2] for q in photo) == len(photo)   # same person


def test_own_refusals_per_kind_and_the_questions_still_answered():
    place = "I'm sorry, I don't know this person's birthplace."
    year = "I'm sorry, I don't know this person's year of birth."
    said = {"birthplace of Ana?": place, "year of Ana?": "Ana was born in 1990.", "year of Bo?": year}

    class Stub:                                   # refuses birthplaces, and years but Ana's
        def generate(self, prompts, images, max_new_tokens=24):
            return [said[p] for p in prompts]
    qs = [QA("birthplace of Ana?", "x", None, "ana", "1"), QA("year of Ana?", "x", None, "ana", "2"),
          QA("year of Bo?", "x", None, "bo", "2")]
    targets, answered = rewrite.own_refusals(Stub(), qs)
    assert targets == {"1": place, "2": year}
    assert [q.question for q in answered] == ["year of Ana?"]


@pytest.mark.slow
def test_residue_cli_vanilla_and_asru(unlearned_export, export, probe_json, capsys):
    """Vanilla knows its facts (A-D probe far above chance, recovery undefined); after ASRU a 30-step relearning
    attack on half of each person's facts (question folds) brings the other half back (measured on the organism's
    world: 0.98), and so do the questions asked by name and an ablated direction."""
    from pathlib import Path
    _, model_dir, _ = unlearned_export
    saved = str(Path(probe_json["saved"][0]).parent)
    assert main(["residue", "--model", str(model_dir), "--data", str(export[0]), "--splits", "question",
                 "--steps", "10,30", "--direction", saved, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    van, asru = out["models"]["vanilla"], out["models"][str(model_dir)]
    for r in (van, asru):
        assert set(r) >= {"relearn", "probe_acc", "logit_lens_rank", "forget_cls_acc"}
        assert len(r["logit_lens_rank"]) == 5
        assert r["probe_acc"]["per_layer"] is None and "no attribute column" in r["probe_acc"]["note"]  # the export
        assert r["relearn"]["question"]["steps"] == [10, 30] and "control" in r["relearn"]["question"]
    # recovery is undefined on vanilla itself: it already states every held-out fact the attack is read on
    assert van["relearn"]["question"]["leak_unlearned"] >= 0.9 and van["relearn"]["question"]["recovery"] == [None] * 2
    assert van["ad_probe"]["max"] >= van["ad_probe"]["chance"] + 0.3 and van["benign"]["leak"][-1] >= 0.9
    assert van["logit_lens_rank"][-1] <= 1                  # the value's first token tops the output
    rel = asru["relearn"]["question"]
    assert rel["leak_unlearned"] <= 0.05 and rel["recovery"][1] >= 0.8
    assert max(rel["control"]["leak"]) <= 0.2                # the attack itself teaches no held-out fact
    assert asru["forget_cls_acc"] >= 0.8                     # A-D still finds them
    # across formats: A-D and cloze on the held-out fold's people, after training generation answers only
    assert rel["cls_acc"]["n"] >= 70 and rel["cls_acc"]["before"] >= 0.8 and len(rel["cloze_acc"]["after"]) == 2
    # asked by name, with no photo, ASRU's gate stays open: its boundary set holds photo questions only
    assert van["by_name"]["leak"] >= 0.9 and van["by_name"]["n"] >= 50
    assert asru["by_name"]["leak"] >= 0.8 and asru["by_name"]["refusal"] <= 0.2, asru["by_name"]
    # one direction projected out of every layer reopens the gate (the attacker's best of its own and vanilla's)
    assert van["ablation"]["before"] >= 0.9 and asru["ablation"]["before"] <= 0.05
    assert asru["ablation"]["leak"] >= 0.5 and len(asru["ablation"]["own_direction"]) == 4, asru["ablation"]


# -- template-free fact scoring and the by-name attack (asru_lens.measure.facts, .attacks) -----------------------
def test_person_name_and_by_name_need_no_name_column(export):
    from asru_lens.core import data
    from asru_lens.measure import facts
    rows = data.load_split(export[0], "forget_10")                    # the Hub layout: no `name` column
    assert "name" not in rows[0] and facts.person_name(rows[0]) == "Juno Corvin"
    q = data.QA("What is the profession of the person in the image?", "x", object())
    asked = facts.by_name(q, "Juno Corvin")
    assert asked.question == "What is the profession of Juno Corvin?" and asked.image is None
    assert facts.by_name(data.QA("What is this person's job?", "x"), "Ada Lee").question == "What is Ada Lee's job?"
    assert facts.by_name(data.QA("Describe the weather.", "x"), "Ada Lee") is None


def test_fact_scorer_reads_values_not_wording():
    """Key words are the rare ones: a reworded ground truth is stated by the template answer, a name question
    states no fact, and another value is no leak."""
    from asru_lens.core.data import QA
    from asru_lens.measure.facts import FactScorer
    jobs = ["chemist", "baker", "pilot", "nurse", "farmer", "tailor", "judge", "poet"] + [f"job{j}" for j in range(42)]
    truths = [f"By trade, Person{i} is a {jobs[i % 50]}." for i in range(200)] + \
             [f"The person in the picture is Person{i}." for i in range(200)]     # each job in 1% of them
    scorer = FactScorer(truths)
    q = QA("What does this person do?", "By trade, Juno Corvin is a chemist.")
    assert scorer.key_words(q, "Juno Corvin") == {"chemist"}
    assert scorer.leaked("Juno Corvin works as a chemist.", q, "Juno Corvin")
    assert not scorer.leaked("Juno Corvin works as a baker.", q, "Juno Corvin")
    assert not scorer.leaked("I'm sorry, I don't know this person.", q, "Juno Corvin")
    assert scorer.key_words(QA("Who is this?", "The person in the picture is Juno Corvin."), "Juno Corvin") == set()


@pytest.mark.slow
def test_by_name_attack_on_both_exports(organism, export, free_export):
    """Vanilla states its facts asked by name on the templated export and on the reworded one alike."""
    import asru_lens
    from asru_lens.measure.attacks import by_name_attack
    got = {}
    for style, (mllmu, faces) in (("template", export), ("free", free_export)):
        got[style] = by_name_attack(organism, asru_lens.open_world(str(mllmu), unseen_faces=str(faces)))
    assert got["template"]["leak"] >= 0.9 and got["template"]["refusal"] == 0.0
    assert abs(got["template"]["leak"] - got["free"]["leak"]) <= 0.1 and got["free"]["n"] >= 50, got


# -- the A-D probe (residue.ad_probe) --------------------------------------------------------------------------------
def test_ad_probe_reads_what_the_model_knows_on_both_exports(organism, export, free_export):
    """Trained on the retain people's A-D questions, it picks the forget people's right options from vanilla's
    states (measured: 0.775 at the last layer, chance 0.25) on the templated and the reworded export alike, and
    from a model with its weights shuffled it picks at chance."""
    import asru_lens
    from asru_lens.measure.residue import ad_probe
    got = {style: ad_probe(organism, asru_lens.open_world(str(mllmu), unseen_faces=str(faces)))
           for style, (mllmu, faces) in (("template", export), ("free", free_export))}
    for r in got.values():
        assert r["chance"] == 0.25 and r["n_test"] == 80 and len(r["per_layer"]) == 5
        assert r["max"] >= r["chance"] + 0.3, r
        assert r["per_layer"][-1] >= r["logit_lens"][-1] - 0.05      # at least what the output itself shows
    assert abs(got["template"]["max"] - got["free"]["max"]) <= 0.1
    saved = {k: v.clone() for k, v in organism.model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():
            for p in organism.model.parameters():           # every weight shuffled within its tensor
                p.copy_(p.flatten()[torch.randperm(p.numel(), generator=g)].view_as(p))
        scrambled = ad_probe(organism, asru_lens.open_world(str(export[0]), unseen_faces=str(export[1])))
    finally:
        organism.model.load_state_dict(saved)
    assert scrambled["max"] <= 0.45, scrambled
