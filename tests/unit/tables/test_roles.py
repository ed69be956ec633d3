from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import medimg_core.tables.roles as roles_module
from medimg_core.errors import ConfigError, DataError
from medimg_core.tables.loading import load_sample
from medimg_core.tables.roles import (
    RoleProposal,
    Roles,
    choose_positive_class,
    feature_columns,
    id_like_features,
    is_numeric_codes,
    parse_class_names,
    propose_positive_class,
    propose_roles,
)

N = 60
RNG = np.random.default_rng(0)
FIRST = ["Alice", "Bob", "Carol", "David", "Eve", "Frank", "Grace", "Henry", "Iris", "John"]
LAST = ["Smith", "Jones", "White", "Brown", "Black", "Green", "Taylor", "Moore", "Clark", "Lewis"]


def clinical_table() -> pd.DataFrame:
    """A table with every kind of column propose_roles should recognise."""
    patients = [f"P{i // 2:03d}" for i in range(N)]
    return pd.DataFrame(
        {
            "image_id": [f"IMG{i:04d}" for i in range(N)],
            "PatientID": patients,
            "patient_name": [f"{FIRST[i % 10]} {LAST[(i // 10) % 10]}" for i in range(N)],
            "date_of_birth": [f"19{50 + i % 40}-0{1 + i % 9}-1{i % 10}" for i in range(N)],
            "phone": [f"+44 20 7946 {i:04d}" for i in range(N)],
            "home": [f"{i + 1} Main Street" for i in range(N)],
            "contact": [f"person{i}@example.org" for i in range(N)],
            "radiology_notes": [
                f"Patient {i} presented with a {['small', 'large'][i % 2]} lesion in segment {i}"
                for i in range(N)
            ],
            "site": ["Leeds", "Utrecht", "Boston"] * (N // 3),
            "qc_pass": ["yes", "no", "yes", "yes"] * (N // 4),
            "radius": RNG.normal(14, 3, N),
            "texture": RNG.normal(19, 4, N),
            "age": RNG.integers(30, 80, N),
            "sex": ["F", "M"] * (N // 2),
            "diagnosis": (["malignant"] + ["benign"] * 2) * (N // 3),
        }
    )


def test_public_names_are_exported() -> None:
    assert set(roles_module.__all__) == {
        "PositiveChoice",
        "RoleProposal",
        "Roles",
        "choose_positive_class",
        "class_key",
        "feature_columns",
        "id_like_features",
        "is_numeric_codes",
        "parse_class_names",
        "propose_positive_class",
        "propose_roles",
    }


def test_wdbc_proposal() -> None:
    proposal = propose_roles(load_sample("wdbc").frame)
    assert proposal == RoleProposal(
        label_candidates=("diagnosis",),
        id="case_id",
        quality=None,
        site=None,
        identifying={},
        positive_class="malignant",
    )


def test_full_clinical_table() -> None:
    proposal = propose_roles(clinical_table())
    assert proposal.label_candidates[0] == "diagnosis"
    assert proposal.positive_class == "malignant"
    assert proposal.id == "PatientID"
    assert proposal.quality == "qc_pass"
    assert proposal.site == "site"
    assert proposal.identifying == {
        "image_id": "identifier",
        "patient_name": "person names",
        "date_of_birth": "dates of birth",
        "phone": "phone numbers",
        "home": "addresses",
        "contact": "e-mail addresses",
        "radiology_notes": "free text",
    }


def test_label_candidates_exclude_continuous_ids_and_identifying_columns() -> None:
    proposal = propose_roles(clinical_table())
    assert "sex" in proposal.label_candidates
    for column in ("radius", "texture", "age", "PatientID", "site", "qc_pass", "patient_name"):
        assert column not in proposal.label_candidates


def test_id_column_is_not_identifying_but_never_a_feature() -> None:
    frame = pd.DataFrame(
        {"MRN": [f"{i:08d}" for i in range(N)], "x": RNG.normal(size=N), "label": [0, 1] * (N // 2)}
    )
    proposal = propose_roles(frame)
    assert proposal.id == "MRN"
    assert "MRN" not in proposal.identifying
    roles = proposal.to_roles()
    assert "MRN" in roles.non_feature_columns()
    assert feature_columns(frame, roles) == ["x"]


def test_patient_level_id_wins_over_a_row_id() -> None:
    frame = pd.DataFrame(
        {
            "id": range(N),
            "subject": [f"S{i // 3}" for i in range(N)],
            "y": [0, 1] * (N // 2),
        }
    )
    proposal = propose_roles(frame)
    assert proposal.id == "subject"
    assert proposal.identifying == {"id": "identifier"}
    assert proposal.label_candidates == ("y",)


def test_row_id_is_used_when_it_is_the_only_id() -> None:
    frame = pd.DataFrame(
        {"case": [f"C{i}" for i in range(N)], "outcome": ["pos", "neg"] * (N // 2)}
    )
    proposal = propose_roles(frame)
    assert proposal.id == "case"
    assert proposal.positive_class == "pos"


def test_repeating_non_patient_id_is_not_an_id() -> None:
    frame = pd.DataFrame({"image_id": ["a", "b"] * (N // 2), "label": [0, 1] * (N // 2)})
    proposal = propose_roles(frame)
    assert proposal.id is None
    assert proposal.identifying == {"image_id": "identifier"}


def test_names_that_only_contain_id_words_are_not_ids() -> None:
    frame = pd.DataFrame(
        {
            "patient_age": RNG.integers(20, 90, N),
            "width": RNG.normal(size=N),
            "cell_count": RNG.integers(0, 500, N),
            "birth_weight": RNG.normal(3.4, 0.5, N),
            "label": [0, 1] * (N // 2),
        }
    )
    proposal = propose_roles(frame)
    assert proposal.id is None
    assert proposal.identifying == {}


def test_label_hints_are_ranked_and_need_few_distinct_values() -> None:
    frame = pd.DataFrame(
        {
            "class": RNG.integers(0, 3, N),
            "target": RNG.integers(0, 100, N),
            "outcome_score": RNG.normal(size=N),
            "diagnosis": ["normal", "pneumonia"] * (N // 2),
        }
    )
    proposal = propose_roles(frame)
    assert proposal.label_candidates == ("diagnosis", "class")
    assert proposal.positive_class == "pneumonia"


def test_integer_valued_floats_can_be_labels() -> None:
    frame = pd.DataFrame({"label": [0.0, 1.0] * (N // 2), "x": RNG.normal(size=N)})
    proposal = propose_roles(frame)
    assert proposal.label_candidates == ("label",)
    # Numeric codes under a neutral name: the user must name the positive class.
    assert proposal.positive_class is None


def test_no_label_candidates() -> None:
    proposal = propose_roles(pd.DataFrame({"x": RNG.normal(size=N), "z": RNG.normal(size=N)}))
    assert proposal.label_candidates == ()
    assert proposal.positive_class is None
    assert proposal.to_roles() == Roles()


def test_lone_y_is_a_label_but_y_coordinate_is_not() -> None:
    frame = pd.DataFrame({"y_coord": RNG.integers(0, 3, N), "Y": ["a", "b"] * (N // 2)})
    assert propose_roles(frame).label_candidates[0] == "Y"


def test_site_needs_few_distinct_values() -> None:
    frame = pd.DataFrame({"source": [f"file{i}" for i in range(N)], "label": [0, 1] * (N // 2)})
    assert propose_roles(frame).site is None


def test_dates_without_a_birth_name_are_identifying_dates() -> None:
    frame = pd.DataFrame(
        {
            "scan_date": [f"2021-03-{1 + i % 28:02d}" for i in range(N)],
            "seen": pd.date_range("2020-01-01", periods=N),
            "dob": [f"{1 + i % 28:02d}/05/1961" for i in range(N)],
            "label": [0, 1] * (N // 2),
        }
    )
    assert propose_roles(frame).identifying == {
        "scan_date": "dates",
        "seen": "dates",
        "dob": "dates of birth",
    }


def test_person_names_recognised_by_their_values() -> None:
    frame = pd.DataFrame(
        {
            "who": [f"{FIRST[i % 10]} {LAST[i // 10]}" for i in range(N)],
            "first": [FIRST[i % 10] for i in range(N)],
            "protocol_name": ["T1", "T2"] * (N // 2),
            "label": [0, 1] * (N // 2),
        }
    )
    identifying = propose_roles(frame).identifying
    assert identifying == {"who": "person names", "first": "person names"}


def test_phone_numbers_by_value_but_not_dates_or_measurements() -> None:
    frame = pd.DataFrame(
        {
            "contact_no": [f"(555) 010-{i:04d}" for i in range(N)],
            "volume": [f"{1000 + i}.5" for i in range(N)],
            "label": [0, 1] * (N // 2),
        }
    )
    assert propose_roles(frame).identifying == {"contact_no": "phone numbers"}


def test_short_categorical_text_is_not_free_text() -> None:
    frame = pd.DataFrame(
        {
            "comment_code": ["ok", "repeat scan"] * (N // 2),
            "label": [0, 1] * (N // 2),
        }
    )
    assert propose_roles(frame).identifying == {}


def test_other_identifiers_by_name_hint() -> None:
    frame = pd.DataFrame({"ssn": [f"{i:09d}" for i in range(N)], "label": [0, 1] * (N // 2)})
    assert propose_roles(frame).identifying == {"ssn": "name hint"}


def test_empty_and_non_string_column_names() -> None:
    proposal = propose_roles(pd.DataFrame({0: [1, 2], "label": ["a", "b"]}))
    assert proposal.label_candidates == ("label",)
    empty = propose_roles(pd.DataFrame())
    assert empty.label_candidates == () and empty.id is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["benign", "malignant", "benign"], "malignant"),
        (["Negative", "Positive"], "Positive"),
        (["normal", "abnormal", "normal"], "abnormal"),
        (["NORMAL", "PNEUMONIA"], "PNEUMONIA"),
        (["no", "yes", "no"], "yes"),
        (["control", "disease"], "disease"),
        (["healthy", "cancer"], "cancer"),
        (["neg", "pos"], "pos"),
        (["COVID", "normal", "normal"], "COVID"),
        ([False, True, False], True),
        (["false", "true"], "true"),
        (["a", "b", "b", "c", "c"], "a"),
        (["x", "x", "y", "y"], "y"),
        ([3, 3, 1, 1, 2], 2),
    ],
)
def test_propose_positive_class(values: list[object], expected: object) -> None:
    got = propose_positive_class(values)
    assert got == expected
    assert type(got) is type(expected)


def test_positive_class_keeps_original_type_from_numpy_and_ignores_missing() -> None:
    series = pd.Series(["benign", "malignant", None, "malignant"], dtype="object")
    assert propose_positive_class(series) == "malignant"
    got = propose_positive_class(pd.Series(np.array([True, False, True])))
    assert got is True


@pytest.mark.parametrize(
    "values",
    [[0, 1, 0, 0], [1, 2, 2], [0.0, 1.0], ["0", "1", "1"], ["2", "10"], [2, 4, 4]],
)
def test_numeric_codes_are_never_guessed(values: list[object]) -> None:
    # BreastMNIST codes malignant as 0: "the larger number" would be benign.
    assert propose_positive_class(values) is None
    assert is_numeric_codes(values)
    assert choose_positive_class(values, label_name="label") is None


def test_breastmnist_like_codes_get_no_silent_positive() -> None:
    labels = pd.Series([0] * 40 + [1] * 60, name="label")
    frame = pd.DataFrame({"label": labels, "x": RNG.normal(size=100)})
    assert propose_roles(frame).positive_class is None
    named = choose_positive_class(labels, class_names=(("0", "malignant"), ("1", "benign")))
    assert named is not None and named.value == 0 and named.from_codes
    assert named.rule == (
        "its class name reads as the disease (class names: 0 = malignant, 1 = benign)"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("malignant", 1),
        ("is_malignant", 1),
        ("hasCancer", 1),
        ("pneumonia", 1),
        ("death", 1),
        ("event", 1),
        ("abnormal", 1),
        ("benign", 0),
        ("is_normal", 0),
        ("healthy", 0),
        ("label", None),
        ("target", None),
        ("not_malignant", None),
        ("benign_malignant", None),
    ],
)
def test_column_name_decides_zero_one_codes(name: str, expected: int | None) -> None:
    choice = choose_positive_class([0, 1, 1, 0], label_name=name)
    if expected is None:
        assert choice is None
    else:
        assert choice is not None and choice.value == expected and choice.from_codes
        assert repr(name) in choice.rule


def test_column_name_only_decides_zero_one() -> None:
    # 1/2 or 2/4 codes under a disease-like name still need the user.
    assert choose_positive_class([2, 4, 4], label_name="malignant") is None
    assert choose_positive_class([1, 2], label_name="disease") is None


def test_class_names_name_the_positive_by_word() -> None:
    choice = choose_positive_class([2, 4], class_names=(("2", "benign"), ("4", "malignant")))
    assert choice is not None and choice.value == 4
    healthy_only = choose_positive_class([0, 1], class_names=(("0", "COVID"), ("1", "normal")))
    assert healthy_only is not None and healthy_only.value == 0
    undecided = choose_positive_class([0, 1], class_names=(("0", "type A"), ("1", "type B")))
    assert undecided is None
    partial = choose_positive_class([0, 1], class_names=(("0", "malignant"),))
    assert partial is None


def test_roles_class_names_round_trip_and_lookup() -> None:
    roles = Roles(
        label="y",
        class_names=(("0", "malignant"), ("1", "benign")),
        keep_as_feature=("case_no",),
    )
    assert Roles.from_dict(roles.to_dict()) == roles
    assert roles.to_dict()["class_names"] == {"0": "malignant", "1": "benign"}
    assert roles.class_name(0) == "malignant"
    assert roles.class_name(1.0) == "benign"
    assert roles.class_name(np.int64(0)) == "malignant"
    assert roles.class_name(7) == "7"
    assert roles.class_code("MALIGNANT") == "0"
    assert roles.class_code("other") is None
    assert Roles.from_dict({"label": "y"}) == Roles(label="y")


def test_positive_class_of_nothing_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"label has no values \(all missing\).*Choose a label"):
        propose_positive_class(pd.Series([None, np.nan]))


def test_feature_columns_keep_order_and_drop_every_role() -> None:
    frame = clinical_table()
    roles = Roles(
        label="diagnosis",
        id="PatientID",
        quality="qc_pass",
        site="site",
        exclude=("patient_name", "phone"),
    )
    features = feature_columns(frame, roles)
    assert features == [
        c
        for c in frame.columns
        if c not in {"diagnosis", "PatientID", "qc_pass", "site", "patient_name", "phone"}
    ]
    assert feature_columns(frame, Roles()) == list(frame.columns)


def test_proposal_to_roles_keeps_identifying_out_of_features() -> None:
    frame = clinical_table()
    roles = propose_roles(frame).to_roles()
    assert feature_columns(frame, roles) == ["radius", "texture", "age", "sex"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0=malignant,1=benign", (("0", "malignant"), ("1", "benign"))),
        (" 0 = malignant ; 1 = benign lesion ", (("0", "malignant"), ("1", "benign lesion"))),
        ("2:benign\n4:malignant", (("2", "benign"), ("4", "malignant"))),
        ("1.0->pneumonia, 0.0->normal", (("1", "pneumonia"), ("0", "normal"))),
        ("B=benign,M=malignant", (("B", "benign"), ("M", "malignant"))),
        ("", ()),
        (" , ", ()),
    ],
)
def test_parse_class_names(text: str, expected: tuple[tuple[str, str], ...]) -> None:
    assert parse_class_names(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0 malignant", "code=name"),
        ("=malignant", "code=name"),
        ("0=", "code=name"),
        ("0=a,0=b", "named twice"),
        ("0=tumour,1=Tumour", "same name|named 'Tumour'"),
    ],
)
def test_parse_class_names_refuses_unclear_input(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_class_names(text)


def test_patient_number_column_is_flagged_as_id_like() -> None:
    n = 50
    frame = pd.DataFrame(
        {
            "patient_number": np.arange(1001, 1001 + n),
            "case_no": np.repeat(np.arange(n // 2), 2),  # repeats, but increases with rows
            "record_nr": RNG.permutation(n) % 5,  # a code, neither distinct nor ordered
            "number_of_nodes": RNG.integers(0, 12, size=n),
            "age": RNG.integers(20, 90, size=n),
            "id_score": RNG.normal(size=n),  # not whole numbers
            "y": ["a", "b"] * (n // 2),
        }
    )
    found = id_like_features(frame, Roles(label="y"))
    assert list(found) == ["patient_number", "case_no"]
    assert "distinct" in found["patient_number"]
    assert "go up" in found["case_no"]
    shuffled = frame.assign(case_no=RNG.permutation(frame["case_no"].to_numpy()))
    assert list(id_like_features(shuffled, Roles(label="y"))) == ["patient_number"]
    assert list(id_like_features(frame, Roles(label="y", id="patient_number"))) == ["case_no"]
    assert list(id_like_features(frame, Roles(label="y", exclude=("case_no",)))) == [
        "patient_number"
    ]
    kept = Roles(label="y", id="case_no", keep_as_feature=("patient_number",))
    assert id_like_features(frame, kept) == {}


def test_unrecognised_words_take_the_rarer_class_and_say_so() -> None:
    choice = choose_positive_class(["type A", "type A", "type B"], label_name="group")
    assert choice is not None and choice.value == "type B" and choice.from_codes
    assert "rarer class" in choice.rule
    worded = choose_positive_class(["benign", "malignant", "benign"])
    assert worded is not None and worded.value == "malignant" and not worded.from_codes


TEMPLATED_NOTES = (
    "Patient reports mild pain, follow up in 2 weeks",
    "No complaints, routine follow up in 12 months.",
    "Seen by Dr Smith; biopsy recommended",
    "Patient anxious, results discussed with family.",
)


def _with(column: str, values: tuple[str, ...], n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "diagnosis": rng.choice(["benign", "malignant"], n),
            column: rng.choice(list(values), n),
            "size_mm": rng.normal(12, 3, n),
        }
    )


def test_templated_notes_with_few_variants_are_free_text() -> None:
    proposal = propose_roles(_with("clinician_text", TEMPLATED_NOTES))
    assert proposal.identifying["clinician_text"] == "free text"
    assert "clinician_text" not in proposal.label_candidates
    assert "clinician_text" in proposal.to_roles().non_feature_columns()


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("side", ("left breast", "right breast")),
        ("margin", ("irregular", "spiculated", "circumscribed", "not circumscribed")),
        ("shape", ("oval", "round", "irregular")),
        (
            "density",
            ("fatty", "scattered fibroglandular", "heterogeneously dense", "extremely dense"),
        ),
        ("clinic", ("St Mary's Hospital", "Cambridge University Hospitals NHS Foundation Trust")),
        ("histology", ("Invasive ductal carcinoma", "Ductal carcinoma in situ", "Fibroadenoma")),
        ("remarks", ("no change", "see prior study", "stable")),
    ],
)
def test_true_categories_are_not_free_text(column: str, values: tuple[str, ...]) -> None:
    assert propose_roles(_with(column, values)).identifying.get(column) != "free text"


def test_a_column_named_notes_needs_only_a_few_words() -> None:
    notes = ("follow up advised", "no further action", "repeat imaging requested")
    assert propose_roles(_with("notes", notes)).identifying["notes"] == "free text"


def test_sex_and_age_are_proposed_as_subgroups_and_stay_features() -> None:
    df = clinical_table()
    proposal = propose_roles(df)
    assert proposal.subgroups == ("age", "sex")
    roles = proposal.to_roles()
    assert roles.subgroups == ("age", "sex")
    assert roles.site == "site"
    assert roles.analysis_columns() == ("site", "age", "sex")
    # A subgroup column without another role is still a feature; the site never is.
    features = feature_columns(df, roles)
    assert "age" in features and "sex" in features and "site" not in features


def test_an_excluded_subgroup_is_kept_aside_for_the_analysis_only() -> None:
    df = clinical_table()
    roles = Roles(
        label="diagnosis", id="PatientID", site="site", exclude=("sex",), subgroups=("sex",)
    )
    assert "sex" not in feature_columns(df, roles)
    assert roles.analysis_columns() == ("site", "sex")


def test_roles_subgroups_round_trip_and_older_cards_have_none() -> None:
    roles = Roles(label="diagnosis", id="pid", site="hospital", subgroups=("sex", "age_years"))
    assert Roles.from_dict(roles.to_dict()) == roles
    assert roles.to_dict()["subgroups"] == ["sex", "age_years"]
    older = roles.to_dict()
    del older["subgroups"]
    assert Roles.from_dict(older).subgroups == ()
    # The label and the ID are never analysed by group.
    assert Roles(label="sex", id="pid", subgroups=("sex", "pid", "age")).analysis_columns() == (
        "age",
    )
