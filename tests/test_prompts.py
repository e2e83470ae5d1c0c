"""Prompt templates: verbatim text, tag styles, overridable templates, message format, score formatting."""

import jinja2
import pytest

from refine_iqa import prompts as P


def test_tag_styles():
    assert P.get_tag_style("paper") is P.PAPER_TAGS
    assert P.get_tag_style("xml") is P.XML_TAGS
    assert P.get_tag_style(P.XML_TAGS) is P.XML_TAGS
    assert (P.PAPER_TAGS.think_open, P.PAPER_TAGS.answer_close) == ("[think]", "[/answer]")
    assert (P.XML_TAGS.think_close, P.XML_TAGS.answer_open) == ("</think>", "<answer>")
    with pytest.raises(ValueError, match="unknown tag style 'html'"):
        P.get_tag_style("html")


def test_description_prompt_fr_paper_exact():
    text = P.description_prompt(["red car", "dog"], full_reference=True)
    expected = (
        "Given the original image and the distorted image, please answer the following three questions one by "
        "one: 1. What object appears to have visual distortions? Select only one from ‘red car’, ‘dog’. "
        "2. What visual distortion appears on this object? Choose only one from ‘blur’, ‘noise’, "
        "‘compression’, ‘overexposure’, ‘underexposure’, ‘high contrast’, ‘low contrast’, ‘oversaturate’, "
        "‘desaturate’, ‘oversharpen’, ‘pixelate’, and ‘quantization’. 3. How is the severity of the visual "
        "distortion? Select only one from ‘slight’, ‘noticeable’, ‘relatively obvious’, ‘severe’, "
        "‘catastrophic’. Please answer the questions in the following format: "
        "[answer]chosen object / chosen distortion type / chosen severity[/answer]"
    )
    assert text == expected


def test_description_prompt_nr_xml():
    text = P.description_prompt(["man"], full_reference=False, tags="xml")
    assert text.startswith("Given the distorted image, please answer the following three questions")
    assert text.endswith("<answer>chosen object / chosen distortion type / chosen severity</answer>")
    assert "[answer]" not in text and "original image" not in text


def test_every_family_and_severity_word_is_offered():
    text = P.description_prompt(["a"], full_reference=True)
    assert len(P.DISTORTION_NAMES) == 12
    for name in P.DISTORTION_NAMES:
        assert f"‘{name}’" in text
    assert list(P.SEVERITY_WORDS) == [1, 2, 3, 4, 5]
    for word in P.SEVERITY_WORDS.values():
        assert f"‘{word}’" in text


@pytest.mark.parametrize(
    "objects, message",
    [([], "non-empty list"), ("dog", "non-empty list"), (["a/b"], "contains '/'"), (["Dog", "dog "], "distinct"),
     (["dog", ""], "non-empty strings"), (["dog", 3], "non-empty strings")],
)
def test_description_prompt_rejects_bad_objects(objects, message):
    with pytest.raises(ValueError, match=message):
        P.description_prompt(objects, full_reference=True)


def test_grounding_prompt_exact():
    text = P.grounding_prompt(full_reference=False)
    assert text == (
        "Given the distorted image, please provide the exact bounding box coordinates of the localized visual "
        "distortion area in the distorted image, represented by the top-left corner coordinates (x1,y1) and the "
        "bottom-right corner coordinates (x2,y2). Directly give your answer within the [answer] [/answer] tags. "
        "The final output should be strictly with the following format: [answer] x1,y1,x2,y2 [/answer], and "
        "the accuracy should be represented as an integer."
    )
    fr = P.grounding_prompt(full_reference=True, tags="xml")
    assert fr.startswith("Given the original image and the distorted image, please provide")
    assert "<answer> x1,y1,x2,y2 </answer>" in fr


def test_score_prompts():
    think = P.score_prompt(think=True)
    no_think = P.score_prompt(think=False, tags="xml")
    question = ("Answer the question: “What is your overall rating of the visual quality of this picture? The "
                "rating should be a float between 0 and 5, rounded to one decimal place, with 0-1 representing very "
                "poor quality and 4-5 representing excellent quality,” according to the content of the image. ")
    assert think == question + (
        "Firstly, give a thorough thought on this and then output your thought and analysis process within the "
        "[think] [/think] tags and provide your score within the [answer] [/answer] tags (formatted as Score: "
        "Your score). The final output should be in the following format: "
        "[think]Your think[/think][answer]Score:Your score[/answer]"
    )
    assert no_think == question + (
        "Directly give your score within the <answer> </answer> tags (formatted as Score: Your score). The final "
        "output should be in the following format: <answer>Score: Your score</answer>"
    )


def test_custom_templates():
    assert P.score_prompt(think=False, template="Rate it. {answer_open}Score: x{answer_close}") == \
        "Rate it. [answer]Score: x[/answer]"
    assert P.description_prompt(["cat", "dog"], full_reference=False, template="Pick {objects} {{json}}") == \
        "Pick ‘cat’, ‘dog’ {json}"
    with pytest.raises(ValueError, match=r"unknown placeholder\(s\) \['objects'\]"):
        P.grounding_prompt(full_reference=True, template="Box for {objects}")
    with pytest.raises(ValueError, match="not a valid format string"):
        P.score_prompt(think=True, template="broken {")
    with pytest.raises(ValueError, match="non-empty string"):
        P.score_prompt(think=True, template="  ")


def test_build_messages():
    msgs = P.build_messages("Rate this.", 2)
    assert msgs == [{"role": "user", "content": [
        {"type": "image"}, {"type": "image"}, {"type": "text", "text": "Rate this."}]}]
    assert P.build_messages("x", 0) == [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
    for bad in (-1, 1.0, True):
        with pytest.raises(ValueError, match="n_images"):
            P.build_messages("x", bad)
    with pytest.raises(ValueError, match="non-empty"):
        P.build_messages("", 1)


def test_messages_render_through_the_qwen_chat_template():
    # The embedded model's chat template (the real Qwen2-VL one) puts the image slots before the text.
    from refine_iqa.model.build_tiny import CHAT_TEMPLATE

    rendered = jinja2.Environment().from_string(CHAT_TEMPLATE).render(
        messages=P.build_messages("Rate this.", 2), add_generation_prompt=True)
    image = "<|vision_start|><|image_pad|><|vision_end|>"
    assert f"<|im_start|>user\n{image}{image}Rate this.<|im_end|>\n<|im_start|>assistant\n" in rendered


def test_family_and_severity_helpers():
    assert P.display_family("contrast_strengthen") == "high contrast"
    assert P.display_family("saturate-weaken") == "desaturate"
    assert P.display_family("Brighten") == "overexposure"
    assert P.display_family("darken") == "underexposure"
    assert P.display_family("high contrast") == "high contrast"
    assert sorted(P.FAMILY_DISPLAY_NAMES.values()) == sorted(P.DISTORTION_NAMES)
    with pytest.raises(ValueError, match="unknown distortion family 'fog'"):
        P.display_family("fog")
    assert P.severity_word(3) == "relatively obvious"
    for bad in (0, 6, True, 2.0):
        with pytest.raises(ValueError, match="1..5"):
            P.severity_word(bad)


@pytest.mark.parametrize("value, text", [(3.7, "3.7"), (3, "3.0"), (0, "0.0"), (-0.0, "0.0"), (4.96, "5.0"),
                                         (0.04, "0.0"), (9.9, "9.9"), ("2.5", "2.5")])
def test_format_score(value, text):
    assert P.format_score(value) == text


@pytest.mark.parametrize("value", [-0.1, 9.96, 10, float("nan"), float("inf"), "abc", None])
def test_format_score_rejects(value):
    with pytest.raises(ValueError, match="score"):
        P.format_score(value)


def test_no_think_reference_completion():
    assert P.no_think_reference_completion(3.7) == "[answer]Score: 3.7[/answer]"
    assert P.no_think_reference_completion(2, tags="xml") == "<answer>Score: 2.0</answer>"
