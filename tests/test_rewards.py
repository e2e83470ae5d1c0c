"""Rewards against hand-worked values, and the TRL-form reward functions of both stages."""

import pickle

import pytest

from refine_iqa.rewards import (
    answer_reward,
    choice_reward,
    completion_text,
    digit_prob_reward,
    final_reward,
    get_stage1_reward_funcs,
    get_stage2_reward_funcs,
    grounding_reward,
    pd_reward,
)

# ------------------------------------------------------------------------------------------ answer (Eq. 1)


@pytest.mark.parametrize(
    "pred, mos, eps, expected",
    [
        (3.25, 3.7, 0.5, 1.0),  # |diff| = 0.45
        (3.2, 3.7, 0.5, 0.0),  # exactly eps: strict <
        (4.2, 3.7, 0.5, 0.0),  # 4.2 - 3.7 is 0.5 in floating point too
        (0.2, 0.7, 0.5, 0.0),  # 0.7 - 0.2 = 0.49999999999999994 in floating point: rounding keeps it at eps
        (3.7, 3.7, 0.5, 1.0),
        (3.0, 3.9, 1.0, 1.0),
        (3.0, 3.9, 0.9, 0.0),
        (-1.0, 0.0, 0.5, 0.0),
        (None, 3.7, 0.5, 0.0),
        (float("nan"), 3.7, 0.5, 0.0),
        (float("inf"), 3.7, 0.5, 0.0),
        ("abc", 3.7, 0.5, 0.0),
    ],
)
def test_answer_reward(pred, mos, eps, expected):
    assert answer_reward(pred, mos, eps) == expected


def test_answer_reward_rejects_bad_targets():
    with pytest.raises(ValueError, match="mos must be finite"):
        answer_reward(3.0, float("nan"))
    with pytest.raises(ValueError, match="mos must be a number"):
        answer_reward(3.0, None)
    with pytest.raises(ValueError, match="eps must be positive"):
        answer_reward(3.0, 3.0, eps=0)


# ----------------------------------------------------------------------------------------- PD (Eqs. 2-4)


def test_digit_prob_reward():
    assert digit_prob_reward([0.8, 0.5]) == pytest.approx(0.85)  # 1.0 * 0.8 + 0.1 * 0.5
    assert digit_prob_reward([0.8, 0.5], weights=(0.0, 1.0)) == pytest.approx(0.5)  # authors' tenths-only variant
    assert digit_prob_reward([1.0, 1.0]) == pytest.approx(1.1)
    assert digit_prob_reward([0.3], weights=(1.0,)) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="one probability per weight"):
        digit_prob_reward([0.8], weights=(1.0, 0.1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        digit_prob_reward([1.2, 0.5])
    with pytest.raises(ValueError, match="finite"):
        digit_prob_reward([float("nan"), 0.5])


def test_pd_reward():
    # r_think = 0.9 + 0.06 = 0.96, r_ref = 0.5 + 0.02 = 0.52 -> 0.44
    assert pd_reward([0.9, 0.6], [0.5, 0.2]) == pytest.approx(0.44)
    assert pd_reward([0.3, 0.1], [0.5, 0.2]) == 0.0  # worse than the reference: clipped at 0
    assert pd_reward([1.0, 1.0], [0.0, 0.0], weights=(1.0, 1.0)) == 1.0  # 2.0 clipped at 1
    assert pd_reward([0.5, 0.2], [0.5, 0.2]) == 0.0


# ---------------------------------------------------------------------------------------------- Eq. 5


def test_final_reward():
    assert final_reward(1, 1, 0.44) == pytest.approx(2.44)
    assert final_reward(1, 0, None) == 1.0
    assert final_reward(0, 1, 0.9) == 1.0  # PD only counts for a correct rollout
    assert final_reward(0, 0, None) == 0.0
    assert final_reward(1, 1, 0.4, lambdas=(2.0, 1.0, 0.5)) == pytest.approx(3.2)
    with pytest.raises(ValueError, match="r_pd is needed"):
        final_reward(1, 1, None)
    with pytest.raises(ValueError, match="three weights"):
        final_reward(1, 1, 0.0, lambdas=(1, 1))


# ------------------------------------------------------------------------------------------ Stage-1 pure


def test_choice_reward():
    gt = ("red car", "blur", "noticeable")
    assert choice_reward(("Red Car", "Blur", "slight"), gt) == pytest.approx(2 / 3)
    assert choice_reward(("Red Car", "Blur", "slight"), gt, mode="all") == 0.0
    assert choice_reward(("‘red  car’.", '"BLUR"', "Noticeable!"), gt, mode="all") == 1.0
    assert choice_reward(("dog", "noise", "severe"), gt) == 0.0
    assert choice_reward(("dog", "blur", "severe"), gt) == pytest.approx(1 / 3)
    assert choice_reward(None, gt) == 0.0
    with pytest.raises(ValueError, match="choice mode"):
        choice_reward(gt, gt, mode="any")
    with pytest.raises(ValueError, match="three non-empty strings"):
        choice_reward(gt, ("red car", "blur"))
    with pytest.raises(ValueError, match="three non-empty strings"):
        choice_reward(gt, ("red car", None, "slight"))


def test_grounding_reward():
    assert grounding_reward((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert grounding_reward(None, (5, 5, 15, 15)) == 0.0
    assert grounding_reward((-10, -10, 10, 10), (0, 0, 10, 10), image_wh=(112, 84)) == 1.0


# ------------------------------------------------------------------------------------------- TRL wrappers


def test_completion_text_forms():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "a"}]) == "a"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "b"}]}]) == "b"
    assert completion_text([{"role": "user", "content": "no"}, {"role": "assistant", "content": "c"}]) == "c"
    assert completion_text({"role": "assistant", "content": "d"}) == "d"
    assert completion_text(None) == ""
    assert completion_text([{"role": "assistant", "content": None}]) == ""


def _stage1_batch():
    completions = [
        "[answer]red car / blur / noticeable[/answer]",  # description, all right, format ok
        [{"role": "assistant", "content": "[answer]Dog / blur / slight[/answer]"}],  # 1 of 3, conversational
        "the box is [answer]0,0,10,10[/answer]",  # grounding, parsable, bad format
        "[answer] 28,0,56,28 [/answer]",  # grounding, exact, format ok
        "[answer]no idea[/answer]",  # grounding, unparsable
    ]
    columns = {
        "task": ["description", "description", "grounding", "grounding", "grounding"],
        "answer_object": ["red car", "red car", None, None, None],
        "answer_family": ["blur", "blur", None, None, None],
        "answer_severity": ["noticeable", "noticeable", None, None, None],
        "box_model": [None, None, [5, 5, 15, 15], [28, 0, 56, 28], [0, 0, 1, 1]],
        "model_wh": [None, None, [112, 84], [112, 84], [112, 84]],
    }
    return completions, columns


def test_stage1_reward_funcs():
    funcs = get_stage1_reward_funcs("paper", "mean")
    assert [f.__name__ for f in funcs] == ["description_reward", "grounding_reward", "format_reward"]
    completions, columns = _stage1_batch()
    desc, ground, fmt = (f(completions, prompts=[None] * 5, trainer_state=None, **columns) for f in funcs)
    assert desc == [1.0, pytest.approx(1 / 3), None, None, None]
    assert ground[:2] == [None, None]
    assert ground[2:] == [pytest.approx(25 / 175), 1.0, 0.0]
    assert fmt == [1.0, 1.0, 0.0, 1.0, 0.0]
    all_mode = get_stage1_reward_funcs("paper", "all")[0](completions, **columns)
    assert all_mode[:2] == [1.0, 0.0]


def test_stage1_reward_funcs_xml_tags():
    desc, ground, fmt = get_stage1_reward_funcs("xml")
    columns = {"task": ["description", "grounding"], "answer_object": ["cat", None],
               "answer_family": ["noise", None], "answer_severity": ["severe", None],
               "box_model": [None, [0, 0, 4, 4]], "model_wh": [None, [8, 8]]}
    completions = ["<answer>cat / noise / severe</answer>", "<answer>0,0,4,4</answer>"]
    assert desc(completions, **columns) == [1.0, None]
    assert ground(completions, **columns) == [None, 1.0]
    assert fmt(completions, **columns) == [1.0, 1.0]


def test_stage1_reward_funcs_report_bad_columns():
    desc, ground, fmt = get_stage1_reward_funcs()
    completions, columns = _stage1_batch()
    broken = {k: v for k, v in columns.items() if k != "box_model"}
    with pytest.raises(ValueError, match="needs the dataset column 'box_model'"):
        ground(completions, **broken)
    with pytest.raises(ValueError, match="row 1: column 'task' is 'caption'"):
        fmt(completions, **{**columns, "task": ["description", "caption", "grounding", "grounding", "grounding"]})
    with pytest.raises(ValueError, match="column 'task' has 2 values for 5 completions"):
        desc(completions, **{**columns, "task": ["description", "grounding"]})
    with pytest.raises(ValueError, match="row 2: bad 'box_model'"):
        ground(completions, **{**columns, "box_model": [None, None, [5, 5, 15], [0, 0, 1, 1], [0, 0, 1, 1]]})
    with pytest.raises(ValueError, match="row 0: bad answer_object"):
        desc(completions, **{**columns, "answer_object": [None] * 5})
    with pytest.raises(ValueError, match="choice_mode"):
        get_stage1_reward_funcs(choice_mode="some")


def test_stage2_reward_funcs_think():
    answer, fmt = get_stage2_reward_funcs("paper", "think", eps=0.5)
    assert (answer.__name__, fmt.__name__) == ("answer_reward", "format_reward")
    completions = [
        "[think]sharp, well lit[/think][answer]Score: 3.9[/answer]",  # |3.9 - 3.7| < 0.5, format ok
        "[answer]Score: 3.6[/answer]",  # right answer, no think: format 0
        "[think]blurry[/think][answer]Score: 1.2[/answer]",  # wrong answer, format ok
        [{"role": "assistant", "content": "[think]x[/think][answer]Score: 4.2[/answer]"}],  # diff exactly 0.5
        "garbage",
    ]
    mos = [3.7, 3.7, 3.7, 3.7, 3.7]
    assert answer(completions, mos_scaled=mos) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert fmt(completions, mos_scaled=mos) == [1.0, 0.0, 1.0, 1.0, 0.0]


def test_stage2_reward_funcs_no_think_and_errors():
    answer, fmt = get_stage2_reward_funcs("xml", "no_think", eps=1.0)
    completions = ["<answer>Score: 2.1</answer>", "<think>a</think><answer>Score: 2.1</answer>"]
    assert answer(completions, mos_scaled=[3.0, 3.2]) == [1.0, 0.0]  # eps = 1: 0.9 < 1, 1.1 >= 1
    assert fmt(completions, mos_scaled=[3.0, 3.2]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="needs the dataset column 'mos_scaled'"):
        answer(completions, mos=[3.0, 3.2])
    with pytest.raises(ValueError, match="row 1: bad 'mos_scaled'"):
        answer(completions, mos_scaled=[3.0, None])
    with pytest.raises(ValueError, match="mode must be"):
        get_stage2_reward_funcs(mode="fast")
    with pytest.raises(ValueError, match="eps must be positive"):
        get_stage2_reward_funcs(eps=-0.5)


def test_reward_funcs_pickle_and_keep_their_names():
    # TRL may ship reward functions to worker processes; they must survive pickling with their names.
    for func in get_stage1_reward_funcs("xml", "all") + get_stage2_reward_funcs("paper", "no_think", 0.3):
        clone = pickle.loads(pickle.dumps(func))
        assert clone.__name__ == func.__name__
        assert clone.tags == func.tags
